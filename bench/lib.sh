# bench/lib.sh - helpers for the benchmark scripts (sourced, bash).
#
# Every process a benchmark starts is recorded by pid in $BENCH_PIDFILE and
# stopped by pid (bench_cleanup, also on EXIT); nothing is ever killed by
# name.  All traffic goes to 127.0.0.1.

set -uo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$BENCH_ROOT/bench
OUT=${BENCH_OUT:-$BENCH_DIR/out}
BIN=$OUT/bin
NGINX=${NGINX:-/usr/sbin/nginx}
QUICK=${QUICK:-0}

# pids are kept in a file, since most starts run in $(...) subshells
BENCH_PIDFILE=${BENCH_PIDFILE:-$(mktemp /tmp/bench-pids.XXXXXX)}
export BENCH_PIDFILE
track() { echo "$1 $2" >> "$BENCH_PIDFILE"; }    # track PID SIGNAL

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

q() {   # q QUICK_VALUE FULL_VALUE
    if [ "$QUICK" = 1 ]; then echo "$1"; else echo "$2"; fi
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

wait_port() {   # wait_port PORT [PID] - until something accepts on it
    local port=$1 pid=${2:-} i
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.05
    done
    return 1
}

# --- nginx ------------------------------------------------------------------

# start_nginx CONF PREFIX -> master pid on stdout; daemon off, so the
# master is our child and its pid is known without reading a pid file
start_nginx() {
    local conf=$1 prefix=$2 port
    mkdir -p "$prefix/logs" "$prefix/tmp"
    "$NGINX" -p "$prefix" -c "$conf" -t -q || { log "nginx -t failed: $conf"; return 1; }
    "$NGINX" -p "$prefix" -c "$conf" -g 'daemon off;' \
        >>"$prefix/logs/stdout.log" 2>&1 &
    local pid=$!
    track "$pid" QUIT
    port=$(sed -n 's/.*listen *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$conf" | head -1)
    if ! wait_port "$port" "$pid"; then
        log "nginx did not start: $conf"; tail -5 "$prefix/logs/error.log" >&2
        return 1
    fi
    # workers forked and initialised (nng sockets, thread pools)
    local i
    for i in $(seq 100); do
        [ -n "$(worker_pids "$pid")" ] && break
        sleep 0.05
    done
    sleep 0.3
    echo "$pid"
}

worker_pids() {     # children of the master, comma-separated
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | paste -sd, -
}

stop_pid() {    # stop_pid PID [SIGNAL] - signal, wait up to 10 s, then KILL
    local pid=$1 sig=${2:-TERM} i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

stop_nginx() { stop_pid "$1" QUIT; }

# --- sidecar and database ---------------------------------------------------

# the key nginx adds for the sidecar (X-Sidecar-Key, docs/SECURITY.md): one
# per benchmark run; example_conf puts it in nginx.conf, and a direct
# request (sidecar_json, the scrape case's "direct" polls) sends it too
SIDECAR_KEY_FILE=${SIDECAR_KEY_FILE:-$BENCH_PIDFILE.key}
[ -s "$SIDECAR_KEY_FILE" ] || (umask 077; openssl rand -hex 24 > "$SIDECAR_KEY_FILE")
SIDECAR_KEY=$(cat "$SIDECAR_KEY_FILE")
SIDECAR_KEY_HEADER="X-Sidecar-Key: $SIDECAR_KEY"
export SIDECAR_KEY_FILE

# start_sidecar DIR INGEST_URL MONGO_URI [NGINX_PID_FILE] -> "pid port"
start_sidecar() {
    local dir=$1 ingest=$2 mongo=$3 pidfile=${4:-} port
    mkdir -p "$dir"
    port=$(free_port)
    "$BIN/chat-sidecar" --listen "127.0.0.1:$port" --ingest "$ingest" \
        --http-key-file "$SIDECAR_KEY_FILE" \
        --mongo-uri "$mongo" ${pidfile:+--nginx-pid-file "$pidfile"} \
        --html-dir "$BENCH_ROOT/html" --log-level warn ${SIDECAR_EXTRA:-} \
        >>"$dir/sidecar.log" 2>&1 &
    local pid=$!
    track "$pid" TERM
    wait_port "$port" "$pid" || { log "sidecar did not start"; tail -5 "$dir/sidecar.log" >&2; return 1; }
    echo "$pid $port"
}

# start_db DATA_DIR -> URI (pid file DATA_DIR.pid)
start_db() {
    local data=$1
    mkdir -p "$(dirname "$data")"
    "$BENCH_ROOT/devdb/run-db.sh" start "$data" 0 "$data.pid"
}

stop_db() { "$BENCH_ROOT/devdb/run-db.sh" stop "$1.pid" >/dev/null 2>&1 || true; }

# seed_log URI GROUPS MESSAGES GROUPS_FILE: MESSAGES messages in GROUPS
# groups seeded into database "bench" of the running database at URI with
# bench/tools/seedlog.c (the event log's layout; built into $BIN first),
# the groups' ids written to GROUPS_FILE, one a line.  Sets seed_s to the
# seeding's wall time in seconds (bc: ".5" under a second).  Not to be run
# in $(...): seedlog's summary line goes to the caller's stdout.
seed_log() {
    local uri=$1 groups=$2 msgs=$3 groups_file=$4 t0
    # shellcheck disable=SC2046
    cc -O2 -Wall -o "$BIN/seedlog" "$BENCH_DIR/tools/seedlog.c" $(pkg-config --cflags --libs libmongoc-1.0) || return 1
    t0=$(date +%s.%N)
    "$BIN/seedlog" "${uri%/}/?serverSelectionTimeoutMS=10000" bench "$groups" "$msgs" "$groups_file" \
        2> >(grep -v endSessions >&2) || return 1
    seed_s=$(echo "$(date +%s.%N) - $t0" | bc)
}

# --- measurements -----------------------------------------------------------

cpu_ns() {      # cpu_ns PID[,PID...] - run time of every thread, ns
    local p t total=0 v
    for p in ${1//,/ }; do
        for t in /proc/"$p"/task/*/schedstat; do
            [ -r "$t" ] || continue
            read -r v _ < "$t" 2>/dev/null || continue
            total=$((total + v))
        done
    done
    echo "$total"
}

sched_main() {  # sched_main PID[,PID...] - "run_ns wait_ns slices" of the main
    local p r=0 wt=0 n=0 a b c      # threads (the event loops) summed
    for p in ${1//,/ }; do
        read -r a b c < /proc/"$p"/schedstat 2>/dev/null || continue
        r=$((r + a)); wt=$((wt + b)); n=$((n + c))
    done
    echo "$r $wt $n"
}

rss_kb() {      # rss_kb PID[,PID...] - summed VmRSS
    local p total=0 v
    for p in ${1//,/ }; do
        v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# --- configurations ---------------------------------------------------------

# example_conf PREFIX PORT MONGO_URI INGEST SIDECAR_PORT HTPASSWD JWT_FILE
# nginx.conf.example (or $EXAMPLE_CONF, loading $BIN/$EXAMPLE_MODULE: the
# fan-out case's code before) with its placeholders replaced (as scripts/run.sh
# does), plus benchmark locations inserted before "location = / {":
#   /bench/static   a small static file
#   /bench/return   return 200
#   /bench/stub     stub_status, not recorded, not logged
example_conf() {
    local prefix=$1 port=$2 mongo=$3 ingest=$4 sport=$5 htpasswd=$6 jwt=$7
    mkdir -p "$prefix/html/bench" "$prefix/logs" "$prefix/tmp"
    echo "ok" > "$prefix/html/bench/static"
    sed -e "s|@MODULE@|$BIN/${EXAMPLE_MODULE:-ngx_chat_module.so}|g" \
        -e "s|@PREFIX@|$prefix|g" \
        -e "s|@PORT@|$port|g" \
        -e "s|@MONGO_URI@|$mongo|g" \
        -e "s|@JWT_SECRET_FILE@|$jwt|g" \
        -e "s|@METRICS_ADDRESS@|$ingest|g" \
        -e "s|@SIDECAR@|127.0.0.1:$sport|g" \
        -e "s|@SIDECAR_KEY@|$SIDECAR_KEY|g" \
        -e "s|@HTPASSWD@|$htpasswd|g" \
        -e "s|@SCRAPE_TOKEN_FILE@|${htpasswd%/*}/scrape-token|g" \
        "${EXAMPLE_CONF:-$BENCH_ROOT/nginx.conf.example}" |
    awk -v prefix="$prefix" '
        /^ *location = \/ \{/ && !done {
            print "        # --- added by bench/lib.sh ---"
            print "        location = /bench/static { root " prefix "/html; }"
            print "        location = /bench/return { return 200 \"ok\\n\"; }"
            print "        location = /bench/stub {"
            print "            stub_status; chat_metrics off; access_log off;"
            print "            allow 127.0.0.1; deny all;"
            print "        }"
            done = 1
        }
        { print }'
}

# secrets for the example configuration: JWT secret, htpasswd (bcrypt, as
# scripts/run.sh makes it), a token, the Basic credentials
make_secrets() {    # make_secrets DIR
    local dir=$1
    mkdir -p "$dir"
    [ -s "$dir/jwt-secret" ] || (umask 077; openssl rand -hex 32 > "$dir/jwt-secret")
    chmod 644 "$dir/jwt-secret"
    htpasswd -cbB "$dir/htpasswd" admin benchpass 2>/dev/null
    chmod 644 "$dir/htpasswd"
    CHAT_JWT_SECRET_FILE=$dir/jwt-secret "$BENCH_ROOT/scripts/mint-jwt.sh" bench 86400 > "$dir/token"
    printf 'Authorization: Basic %s' "$(printf 'admin:benchpass' | base64 -w0)" > "$dir/basic"
    # the machines' credential of /metrics and /dashboard/api/data
    # (nginx.conf.example's @SCRAPE_TOKEN_FILE@, chat_bearer_token_file)
    [ -s "$dir/scrape-token" ] || (umask 077; openssl rand -hex 32 > "$dir/scrape-token")
    printf 'Authorization: Bearer %s' "$(cat "$dir/scrape-token")" > "$dir/bearer"
}

# create_groups PORT TOKEN N FILE - N groups through the API, ids in FILE
create_groups() {
    local port=$1 token=$2 n=$3 file=$4 i
    : > "$file"
    for i in $(seq "$n"); do
        curl -sf -X POST -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/json' \
            -d "{\"name\":\"bench-$i\"}" \
            "http://127.0.0.1:$port/api/chat/groups" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("id") or d.get("_id") or d["group"]["id"])' >> "$file" ||
        { log "group creation failed"; return 1; }
    done
}

# start_example_stack DB_DATA [WORKER_CONNECTIONS]: the stack as deployed
# under $dir: devdb (data in DB_DATA), secrets, sidecar (SIDECAR_EXTRA
# applies) and nginx from nginx.conf.example; stopped at exit.  Sets uri
# mongo dbpid token ingest spid sport port m w.  EXAMPLE_DB: the database
# name (default chat; bench for data seeded by bench/tools/seedlog.c).
start_example_stack() {
    local data=$1 wc=${2:-}
    uri=$(start_db "$data") || return 1
    dbpid=$(cat "$data.pid")
    trap "bench_cleanup; stop_db '$data'" EXIT
    mongo="${uri%/}/${EXAMPLE_DB:-chat}"
    make_secrets "$dir/sec"
    token=$(cat "$dir/sec/token")
    ingest="ipc://$dir/metrics.ipc"
    read -r spid sport < <(start_sidecar "$dir/sidecar" "$ingest" "$mongo" "$dir/ngx/logs/nginx.pid") || return 1
    port=$(free_port)
    example_conf "$dir/ngx" "$port" "$mongo" "$ingest" "$sport" "$dir/sec/htpasswd" "$dir/sec/jwt-secret" |
        sed -e "${wc:+s/worker_connections  4096;/worker_connections  $wc;/}" \
            -e '/^ *limit_req  *zone=/d' -e '/^ *limit_conn  *chat_user_conn/d' \
            -e 's/chat_ws_message_rate  20;/chat_ws_message_rate  off;/' > "$dir/nginx.conf"
    m=$(start_nginx "$dir/nginx.conf" "$dir/ngx") || return 1
    w=$(worker_pids "$m")
}

sidecar_json() {    # sidecar_json PORT
    curl -sf -H "$SIDECAR_KEY_HEADER" "http://127.0.0.1:$1/dashboard/api/data"
}

# --- cleanup ----------------------------------------------------------------

bench_cleanup() {
    local pid sig
    [ -f "$BENCH_PIDFILE" ] || return 0
    tac "$BENCH_PIDFILE" | while read -r pid sig; do
        stop_pid "$pid" "$sig"
    done
    rm -f "$BENCH_PIDFILE" "$SIDECAR_KEY_FILE"
}

emit() {    # emit JSON - one result line for the report
    echo "$1" >> "$RESULTS_JSONL"
}

# --- targets 1 and 2: micro configurations, wrk, callgrind -----------------

# micro_conf PREFIX PORT VARIANT [ENDPOINT_URI] - A: no module; B: metrics on
# (the defaults: X-Correlation-ID on every response; up to 2026-12-07 the
# traceparent too, now behind chat_traceparent_response); C: the
# module in use with metrics off (correlation ID, request context, response
# headers); D: as B with "chat_correlation_response off" (IDs recorded, no
# response headers); V: nginx-module-vts ($VTS_SO, one key) instead
micro_conf() {
    local prefix=$1 port=$2 variant=$3 per_uri=${4:-0} load="" chat="" loc=""
    mkdir -p "$prefix/logs" "$prefix/tmp"
    case $variant in
    C|E)
        # "chat_correlation_header" alone puts the module to work on every
        # request without recording: the cost of its request context and
        # correlation ID apart from the recording's (the module loaded and
        # configured for nothing leaves requests alone); E: without the
        # response headers (what D is to B)
        load="load_module $BIN/${MICRO_MODULE:-ngx_chat_module.so};"
        chat="chat_correlation_header X-Correlation-ID;"
        [ "$variant" = E ] && chat="$chat chat_correlation_response off;"
        ;;
    B|D)
        load="load_module $BIN/${MICRO_MODULE:-ngx_chat_module.so};"
        chat="chat_metrics on; chat_metrics_address $MICRO_INGEST; chat_metrics_flush_interval 100ms;"
        [ "$variant" = D ] && chat="$chat chat_correlation_response off;"
        [ "$per_uri" = 1 ] && loc="chat_metrics_endpoint \$uri;"
        ;;
    V)
        load="load_module $VTS_SO;"
        chat="vhost_traffic_status_zone;"
        [ "$per_uri" = 1 ] && loc="vhost_traffic_status_filter_by_set_key \$uri uris::\$server_name;"
        ;;
    esac
    sed -e "s|@LOAD@|$load|" -e "s|@CHAT@|$chat|" -e "s|@LOC@|$loc|" -e "s|@PREFIX@|$prefix|g" \
        -e "s|@PORT@|$port|g" "$BENCH_DIR/conf/micro.conf.in" > "$prefix/nginx.conf"
    echo "$prefix/nginx.conf"
}

# build_vts -> VTS_SO: nginx-module-vts from the source tree in $VTS_SRC
# (the user's; never part of this project), built as a dynamic module
# against the same nginx sources and configure flags as the chat module,
# in $OUT/vts-build.  Unset VTS_SRC: VTS_SO stays empty, returns 1.
build_vts() {
    VTS_SO=""
    [ -n "${VTS_SRC:-}" ] || return 1
    [ -f "$VTS_SRC/config" ] || { log "VTS_SRC=$VTS_SRC: no nginx module there (no config file)"; return 1; }
    local src=${NGX_SRC:-/usr/share/nginx/src} b=$OUT/vts-build
    rm -rf "$b" && mkdir -p "$OUT" && cp -r "$src" "$b" || return 1
    ( cd "$b" && . ./conf_flags && \
        ./configure "${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$(cd "$VTS_SRC" && pwd)" \
            > configure.log 2>&1 && make -s -f objs/Makefile modules > make.log 2>&1 ) ||
        { log "building nginx-module-vts failed: see $b/configure.log, $b/make.log"; return 1; }
    cp "$b/objs/ngx_http_vhost_traffic_status_module.so" "$BIN/" || return 1
    VTS_SO=$BIN/ngx_http_vhost_traffic_status_module.so
    log "nginx-module-vts $(git -C "$VTS_SRC" describe --always --tags 2>/dev/null || echo '(not a git tree)') built: $VTS_SO"
    return 0
}

# run_wrk OUTFILE ARGS... -> the WRKJSON object on stdout
run_wrk() {
    local out=$1; shift
    BENCH_LUA=$BENCH_DIR/lua wrk "$@" > "$out" 2>&1
    sed -n 's/^WRKJSON //p' "$out" | tail -1
}

# one wrk round against a fresh nginx; emits a JSON result line
# wrk_round CASE VARIANT ROUND CONF PREFIX PORT EXTRA_JSON WRK_ARGS...
wrk_round() {
    local case=$1 variant=$2 round=$3 conf=$4 prefix=$5 port=$6 extra=$7
    shift 7
    local m w c0 c1 j
    m=$(start_nginx "$conf" "$prefix") || return 1
    w=$(worker_pids "$m")
    run_wrk "$prefix/warmup.txt" -t1 -c32 -d1s -s "$BENCH_DIR/lua/plain.lua" \
        "http://127.0.0.1:$port/" > /dev/null
    c0=$(cpu_ns "$w")
    j=$(run_wrk "$prefix/wrk-$round.txt" "$@")
    c1=$(cpu_ns "$w")
    stop_nginx "$m"
    [ -n "$j" ] || { log "wrk gave no result"; cat "$prefix/wrk-$round.txt" >&2; return 1; }
    emit "{\"case\":\"$case\",\"variant\":\"$variant\",\"round\":$round,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"worker_cpu_ns\":$((c1 - c0)),$extra\"wrk\":$j}"
    log "  $case $variant round $round: $(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f req/s p99 %d us" % (d["requests"]/(d["duration_us"]/1e6), d["p99_us"]))')"
}

# callgrind_run CASE VARIANT N DISTINCT PER_URI [LABEL] - nginx as one
# process under callgrind, N sequential keep-alive requests; emits the
# instruction totals (as variant LABEL, default VARIANT; $MICRO_MODULE: the
# module loaded)
callgrind_run() {
    local case=$1 variant=$2 n=$3 distinct=$4 per_uri=$5 label=${6:-$2}
    local dir=$OUT/$case/cg-$label-$n port conf pid
    rm -rf "$dir"; mkdir -p "$dir"
    port=$(free_port)
    conf=$(micro_conf "$dir" "$port" "$variant" "$per_uri")
    valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$dir/callgrind.out.%p" \
        "$NGINX" -p "$dir" -c "$conf" -g 'daemon off; master_process off;' \
        > "$dir/valgrind.log" 2>&1 &
    pid=$!
    track "$pid" QUIT
    wait_port "$port" "$pid" || { log "nginx under callgrind did not start"; return 1; }
    sleep 1
    local path=/ dargs=()
    [ "$distinct" -gt 0 ] && { path=/r/; dargs=(-D "$distinct"); }
    "$BIN/hreq" -p "$port" -n "$n" -u "$path" "${dargs[@]}" > "$dir/hreq.json"
    sleep 0.5     # let the flush timer fire
    stop_pid "$pid" QUIT
    # totals of every thread; the first file (-01) is nginx's own thread
    local total main
    total=$(for f in "$dir"/callgrind.out.*; do awk '/^(summary|totals):/ {print $2; exit}' "$f"; done | awk '{s += $1} END {print s+0}')
    main=$(awk '/^(summary|totals):/ {print $2; exit}' "$(ls "$dir"/callgrind.out.*-01 | head -1)")
    emit "{\"case\":\"$case\",\"kind\":\"callgrind\",\"variant\":\"$label\",\"n\":$n,\"distinct\":$distinct,\"per_uri\":$per_uri,\"ir_total\":$total,\"ir_main\":${main:-0},\"threads\":$(ls "$dir"/callgrind.out.* | wc -l),\"hreq\":$(cat "$dir/hreq.json")}"
    log "  callgrind $label n=$n distinct=$distinct: total $total main $main"
}
