#!/bin/bash
# Target 1: recording overhead. One worker, "return 200", access_log off
# (the strictest baseline: nothing else costs anything), the chat module's
# metrics on (B) against the module not loaded (A), wrk -t1 -c32, rounds
# alternating A B / B A; then callgrind: instructions per request from the
# difference of two runs (N1 and N2 requests) of each variant.  Variants
# (bench/lib.sh, micro_conf): A none, B metrics on (defaults), C the module
# without recording, D metrics on without response headers, and V
# nginx-module-vts when VTS_SRC names its source tree (built here against
# the same nginx; unset, the case says so and runs without it).
# BEFORE_MODULE=SO (the module of older code): then also "compare":
# callgrind's instructions per request of B, C and D with that module
# ("B-before", ...) and with this one ("B-now", ...), and of A, in the same
# run (nginx's thread and all threads).
# OVERHEAD_PARTS: the parts to run (default "wrk threads callgrind",
# + compare).
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=overhead
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl

rounds=$(q 1 5); dur=$(q 3s 10s); tdur=$(q 2s 5s)
variants="A B C"
if build_vts; then
    variants="A B C V"
    emit "{\"case\":\"$case\",\"kind\":\"vts\",\"built\":true,\"src\":\"${VTS_SRC}\",\"version\":\"$(git -C "$VTS_SRC" describe --always --tags 2>/dev/null)\"}"
else
    log "  VTS_SRC not set (or the build failed): running without the nginx-module-vts variant"
    emit "{\"case\":\"$case\",\"kind\":\"vts\",\"built\":false}"
fi
rev() { echo "$*" | tr ' ' '\n' | tac | paste -sd' ' -; }
MICRO_INGEST="ipc://$dir/metrics.ipc"
read -r spid sport < <(start_sidecar "$dir/sidecar" "$MICRO_INGEST" "mongodb://127.0.0.1:9/chat") || exit 1
emit "{\"case\":\"$case\",\"kind\":\"meta\",\"rounds\":$rounds,\"duration\":\"$dur\",\"sidecar_rss_kb_start\":$(rss_kb "$spid")}"

parts=" ${OVERHEAD_PARTS:-wrk threads callgrind${BEFORE_MODULE:+ compare}} "
[[ "$parts" == *" wrk "* ]] || rounds=0
port=$(free_port)
for r in $(seq "$rounds"); do
    order=$variants; [ $((r % 2)) = 0 ] && order=$(rev $variants)
    for v in $order; do
        conf=$(micro_conf "$dir/ngx-$v" "$port" "$v")
        s0=$(cpu_ns "$spid")
        wrk_round "$case" "$v" "$r" "$conf" "$dir/ngx-$v" "$port" \
            "\"sidecar_cpu_ns\":SIDECAR," \
            -t1 -c32 -d"$dur" --latency -s "$BENCH_DIR/lua/plain.lua" "http://127.0.0.1:$port/" || exit 1
        s1=$(cpu_ns "$spid")
        sed -i "\$s/SIDECAR/$((s1 - s0))/" "$RESULTS_JSONL"
    done
