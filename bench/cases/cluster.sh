#!/bin/bash
# Issue 14's targets: live fan-out across two nginx hosts on a 3-node NATS
# cluster (the topology of make run-cluster), 2 workers each, one database.
#   cross:     1,000 subscribers over 100 groups, each group's subscribers
#              split over the two hosts, 100 messages/s posted on both
#              hosts (8 publisher connections, alternating): same-host vs
#              cross-host delivery latency (POST written -> frame read) and
#              % delivered, from one run of bench/tools/wsbench.c (-q)
#   failover:  the same load; a third into the step the NATS node holding
#              the most of the workers' connections is SIGKILLed: % delivered
#              and the longest cross-host delivery delay (the messages
#              published while the workers reconnect wait for the reconnect,
#              then a gap fill)
#   failover-time: no other load; a subscriber on host 2, posts on host 1
#              every 20 ms; the node its worker is subscribed on is
#              SIGKILLed: the time to the first post after the kill that
#              reaches host 2 (bench/tools/failover_time.pl), 10 rounds
#   single:    one host, chat_cluster unset, 1,000 subscribers over 100
#              groups, 100 messages/s: the numbers to compare with
# Bounded: fixed step lengths, fixed counts; loopback only; by pid.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=cluster
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

dur=$(q 10 30)          # seconds per step, at 100 messages/s
rounds=$(q 1 3)         # cross and single are alternated, medians reported

command -v nats-server > /dev/null || { log "no nats-server (make deps)"; exit 1; }
# a module built without the NATS transport has nothing to measure here
grep -qa 'chat_cluster' "$BIN/ngx_chat_module.so" ||
    { log "  skipped: the module has no chat_cluster (built without the NATS transport)"; exit 0; }

# --- NATS: 3 nodes, full mesh ------------------------------------------------
declare -a ncp nrp nmp npid
for n in 1 2 3; do ncp[$n]=$(free_port); nrp[$n]=$(free_port); nmp[$n]=$(free_port); done
start_node() {
    local n=$1 routes=() o
    for o in 1 2 3; do [ "$o" = "$n" ] || routes+=("nats://127.0.0.1:${nrp[$o]}"); done
    nats-server -a 127.0.0.1 -p "${ncp[$n]}" -n "bench-$n" -m "${nmp[$n]}" \
        --cluster "nats://127.0.0.1:${nrp[$n]}" --cluster_name chat \
        --routes "$(IFS=,; echo "${routes[*]}")" -l "$dir/nats-$n.log" &
    npid[$n]=$!
    track "${npid[$n]}" TERM
    wait_port "${ncp[$n]}" "${npid[$n]}" || { log "nats-server $n did not start"; return 1; }
}
for n in 1 2 3; do start_node $n || exit 1; done
urls="nats://127.0.0.1:${ncp[1]} nats://127.0.0.1:${ncp[2]} nats://127.0.0.1:${ncp[3]}"
clients() {     # clients NODE: its client connections now (0: down)
    local c
    c=$(curl -sf "http://127.0.0.1:${nmp[$1]}/connz" 2>/dev/null | jq -r '.num_connections' 2>/dev/null)
    echo "${c:-0}"
}

# --- database, secrets -------------------------------------------------------
uri=$(start_db "$dir/db") || exit 1
trap "bench_cleanup; stop_db '$dir/db'" EXIT
mongo="${uri%/}/chat"
make_secrets "$dir/sec"
token=$(cat "$dir/sec/token")

# start_host H CLUSTER(0|1): sidecar + nginx from nginx.conf.example (limits
# off, worker_connections 16384), with chat_host_name/chat_cluster when
# CLUSTER is 1; sets hport[H] hm[H] hw[H]
declare -a hport hm hw hs
start_host() {
    local h=$1 cl=$2 d=$dir/host$1 spid sport port
    mkdir -p "$d"
    read -r spid sport < <(start_sidecar "$d/sidecar" "ipc://$d/metrics.ipc" "$mongo" "$d/ngx/logs/nginx.pid") || return 1
    port=$(free_port)
    example_conf "$d/ngx" "$port" "$mongo" "ipc://$d/metrics.ipc" "$sport" "$dir/sec/htpasswd" "$dir/sec/jwt-secret" |
        sed -e 's/worker_connections  4096;/worker_connections  16384;/' \
            -e '/^ *limit_req  *zone=/d' -e '/^ *limit_conn  *chat_user_conn/d' \
            -e 's/chat_ws_message_rate  20;/chat_ws_message_rate  off;/' |
        awk -v h="host$h" -v urls="$urls" -v cl="$cl" '
            { print }
            cl == 1 && /^ *chat_correlation_header / {
                print "    chat_host_name  " h ";"
                print "    chat_cluster    " urls ";"
            }' > "$d/nginx.conf"
    hm[$h]=$(start_nginx "$d/nginx.conf" "$d/ngx") || return 1
    hw[$h]=$(worker_pids "${hm[$h]}")
    hport[$h]=$port
    hs[$h]=$spid
}
stop_host() { stop_nginx "${hm[$1]}"; stop_pid "${hs[$1]}"; }

