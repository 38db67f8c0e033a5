#!/bin/bash
# bench/tools/sidecar-rate.sh ROUNDS BATCHES INTERVAL_MS BASE_SIDECAR [NEW_SIDECAR]
# - the sidecar's CPU time per record, two builds alternating (medians are
# the reader's): each round starts a sidecar, pushes request records with
# send-test-batch (INTERVAL_MS between batches, 0: as fast as the sidecar
# takes them), and divides the run time of every sidecar thread
# (/proc/PID/task/*/schedstat) by the records it applied.  Each sidecar is
# fed by the send-test-batch built beside it (the wire format may differ
# between builds).  NEW_SIDECAR defaults to this tree's build.
# Records per batch: BASE_RECORDS (default 128) and NEW_RECORDS (default
# 128; up to 1024 from wire version 5); BATCHES is the base's count, the
# new build gets as many records in all.  NEW_INTERVAL_MS (default
# INTERVAL_MS) paces the new build's batches, e.g. 1024 records every 6 ms
# against 128 every 1 ms.  Each line gives the rate reached.
# Loopback and ipc only; processes stopped by pid.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
rounds=${1:-4}; batches=${2:-1200}; interval=${3:-0}
base=${4:?usage: sidecar-rate.sh ROUNDS BATCHES INTERVAL_MS BASE_SIDECAR [NEW_SIDECAR]}
new=${5:-$BENCH_ROOT/build/sidecar/chat-sidecar}
base_rec=${BASE_RECORDS:-128}; new_rec=${NEW_RECORDS:-128}; new_ivl=${NEW_INTERVAL_MS:-$interval}
dir=$OUT/sidecar-rate; rm -rf "$dir"; mkdir -p "$dir"

cpu() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

one() {     # one NAME SIDECAR RECORDS_PER_BATCH INTERVAL_MS
    local name=$1 sc=$2 nrec=$3 ivl=$4 nb port pid s0 s1 t0 t1 n i
    nb=$(( batches * base_rec / nrec ))
    port=$(free_port)
    "$sc" --listen "127.0.0.1:$port" --ingest "ipc://$dir/$name.ipc" --ingest-peers any \
        --http-key-file "$SIDECAR_KEY_FILE" --mongo-uri mongodb://127.0.0.1:9/chat \
        --html-dir "$BENCH_ROOT/html" --log-level warn >> "$dir/$name.log" 2>&1 &
    pid=$!
    track "$pid" TERM
    wait_port "$port" "$pid" || { log "sidecar $sc did not start"; return 1; }
    s0=$(cpu "$pid"); t0=$(date +%s%N)
    "$(dirname "$sc")/send-test-batch" -u "ipc://$dir/$name.ipc" -n "$nrec" -b "$nb" \
        -i "$ivl" -e "GET /api/chat/groups" -p 4242 > /dev/null 2>&1 || { log "send-test-batch failed"; return 1; }
    t1=$(date +%s%N)
    for i in $(seq 100); do
        n=$(sidecar_json "$port" | jq -r .performance.total_requests 2>/dev/null)
        [ "$n" = $((nb * nrec)) ] && break
        sleep 0.1
    done
    s1=$(cpu "$pid")
    stop_pid "$pid" TERM
    awk -v name="$name" -v n="${n:-0}" -v cpu=$((s1 - s0)) -v wall=$((t1 - t0)) -v la="$(cut -d' ' -f1 /proc/loadavg)" \
        -v nrec="$nrec" 'BEGIN { printf "%s: %d records (%d a batch) at %.0f/s, sidecar CPU %.3f µs/record (load %s)\n",
                 name, n, nrec, n / (wall / 1e9), n ? cpu / 1e3 / n : 0, la }'
}

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="base new"; else order="new base"; fi
    for v in $order; do
        if [ "$v" = base ]; then one base "$base" "$base_rec" "$interval" || exit 1
        else one new "$new" "$new_rec" "$new_ivl" || exit 1; fi
    done
done
