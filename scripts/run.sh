#!/bin/bash
# run.sh - `make run`: start the database, the sidecar and nginx in the
# foreground; Ctrl-C stops everything this script started (by pid).
#
# Environment:
#   PORT                nginx's port (8001)
#   MONGO_URI           use this MongoDB instead of the embedded FerretDB
#   DASHBOARD_USER      dashboard user (admin)
#   DASHBOARD_PASSWORD  its password; generated and printed once if unset
#                       and var/htpasswd does not exist yet
#   SIDECAR_PORT        the sidecar's loopback port (0 = a free one)
#
# State lives in var/: database files, logs, secrets, generated config.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

PORT=${PORT:-8001}
# mongo-c-driver's shared-memory counters would leave /dev/shm/mongoc-PID
# behind every killed nginx master; nothing here reads them
export MONGOC_DISABLE_SHM=1
SIDECAR_PORT=${SIDECAR_PORT:-0}
DASHBOARD_USER=${DASHBOARD_USER:-admin}
var=$root/var

mkdir -p "$var"/{logs,run,db,tmp}
chmod 755 "$var" "$var/run"

pids=()
db_pid_file=$var/run/devdb.pid

stop_all() {
    trap - INT TERM EXIT
    echo
    echo "run: stopping"
    if [ -n "${nginx_pid:-}" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nginx_pid" 2>/dev/null || true
    fi
    if [ -n "${sidecar_pid:-}" ] && kill -0 "$sidecar_pid" 2>/dev/null; then
        kill -TERM "$sidecar_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$sidecar_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$sidecar_pid" 2>/dev/null || true
    fi
    if [ -z "${MONGO_URI:-}" ] && [ -s "$db_pid_file" ]; then
        devdb/run-db.sh stop "$db_pid_file" >/dev/null 2>&1 || true
    fi
    wait 2>/dev/null || true
    echo "run: stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# --- port check: fail early and clearly -------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "run: port $PORT on 127.0.0.1 is already in use; try PORT=8002 make run" >&2
    exit 1
fi

# --- database ---------------------------------------------------------------
if [ -n "${MONGO_URI:-}" ]; then
    mongo_uri=$MONGO_URI
    echo "run: using MongoDB at $mongo_uri"
else
    base=$(devdb/run-db.sh start "$var/db" 0 "$db_pid_file")
    mongo_uri="${base%/}/chat"
    echo "run: embedded FerretDB at $mongo_uri (data in var/db)"
fi

# --- secrets ----------------------------------------------------------------
if [ ! -s "$var/jwt-secret" ]; then
    (umask 077; openssl rand -hex 32 > "$var/jwt-secret")
fi

password_note="(unchanged: var/htpasswd; set DASHBOARD_PASSWORD to replace it)"
if [ -n "${DASHBOARD_PASSWORD:-}" ] || [ ! -s "$var/htpasswd" ]; then
    password=${DASHBOARD_PASSWORD:-$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)}
    htpasswd -cbB "$var/htpasswd" "$DASHBOARD_USER" "$password" 2>/dev/null
    chmod 644 "$var/htpasswd"        # nginx workers read it as their own user
    if [ -z "${DASHBOARD_PASSWORD:-}" ]; then
        password_note="$password   (generated; shown once, stored hashed in var/htpasswd)"
    else
        password_note="(as given in DASHBOARD_PASSWORD)"
    fi
fi

# --- sidecar ----------------------------------------------------------------
ingest="ipc://$var/run/chat-metrics.ipc"
events="ipc://$var/run/chat-events.ipc"
if [ "$SIDECAR_PORT" = 0 ]; then
    SIDECAR_PORT=$(devdb/run-db.sh free-port)
fi
# the key nginx adds to every request it passes to the sidecar, which
# answers no one else (docs/SECURITY.md); made once, kept in var/
if [ ! -s "$var/sidecar-key" ]; then
    (umask 077; openssl rand -hex 24 > "$var/sidecar-key")
fi
sidecar_key=$(cat "$var/sidecar-key")
build/sidecar/chat-sidecar \
    --listen "127.0.0.1:$SIDECAR_PORT" \
    --http-key-file "$var/sidecar-key" \
    --ingest "$ingest" \
    --events "$events" \
    --mongo-uri "$mongo_uri" \
    --nginx-pid-file "$var/logs/nginx.pid" \
    --html-dir "$root/html" \
    --pid-file "$var/run/sidecar.pid" \
    >> "$var/logs/sidecar.log" 2>&1 &
sidecar_pid=$!

for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$SIDECAR_PORT") 2>/dev/null && break
    kill -0 "$sidecar_pid" 2>/dev/null || { tail -5 "$var/logs/sidecar.log" >&2; exit 1; }
    sleep 0.1
done
sidecar_port=$SIDECAR_PORT

# --- nginx ------------------------------------------------------------------
sed -e "s|@MODULE@|$root/build/ngx_chat_module.so|g" \
    -e "s|@PREFIX@|$var|g" \
    -e "s|@PORT@|$PORT|g" \
    -e "s|@MONGO_URI@|$mongo_uri|g" \
    -e "s|@JWT_SECRET_FILE@|$var/jwt-secret|g" \
    -e "s|@METRICS_ADDRESS@|$ingest|g" \
    -e "s|@SIDECAR@|127.0.0.1:$sidecar_port|g" \
    -e "s|@SIDECAR_KEY@|$sidecar_key|g" \
    -e "s|@HTPASSWD@|$var/htpasswd|g" \
    nginx.conf.example > "$var/nginx.conf"
chmod 600 "$var/nginx.conf"        # it holds the sidecar's key

/usr/sbin/nginx -p "$var" -c "$var/nginx.conf" -t -q
/usr/sbin/nginx -p "$var" -c "$var/nginx.conf" -g 'daemon off;' &
nginx_pid=$!

for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$nginx_pid" 2>/dev/null || { tail -5 "$var/logs/error.log" >&2; exit 1; }
    sleep 0.1
done

cat <<MSG

  chat API      http://127.0.0.1:$PORT/api/chat/groups
                (token: scripts/mint-jwt.sh alice, or make token USER_ID=alice)
  dashboard     http://127.0.0.1:$PORT/dashboard
  JSON          http://127.0.0.1:$PORT/dashboard/api/data
  Prometheus    http://127.0.0.1:$PORT/metrics
  user          $DASHBOARD_USER
  password      $password_note

  custom events build/sidecar/send-test-batch -u $events -n 0 -C TYPE -k KEY=VALUE

  logs in var/logs/ (access.log, error.log, sidecar.log, dashboard-audit.log)
  Ctrl-C stops nginx, the sidecar and the database.

MSG

wait "$nginx_pid"
