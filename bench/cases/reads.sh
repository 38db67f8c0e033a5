#!/bin/bash
# Issue 13, part 4: the chat's hot reads on the embedded database at
# scale.  READS_MESSAGES messages (default 1,000,000; QUICK=1: 100,000)
# in READS_MESSAGES / 1,000 groups (1,000 events each) are seeded
# straight through the wire protocol (bench/tools/seedlog.c, the event
# log's layout: messages with seq, a record per seq, groups logged), then,
# on the same data, for the code of this tree with its page cache on
# ("cache": chat_page_cache 64m, the default valid=5s) and off ("log"),
# and for the code of branch BEFORE_REF (default main: "scan"), built
# from git:
#   - the newest page of a group (GET .../messages?limit=50): a group's
#     first open since the seeding, one client (READS_SCAN_N requests:
#     seconds each for the scan at this size), and for the log again, then
#     32 clients (wrk -t1 -c32) over 100 groups opened once before;
#   - POST a message, 32 clients;
#   - the 1,000 events of a group after seq 0 (GET ...?after=0&limit=1000,
#     one request: what a WebSocket resume of 1,000 missed events reads):
#     the first walk of a group (it seals the buckets) and the next ones;
#     also as 10 pages of 100.
# 2 workers, the pool threads of nginx.conf.example (READS_THREADS=N:
# N instead; bench/conf/reads.conf.in).  Processes are
# started and stopped by pid; everything on 127.0.0.1.
# READS_DATA=DIR reuses the data of an earlier run (DIR/db, DIR/groups);
# Then the 32 clients again while 2 others post into the same hot groups.
# READS_VARIANTS="cache log" measures this tree alone (the scans take
# minutes).  Each 32-client newest-page run reports the page cache's
# answers (X-Chat-Cache: hit / miss) of one request per hot group after it.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=reads
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

msgs=${READS_MESSAGES:-$(q 100000 1000000)}
groups=$(( msgs / 1000 )); [ "$groups" -ge 1 ] || groups=1
dur=$(q 5 10)
scan_n=${READS_SCAN_N:-$(q 2 3)}
before_ref=${BEFORE_REF:-main}

# --- the code before, built from git into a directory of its own ----------
before_so=${BEFORE_MODULE:-}
if [ -z "$before_so" ]; then
    src=$dir/before-src
    mkdir -p "$src"
    log "  reads: building the module of $before_ref ($(git -C "$BENCH_ROOT" rev-parse --short "$before_ref"))"
    git -C "$BENCH_ROOT" archive "$before_ref" | tar -x -C "$src" || exit 1
    make -s -C "$src" module > "$dir/before-build.log" 2>&1 || { tail -20 "$dir/before-build.log" >&2; exit 1; }
    before_so=$src/build/ngx_chat_module.so
fi
cp "$before_so" "$BIN/ngx_chat_module.before.so" || exit 1

# --- the data ---------------------------------------------------------------
# READS_DATA=DIR: the data of an earlier run, kept (DIR/db, DIR/groups:
# e.g. bench/out/reads moved away), instead of seeding again
data=${READS_DATA:-$dir}
uri=$(start_db "$data/db") || exit 1
dbpid=$(cat "$data/db.pid"); track "$dbpid" TERM
if [ -n "${READS_DATA:-}" ]; then
    cp "$data/groups" "$dir/groups" || exit 1
    msgs=$(( $(wc -l < "$dir/groups") * 1000 )); groups=$(wc -l < "$dir/groups")
    log "  reads: the data of $READS_DATA ($groups groups)"
    emit "{\"case\":\"$case\",\"kind\":\"seed\",\"messages\":$msgs,\"groups\":$groups,\"seconds\":null}"
else
    seed_log "$uri" "$groups" "$msgs" "$dir/groups" || exit 1
    log "  reads: $msgs messages in $groups groups seeded in ${seed_s%.*} s"
    emit "{\"case\":\"$case\",\"kind\":\"seed\",\"messages\":$msgs,\"groups\":$groups,\"seconds\":$seed_s}"
fi

# until the database is idle again (SQLite's checkpoint of what was just
# written, devdb's _id index): at most two minutes
for i in $(seq 120); do
    c0=$(cpu_ns "$dbpid"); sleep 1; c1=$(cpu_ns "$dbpid")
    [ $((c1 - c0)) -lt 50000000 ] && break
done
log "  reads: the database idle after $i s"

make_secrets "$dir/secrets"
token=$(cat "$dir/secrets/token")

