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

source "$root/scripts/run-lib.sh"
db_pid_file=$var/run/devdb.pid

stop_all() {
    trap - INT TERM EXIT
    echo
    echo "run: stopping"
    stop_pid "${nginx_pid:-}" QUIT
    stop_pid "${sidecar_pid:-}" TERM
    stop_database "$db_pid_file"
    wait 2>/dev/null || true
    echo "run: stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# --- port check: fail early and clearly -------------------------------------
if port_in_use "$PORT"; then
    echo "run: port $PORT on 127.0.0.1 is already in use; try PORT=8002 make run" >&2
    exit 1
fi

start_database "$var" "$db_pid_file"

# --- secrets ----------------------------------------------------------------
make_secret "$var/jwt-secret"
make_htpasswd "$var/htpasswd" "$DASHBOARD_USER" "${DASHBOARD_PASSWORD:-}"
# machines (Prometheus, a poller of the JSON) send this token as
# "Authorization: Bearer ..." on /metrics and /dashboard/api/data instead of
# a bcrypt password, which costs nginx's event loop ~1.5 ms per request
# (README, "Dashboard access"); made once, kept in var/, owner-only: only
# nginx's master reads it (and keeps its SHA-256)
make_secret "$var/scrape-token"

# --- sidecar ----------------------------------------------------------------
ingest="ipc://$var/run/chat-metrics.ipc"
events="ipc://$var/run/chat-events.ipc"
if [ "$SIDECAR_PORT" = 0 ]; then
    SIDECAR_PORT=$(devdb/run-db.sh free-port)
fi
# the key nginx adds to every request it passes to the sidecar, which
# answers no one else (docs/SECURITY.md); made once, kept in var/
make_secret "$var/sidecar-key" 24
sidecar_key=$(cat "$var/sidecar-key")
start_sidecar "$var" "$SIDECAR_PORT" "$mongo_uri" "$ingest" "$events" \
    "$var/sidecar-key" "$var/logs/nginx.pid" || exit 1

# --- nginx ------------------------------------------------------------------
example_conf "$var" "$PORT" "$mongo_uri" "$var/jwt-secret" "$ingest" \
    "127.0.0.1:$SIDECAR_PORT" "$sidecar_key" "$var/htpasswd" \
    "$var/scrape-token" > "$var/nginx.conf"
chmod 600 "$var/nginx.conf"        # it holds the sidecar's key
start_nginx "$var" "$var/nginx.conf" "$PORT" || exit 1

cat <<MSG

  chat API      http://127.0.0.1:$PORT/api/chat/groups
                (token: scripts/mint-jwt.sh alice, or make token USER_ID=alice)
  dashboard     http://127.0.0.1:$PORT/dashboard
  JSON          http://127.0.0.1:$PORT/dashboard/api/data
  Prometheus    http://127.0.0.1:$PORT/metrics
  user          $DASHBOARD_USER
  password      $password_note
  scrapers      Authorization: Bearer \$(cat var/scrape-token)
                (machines polling /metrics or /dashboard/api/data)

  custom events build/sidecar/send-test-batch -u $events -n 0 -C TYPE -k KEY=VALUE

  logs in var/logs/ (access.log, error.log, sidecar.log, dashboard-audit.log)
  Ctrl-C stops nginx, the sidecar and the database.

MSG

wait "$nginx_pid"
