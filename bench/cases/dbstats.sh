#!/bin/bash
# Issue 13 part 4: the dashboard's database figures on the embedded
# database (devdb: FerretDB 1.24 on SQLite) holding N messages in 1,000
# groups (bench/tools/seed.c: a database of the shape before counters,
# cached in bench/out/cache), N = 1,000 / 100,000 / 1,000,000 (QUICK:
# 1,000 / 10,000; DBSTATS_SIZES="..." to choose).
#
#   before: the sidecar of $DBSTATS_BEFORE (default main), built here from
#           `git archive`: counts and an aggregation over the messages;
#   after:  this tree: nginx.conf.example (2 workers) and its sidecar,
#           which reads the "counters" documents; its first refresh is the
#           one-time count of the seeded messages (reported apart,
#           "count_once"); then a message POSTed to each of the 1,000
#           groups, so that both workers' documents name every group (the
#           most a refresh reads here), then the refreshes are timed;
#
# each with --db-refresh 1 (back to back) and its default --db-timeout-ms,
# timed by the sidecar itself (database.refresh_duration_ms of each
# refresh, read from /dashboard/api/data).  Then, after: POST a message,
# and the time until the dashboard's total_messages has it ("visible_ms",
# 5 times).  Each variant runs on its own copy of the cached database.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=dbstats
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl
groups=1000
sizes=${DBSTATS_SIZES:-$(q "1000 10000" "1000 100000 1000000")}
refreshes=$(q 5 10)
before_ref=${DBSTATS_BEFORE:-main}

# the sidecar of before_ref
src=$dir/before-src
mkdir -p "$src"
git -C "$BENCH_ROOT" archive "$before_ref" sidecar wire | tar -x -C "$src" || exit 1
make -s -C "$src/sidecar" BUILD_DIR="$src/build" > "$dir/before-build.log" 2>&1 ||
    { log "cannot build the sidecar of $before_ref"; exit 1; }
before_bin=$src/build/chat-sidecar
before_commit=$(git -C "$BENCH_ROOT" rev-parse --short "$before_ref")

# refreshes PORT N TIMEOUT_S FILE: the next N refreshes' JSON lines
# {attempt, ms, stale, total}, polled every 50 ms (a refresh is seen by its
# last_attempt_at); stops after TIMEOUT_S
refreshes_of() {
    local port=$1 n=$2 limit=$3 file=$4 t0=$SECONDS last="" j a
    : > "$file"
    while [ "$(wc -l < "$file")" -lt "$n" ] && [ $((SECONDS - t0)) -lt "$limit" ]; do
        j=$(sidecar_json "$port" | jq -c '.database | {attempt: .last_attempt_at, ms: .refresh_duration_ms, stale, stale_reason, total: .total_messages, active: .active_messages}' 2>/dev/null)
        a=$(echo "$j" | jq -r .attempt 2>/dev/null)
        if [ -n "$a" ] && [ "$a" != null ] && [ "$a" != "$last" ]; then
            [ -n "$last" ] && echo "$j" >> "$file"     # the first may be old
            last=$a
        fi
        sleep 0.05
    done
}

median() { jq -s '[.[].ms] | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end' "$1"; }