done
# where the CPU goes, per thread of the worker (A and B, 5 s each): run
# time and context switches of every thread, from /proc/PID/task/*
[[ "$parts" == *" threads "* ]] && for v in A B; do
    conf=$(micro_conf "$dir/ngx-$v" "$port" "$v")
    m=$(start_nginx "$conf" "$dir/ngx-$v") || exit 1
    w=$(worker_pids "$m")
    run_wrk "$dir/warmup.txt" -t1 -c32 -d1s -s "$BENCH_DIR/lua/plain.lua" "http://127.0.0.1:$port/" > /dev/null
    snap() {
        local t
        for t in /proc/"$w"/task/*; do
            echo "$(basename "$t") $(cat "$t/comm" | tr ' ' _) $(awk '{print $1}' "$t/schedstat") $(awk '/^voluntary_ctxt/ {v=$2} /^nonvoluntary_ctxt/ {n=$2} END {print v, n}' "$t/status")"
        done
    }
    snap > "$dir/threads-$v.0"
    s0=$(cpu_ns "$spid")
    j=$(run_wrk "$dir/wrk-threads-$v.txt" -t1 -c32 -d"$tdur" -s "$BENCH_DIR/lua/plain.lua" "http://127.0.0.1:$port/")
    s1=$(cpu_ns "$spid")
    snap > "$dir/threads-$v.1"
    stop_nginx "$m"
    n=$(echo "$j" | jq .requests)
    th=$(join <(sort "$dir/threads-$v.0") <(sort "$dir/threads-$v.1") | awk -v n="$n" '
        { run = $7 - $3; if (run < 1000000) next
          printf "%s{\"thread\":\"%s\",\"ns_per_req\":%.1f,\"voluntary\":%d,\"involuntary\":%d}", sep, $2, run / n, $8 - $4, $9 - $5; sep = "," }')
    emit "{\"case\":\"$case\",\"kind\":\"threads\",\"variant\":\"$v\",\"requests\":$n,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"sidecar_ns_per_req\":$(( (s1 - s0) / n )),\"threads\":[$th]}"
done

j=$(sidecar_json "$sport")
emit "{\"case\":\"$case\",\"kind\":\"sidecar\",\"rss_kb\":$(rss_kb "$spid"),\"total_requests\":$(echo "$j" | jq .performance.total_requests),\"requests_served\":$(echo "$j" | jq .performance.requests_served),\"requests_dropped\":$(echo "$j" | jq .performance.requests_dropped)}"

n1=$(q 500 1000); n2=$(q 2500 11000)
if [[ "$parts" == *" compare "* ]]; then
    [ -f "${BEFORE_MODULE:-}" ] || { log "BEFORE_MODULE: no such file"; exit 1; }
    cp "$BEFORE_MODULE" "$BIN/ngx_chat_module.before.so" || exit 1
    emit "{\"case\":\"$case\",\"kind\":\"compare\",\"before_sha256\":\"$(sha256sum "$BIN/ngx_chat_module.before.so" | cut -c1-12)\",\"now_sha256\":\"$(sha256sum "$BIN/ngx_chat_module.so" | cut -c1-12)\"}"
    for n in "$n1" "$n2"; do
        callgrind_run "$case" A "$n" 0 0 A-cmp || exit 1
        for v in B C D; do
            MICRO_MODULE=ngx_chat_module.before.so callgrind_run "$case" "$v" "$n" 0 0 "$v-before" || exit 1
            callgrind_run "$case" "$v" "$n" 0 0 "$v-now" || exit 1
        done
    done
    for v in A-cmp B-before B-now C-before C-now D-before D-now; do
        jq -s --arg v "$v" --argjson n1 "$n1" --argjson n2 "$n2" \
            '[.[] | select(.kind == "callgrind" and .variant == $v)] as $r
             | ($r[] | select(.n == $n1)) as $a | ($r[] | select(.n == $n2)) as $b
             | {case: "overhead", kind: "compare-ir", variant: $v,
                ir_per_request: (($b.ir_total - $a.ir_total) / ($n2 - $n1)),
                ir_main_per_request: (($b.ir_main - $a.ir_main) / ($n2 - $n1))}' "$RESULTS_JSONL" -c >> "$RESULTS_JSONL.tmp"
    done
    cat "$RESULTS_JSONL.tmp" >> "$RESULTS_JSONL"; rm -f "$RESULTS_JSONL.tmp"
    log "  compare: $(grep compare-ir "$RESULTS_JSONL" | jq -c '{variant, ir_main_per_request}' | paste -sd' ')"
fi
[[ "$parts" == *" callgrind "* ]] || exit 0
for v in $variants D; do
    for n in "$n1" "$n2"; do
        callgrind_run "$case" "$v" "$n" 0 0 || exit 1
    done
done
# where B's instructions go (the larger run), for the report
callgrind_annotate --inclusive=yes "$dir"/cg-B-"$n2"/callgrind.out.*-01 2>/dev/null | head -60 > "$dir/annotate-B.txt"
callgrind_annotate --inclusive=no "$dir"/cg-B-"$n2"/callgrind.out.*-01 2>/dev/null | head -60 > "$dir/annotate-B-self.txt"
callgrind_annotate --inclusive=no "$dir"/cg-A-"$n2"/callgrind.out.*-01 2>/dev/null | head -60 > "$dir/annotate-A-self.txt"
# per-request profile of B: the difference of the two run lengths
python3 "$BENCH_DIR/tools/cgdiff.py" "$dir/cg-B-$n1" "$dir/cg-B-$n2" $((n2 - n1)) > "$dir/per-request-B.txt"
python3 "$BENCH_DIR/tools/cgdiff.py" "$dir/cg-A-$n1" "$dir/cg-A-$n2" $((n2 - n1)) > "$dir/per-request-A.txt"
