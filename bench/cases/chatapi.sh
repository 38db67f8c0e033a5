#!/bin/bash
# Target 5 / issue 15 part 6: the chat API on the real (embedded FerretDB)
# database at CHATAPI_MESSAGES messages (default 1,000,000; QUICK=1:
# 100,000) in CHATAPI_MESSAGES / 1,000 groups, with the configuration a
# deployment uses: nginx.conf.example (2 workers, 16 pool threads,
# chat_page_cache 16m, access log, metrics to the sidecar).
#
# The data: CHATAPI_DATA=DIR (or READS_DATA=DIR: the reads case's layout,
# DIR/db holding database "bench", DIR/groups) is copied into this case's
# directory (never used in place: the POST rounds write); unset, the data
# is seeded here with bench/tools/seedlog.c (the event log's layout).
#
# wrk -t1 -c32 with bench/lua/chatapi.lua: GET the newest page
# (limit=50) of 100 "hot" groups (each opened once before: the page
# cache's entries), or POST a message to any group.  Meanwhile a probe
# fetches /bench/static 100x/s on its own connection; its p99 under each
# load is compared with its p99 with no load, in rounds that alternate
# (medians over CHATAPI_ROUNDS, default 3; QUICK: 1).  Variants, in this
# order each round (CHATAPI_VARIANTS):
#   idle        the probe alone
#   get         the newest page, 32 clients
#   post        POST, 32 clients
#   static      control: wrk -c32 on /bench/static itself (nginx saturated
#               by requests the chat API does not serve)
#   burn        control: no requests, one process outside nginx burning
#               one core (what the database takes under the POST load)
#   dbnice-post the POST load with every devdb thread at nice 19
#   dbnice-get  the GET load, likewise
# and, right after get and after post, open-loop variants (this tree's
# only): for each F of CHATAPI_LOAD_FRACTIONS (default "0.5 0.8"; empty:
# none)
#   OP@F        the same requests at a fixed rate, F x the req/s the
#               saturated OP reached in this round (bench/tools/oload.c:
#               LOAD_CONNS connections, default 32; latency from each request's scheduled
#               time), i.e. with headroom, which wrk -c32 never leaves
#   static@OP@F control: /bench/static at that same rate
# (OP@F first in odd rounds, static@OP@F first in even ones).
# Per round: the workers' CPU (all threads), their event loops' run time
# and run-queue wait (schedstat of the main threads), devdb's CPU.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=chatapi
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

rounds=${CHATAPI_ROUNDS:-$(q 1 3)}; dur=$(q 5 10)
variants=${CHATAPI_VARIANTS:-idle get post static burn dbnice-post}
msgs=${CHATAPI_MESSAGES:-$(q 100000 1000000)}
groups=$(( msgs / 1000 )); [ "$groups" -ge 1 ] || groups=1
src=${CHATAPI_DATA:-${READS_DATA:-}}

# --- the data -----------------------------------------------------------------
if [ -n "$src" ]; then
    [ -d "$src/db" ] && [ -s "$src/groups" ] || { log "chatapi: no $src/db or $src/groups"; exit 1; }
    t0=$(date +%s)
    cp -a "$src/db" "$dir/db" && cp "$src/groups" "$dir/groups" || exit 1
    rm -f "$dir/db/devdb.lock"
    groups=$(wc -l < "$dir/groups")
    log "  chatapi: the data of $src copied ($groups groups, $(du -sh "$dir/db" | cut -f1), $(( $(date +%s) - t0 )) s)"
    seed_s=null
else
    suri=$(start_db "$dir/db") || exit 1
    track "$(cat "$dir/db.pid")" TERM
    seed_log "$suri" "$groups" "$msgs" "$dir/groups" || exit 1
    stop_db "$dir/db"
    log "  chatapi: $msgs messages in $groups groups seeded in ${seed_s%.*} s"
fi
msgs=$(( groups * 1000 ))
emit "{\"case\":\"$case\",\"kind\":\"seed\",\"messages\":$msgs,\"groups\":$groups,\"seconds\":${seed_s/#./0.}}"

