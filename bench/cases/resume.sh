#!/bin/bash
# Issue 13's resume target: a WebSocket that reconnects with since=<seq>
# 1,000 events behind gets them all, from the database, within 200 ms of
# its handshake (the time to the last replayed frame).  nginx.conf.example,
# 2 workers, the embedded database; one group of 1,005 messages among
# other groups' messages (the listing's cost grows with the collection on
# FerretDB unless it reads by _id); 10 resumes one after another.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=resume
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

others=$(q 2000 20000)      # messages in other groups
rounds=$(q 3 10)
start_example_stack "$dir/db" || exit 1
create_groups "$port" "$token" 11 "$dir/groups" || exit 1
g=$(head -1 "$dir/groups")

post() {    # post GROUP N
    local i
    for i in $(seq "$2"); do
        curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d "{\"content\":\"resume $i\"}" "http://127.0.0.1:$port/api/chat/groups/$1/messages" || return 1
    done
}
post "$g" 1005 || exit 1
per=$((others / 10))
for o in $(tail -n +2 "$dir/groups"); do post "$o" "$per" || exit 1; done
log "  resume: 1005 messages in the group, $others in 10 others"

j=$(perl "$BENCH_DIR/tools/resume_time.pl" "$port" "$token" "$g" 5 1005 "$rounds") || exit 1
emit "{\"case\":\"$case\",\"variant\":\"since-1000\",\"round\":1,\"others\":$others,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"resume\":$j}"
log "  resume of 1000 events: $j"
