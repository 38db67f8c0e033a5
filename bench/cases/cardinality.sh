#!/bin/bash
# Target 2: cardinality. As target 1, but every request has a new URI out
# of 5,000 or 1,000,000 (bench/lua/randpath.lua) and B names the endpoint
# by the URI (chat_metrics_endpoint $uri), so each path is its own key; A
# is the module not loaded with the same client.  One sidecar takes all B
# rounds: its RSS is sampled after each, and its endpoint table must stay
# capped (overflow row).  Callgrind: per-URI key, 5,000 distinct URIs.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=cardinality
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

rounds=$(q 1 3)
MICRO_INGEST="ipc://$dir/metrics.ipc"
read -r spid sport < <(start_sidecar "$dir/sidecar" "$MICRO_INGEST" "mongodb://127.0.0.1:9/chat") || exit 1
sleep 0.5
emit "{\"case\":\"$case\",\"kind\":\"rss\",\"at\":\"start\",\"sidecar_rss_kb\":$(rss_kb "$spid")}"

port=$(free_port)
for distinct in 5000 1000000; do
    dur=$(q 3s 10s); [ "$distinct" = 1000000 ] && dur=$(q 3s 20s)
    for r in $(seq "$rounds"); do
        order="A B"; [ $((r % 2)) = 0 ] && order="B A"
        for v in $order; do
            conf=$(micro_conf "$dir/ngx-$v" "$port" "$v" 1)
            BENCH_DISTINCT=$distinct wrk_round "$case" "$v" "$r" "$conf" "$dir/ngx-$v" "$port" \
                "\"distinct\":$distinct," \
                -t1 -c32 -d"$dur" --latency -s "$BENCH_DIR/lua/randpath.lua" "http://127.0.0.1:$port/" || exit 1
            if [ "$v" = B ]; then
                sleep 0.3
                j=$(sidecar_json "$sport")
                emit "{\"case\":\"$case\",\"kind\":\"rss\",\"at\":\"after B $distinct round $r\",\"sidecar_rss_kb\":$(rss_kb "$spid"),\"total_requests\":$(echo "$j" | jq .performance.total_requests),\"endpoints_tracked\":$(echo "$j" | jq .pipeline.endpoints_tracked),\"endpoint_overflow_requests\":$(echo "$j" | jq .pipeline.endpoint_overflow_requests),\"requests_dropped\":$(echo "$j" | jq .performance.requests_dropped)}"
            fi
        done
    done
done

n1=$(q 500 1000); n2=$(q 2500 11000)
for v in A B; do
    for n in "$n1" "$n2"; do
        callgrind_run "$case" "$v" "$n" 5000 1 || exit 1
    done
done
python3 "$BENCH_DIR/tools/cgdiff.py" "$dir/cg-B-$n1" "$dir/cg-B-$n2" $((n2 - n1)) > "$dir/per-request-B.txt"
