#!/bin/bash
# Target 3: exactness under load.  nginx.conf.example as deployed (2
# workers, access log, metrics on), 1,000,000 requests to /bench/return as
# fast as wrk sends them (each thread stops after its share); nginx's own
# count (stub_status, not recorded) against the sidecar's total_requests
# and its served = recorded + dropped accounting.  Run twice: as deployed
# (chat_metrics_queue 64, the default) and with chat_metrics_queue 1024.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=exactness
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl
total=$(q 200000 1000000)
make_secrets "$dir/sec"

run_exact() {   # run_exact VARIANT QUEUE(empty = default)
    local v=$1 queue=$2 d=$dir/$1
    mkdir -p "$d"
    local ingest="ipc://$d/metrics.ipc" spid sport port m w before after polls n served
    read -r spid sport < <(start_sidecar "$d/sidecar" "$ingest" "mongodb://127.0.0.1:9/chat" "$d/ngx/logs/nginx.pid") || return 1
    port=$(free_port)
    example_conf "$d/ngx" "$port" "mongodb://127.0.0.1:9/chat" "$ingest" "$sport" "$dir/sec/htpasswd" "$dir/sec/jwt-secret" |
        if [ -n "$queue" ]; then
            sed "s|^\( *chat_metrics_flush_interval.*\)$|\1\n    chat_metrics_queue  $queue;|"
        else cat; fi > "$d/nginx.conf"
    m=$(start_nginx "$d/nginx.conf" "$d/ngx") || return 1
    w=$(worker_pids "$m")
    sleep 0.5
    # stub_status counts its own requests too: each poll after "before" is
    # subtracted (+1 for the final one)
    stub() { curl -s "http://127.0.0.1:$port/bench/stub" | awk 'NR == 3 {print $3}'; }
    polls=0
    before=$(stub)
    local c0 s0 c1 s1 t0 t1 wpid j load
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(cpu_ns "$w"); s0=$(cpu_ns "$spid")
    # wrk's threads stop after their share, but wrk itself sleeps out -d:
    # it is interrupted (SIGINT: it prints its summary) once nginx served all
    t0=$(date +%s.%N)
    BENCH_LIMIT=$((total / 2)) BENCH_LUA=$BENCH_DIR/lua wrk -t2 -c64 -d300s --latency \
        -s "$BENCH_DIR/lua/stopat.lua" "http://127.0.0.1:$port/bench/return" > "$d/wrk.txt" 2>&1 &
    wpid=$!
    track "$wpid" INT
    while kill -0 "$wpid" 2>/dev/null; do
        sleep 0.1
        n=$(stub); polls=$((polls + 1))
        [ $((n - before - polls)) -ge "$total" ] && { sleep 0.2; kill -INT "$wpid"; break; }
    done
    wait "$wpid"
    t1=$(date +%s.%N)
    c1=$(cpu_ns "$w"); s1=$(cpu_ns "$spid")
    j=$(sed -n 's/^WRKJSON //p' "$d/wrk.txt" | tail -1)
    after=$(stub)
    served=$((after - before - polls - 1))
    sleep 1.5      # a flush interval and more
    local sj logged
    sj=$(sidecar_json "$sport")
    echo "$sj" > "$d/dashboard.json"
    logged=$(wc -l < "$d/ngx/logs/access.log")
    emit "{\"case\":\"$case\",\"variant\":\"$v\",\"queue\":\"${queue:-64 (default)}\",\"loadavg\":$load,\"target\":$total,\"wall_s\":$(echo "$t1 - $t0" | bc),\"served_stub_status\":$served,\"access_log_lines\":$logged,\"worker_cpu_ns\":$((c1 - c0)),\"sidecar_cpu_ns\":$((s1 - s0)),\"sidecar_rss_kb\":$(rss_kb "$spid"),\"worker_rss_kb\":$(rss_kb "$w"),\"wrk\":$j,\"performance\":$(echo "$sj" | jq -c '.performance | {total_requests, requests_served, requests_dropped, dropped_records}'),\"pipeline\":$(echo "$sj" | jq -c '.pipeline | {requests_received, requests_recorded, requests_dropped, records_dropped, requests_not_received, batch_seq_gaps, batches_missed, malformed_batches_rejected}')}"
    log "  exactness $v: served $served, sidecar total $(echo "$sj" | jq .performance.total_requests), dropped $(echo "$sj" | jq .performance.requests_dropped)"
    stop_nginx "$m"
    stop_pid "$spid"
}

run_exact deployed "" || exit 1
run_exact queue1024 1024 || exit 1