EXAMPLE_DB=bench start_example_stack "$dir/db" || exit 1
# worker 0's start (the indexes: made by the seeding, found in place)
for i in $(seq 600); do
    grep -q 'indexes are in place' "$dir/ngx/logs/error.log" && break
    sleep 0.1
done
# until the database is idle (SQLite's checkpoint; on data seeded without
# the module's counters, the sidecar's one-time count of every message
# into counters "base": minutes at 1,000,000 on this machine): at most 15
# minutes, 5 idle seconds in a row
idle=0
for i in $(seq 900); do
    d0=$(cpu_ns "$dbpid"); sleep 1; d1=$(cpu_ns "$dbpid")
    if [ $((d1 - d0)) -lt 50000000 ]; then idle=$((idle + 1)); else idle=0; fi
    [ $idle -ge 5 ] && break
done
log "  chatapi: nginx.conf.example on $msgs messages, $(grep -o 'chat_page_cache  *[^;]*' "$dir/nginx.conf" | tr -s ' '), database idle after $i s"

# CHATAPI_BEFORE_SO=FILE: a second nginx, the same configuration loading
# that module (the code before), on the same database and sidecar; its
# variants ("before-idle", "before-get", ...) alternate with this tree's
# in each round
ports=$port; wpids=$w
if [ -n "${CHATAPI_BEFORE_SO:-}" ]; then
    cp "$CHATAPI_BEFORE_SO" "$BIN/ngx_chat_module.before.so" || exit 1
    bport=$(free_port)
    # its own sidecar: a sidecar takes records from its nginx's workers only
    bingest="ipc://$dir/metrics-before.ipc"
    read -r bspid bsport < <(start_sidecar "$dir/sidecar-before" "$bingest" "$mongo" "$dir/ngx-before/logs/nginx.pid") || exit 1
    EXAMPLE_MODULE=ngx_chat_module.before.so example_conf "$dir/ngx-before" "$bport" "$mongo" "$bingest" "$bsport" \
        "$dir/sec/htpasswd" "$dir/sec/jwt-secret" |
        sed -e '/^ *limit_req  *zone=/d' -e '/^ *limit_conn  *chat_user_conn/d' \
            -e 's/chat_ws_message_rate  20;/chat_ws_message_rate  off;/' > "$dir/nginx-before.conf"
    bm=$(start_nginx "$dir/nginx-before.conf" "$dir/ngx-before") || exit 1
    bw=$(worker_pids "$bm")
    ports="$port $bport"
    log "  chatapi: the code before ($CHATAPI_BEFORE_SO, sha256 $(sha256sum "$CHATAPI_BEFORE_SO" | cut -c1-12)) on port $bport"
fi

awk 'NR % 7 == 3' "$dir/groups" | head -100 > "$dir/hot"
for p in $ports; do
    for g in $(cat "$dir/hot"); do
        curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$p/api/chat/groups/$g/messages?limit=50"
    done
done

# with autogroup scheduling, nice orders threads within one autogroup (a
# session): devdb and nginx are in the same one when started from here;
# if not, the autogroup's nice is set too
ag_db=$(awk '{print $1}' /proc/"$dbpid"/autogroup 2>/dev/null)
ag_ngx=$(awk '{print $1}' /proc/"${w%%,*}"/autogroup 2>/dev/null)
log "  chatapi: autogroups: devdb ${ag_db:-none}, nginx worker ${ag_ngx:-none}"
ctxsw() {       # ctxsw PID[,PID...] - "voluntary involuntary" context
    local p v=0 n=0 a b    # switches of the main threads (the event loops):
    for p in ${1//,/ }; do # a loop that sleeps other than in epoll_wait
        read -r a b < <(awk '/^voluntary_ctxt_switches/ {v = $2} /^nonvoluntary_ctxt_switches/ {n = $2} END {print v + 0, n + 0}' /proc/"$p"/status 2>/dev/null)
        v=$((v + ${a:-0})); n=$((n + ${b:-0}))
    done                   # (a lock's semaphore) shows voluntary ones
    echo "$v $n"
}
dbnice() {      # dbnice N - every thread of devdb
    local t
    for t in /proc/"$dbpid"/task/*; do renice -n "$1" -p "${t##*/}" > /dev/null 2>&1; done
    if [ -n "$ag_db" ] && [ "$ag_db" != "$ag_ngx" ]; then echo "$1" > /proc/"$dbpid"/autogroup 2>/dev/null; fi
}