threads=${READS_THREADS:-$(sed -n 's/^thread_pool .*threads=\([0-9]*\).*/\1/p' "$BENCH_ROOT/nginx.conf.example")}
[ -n "$threads" ] || { log "  reads: no thread_pool threads= in nginx.conf.example"; exit 1; }
log "  reads: $threads pool threads a worker"

conf() {   # conf VARIANT PORT DB_TIMEOUT -> path
    local so=$BIN/ngx_chat_module.so
    local cache=off
    [ "$1" = scan ] && so=$BIN/ngx_chat_module.before.so
    [ "$1" = cache ] && cache=64m
    mkdir -p "$dir/$1/logs" "$dir/$1/tmp"
    sed -e "s|@MODULE@|$so|" -e "s|@PREFIX@|$dir/$1|g" -e "s|@PORT@|$2|" \
        -e "s|@PAGE_CACHE@|$( [ "$1" = scan ] && echo '#' )chat_page_cache $cache;|" \
        -e "s|@MONGO_URI@|${uri%/}/bench|" -e "s|@DB_TIMEOUT@|$3|" -e "s|@THREADS@|$threads|" \
        -e "s|@JWT_SECRET_FILE@|$dir/secrets/jwt-secret|" \
        "$BENCH_DIR/conf/reads.conf.in" > "$dir/$1/nginx.conf"
    echo "$dir/$1/nginx.conf"
}

timed() {   # timed URL [CURL ARGS...] - seconds, or "null" on an error
    local t
    t=$(curl -s -o "$dir/last.json" -w '%{http_code} %{time_total}' -m 600 \
        -H "Authorization: Bearer $token" "$@") || { echo null; return; }
    [ "${t%% *}" = 200 ] || [ "${t%% *}" = 201 ] || { log "  reads: HTTP ${t%% *} for $1"; echo null; return; }
    echo "${t#* }"
}

json_list() { local IFS=,; echo "[$*]"; }

# the same groups for both: a few spread over the seeded ones; the 32
# clients read the newest pages of 100 "hot" groups (opened once before)
mapfile -t sample < <(awk -v n="$groups" 'NR == 1 || NR == int(n / 3) || NR == int(2 * n / 3) || NR == n' "$dir/groups" | head -4)
mapfile -t sample5 < <(awk -v n="$groups" 'NR % int(n / 5 + 1) == 2' "$dir/groups" | head -5)
awk 'NR % 7 == 3' "$dir/groups" | head -100 > "$dir/hot"