run_ws() {      # run_ws SCENARIO ROUND ARGS...
    local sc=$1 r=$2; shift 2
    "$BIN/wsbench" "$@" 2> "$dir/wsbench-$sc-$r.err" |
    while read -r line; do
        emit "{\"case\":\"$case\",\"scenario\":\"$sc\",\"round\":$r,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),${line#\{}"
        log "  $sc $r: $(echo "$line" | jq -c '{phase, open, delivered_ratio, lat_p50_ms, lat_p99_ms, same_p50_ms, same_p99_ms, cross_p50_ms, cross_p99_ms, cross_max_ms}')"
    done
}

# the cluster's readiness: every worker of both hosts connected to NATS
wait_clients() {    # wait_clients N
    local i t
    for i in $(seq 200); do
        t=$(( $(clients 1) + $(clients 2) + $(clients 3) ))
        [ "$t" -ge "$1" ] && return 0
        sleep 0.1
    done
    log "only $t of $1 NATS client connections"; return 1
}

cluster_round() {   # cluster_round ROUND
    local r=$1
    start_host 1 1 || return 1
    start_host 2 1 || return 1
    wait_clients 4 || return 1
    [ -s "$dir/groups" ] || create_groups "${hport[1]}" "$token" 100 "$dir/groups" || return 1
    run_ws cross "$r" -p "${hport[1]}" -q "${hport[2]}" -g "$dir/groups" -G 100 -n 1000 \
        -t "$token" -r 100 -d "$dur" -c 8 -w 5 -k -P "${hw[1]},${hw[2]}" -i 1
    stop_host 1; stop_host 2
}

single_round() {    # single_round ROUND
    local r=$1
    start_host 1 0 || return 1
    [ -s "$dir/groups" ] || create_groups "${hport[1]}" "$token" 100 "$dir/groups" || return 1
    run_ws single "$r" -p "${hport[1]}" -g "$dir/groups" -G 100 -n 1000 \
        -t "$token" -r 100 -d "$dur" -c 8 -w 5 -k -P "${hw[1]}" -i 1
    stop_host 1
}

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then
        cluster_round "$r" || exit 1; single_round "$r" || exit 1
    else
        single_round "$r" || exit 1; cluster_round "$r" || exit 1
    fi
done

# --- failover: a node SIGKILLed under load -----------------------------------
start_host 1 1 || exit 1
start_host 2 1 || exit 1
wait_clients 4 || exit 1
victim=1
for n in 2 3; do [ "$(clients $n)" -gt "$(clients $victim)" ] && victim=$n; done
had=$(clients $victim)
fdur=$(q 15 30)
(
    sleep "$((fdur / 3))"      # a third into the step: the scenario's timing
    kill -KILL "${npid[$victim]}"
    date +%s.%N > "$dir/killed"
) &
killer=$!
run_ws failover 1 -p "${hport[1]}" -q "${hport[2]}" -g "$dir/groups" -G 100 -n 1000 \
    -t "$token" -r 100 -d "$fdur" -c 8 -w 10 -k -P "${hw[1]},${hw[2]}" -i 1
wait "$killer"
# the workers' connections after: on the two nodes left
after=$(( $(clients 1) + $(clients 2) + $(clients 3) ))
emit "{\"case\":\"$case\",\"scenario\":\"failover-node\",\"victim\":$victim,\"victim_clients\":$had,\"clients_after\":$after}"
log "  failover: node $victim ($had of the workers' connections) killed; connections after: $after"
start_node "$victim" || exit 1

# --- failover time: kill -> the first post after it crosses ----------------
# bench/tools/failover_time.pl, no other load: a subscriber on host 2, posts
# on host 1 every 20 ms; the node its worker is subscribed on is SIGKILLed;
# then restarted here, the mesh and the 4 connections awaited, again
wait_mesh() {
    local n i r
    for i in $(seq 200); do
        r=0
        for n in 1 2 3; do
            [ "$(curl -sf "http://127.0.0.1:${nmp[$n]}/routez" | jq -r '.num_routes' 2>/dev/null)" = 2 ] && r=$((r + 1))
        done
        [ "$r" = 3 ] && return 0
        sleep 0.1
    done
    log "the NATS mesh did not form again"; return 1
}
wait_mesh && wait_clients 4 || exit 1
for r in $(seq "$(q 3 10)"); do
    g=$(sed -n "${r}p" "$dir/groups")
    j=$(perl "$BENCH_DIR/tools/failover_time.pl" "${hport[1]}" "${hport[2]}" "$token" "$g" \
            "${npid[1]}:${nmp[1]}" "${npid[2]}:${nmp[2]}" "${npid[3]}:${nmp[3]}") ||
        { log "failover_time.pl failed"; exit 1; }
    emit "{\"case\":\"$case\",\"scenario\":\"failover-time\",\"round\":$r,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"failover\":$j}"
    log "  failover time $r: $j"
    victim=$(echo "$j" | jq -r .node)
    wait "${npid[$victim]}" 2>/dev/null
    start_node "$victim" || exit 1
    wait_mesh && wait_clients 4 || exit 1
done
stop_host 1; stop_host 2