# each of the code before's variants right after the same one of this tree
all=$(for v in $variants; do
    echo -n "$v "
    if [ -n "${CHATAPI_BEFORE_SO:-}" ] && [[ " ${CHATAPI_BEFORE_VARIANTS:-idle get post} " == *" $v "* ]]; then
        echo -n "before-$v "
    fi
done)

# run_variant V R - one variant of round R: the probe beside its load, the
# workers' and devdb's CPU over it; one result row.  V is one of the
# variants above, or an open-loop one (after its saturated variant):
# OP@F (OP = get or post at F times the req/s OP reached in this round,
# bench/tools/oload.c, 32 connections) or static@OP@F (/bench/static at
# that same rate)
declare -A sat         # req/s of the saturated get and post in this round
run_variant() {
    local v=$1 r=$2 vp=$port w=$wpids pp j=null o=null op gf extra="" rate=""
    if [ "${v#before-}" != "$v" ]; then vp=$bport; w=$bw; fi
    if [[ $v == *@* ]]; then
        local f=${v##*@} of=${v%@*}; of=${of#static@}
        rate=$(echo "${sat[$of]:-0} * $f" | bc -l | xargs printf '%.1f')
        if [ "$(echo "$rate < 1" | bc)" = 1 ]; then
            log "  chatapi $v round $r: no saturated $of rate in this round, skipped"; return 0
        fi
        extra="\"load_of\":\"$of\",\"fraction\":$f,\"rate\":$rate,"
    fi
    "$BIN/hreq" -p "$vp" -r 100 -d "$dur" -u /bench/static > "$dir/probe-$v-$r.json" &
    pp=$!
    c0=$(cpu_ns "$w"); d0=$(cpu_ns "$dbpid"); read -r mr0 mw0 ms0 < <(sched_main "$w"); read -r vc0 nc0 < <(ctxsw "$w")
    case ${v#before-} in
    idle)
        sleep "$dur" ;;
    burn)
        timeout "$dur" bash -c 'while :; do :; done' ;;
    static)
        j=$(run_wrk "$dir/wrk-$v-$r.txt" -t1 -c32 -d"${dur}s" --timeout 10s --latency \
            -s "$BENCH_DIR/lua/plain.lua" "http://127.0.0.1:$vp/bench/static") ;;
    get|post|dbnice-get|dbnice-post)
        op=${v#before-}; op=${op#dbnice-}; gf=$dir/hot
        [ $op = post ] && gf=$dir/groups
        [ "${v#dbnice}" != "$v" ] && dbnice 19
        j=$(BENCH_OP=$op BENCH_TOKEN=$token BENCH_GROUPS=$gf \
            run_wrk "$dir/wrk-$v-$r.txt" -t1 -c32 -d"${dur}s" --timeout 30s --latency \
            -s "$BENCH_DIR/lua/chatapi.lua" "http://127.0.0.1:$vp/")
        [ "${v#dbnice}" != "$v" ] && dbnice 0
        [ -n "$j" ] && [ "$v" = "$op" ] && sat[$op]=$(echo "$j" | jq '.requests / (.duration_us / 1e6)') ;;
    static@*)
        o=$("$BIN/oload" -p "$vp" -r "$rate" -d "$dur" -c "$oconns" -w 2 -u /bench/static) ;;
    get@*|post@*)
        op=${v%%@*}; gf=$dir/hot
        [ $op = post ] && gf=$dir/groups
        # POST's answers take seconds at this size (F9): 10 s to finish
        o=$("$BIN/oload" -p "$vp" -r "$rate" -d "$dur" -c "$oconns" -w "$([ $op = post ] && echo 10 || echo 2)" \
            -m "$op" -g "$gf" -H "Authorization: Bearer $token") ;;
    *)
        log "chatapi: no variant $v"; exit 1 ;;
    esac
    wait "$pp"
    c1=$(cpu_ns "$w"); d1=$(cpu_ns "$dbpid"); read -r mr1 mw1 ms1 < <(sched_main "$w"); read -r vc1 nc1 < <(ctxsw "$w")
    [ -n "$j" ] || j=null
    [ -n "$o" ] || o=null
    emit "{\"case\":\"$case\",\"variant\":\"$v\",\"round\":$r,\"messages\":$msgs,$extra\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"worker_cpu_ns\":$((c1 - c0)),\"loop_run_ns\":$((mr1 - mr0)),\"loop_wait_ns\":$((mw1 - mw0)),\"loop_slices\":$((ms1 - ms0)),\"loop_voluntary_switches\":$((vc1 - vc0)),\"loop_involuntary_switches\":$((nc1 - nc0)),\"db_cpu_ns\":$((d1 - d0)),\"wrk\":$j,\"oload\":$o,\"probe\":$(cat "$dir/probe-$v-$r.json")}"
    local per="" n=0 what=""
    if [ "$j" != null ]; then
        n=$(echo "$j" | jq .requests)
        what=$(echo "$j" | jq -c '{rps: (.requests / (.duration_us / 1e6) | floor), p50_us, p99_us, err_status}')
    elif [ "$o" != null ]; then
        n=$(echo "$o" | jq .count)
        what=$(echo "$o" | jq -c '{rate, achieved_rps, p50_ms, p99_ms, late, unfinished, non2xx, errors}')
    fi
    [ "$n" -gt 0 ] && per=" loop $(( (mr1 - mr0) / n )) ns/req, workers $(( (c1 - c0) / n )) ns/req, loop switches $((vc1 - vc0)) voluntary $((nc1 - nc0)) involuntary"
    log "  chatapi $v round $r (load $(cut -d' ' -f1 /proc/loadavg)): $what probe $(jq -c '{p50_ms, p99_ms}' "$dir/probe-$v-$r.json")$per, devdb $(( (d1 - d0) / 1000000 )) ms CPU"
}

