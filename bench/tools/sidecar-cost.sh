#!/bin/bash
# bench/tools/sidecar-cost.sh [SIDECAR [SEND_TEST_BATCH]] - the sidecar's
# instructions per record: callgrind (every thread) of a sidecar fed
# 100 x 128 and 600 x 128 request records by send-test-batch, the
# difference divided by the 64,000 records between them (what does not
# depend on the record count, start-up and idle threads, cancels out).
# Defaults: build/sidecar/chat-sidecar and its send-test-batch (more of its
# options in SIDECAR_COST_ARGS, e.g. -r: a new path per record).  Prints
# "instructions per record: N"; the two profiles stay in $OUT/sidecar-cost/
# (callgrind_annotate either of them for where the instructions go).
# Loopback and an ipc socket only; processes stopped by pid.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
SC=${1:-$BENCH_ROOT/build/sidecar/chat-sidecar}
STB=${2:-$(dirname "$SC")/send-test-batch}
dir=$OUT/sidecar-cost; rm -rf "$dir"; mkdir -p "$dir"
for b in 100 600; do
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$b.%p" "$SC" \
        --listen "127.0.0.1:$port" --ingest "ipc://$dir/ingest.ipc" --ingest-peers any \
        --http-key-file "$SIDECAR_KEY_FILE" --mongo-uri mongodb://127.0.0.1:9/chat \
        --html-dir "$BENCH_ROOT/html" --log-level warn > "$dir/sidecar.$b.log" 2>&1 &
    pid=$!
    track "$pid" TERM
    wait_port "$port" "$pid" || { log "sidecar under callgrind did not start"; exit 1; }
    "$STB" -u "ipc://$dir/ingest.ipc" -n 128 -b "$b" -e "GET /api/chat/groups" -p 4242 \
        ${SIDECAR_COST_ARGS:-} > "$dir/stb.$b.log" 2>&1 || { log "send-test-batch failed"; exit 1; }
    # every record applied before the sidecar stops
    for i in $(seq 100); do
        n=$(sidecar_json "$port" | jq -r .performance.total_requests 2>/dev/null)
        [ "$n" = $((b * 128)) ] && break
        sleep 0.2
    done
    [ "$n" = $((b * 128)) ] || { log "the sidecar applied $n of $((b * 128)) records"; exit 1; }
    stop_pid "$pid" TERM
done
python3 - "$dir" <<'P'
import glob, sys
def total(b):
    f = glob.glob(sys.argv[1] + "/cg.%d.*" % b)[0]
    for line in open(f):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
print("instructions per record: %.0f" % ((total(600) - total(100)) / (500 * 128)))
P
