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
#   saturation: the cluster path alone (the POSTs are bound by the
#              database at ~100-200/s): bench/tools/natsflood.c, a raw NATS
#              publisher with an instance id that is no host's, sends
#              well-formed cluster messages (CHC1, instance, seq, group,
#              a message event) for one group straight to its subject, to
#              N WebSocket subscribers of that group on host 2 (SAT_SUBS,
#              10 and 100), at fixed rates then as fast as it can
#              (SAT_RATES, 0: max), 5 s or a bounded count a step, a fresh
#              group a step: events/s the subscribers heard, delivery
#              latency, and host 2's cluster.dropped (its sidecar's JSON)
#              and hand-off-queue lines in its error log.
#              Seqs: each group is made through the API and has no event;
#              natsflood publishes 1, 2, 3, ... (1 is a probe repeated until
#              every subscriber heard it, the subscription's arrival at the
#              cluster), the group's real sequence from its start, so that
#              the host delivers each at once in order and the database is
#              not on the path.  Not seeded: the event log's write path
#              (seq claims, records, buckets) is the module's to write, and
#              a seeded event would be read back only for a gap, i.e. past
#              saturation.  Past it (an event dropped on a full hand-off
#              queue), the gap cannot be filled (never stored), the group
#              waits for it and gives it up, so a step that drops delivers
#              less than 100 %: the highest rate with 100 % delivered and
#              0 dropped is the capacity; the max step's events/s is what
#              the host delivered while flooded (the prefix before the gap).
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
declare -a hport hm hw hs hsp
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
    hsp[$h]=$sport
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

# CLUSTER_STEPS: the parts to run (default all: rounds saturation failover)
steps=" ${CLUSTER_STEPS:-rounds saturation failover} "
[[ "$steps" == *" rounds "* ]] || rounds=0
# saturation: bench/tools/natsflood.c is a third "host" on NATS node 3: it
# publishes cluster messages for one fresh group (no event yet) straight to
# the group's subject, at fixed rates then as fast as it can, to N
# WebSocket subscribers on host 2 (the case's header says why these seqs);
# host 2's link record (its sidecar's cluster.dropped, events_in) and its
# error log say what the hand-off queue dropped
sidecar_cluster() {     # sidecar_cluster H -> "events_in dropped", once stable
    local i a b=""
    for i in $(seq 40); do
        a=$(sidecar_json "${hsp[$1]}" | jq -r '"\(.cluster.events_in) \(.cluster.dropped)"')
        [ -n "$a" ] && [ "$a" = "$b" ] && { echo "$a"; return 0; }
        b=$a
        sleep 0.5
    done
    echo "${a:-0 0}"
}

saturation() {
    local subs rates cnt sdur r g j k i0 d0 i1 d1 full
    subs=${SAT_SUBS:-$(q "10 100" "10 100")}
    rates=${SAT_RATES:-$(q "2000 0" "1000 2000 5000 10000 20000 40000 0")}
    sdur=$(q 3 5)
    start_host 1 1 || return 1
    start_host 2 1 || return 1
    wait_clients 4 || return 1
    k=0
    for n in $subs; do for r in $rates; do k=$((k + 1)); done; done
    create_groups "${hport[1]}" "$token" "$k" "$dir/flood-groups" || return 1
    k=0
    for n in $subs; do
        for r in $rates; do
            k=$((k + 1))
            g=$(sed -n "${k}p" "$dir/flood-groups")
            cnt=$((r * sdur)); [ "$r" = 0 ] && cnt=$(q 50000 200000)
            read -r i0 d0 < <(sidecar_cluster 2)
            j=$("$BIN/natsflood" -u "nats://127.0.0.1:${ncp[3]}" -p "${hport[2]}" -g "$g" \
                    -t "$token" -n "$n" -r "$r" -c "$cnt" -d "$sdur" -P "${hw[2]}" \
                    2>> "$dir/natsflood.err") || { log "natsflood failed"; tail -3 "$dir/natsflood.err" >&2; return 1; }
            read -r i1 d1 < <(sidecar_cluster 2)
            full=$(grep -c 'hand-off queue was full' "$dir/host2/ngx/logs/error.log")
            emit "{\"case\":\"$case\",\"scenario\":\"saturation\",\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"host2_events_in\":$((i1 - i0)),\"host2_dropped\":$((d1 - d0)),\"host2_full_log_lines\":$full,${j#\{}"
            log "  saturation subs $n rate $r: $(echo "$j" | jq -c '{published, pub_rate, delivered_ratio, in_order, events_per_sec, deliveries_per_sec, lat_p50_ms, lat_p99_ms, closed_by_server, nginx_cpu_s, reader_cpu_s, recv_sec}') dropped $((d1 - d0))"
        done
    done
    stop_host 1; stop_host 2
}

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then
        cluster_round "$r" || exit 1; single_round "$r" || exit 1
    else
        single_round "$r" || exit 1; cluster_round "$r" || exit 1
    fi
done

# --- saturation: the cluster path alone ------------------------------------
[[ "$steps" == *" saturation "* ]] && { saturation || exit 1; }
[[ "$steps" == *" failover "* ]] || exit 0

# --- failover: a node SIGKILLed under load -----------------------------------
start_host 1 1 || exit 1
start_host 2 1 || exit 1
wait_clients 4 || exit 1
[ -s "$dir/groups" ] || create_groups "${hport[1]}" "$token" 100 "$dir/groups" || exit 1
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