# the open-loop variants of get and post (this tree's only), right after
# them: each fraction's load, then static at the same rate (static first
# in even rounds)
fractions=${CHATAPI_LOAD_FRACTIONS-0.5 0.8}
# LOAD_CONNS: oload's connections (default 32, as wrk -c32); a request due
# while all are busy waits ("late"): more connections keep the load open
oconns=${LOAD_CONNS:-32}
for r in $(seq "$rounds"); do
    sat=()
    for v in $all; do
        run_variant "$v" "$r"
        case $v in get|post) ;; *) continue ;; esac
        for f in $fractions; do
            if [ $((r % 2)) = 1 ]; then
                run_variant "$v@$f" "$r"; run_variant "static@$v@$f" "$r"
            else
                run_variant "static@$v@$f" "$r"; run_variant "$v@$f" "$r"
            fi
        done
    done
done

# the page cache's answers for the hot groups after the runs
base=http://127.0.0.1:$port/api/chat/groups
for g in $(cat "$dir/hot"); do
    curl -s -o /dev/null -D - -H "Authorization: Bearer $token" "$base/$g/messages?limit=50" |
        sed -n 's/^[Xx]-[Cc]hat-[Cc]ache: *\([a-z]*\).*/\1/p'
done | sort | uniq -c > "$dir/cache-after.txt"
h=$(awk '$2 == "hit" {print $1}' "$dir/cache-after.txt"); h=${h:-0}
log "  chatapi: after the runs, the hot groups' pages: $(paste -sd, "$dir/cache-after.txt" | tr -s ' ')"
sj=$(sidecar_json "$sport")
emit "{\"case\":\"$case\",\"kind\":\"end\",\"cache_hits_after\":$h,\"hot_groups\":$(wc -l < "$dir/hot"),\"endpoints\":$(echo "$sj" | jq -c '[.endpoints[] | {endpoint, count: (.count // .total_requests), avg_response_time_ms, p95_response_time_ms}]' 2>/dev/null || echo null),\"db_rss_kb\":$(rss_kb "$dbpid")}"
