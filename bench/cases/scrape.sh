#!/bin/bash
# Target 4: scraping is free.  nginx.conf.example (2 workers), the sidecar
# on a devdb holding 1,000,000 messages in 1,000 groups (seeded once by
# bench/tools/seed.c, cached in bench/out/cache), its statistics refreshed
# in the background (--db-refresh 1: back to back, see below).  wrk -t1 -c32 on /bench/return;
# A: no polling; B: /dashboard/api/data and /metrics each polled 10x/s
# through nginx with a person's credential (basic auth, bcrypt, proxy); T:
# the same polls through nginx with the machines' credential as deployed
# (Authorization: Bearer, chat_bearer_token_file: a SHA-256 instead of a
# bcrypt); C: the same polls sent to the sidecar's own port.  Rounds
# alternate (A B T C, then C T B A).  SCRAPE_ROUNDS=N overrides the rounds.
# After them in each round, the same variants under an open-loop load
# (bench/tools/oload.c) at SCRAPE_LOAD_FRACTIONS (default 0.8) of the
# req/s A reached in that round: "A@0.8" ... (wrk -c32 saturates the 2
# cores, so every poll waits behind a busy worker; below that rate the
# workers should have headroom, though the generator shares the cores: its
# send lag and "late" count say when it fell behind; the load's own latency
# is measured from its schedule).
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=scrape
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

msgs=$(q 100000 1000000); groups=1000
rounds=${SCRAPE_ROUNDS:-$(q 1 3)}; dur=$(q 4 10)
cache=$OUT/cache/db-$msgs
if [ ! -f "$cache.seeded" ]; then
    rm -rf "$cache"
    uri=$(start_db "$cache") || exit 1
    t0=$(date +%s.%N)
    "$BIN/seed" "${uri%/}/?serverSelectionTimeoutMS=5000" chat "$groups" "$msgs" || { stop_db "$cache"; exit 1; }
    t1=$(date +%s.%N)
    stop_db "$cache"
    echo "$(echo "$t1 - $t0" | bc)" > "$cache.seeded"
fi
emit "{\"case\":\"$case\",\"kind\":\"seed\",\"messages\":$msgs,\"groups\":$groups,\"seed_seconds\":$(cat "$cache.seeded")}"

# --db-refresh 1: the statistics queries run back to back (each refresh
# takes seconds at this size), so the database load is the same in every
# round instead of following the 10 s refresh cycle; --ingest-peers any:
# send-test-batch fills the endpoint table below
SIDECAR_EXTRA="--db-refresh 1 --ingest-peers any" start_example_stack "$cache" || exit 1
basic=$(cat "$dir/sec/basic")
bearer=$(cat "$dir/sec/bearer")
run_wrk "$dir/warmup.txt" -t1 -c32 -d2s -s "$BENCH_DIR/lua/plain.lua" "http://127.0.0.1:$port/bench/return" > /dev/null

# the polls alone, nothing else running: their own latency
for via in nginx nginx-token sidecar; do
    case $via in
    nginx)       pport=$port; hh=(-H "$basic") ;;
    nginx-token) pport=$port; hh=(-H "$bearer") ;;
    *)           pport=$sport; hh=(-H "$SIDECAR_KEY_HEADER") ;;
    esac
    "$BIN/hreq" -p "$pport" -r 10 -d "$(q 2 3)" -u /dashboard/api/data "${hh[@]}" > "$dir/idle-data.json" &
    p1=$!
    "$BIN/hreq" -p "$pport" -r 10 -d "$(q 2 3)" -u /metrics "${hh[@]}" > "$dir/idle-metrics.json"
    wait "$p1"
    emit "{\"case\":\"$case\",\"kind\":\"idle_poll\",\"via\":\"$via\",\"poll_data\":$(cat "$dir/idle-data.json"),\"poll_metrics\":$(cat "$dir/idle-metrics.json")}"
done
# one bcrypt check of the deployed htpasswd (auth_basic does one per request)
emit "{\"case\":\"$case\",\"kind\":\"bcrypt\",\"ms\":$(python3 "$BENCH_DIR/tools/bcrypt_time.py" "$dir/sec/htpasswd" benchpass)}"