for msgs in $sizes; do
    cache=$OUT/cache/db-$groups-$msgs
    if [ ! -f "$cache.seeded" ]; then
        rm -rf "$cache"
        uri=$(start_db "$cache") || exit 1
        t0=$(date +%s.%N)
        "$BIN/seed" "${uri%/}/?serverSelectionTimeoutMS=5000" chat "$groups" "$msgs" > /dev/null || { stop_db "$cache"; exit 1; }
        t1=$(date +%s.%N)
        stop_db "$cache"
        echo "$(echo "$t1 - $t0" | bc)" > "$cache.seeded"
    fi
    emit "{\"case\":\"$case\",\"kind\":\"seed\",\"messages\":$msgs,\"groups\":$groups,\"seed_seconds\":$(cat "$cache.seeded")}"

    for v in before after; do
        work=$dir/db-$v-$msgs
        rm -rf "$work" "$work.pid"; cp -a "$cache" "$work"
        uri=$(start_db "$work") || exit 1
        mongo="${uri%/}/chat"

        if [ $v = before ]; then
            port=$(free_port)
            "$before_bin" --listen "127.0.0.1:$port" --ingest "ipc://$dir/$v-$msgs.ipc" \
                --http-key-file "$SIDECAR_KEY_FILE" --mongo-uri "$mongo" \
                --html-dir "$BENCH_ROOT/html" --log-level info --db-refresh 1 \
                >> "$dir/sidecar-$v-$msgs.log" 2>&1 &
            spid=$!; track "$spid" TERM
            wait_port "$port" "$spid" || { log "sidecar did not start"; exit 1; }
        else
            # the stack as deployed: nginx.conf.example (2 workers) and
            # this tree's sidecar, refreshing every second
            sdir=$dir/stack-$msgs
            mkdir -p "$sdir"
            read -r spid port < <(SIDECAR_EXTRA="--db-refresh 1 --log-level info" start_sidecar "$sdir/sidecar" "ipc://$sdir/metrics.ipc" "$mongo" "$sdir/ngx/logs/nginx.pid") || exit 1
            make_secrets "$sdir/sec"
            token=$(cat "$sdir/sec/token")
            nport=$(free_port)
            example_conf "$sdir/ngx" "$nport" "$mongo" "ipc://$sdir/metrics.ipc" "$port" "$sdir/sec/htpasswd" "$sdir/sec/jwt-secret" > "$sdir/nginx.conf"
            m=$(start_nginx "$sdir/nginx.conf" "$sdir/ngx") || exit 1
            # the first refresh counts the seeded messages once
            # (its time from the sidecar's log line)
            refreshes_of "$port" 1 1800 "$dir/once-$msgs.jsonl"
            once_s=$(sed -n 's/.*db: counted once, [0-9]* messages read in \([0-9.]*\) s.*/\1/p' "$sdir/sidecar/sidecar.log" | tail -1)
            emit "{\"case\":\"$case\",\"kind\":\"count_once\",\"messages\":$msgs,\"seconds\":${once_s:-null},\"loadavg\":$(cut -d' ' -f1 /proc/loadavg)}"
            # a message in every group through the module (8 clients): the
            # workers' counters documents then name all 1,000 groups, the
            # most a refresh reads for this database
            for p in $(seq 1 $((groups / 100))); do
                curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$nport/api/chat/groups?limit=100&page=$p" | jq -r '.groups[].id'
            done > "$sdir/groups"
            t0=$(date +%s.%N)
            xargs -P 8 -I{} curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" \
                -H 'Content-Type: application/json' -d '{"content":"every group"}' \
                "http://127.0.0.1:$nport/api/chat/groups/{}/messages" < "$sdir/groups"
            t1=$(date +%s.%N)
            emit "{\"case\":\"$case\",\"kind\":\"post_every_group\",\"messages\":$msgs,\"posts\":$(wc -l < "$sdir/groups"),\"seconds\":$(echo "$t1 - $t0" | bc)}"
            refreshes_of "$port" 2 30 "$dir/settle-$msgs.jsonl"
        fi

        # the old code needs seconds a refresh at 1,000,000: fewer of them
        n=$refreshes; [ $v = before ] && [ "$msgs" -ge 1000000 ] && n=3
        refreshes_of "$port" "$n" 300 "$dir/refresh-$v-$msgs.jsonl"
        med=$(median "$dir/refresh-$v-$msgs.jsonl")
        last=$(tail -1 "$dir/refresh-$v-$msgs.jsonl")
        emit "{\"case\":\"$case\",\"kind\":\"refresh\",\"variant\":\"$v\",\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"commit\":\"$([ $v = before ] && echo "$before_commit" || git -C "$BENCH_ROOT" rev-parse --short HEAD)\",\"messages\":$msgs,\"groups\":$groups,\"n\":$(wc -l < "$dir/refresh-$v-$msgs.jsonl"),\"median_ms\":$med,\"all_ms\":$(jq -s -c '[.[].ms]' "$dir/refresh-$v-$msgs.jsonl"),\"last\":${last:-null}}"
        log "  dbstats $msgs messages, $v: refresh median $med ms ($(jq -s -c '[.[].ms|floor]' "$dir/refresh-$v-$msgs.jsonl")); last: $last"

        if [ $v = after ]; then
            # a write through the module, visible on the dashboard: when
            # total_messages has grown by one
            g=$(head -1 "$sdir/groups")
            for i in $(seq 5); do
                before_total=$(sidecar_json "$port" | jq .database.total_messages)
                t0=$(date +%s%N)
                curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
                    -d "{\"content\":\"visible $i\"}" "http://127.0.0.1:$nport/api/chat/groups/$g/messages" || { log "POST failed"; exit 1; }
                while :; do
                    now_total=$(sidecar_json "$port" | jq .database.total_messages)
                    [ "$now_total" -gt "$before_total" ] && break
                    [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 10000 ] && break
                    sleep 0.02
                done
                ms=$(( ($(date +%s%N) - t0) / 1000000 ))
                emit "{\"case\":\"$case\",\"kind\":\"visible\",\"messages\":$msgs,\"try\":$i,\"visible_ms\":$ms,\"total_before\":$before_total,\"total_after\":$now_total}"
                log "  dbstats $msgs messages: a POST visible on the dashboard after $ms ms ($before_total -> $now_total)"
                sleep 0.$((RANDOM % 10))
            done
            stop_nginx "$m"
        fi
        stop_pid "$spid" TERM
        stop_db "$work"
        rm -rf "$work"
    done
done

# a summary beside the JSON lines
jq -r 'select(.kind == "refresh") | "\(.messages) messages, \(.variant) (\(.commit)): median \(.median_ms) ms of \(.n) refreshes \(.all_ms); stale \(.last.stale); load average \(.loadavg)"' "$RESULTS_JSONL" > "$dir/summary.txt"
jq -r 'select(.kind == "count_once") | "\(.messages) messages: one-time count \(.seconds) s (load average \(.loadavg))"' "$RESULTS_JSONL" >> "$dir/summary.txt"
jq -s -r '[.[] | select(.kind == "visible")] | group_by(.messages)[] | "\(.[0].messages) messages: POST visible after \([.[].visible_ms]) ms"' "$RESULTS_JSONL" >> "$dir/summary.txt"
cat "$dir/summary.txt" >&2
