#!/bin/bash
# Target 5: the chat API on the real (embedded FerretDB) database, 2
# workers, nginx.conf.example.  wrk -t1 -c32 with bench/lua/chatapi.lua:
# GET a page of messages (limit=50) and POST a message, over 10 groups of
# 100 seeded messages each.  Meanwhile a probe fetches /bench/static 100x/s
# on its own connection; its p99 is compared with the probe's p99 with no
# load (rounds: idle, GET, POST, alternating).
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=chatapi
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

rounds=$(q 1 3); dur=$(q 3 10)
start_example_stack "$dir/db" || exit 1
create_groups "$port" "$token" 10 "$dir/groups" || exit 1
per_group=$(q 20 100)
for g in $(cat "$dir/groups"); do
    for i in $(seq "$per_group"); do echo "{\"content\":\"seed $i\"}"; done |
    while read -r body; do
        curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d "$body" "http://127.0.0.1:$port/api/chat/groups/$g/messages" || exit 1
    done
done
log "  chatapi: 10 groups x $per_group messages seeded"

# GET rounds first: devdb scans the whole collection for a page, and the
# POST rounds grow it by thousands of messages
for v_r in $(for v in get post; do for r in $(seq "$rounds"); do echo "idle-$v:$r busy-$v:$r $v:$r prio-$v:$r"; done; done); do
    v=${v_r%%:*}; r=${v_r##*:}
    {
        "$BIN/hreq" -p "$port" -r 100 -d "$dur" -u /bench/static > "$dir/probe-$v-$r.json" &
        pp=$!
        c0=$(cpu_ns "$w"); d0=$(cpu_ns "$dbpid"); read -r mr0 mw0 ms0 < <(sched_main "$w")
        j=null
        if [ "${v#busy}" != "$v" ]; then
            # control: both cores kept busy by plain loops (devdb alone
            # takes ~1.7 cores under the GET load), no requests: CPU
            # contention alone
            timeout "$dur" bash -c 'while :; do :; done' &
            burner=$!
            timeout "$dur" bash -c 'while :; do :; done'
            wait "$burner"          # the probe is waited for below
        elif [ "${v#idle}" = "$v" ]; then
            # prio-*: the same load with the workers' event-loop threads at
            # nice -5 (renice -p changes the main thread only; nginx's
            # "worker_priority -5;" would also cover the pool threads)
            [ "${v#prio}" != "$v" ] && renice -n -5 -p ${w//,/ } > /dev/null
            op=${v#prio-}
            j=$(BENCH_OP=$op BENCH_TOKEN=$token BENCH_GROUPS=$dir/groups \
                run_wrk "$dir/wrk-$v-$r.txt" -t1 -c32 -d"${dur}s" --timeout 10s --latency -s "$BENCH_DIR/lua/chatapi.lua" "http://127.0.0.1:$port/")
            [ "${v#prio}" != "$v" ] && renice -n 0 -p ${w//,/ } > /dev/null
        else
            sleep "$dur"
        fi
        wait "$pp"
        c1=$(cpu_ns "$w"); d1=$(cpu_ns "$dbpid"); read -r mr1 mw1 ms1 < <(sched_main "$w")
        emit "{\"case\":\"$case\",\"variant\":\"$v\",\"round\":$r,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"worker_cpu_ns\":$((c1 - c0)),\"loop_run_ns\":$((mr1 - mr0)),\"loop_wait_ns\":$((mw1 - mw0)),\"loop_slices\":$((ms1 - ms0)),\"db_cpu_ns\":$((d1 - d0)),\"wrk\":$j,\"probe\":$(cat "$dir/probe-$v-$r.json")}"
        log "  chatapi $v round $r: $( [ "$j" != null ] && echo "$j" | jq -c '{rps: (.requests / (.duration_us / 1e6) | floor), p50_us, p99_us, err_status}') probe $(jq -c '{p50_ms, p99_ms}' "$dir/probe-$v-$r.json")"
    }
done
sj=$(sidecar_json "$sport")
emit "{\"case\":\"$case\",\"kind\":\"end\",\"endpoints\":$(echo "$sj" | jq -c '[.endpoints[] | {endpoint, count: (.count // .total_requests), avg_response_time_ms, p95_response_time_ms}]' 2>/dev/null || echo null),\"db_rss_kb\":$(rss_kb "$dbpid")}"