for v in ${READS_VARIANTS:-cache log scan}; do
    port=$(free_port)
    # the scans take seconds each at this size: a longer timeout for them
    timeout=5s; [ $v = scan ] && timeout=600s
    m=$(start_nginx "$(conf $v "$port" $timeout)" "$dir/$v") || exit 1
    w=$(worker_pids "$m")
    # worker 0's start (indexes, the migration: skipped on this data)
    for i in $(seq 6000); do
        grep -q 'indexes are in place' "$dir/$v/logs/error.log" && break
        sleep 0.1
    done
    log "  reads $v: started, indexes in place after $((i / 10)) s"
    base=http://127.0.0.1:$port/api/chat/groups

    # newest page, one client at a time: a group's first open since the
    # seeding (for the log: it seals the buckets it reads), then again
    seq_t=(); warm_t=()
    for g in "${sample[@]:0:$scan_n}"; do seq_t+=("$(timed "$base/$g/messages?limit=50")"); done
    if [ $v != scan ]; then
        for g in "${sample[@]}"; do warm_t+=("$(timed "$base/$g/messages?limit=50")"); done
    fi
    log "  reads $v: newest page, 1 client: first ${seq_t[*]} s, again ${warm_t[*]:-} s"

    # the 1,000 events after seq 0: first walk, then again
    first=(); again=(); paged=()
    for g in "${sample5[@]}"; do
        [ $v = scan ] && [ ${#first[@]} -ge 1 ] && break
        first+=("$(timed "$base/$g/messages?after=0&limit=1000")")
        n=$(jq '.messages | length' "$dir/last.json" 2>/dev/null || echo 0)
        [ "$n" = 1000 ] || log "  reads $v: after=0 listed $n events, not 1000"
        [ $v = scan ] && continue
        again+=("$(timed "$base/$g/messages?after=0&limit=1000")")
        # the requests' own times summed (not the tools between them)
        a=0; sum=0
        for p in $(seq 10); do
            t=$(timed "$base/$g/messages?after=$a&limit=100")
            sum=$(echo "$sum + ${t/null/0}" | bc)
            a=$(jq '.next_after // 0' "$dir/last.json")
        done
        paged+=("$(printf '%.6f' "$sum")")     # bc writes .5 for 0.5: not JSON
    done
    log "  reads $v: after=0 limit=1000: first ${first[*]} s, again ${again[*]:-} s, 10 pages ${paged[*]:-} s"

    # 32 clients: newest pages (the log only: a scan takes seconds), posts
    jget=null; cachehits=null
    if [ $v != scan ]; then
        for g in $(cat "$dir/hot"); do timed "$base/$g/messages?limit=50" > /dev/null; done
        c0=$(cpu_ns "$w"); d0=$(cpu_ns "$dbpid")
        jget=$(BENCH_OP=get BENCH_TOKEN=$token BENCH_GROUPS=$dir/hot \
            run_wrk "$dir/wrk-$v-get.txt" -t1 -c32 -d"${dur}s" --timeout 10s --latency \
            -s "$BENCH_DIR/lua/chatapi.lua" "http://127.0.0.1:$port/")
        c1=$(cpu_ns "$w"); d1=$(cpu_ns "$dbpid")
        log "  reads $v: newest page, 32 clients: $(echo "$jget" | jq -c '{rps: (.requests / (.duration_us / 1e6) | floor), p50_us, p99_us, err_status, err_timeout}')"
        if [ $v = cache ]; then
            h=0
            for g in $(cat "$dir/hot"); do
                curl -s -o /dev/null -D - -H "Authorization: Bearer $token" "$base/$g/messages?limit=50" \
                    | grep -qi '^x-chat-cache: hit' && h=$((h + 1))
            done
            cachehits=$h
            log "  reads $v: after the run, $h of $(wc -l < "$dir/hot") hot groups' pages were hits"
        fi
    fi
    # the same 32 readers while 2 clients post into the same hot groups
    # (the cache puts each new message in place, or drops the page)
    jmix=null; jmixpost=null
    if [ $v != scan ]; then
        BENCH_OP=post BENCH_TOKEN=$token BENCH_GROUPS=$dir/hot \
            run_wrk "$dir/wrk-$v-mixpost.txt" -t1 -c2 -d"${dur}s" --timeout 30s --latency \
            -s "$BENCH_DIR/lua/chatapi.lua" "http://127.0.0.1:$port/" > /dev/null &
        mixpid=$!
        jmix=$(BENCH_OP=get BENCH_TOKEN=$token BENCH_GROUPS=$dir/hot \
            run_wrk "$dir/wrk-$v-mixget.txt" -t1 -c32 -d"${dur}s" --timeout 10s --latency \
            -s "$BENCH_DIR/lua/chatapi.lua" "http://127.0.0.1:$port/")
        wait "$mixpid"
        jmixpost=$(sed -n 's/^WRKJSON //p' "$dir/wrk-$v-mixpost.txt" | tail -1)
        log "  reads $v: newest page, 32 clients, 2 posting meanwhile: $(echo "$jmix" | jq -c '{rps: (.requests / (.duration_us / 1e6) | floor), p50_us, p99_us, err_status, err_timeout}'), posts: $(echo "${jmixpost:-null}" | jq -c '{rps: (.requests / (.duration_us / 1e6) | floor), p50_us, p99_us}')"
    fi

    jpost=$(BENCH_OP=post BENCH_TOKEN=$token BENCH_GROUPS=$dir/groups \
        run_wrk "$dir/wrk-$v-post.txt" -t1 -c32 -d"${dur}s" --timeout 30s --latency \
        -s "$BENCH_DIR/lua/chatapi.lua" "http://127.0.0.1:$port/")
    log "  reads $v: POST, 32 clients: $(echo "$jpost" | jq -c '{rps: (.requests / (.duration_us / 1e6) | floor), p50_us, p99_us, err_status, err_timeout}')"

    emit "{\"case\":\"$case\",\"variant\":\"$v\",\"threads\":$threads,\"messages\":$msgs,\"groups\":$groups,\"latest_1client_s\":$(json_list "${seq_t[@]}"),\"latest_again_s\":$(json_list "${warm_t[@]}"),\"after1000_first_s\":$(json_list "${first[@]}"),\"after1000_again_s\":$(json_list "${again[@]}"),\"after1000_10pages_s\":$(json_list "${paged[@]}"),\"wrk_get\":${jget:-null},\"cache_hits_after\":$cachehits,\"hot_groups\":$(wc -l < "$dir/hot"),\"wrk_get_mixed\":${jmix:-null},\"wrk_post_mixed\":${jmixpost:-null},\"wrk_post\":${jpost:-null},\"db_rss_kb\":$(rss_kb "$dbpid")}"
    stop_nginx "$m"
done
