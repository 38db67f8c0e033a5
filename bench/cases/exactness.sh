#!/bin/bash
# Target 3: exactness under load.  nginx.conf.example as deployed (2
# workers, access log, metrics on), 1,000,000 requests to /bench/return as
# fast as wrk sends them (each thread stops after its share); nginx's own
# count (stub_status, not recorded) against the sidecar's total_requests
# and its served = recorded + dropped accounting.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=exactness
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

total=$(q 200000 1000000)
make_secrets "$dir/sec"
ingest="ipc://$dir/metrics.ipc"
read -r spid sport < <(start_sidecar "$dir/sidecar" "$ingest" "mongodb://127.0.0.1:9/chat" "$dir/ngx/logs/nginx.pid") || exit 1
port=$(free_port)
example_conf "$dir/ngx" "$port" "mongodb://127.0.0.1:9/chat" "$ingest" "$sport" "$dir/sec/htpasswd" "$dir/sec/jwt-secret" > "$dir/nginx.conf"
m=$(start_nginx "$dir/nginx.conf" "$dir/ngx") || exit 1
w=$(worker_pids "$m")
sleep 0.5
# stub_status counts its own requests too: each poll after "before" is
# subtracted (polls=1 counts the final one)
stub() { curl -s "http://127.0.0.1:$port/bench/stub" | awk 'NR == 3 {print $3}'; }
polls=0
before=$(stub)
c0=$(cpu_ns "$w"); s0=$(cpu_ns "$spid")
# wrk's threads stop after their share, but wrk itself sleeps out -d: it is
# interrupted (SIGINT: it prints its summary) once nginx has served them
t0=$(date +%s.%N)
BENCH_LIMIT=$((total / 2)) BENCH_LUA=$BENCH_DIR/lua wrk -t2 -c64 -d300s --latency \
    -s "$BENCH_DIR/lua/stopat.lua" "http://127.0.0.1:$port/bench/return" > "$dir/wrk.txt" 2>&1 &
wpid=$!
track "$wpid" INT
while kill -0 "$wpid" 2>/dev/null; do
    sleep 0.1
    n=$(stub); polls=$((polls + 1))
    [ $((n - before - polls)) -ge "$total" ] && { sleep 0.2; kill -INT "$wpid"; break; }
done
wait "$wpid"
t1=$(date +%s.%N)
j=$(sed -n 's/^WRKJSON //p' "$dir/wrk.txt" | tail -1)
c1=$(cpu_ns "$w"); s1=$(cpu_ns "$spid")
after=$(stub)
served=$((after - before - polls - 1))
sleep 1.5      # a flush interval and more
sj=$(sidecar_json "$sport")
echo "$sj" > "$dir/dashboard.json"
logged=$(wc -l < "$dir/ngx/logs/access.log")
emit "{\"case\":\"$case\",\"target\":$total,\"wall_s\":$(echo "$t1 - $t0" | bc),\"served_stub_status\":$served,\"access_log_lines\":$logged,\"worker_cpu_ns\":$((c1 - c0)),\"sidecar_cpu_ns\":$((s1 - s0)),\"sidecar_rss_kb\":$(rss_kb "$spid"),\"wrk\":$j,\"performance\":$(echo "$sj" | jq -c '.performance | {total_requests, requests_served, requests_dropped, dropped_records}'),\"pipeline\":$(echo "$sj" | jq -c '.pipeline | {requests_received, requests_recorded, requests_dropped, records_dropped, requests_not_received, batch_seq_gaps, batches_missed, malformed_batches_rejected}')}"
log "  exactness: served $served, sidecar total $(echo "$sj" | jq .performance.total_requests)"
