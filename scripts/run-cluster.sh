#!/bin/bash
# run-cluster.sh - `make run-cluster`: several hosts on one machine, all on
# 127.0.0.1, in the foreground: a 3-node NATS cluster, one database, two
# nginx "hosts" (each its own prefix, port, 2 workers, sidecar and
# dashboard) that fan out to each other through NATS (chat_cluster).
# Ctrl-C stops everything this script started (by pid).
#
# Environment:
#   PORT                host 1's port (8011); host 2 listens on PORT+1
#   NATS_PORT           node 1's client port (14222); nodes 2, 3: +1, +2
#   NATS_CLUSTER_PORT   node 1's route port (16222); +1, +2
#   NATS_MONITOR_PORT   node 1's monitoring port (18222); +1, +2
#   MONGO_URI           use this MongoDB instead of the embedded FerretDB
#   DASHBOARD_USER      dashboard user (admin)
#   DASHBOARD_PASSWORD  its password (both hosts); generated and printed
#                       once if unset and the hosts' htpasswd files do not
#                       exist yet
#
# State lives in var/cluster/: database files, each host's prefix (logs,
# sidecar key, htpasswd, generated config), the NATS logs.  The JWT secret
# is var/jwt-secret, the one `make run` and scripts/mint-jwt.sh use: a
# token is good on either host.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/run-lib.sh"

PORT=${PORT:-8011}
NATS_PORT=${NATS_PORT:-14222}
NATS_CLUSTER_PORT=${NATS_CLUSTER_PORT:-16222}
NATS_MONITOR_PORT=${NATS_MONITOR_PORT:-18222}
DASHBOARD_USER=${DASHBOARD_USER:-admin}
export MONGOC_DISABLE_SHM=1         # as in run.sh
hosts=(1 2)
nodes=(1 2 3)

var=$root/var
cl=$var/cluster
mkdir -p "$cl"/{db,run,nats}
for h in "${hosts[@]}"; do mkdir -p "$cl/host$h"/{logs,run,tmp}; done
chmod 755 "$var" "$cl" "$cl"/host*/ "$cl"/host*/run

db_pid_file=$cl/run/devdb.pid
declare -A nginx_pids sidecar_pids nats_pids

stop_all() {
    trap - INT TERM EXIT
    echo
    echo "run-cluster: stopping"
    for h in "${hosts[@]}"; do stop_pid "${nginx_pids[$h]:-}" QUIT; done
    for h in "${hosts[@]}"; do stop_pid "${sidecar_pids[$h]:-}" TERM; done
    for n in "${nodes[@]}"; do stop_pid "${nats_pids[$n]:-}" TERM; done
    stop_database "$db_pid_file"
    wait 2>/dev/null || true
    echo "run-cluster: stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# --- port check: fail early and clearly -------------------------------------
for p in $PORT $((PORT + 1)) \
         $(for n in "${nodes[@]}"; do echo $((NATS_PORT + n - 1)) \
             $((NATS_CLUSTER_PORT + n - 1)) $((NATS_MONITOR_PORT + n - 1)); done); do
    if port_in_use "$p"; then
        echo "run-cluster: port $p on 127.0.0.1 is already in use; set PORT," \
             "NATS_PORT, NATS_CLUSTER_PORT or NATS_MONITOR_PORT (see the script)" >&2
        exit 1
    fi
done

# --- NATS: three nodes, each routing to the other two ----------------------
urls=()
for n in "${nodes[@]}"; do
    routes=()
    for o in "${nodes[@]}"; do
        [ "$o" = "$n" ] || routes+=("nats://127.0.0.1:$((NATS_CLUSTER_PORT + o - 1))")
    done
    start_nats_node "$cl/nats" "$n" $((NATS_PORT + n - 1)) \
        $((NATS_CLUSTER_PORT + n - 1)) $((NATS_MONITOR_PORT + n - 1)) \
        "$(IFS=,; echo "${routes[*]}")" || exit 1
    nats_pids[$n]=$nats_pid
    urls+=("nats://127.0.0.1:$((NATS_PORT + n - 1))")
done
# the mesh is whole when each node has a route to the other two
for n in "${nodes[@]}"; do
    m=$((NATS_MONITOR_PORT + n - 1))
    for _ in $(seq 100); do
        r=$(curl -sf "http://127.0.0.1:$m/routez" | jq -r '.num_routes' 2>/dev/null || true)
        [ "${r:-0}" -ge 2 ] && break
        sleep 0.1
    done
    [ "${r:-0}" -ge 2 ] ||
        echo "run-cluster: NATS node $n has ${r:-no} routes, not 2; see ${cl#"$root"/}/nats/nats-$n.log" >&2
done
echo "run-cluster: NATS cluster \"chat\": ${urls[*]}"

start_database "$cl" "$db_pid_file"

# --- secrets: one JWT secret, one dashboard password for both hosts --------
make_secret "$var/jwt-secret"
make_secret "$var/scrape-token"    # nginx.conf.example's @SCRAPE_TOKEN_FILE@
given=${DASHBOARD_PASSWORD:-}
if [ -z "$given" ]; then
    for h in "${hosts[@]}"; do
        [ -s "$cl/host$h/htpasswd" ] || given=$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)
    done
    generated=$given
