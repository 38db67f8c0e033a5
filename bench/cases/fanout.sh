#!/bin/bash
# Target 6: WebSocket fan-out, the chat module against nchan, same client
# (bench/tools/wsbench.c), 2 workers each, worker_connections 16384.
#   one:   1,000 subscribers on one group, 100 msg/s, then rising rates
#          until a step loses a message (or the publisher cannot keep up)
#   many:  1,000 subscribers over 100 groups (10 each), the same
#   post:  POST response time at 20 msg/s with 0, 1,000, 5,000 subscribers
#          on one group
# Per step: delivered/expected, delivery latency (POST written -> frame
# read), POST response time, nginx CPU (all worker threads) per delivery
# and per publish; per connect: worker RSS before and after (idle).
# FANOUT_PARTS (default "chat nchan", + compare with BEFORE_MODULE; run in
# the order given): chat, nchan, floor (bench/tools/sendfloor.c, the
# kernel's floor: 2 processes that do nothing but the sends, driven by the
# same wsbench in the one-100 and many-100 shapes, as floor (send()),
# floor-uring and floor-uring-fixed (io_uring, one enter per 256 sends),
# FLOOR_ROUNDS rounds, the variants' order alternating), compare.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
case=fanout
dir=$OUT/$case; rm -rf "$dir"; mkdir -p "$dir"
RESULTS_JSONL=$dir/results.jsonl
ws_round=

step=$(q 3 5); base=$(q 3 10)
rates=$(q "400" "200,400,800,1600,3200")
bigsubs=$(q 1000 5000)

run_ws() {      # run_ws SYSTEM SCENARIO ARGS... -> JSON lines tagged
    local sys=$1 sc=$2; shift 2
    "$BIN/wsbench" "$@" 2> "$dir/wsbench-$sys-$sc.err" |
    while read -r line; do
        emit "{\"case\":\"$case\",\"system\":\"$sys\",\"scenario\":\"$sc\",${ws_round:+\"round\":$ws_round,}\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),${line#\{}"
        log "  $sys $sc: $(echo "$line" | jq -c '{phase, rate, open, delivered_ratio, lat_p50_ms, lat_p99_ms, post_p50_ms, post_p99_ms, hold_p99_ms, fanout_p99_ms, cpu_us_per_delivery, cpu_us_per_publish}')"
    done
}

scenarios() {   # scenarios SYSTEM PORT GROUPS_FILE PIDS [-t TOKEN]
    local sys=$1 port=$2 gf=$3 pids=$4; shift 4
    # first, on the fresh server: memory of idle subscribers
    run_ws "$sys" "idle-$bigsubs" -p "$port" -g "$gf" -G 100 -n "$bigsubs" "$@" -P "$pids" -i 3
    # the publish alone (no subscriber) at 100/s: for chat, the database write
    run_ws "$sys" post0-100 -p "$port" -g "$gf" -G 100 -n 0 "$@" -r 100 -d "$base" -P "$pids"
    run_ws "$sys" many-100 -p "$port" -g "$gf" -G 100 -n 1000 "$@" -r 100 -d "$base" -P "$pids" -i 1
    run_ws "$sys" one-100 -p "$port" -g "$gf" -G 1 -n 1000 "$@" -r 100 -d "$base" -P "$pids" -i 1
    # POST response time against subscribers: a low rate, so that the
    # machine is not saturated and only the POST's own path is measured;
    # 8 publisher connections used in turn, so that POSTs reach both
    # workers (the one holding more of the group's subscribers, too)
    for n in 0 $(q "" 1000) "$bigsubs"; do
        run_ws "$sys" "post-$n" -p "$port" -g "$gf" -G 1 -n "$n" "$@" -r 5 -d "$base" -c 8 -P "$pids" -i 1
    done
    # last, the rising rates that end in overload
    [ "$QUICK" = 1 ] || run_ws "$sys" many-max -p "$port" -g "$gf" -G 100 -n 1000 "$@" -r "$rates" -d "$step" -c 32 -P "$pids"
    run_ws "$sys" one-max -p "$port" -g "$gf" -G 1 -n 1000 "$@" -r "$rates" -d "$step" -c 32 -P "$pids"
}

parts=" ${FANOUT_PARTS:-chat nchan${BEFORE_MODULE:+ compare}} "

