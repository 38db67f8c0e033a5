#!/bin/bash
# Target 7 (part 1): memory after 10,000 idle WebSockets (100 groups, 100
# each), nginx.conf.example with worker_connections raised to 16384: RSS
# of each worker and of the sidecar before, with them open (idle 10 s,
# pings answered), and after they are gone.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=memory
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

n=$(q 2000 10000); idle=$(q 3 10)
start_example_stack "$dir/db" 16384 || exit 1
create_groups "$port" "$token" 100 "$dir/groups" || exit 1
sleep 1
per_worker() { local p out=""; for p in ${w//,/ }; do out="$out${out:+,}$(rss_kb "$p")"; done; echo "[$out]"; }
before_w=$(per_worker); before_s=$(rss_kb "$spid")
"$BIN/wsbench" -p "$port" -g "$dir/groups" -n "$n" -t "$token" -P "$w" -i "$idle" > "$dir/ws.json" 2> "$dir/ws.err" &
wp=$!
track "$wp" TERM
# sample while they are open (the client holds them for $idle s)
sleep $((idle / 2 + 3))
open_w=$(per_worker); open_s=$(rss_kb "$spid")
sj=$(sidecar_json "$sport")
wait "$wp"
sleep 2
after_w=$(per_worker); after_s=$(rss_kb "$spid")
emit "{\"case\":\"$case\",\"subscribers\":$n,\"client\":$(cat "$dir/ws.json"),\"worker_rss_kb_before\":$before_w,\"worker_rss_kb_open\":$open_w,\"worker_rss_kb_after\":$after_w,\"sidecar_rss_kb_before\":$before_s,\"sidecar_rss_kb_open\":$open_s,\"sidecar_rss_kb_after\":$after_s,\"dashboard_ws\":$(echo "$sj" | jq -c '.websockets | {total_active_connections, live_workers}')}"
log "  memory: $(tail -1 "$RESULTS_JSONL" | cut -c1-400)"
