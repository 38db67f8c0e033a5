#!/bin/bash
# Target 7 (part 2, `make bench-soak`): a 10-minute soak of mixed traffic,
# nginx.conf.example, devdb, sidecar: wrk (bench/lua/mixed.lua: static,
# return, 404s, group by id, group list, dashboard JSON; paced by delay())
# and WebSocket churn (wsbench: 500 subscribers over 10 groups connect,
# receive 20 msg/s for 50 s, disconnect, again).  RSS of each worker, the
# sidecar and the database sampled every 10 s.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=soak
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

total=${SOAK_SECONDS:-$(q 60 600)}
start_example_stack "$dir/db" 16384 || exit 1
create_groups "$port" "$token" 10 "$dir/groups" || exit 1

BENCH_TOKEN=$token BENCH_BASIC="$(sed 's/^Authorization: //' "$dir/sec/basic")" BENCH_GROUPS=$dir/groups BENCH_DELAY_MS=2 \
BENCH_LUA=$BENCH_DIR/lua wrk -t1 -c8 -d"${total}s" -s "$BENCH_DIR/lua/mixed.lua" "http://127.0.0.1:$port/" > "$dir/wrk.txt" 2>&1 &
track $! TERM
(
    end=$((SECONDS + total - 5))
    while [ $SECONDS -lt $end ]; do
        left=$((end - SECONDS)); d=$(( left < 50 ? left : 50 ))
        [ "$d" -ge 5 ] || break
        "$BIN/wsbench" -p "$port" -g "$dir/groups" -n 500 -t "$token" -r 20 -d "$d" -P "$w" -k >> "$dir/ws.jsonl" 2>> "$dir/ws.err"
    done
) &
track $! TERM

start=$SECONDS
while [ $((SECONDS - start)) -lt "$total" ]; do
    ws=""; for p in ${w//,/ }; do ws="$ws${ws:+,}$(rss_kb "$p")"; done
    emit "{\"case\":\"$case\",\"kind\":\"sample\",\"t\":$((SECONDS - start)),\"worker_rss_kb\":[$ws],\"sidecar_rss_kb\":$(rss_kb "$spid"),\"db_rss_kb\":$(rss_kb "$dbpid")}"
    sleep 10
done
wait
sj=$(sidecar_json "$sport")
emit "{\"case\":\"$case\",\"kind\":\"end\",\"seconds\":$total,\"wrk\":$(sed -n 's/^WRKJSON //p' "$dir/wrk.txt" | tail -1),\"ws_steps\":$(grep -c '"step"' "$dir/ws.jsonl"),\"ws_delivered_ratio_min\":$(grep '"step"' "$dir/ws.jsonl" | jq -s 'map(.delivered_ratio) | min'),\"total_requests\":$(echo "$sj" | jq .performance.total_requests),\"requests_dropped\":$(echo "$sj" | jq .performance.requests_dropped)}"
