#!/bin/bash
# bench/tools/sidecar-rate.sh ROUNDS BATCHES INTERVAL_MS BASE_SIDECAR [NEW_SIDECAR]
# - the sidecar's CPU time per record, two builds alternating (medians are
# the reader's): each round starts a sidecar, pushes BATCHES x 128 request
# records with send-test-batch (INTERVAL_MS between batches, 0: as fast as
# the sidecar takes them), and divides the run time of every sidecar
# thread (/proc/PID/task/*/schedstat) by the records it applied.  Each
# sidecar is fed by the send-test-batch built beside it (the wire format
# may differ between builds).  NEW_SIDECAR defaults to this tree's build.
# Loopback and ipc only; processes stopped by pid.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
rounds=${1:-4}; batches=${2:-1200}; interval=${3:-0}
base=${4:?usage: sidecar-rate.sh ROUNDS BATCHES INTERVAL_MS BASE_SIDECAR [NEW_SIDECAR]}
new=${5:-$BENCH_ROOT/build/sidecar/chat-sidecar}
dir=$OUT/sidecar-rate; rm -rf "$dir"; mkdir -p "$dir"

cpu() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

one() {     # one NAME SIDECAR
    local name=$1 sc=$2 port pid s0 s1 t0 t1 n i
    port=$(free_port)
    "$sc" --listen "127.0.0.1:$port" --ingest "ipc://$dir/$name.ipc" --ingest-peers any \
        --http-key-file "$SIDECAR_KEY_FILE" --mongo-uri mongodb://127.0.0.1:9/chat \
        --html-dir "$BENCH_ROOT/html" --log-level warn >> "$dir/$name.log" 2>&1 &
    pid=$!
    track "$pid" TERM
    wait_port "$port" "$pid" || { log "sidecar $sc did not start"; return 1; }
    s0=$(cpu "$pid"); t0=$(date +%s%N)
    "$(dirname "$sc")/send-test-batch" -u "ipc://$dir/$name.ipc" -n 128 -b "$batches" \
        -i "$interval" -e "GET /api/chat/groups" -p 4242 > /dev/null 2>&1 || { log "send-test-batch failed"; return 1; }
    t1=$(date +%s%N)
    for i in $(seq 100); do
        n=$(sidecar_json "$port" | jq -r .performance.total_requests 2>/dev/null)
        [ "$n" = $((batches * 128)) ] && break
        sleep 0.1
    done
    s1=$(cpu "$pid")
    stop_pid "$pid" TERM
    awk -v name="$name" -v n="${n:-0}" -v cpu=$((s1 - s0)) -v wall=$((t1 - t0)) -v la="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { printf "%s: %d records at %.0f/s, sidecar CPU %.3f µs/record (load %s)\n",
                 name, n, n / (wall / 1e9), n ? cpu / 1e3 / n : 0, la }'
}

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="base new"; else order="new base"; fi
    for v in $order; do
        if [ "$v" = base ]; then one base "$base" || exit 1; else one new "$new" || exit 1; fi
    done
done