# --- compare: the module before and now, same run --------------------------
compare_round() {   # compare_round SYSTEM ROUND - a fresh stack under $dir/cmp-*
    local sys=$1 r=$2 top=$dir
    dir=$top/cmp-$sys-$r; mkdir -p "$dir"
    if [ "$sys" = chat-before ]; then
        export EXAMPLE_MODULE=ngx_chat_module.before.so
        [ -f "$(dirname "$BEFORE_MODULE")/../nginx.conf.example" ] &&
            export EXAMPLE_CONF=$(dirname "$BEFORE_MODULE")/../nginx.conf.example
    fi
    start_example_stack "$dir/db" 16384 &&
    create_groups "$port" "$token" 100 "$dir/groups" || { dir=$top; return 1; }
    unset EXAMPLE_MODULE EXAMPLE_CONF
    run_ws "$sys" "cmp-many-100-r$r" -p "$port" -g "$dir/groups" -G 100 -n 1000 -t "$token" -r 100 -d "$base" -P "$w" -i 1
    run_ws "$sys" "cmp-one-100-r$r" -p "$port" -g "$dir/groups" -G 1 -n 1000 -t "$token" -r 100 -d "$base" -P "$w" -i 1
    stop_nginx "$m"; stop_pid "$spid"; stop_db "$dir/db"
    dir=$top
}
if [[ "$parts" == *" compare "* ]]; then
    [ -f "${BEFORE_MODULE:-}" ] || { log "BEFORE_MODULE: no such file"; exit 1; }
    cp "$BEFORE_MODULE" "$BIN/ngx_chat_module.before.so" || exit 1
    emit "{\"case\":\"$case\",\"kind\":\"compare\",\"before_sha256\":\"$(sha256sum "$BIN/ngx_chat_module.before.so" | cut -c1-12)\",\"now_sha256\":\"$(sha256sum "$BIN/ngx_chat_module.so" | cut -c1-12)\"}"
    for r in $(seq "${CMP_ROUNDS:-$(q 1 3)}"); do
        if [ $((r % 2)) = 1 ]; then
            compare_round chat-before "$r" || exit 1; compare_round chat "$r" || exit 1
        else
            compare_round chat "$r" || exit 1; compare_round chat-before "$r" || exit 1
        fi
    done
fi
# --- the chat module -------------------------------------------------------
part_chat() {
    start_example_stack "$dir/db" 16384 || return 1
    create_groups "$port" "$token" 100 "$dir/groups" || return 1
    scenarios chat "$port" "$dir/groups" "$w" -t "$token"
    stop_nginx "$m"
    stop_pid "$spid"
    stop_db "$dir/db"
}

# --- nchan -----------------------------------------------------------------
part_nchan() {
    port=$(free_port)
    mkdir -p "$dir/nchan/logs" "$dir/nchan/tmp"
    sed -e "s|@PREFIX@|$dir/nchan|g" -e "s|@PORT@|$port|g" -e "s|@WORKER_CONNECTIONS@|16384|g" \
        "$BENCH_DIR/conf/nchan.conf.in" > "$dir/nchan.conf"
    m=$(start_nginx "$dir/nchan.conf" "$dir/nchan") || return 1
    w=$(worker_pids "$m")
    for i in $(seq 100); do echo "ch$i"; done > "$dir/channels"
    scenarios nchan "$port" "$dir/channels" "$w" -m nchan
    stop_nginx "$m"
}

# --- the floor: no server code but the sends (bench/tools/sendfloor.c) ----
# the same wsbench, the same shapes; CPU = both sender processes
floor_round() {     # floor_round SYSTEM ROUND
    local sys=$1 r=$2 fp fw flags=""
    case $sys in floor-uring) flags=-u ;; floor-uring-fixed) flags="-u -F" ;; esac
    port=$(free_port)
    "$BIN/sendfloor" -p "$port" -w 2 -s "${FLOOR_FRAME:-212}" $flags 2>> "$dir/sendfloor-$sys.err" &
    fp=$!
    track "$fp" TERM
    wait_port "$port" "$fp" || { log "sendfloor did not start"; cat "$dir/sendfloor-$sys.err" >&2; return 1; }
    for i in $(seq 50); do fw=$(worker_pids "$fp"); [ "$(echo "$fw" | tr ',' ' ' | wc -w)" = 2 ] && break; sleep 0.05; done
    ws_round=$r
    run_ws "$sys" many-100 -p "$port" -g "$dir/floor-groups" -G 100 -n 1000 -r 100 -d "$base" -P "$fw" -i 1
    run_ws "$sys" one-100 -p "$port" -g "$dir/floor-groups" -G 1 -n 1000 -r 100 -d "$base" -P "$fw" -i 1
    ws_round=
    stop_pid "$fp" TERM
    tail -2 "$dir/sendfloor-$sys.err" | sed "s/^/  $sys r$r exit: /" >&2
}
part_floor() {
    local r v vs="floor floor-uring floor-uring-fixed"
    for i in $(seq 100); do echo "floorgroup$i"; done > "$dir/floor-groups"
    for r in $(seq "${FLOOR_ROUNDS:-$(q 2 3)}"); do
        [ $((r % 2)) = 0 ] && vs=$(echo "$vs" | tr ' ' '\n' | tac | paste -sd' ')
        for v in $vs; do floor_round "$v" "$r" || return 1; done
    done
}

for p in $parts; do
    case $p in
    chat) part_chat || exit 1 ;;
    nchan) part_nchan || exit 1 ;;
    floor) part_floor || exit 1 ;;
    compare) ;;
    *) log "FANOUT_PARTS: no such part: $p"; exit 1 ;;
    esac
done