fi
for h in "${hosts[@]}"; do
    make_htpasswd "$cl/host$h/htpasswd" "$DASHBOARD_USER" "$given"
done
if [ -n "${generated:-}" ]; then
    password_note="$generated   (generated; shown once, stored hashed in var/cluster/host*/htpasswd)"
elif [ -z "${DASHBOARD_PASSWORD:-}" ]; then
    password_note="(unchanged: var/cluster/host*/htpasswd; set DASHBOARD_PASSWORD to replace it)"
fi

# --- per host: a sidecar, an nginx with chat_cluster -----------------------
for h in "${hosts[@]}"; do
    d=$cl/host$h
    port=$((PORT + h - 1))
    ingest="ipc://$d/run/chat-metrics.ipc"
    events="ipc://$d/run/chat-events.ipc"
    sport=$(devdb/run-db.sh free-port)
    make_secret "$d/sidecar-key" 24
    start_sidecar "$d" "$sport" "$mongo_uri" "$ingest" "$events" \
        "$d/sidecar-key" "$d/logs/nginx.pid" || exit 1
    sidecar_pids[$h]=$sidecar_pid

    # nginx.conf.example, plus this host's name and the cluster
    example_conf "$d" "$port" "$mongo_uri" "$var/jwt-secret" "$ingest" \
        "127.0.0.1:$sport" "$(cat "$d/sidecar-key")" "$d/htpasswd" \
        "$var/scrape-token" |
    awk -v host="host$h" -v urls="${urls[*]}" '
        { print }
        /^ *chat_correlation_header / && !done {
            print ""
            print "    # make run-cluster: this host in a cluster of nginx hosts"
            print "    chat_host_name  " host ";"
            print "    chat_cluster    " urls ";"
            done = 1
        }' > "$d/nginx.conf"
    chmod 600 "$d/nginx.conf"        # it holds the sidecar's key
    grep -q '^ *chat_cluster ' "$d/nginx.conf" ||
        { echo "run-cluster: nginx.conf.example has no chat_correlation_header line to add chat_cluster after" >&2; exit 1; }
    start_nginx "$d" "$d/nginx.conf" "$port" || exit 1
    nginx_pids[$h]=$nginx_pid
done

echo
for h in "${hosts[@]}"; do
    echo "  host $h: http://127.0.0.1:$((PORT + h - 1))"
done
cat <<MSG

  token         scripts/mint-jwt.sh alice   (good on both hosts)
MSG
for h in "${hosts[@]}"; do
    printf '  dashboard %s   http://127.0.0.1:%s/dashboard   (JSON: /dashboard/api/data)\n' \
        "$h" $((PORT + h - 1))
done
cat <<MSG
  user          $DASHBOARD_USER
  password      $password_note
  NATS          ${urls[*]}
                monitoring: $(for n in "${nodes[@]}"; do printf 'http://127.0.0.1:%s/ ' $((NATS_MONITOR_PORT + n - 1)); done)

  logs in var/cluster/host*/logs/ and var/cluster/nats/
  Ctrl-C stops the hosts, their sidecars, NATS and the database.

MSG

# until one of the hosts stops (or Ctrl-C: the terminal's SIGINT reaches
# the nginx masters too, which may exit, status 0, before this shell runs
# its trap)
rc=0
wait -n "${nginx_pids[@]}" || rc=$?
[ "$rc" = 0 ] && exit 0
echo "run-cluster: an nginx exited (status $rc); see var/cluster/host*/logs/error.log" >&2
exit 1