# run_variant V R - one variant of round R: its polls beside the load on
# /bench/return, the workers', sidecar's and devdb's CPU over it; one row.
# V is A, B, T or C with wrk -t1 -c32 (saturated), or V@F: the same polls
# beside an open-loop load (bench/tools/oload.c, LOAD_CONNS connections, latency
# from each request's scheduled time) at F x the req/s A reached in this
# round
declare -A sat
run_variant() {
    local v=$1 r=$2 pp=() hh j=null o=null polls extra="" rate="" x=${1%%@*}
    if [ "$x" != "$v" ]; then
        local f=${v#*@}
        rate=$(echo "${sat[A]:-0} * $f" | bc -l | xargs printf '%.1f')
        [ "$(echo "$rate < 1" | bc)" = 1 ] && { log "  scrape $v round $r: no saturated A in this round, skipped"; return 0; }
        extra="\"fraction\":$f,\"rate\":$rate,"
    fi
    if [ "$x" = B ] || [ "$x" = T ]; then
        hh=$basic; [ "$x" = T ] && hh=$bearer
        "$BIN/hreq" -p "$port" -r 10 -d "$dur" -u /dashboard/api/data -H "$hh" > "$dir/poll-data-$r.json" & pp+=($!)
        "$BIN/hreq" -p "$port" -r 10 -d "$dur" -u /metrics -H "$hh" > "$dir/poll-metrics-$r.json" & pp+=($!)
    elif [ "$x" = C ]; then
        "$BIN/hreq" -p "$sport" -r 10 -d "$dur" -u /dashboard/api/data -H "$SIDECAR_KEY_HEADER" > "$dir/poll-data-$r.json" & pp+=($!)
        "$BIN/hreq" -p "$sport" -r 10 -d "$dur" -u /metrics -H "$SIDECAR_KEY_HEADER" > "$dir/poll-metrics-$r.json" & pp+=($!)
    fi
    c0=$(cpu_ns "$w"); s0=$(cpu_ns "$spid"); d0=$(cpu_ns "$dbpid")
    if [ -z "$rate" ]; then
        j=$(run_wrk "$dir/wrk-$v-$r.txt" -t1 -c32 -d"${dur}s" --latency -s "$BENCH_DIR/lua/plain.lua" "http://127.0.0.1:$port/bench/return")
        [ "$v" = A ] && [ -n "$j" ] && sat[A]=$(echo "$j" | jq '.requests / (.duration_us / 1e6)')
    else
        o=$("$BIN/oload" -p "$port" -r "$rate" -d "$dur" -c "$oconns" -w 2 -u /bench/return)
    fi
    c1=$(cpu_ns "$w"); s1=$(cpu_ns "$spid"); d1=$(cpu_ns "$dbpid")
    [ -n "$j" ] || j=null
    [ -n "$o" ] || o=null
    polls='null,"poll_metrics":null'
    if [ ${#pp[@]} -gt 0 ]; then
        wait "${pp[@]}"
        polls="$(cat "$dir/poll-data-$r.json"),\"poll_metrics\":$(cat "$dir/poll-metrics-$r.json")"
    fi
    emit "{\"case\":\"$case\",\"variant\":\"$v\",\"round\":$r,$extra\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"worker_cpu_ns\":$((c1 - c0)),\"sidecar_cpu_ns\":$((s1 - s0)),\"db_cpu_ns\":$((d1 - d0)),\"wrk\":$j,\"oload\":$o,\"poll_data\":$polls}"
    if [ "$j" != null ]; then
        log "  scrape $v round $r: $(echo "$j" | jq '.requests / (.duration_us / 1e6) | floor') req/s; polls: $(echo "$polls" | tr -d '\n' | head -c 200)"
    else
        log "  scrape $v round $r: $(echo "$o" | jq -c '{rate, achieved_rps, p50_ms, p99_ms, late, unfinished}'); polls: $(echo "$polls" | tr -d '\n' | head -c 200)"
    fi
}

# each round: the saturated variants, then the same at SCRAPE_LOAD_FRACTIONS
# (default 0.8; empty: none) of this round's A, in the same order
fractions=${SCRAPE_LOAD_FRACTIONS-0.8}
# LOAD_CONNS: oload's connections (default 32, as wrk -c32); a request due
# while all are busy waits ("late"): more connections keep the load open
oconns=${LOAD_CONNS:-32}
for r in $(seq "$rounds"); do
    order="A B T C"; [ $((r % 2)) = 0 ] && order="C T B A"
    sat=()
    for v in $order; do
        run_variant "$v" "$r"
    done
    for f in $fractions; do
        for v in $order; do
            run_variant "$v@$f" "$r"
        done
    done
done
sj=$(sidecar_json "$sport")
echo "$sj" > "$dir/dashboard.json"
db_json=$(echo "$sj" | jq -c '.database | {total_messages, total_groups, stale, refreshed_at, last_attempt_at, refresh_duration_ms}')
db_status=$(echo "$sj" | jq -c .system.mongodb_status)

# the worst case the sidecar allows: its endpoint table full (256 rows +
# overflow), filled through its ingest like a worker would; polls idle
"$BIN/send-test-batch" -u "$ingest" -r -n 64 -b 20 > /dev/null 2>&1
sleep 0.5
for via in nginx nginx-token sidecar; do
    case $via in
    nginx)       pport=$port; hh=(-H "$basic") ;;
    nginx-token) pport=$port; hh=(-H "$bearer") ;;
    *)           pport=$sport; hh=(-H "$SIDECAR_KEY_HEADER") ;;
    esac
    "$BIN/hreq" -p "$pport" -r 10 -d 3 -u /dashboard/api/data "${hh[@]}" > "$dir/full-data.json" &
    p1=$!
    "$BIN/hreq" -p "$pport" -r 10 -d 3 -u /metrics "${hh[@]}" > "$dir/full-metrics.json"
    wait "$p1"
    emit "{\"case\":\"$case\",\"kind\":\"full_table_poll\",\"via\":\"$via\",\"endpoints_tracked\":$(sidecar_json "$sport" | jq .pipeline.endpoints_tracked),\"json_bytes\":$(curl -s -H "$SIDECAR_KEY_HEADER" "http://127.0.0.1:$sport/dashboard/api/data" | wc -c),\"metrics_bytes\":$(curl -s -H "$SIDECAR_KEY_HEADER" "http://127.0.0.1:$sport/metrics" | wc -c),\"poll_data\":$(cat "$dir/full-data.json"),\"poll_metrics\":$(cat "$dir/full-metrics.json")}"
done
emit "{\"case\":\"$case\",\"kind\":\"db\",\"database\":$db_json,\"mongodb_status\":$db_status,\"db_rss_kb\":$(rss_kb "$dbpid"),\"sidecar_rss_kb\":$(rss_kb "$spid"),\"json_bytes\":$(curl -s -H "$SIDECAR_KEY_HEADER" "http://127.0.0.1:$sport/dashboard/api/data" | wc -c),\"metrics_bytes\":$(curl -s -H "$SIDECAR_KEY_HEADER" "http://127.0.0.1:$sport/metrics" | wc -c)}"
