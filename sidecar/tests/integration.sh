#!/bin/bash
# integration.sh - the sidecar end to end, without nginx: a fake worker
# (send-test-batch) pushes batches over ipc, then the HTTP answers are
# checked with curl, jq and promtool (when installed).  With build/devdb
# present the database part runs against FerretDB, including a database
# stopped under the sidecar; without it, the database-down behaviour only.
#
#   tests/integration.sh [BIN_DIR]     (default ../build/sidecar)
#
# Everything started here is stopped by pid; ports are chosen by the kernel.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
bin=${1:-$root/build/sidecar}
tmp=$(mktemp -d /tmp/sidecar-it.XXXXXX)
ipc="ipc://$tmp/ingest.ipc"
pass=0 fail=0 sidecar_pid="" slow_pid="" db_started=""

cleanup() {
    [ -n "$sidecar_pid" ] && kill -TERM "$sidecar_pid" 2>/dev/null &&
        wait "$sidecar_pid" 2>/dev/null
    [ -n "$slow_pid" ] && kill -TERM "$slow_pid" 2>/dev/null &&
        wait "$slow_pid" 2>/dev/null
    [ -n "$db_started" ] && "$root/devdb/run-db.sh" stop "$tmp/db.pid" \
        >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

# the sidecar answers only requests carrying its key (nginx adds it); every
# curl here sends it, as nginx would, but the one that checks the refusal
(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key")
export SIDECAR_KEY
SIDECAR_KEY=$(cat "$tmp/key")
curl() { command curl -H "X-Sidecar-Key: $SIDECAR_KEY" "$@"; }
export -f curl

# start_sidecar LOG ARGS...: a sidecar on a free port, reading "$uri";
# sets started_pid and started_port, or exits with its log
start_sidecar() {
    local log=$1
    shift
    "$bin/chat-sidecar" --listen 127.0.0.1:0 --mongo-uri "$uri" \
        --http-key-file "$tmp/key" --html-dir "$tmp/html" "$@" >"$log" 2>&1 &
    started_pid=$!
    started_port=""
    for _ in $(seq 50); do
        started_port=$(grep -o 'port [0-9]*' "$log" | awk '{print $2}')
        [ -n "$started_port" ] && return 0
        sleep 0.1
    done
    cat "$log" >&2
    kill -TERM "$started_pid"
    exit 1
}

check() {   # check NAME COMMAND...
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        pass=$((pass + 1)); echo "ok    $name"
    else
        fail=$((fail + 1)); echo "FAIL  $name"
    fi
}

for tool in curl jq; do
    command -v $tool >/dev/null || { echo "integration: needs $tool" >&2; exit 1; }
done
[ -x "$bin/chat-sidecar" ] && [ -x "$bin/send-test-batch" ] ||
    { echo "integration: build first: make -C sidecar all tools" >&2; exit 1; }

# --- database: FerretDB when available, else an address that refuses -----
uri="mongodb://127.0.0.1:1/chat"
if [ -x "$root/build/devdb" ] && [ -x "$root/devdb/run-db.sh" ]; then
    if base=$("$root/devdb/run-db.sh" start "$tmp/db" 0 "$tmp/db.pid"); then
        db_started=1
        uri="${base%/}/chat"
        check "ping-db answers through mongo-c-driver" \
            "$bin/chat-sidecar" --ping-db --mongo-uri "$uri"
    fi
fi

mkdir -p "$tmp/html"
start_sidecar "$tmp/sidecar.log" --ingest "$ipc" --db-refresh 1 \
    --nginx-pid-file "$tmp/none.pid" --ingest-peers any
sidecar_pid=$started_pid
url=http://127.0.0.1:$started_port

check "refuses a non-loopback listen address" \
    bash -c "! '$bin/chat-sidecar' -t --listen 0.0.0.0:80"

# --- records -----------------------------------------------------------
S="$bin/send-test-batch -u $ipc"
$S -p 101 -s 1 -b 4 -n 100 -E 10 -d 30 -w g1 -w g1 -w g2 >/dev/null
$S -p 102 -s 2 -b 2 -n 50 -e "POST /api/chat/groups/1/messages" -d 1500 \
   -C message_broadcast -k group_id=g1 -k recipient_count=3 >/dev/null
$S -p 102 -s 2 -q 5 -n 2 -d 6000 -D 7 >/dev/null     # seq 3, 4 missing
$S -p 103 -s 3 -n 0 -S g1=4 >/dev/null               # snapshot
$S -p 104 -s 4 -r -n 125 -b 800 >/dev/null           # 100k random paths
# until every record is in and (with a database) one refresh is done
for _ in $(seq 200); do
    curl -s "$url/dashboard/api/data" >"$tmp/data.json"
    jq -e --arg db "$db_started" '.performance.total_requests >= 100502
        and .websockets.total_active_connections >= 16
        and (.custom_events|length) >= 1
        and ($db == "" or .database.refreshed_at != null)' \
        "$tmp/data.json" >/dev/null 2>&1 && break
    sleep 0.05
done
j() { jq -e "$1" "$tmp/data.json"; }

check "JSON has every spec key with the spec type" j '
 (.timestamp|test("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$")) and
 (.system|(.api_status|type)=="string"
   and (.uptime_formatted|type|IN("string","null"))
   and (.mongodb_status|type)=="string" and (.mongodb_healthy|type)=="boolean"
   and (.resources|type)=="object") and
 (.database|([.total_groups,.total_messages,.active_messages,.deleted_messages,
   .deletion_rate_percent,.avg_messages_per_group,.last_24h.new_groups,
   .last_24h.new_messages]|all(type=="number")) and (.top_active_groups|type)=="array") and
 (.websockets|([.total_active_connections,.groups_with_connections]|all(type=="number"))
   and (.connections_per_group|all((.group_id|type)=="string" and (.connection_count|type)=="number"))
   and (.recent_events|length<=20 and all(.event_type|IN("connected","disconnected")))) and
 (.performance|([.total_requests,.total_errors,.error_rate_percent,.average_response_time_ms,
   .requests_per_minute,.slow_requests_count,.very_slow_requests_count]|all(type=="number"))
   and (.recent_slow_requests|length<=10 and all((.very_slow|type)=="boolean"))) and
 (.endpoints|all((.endpoint|type)=="string" and ([.request_count,.error_count,
   .error_rate_percent,.avg_response_time_ms]|all(type=="number")))
   and ([.[].request_count]|. == (sort|reverse))) and
 (.recent_activity|([.recent_requests,.recent_errors]|all(length<=20 and
   all((.status_code|type)=="number" and (.correlation_id|type)=="string"))))'
check "every request record counted" j '.performance.total_requests == 100502'
check "slow and very slow" j '.performance.slow_requests_count == 100 and .performance.very_slow_requests_count == 2 and .performance.slow_requests_total == 102'
check "served = recorded + dropped" j '.pipeline.requests_served == .pipeline.requests_recorded + .pipeline.requests_dropped and .pipeline.requests_dropped == 7'
check "batch_seq gap detected" j '.pipeline.batch_seq_gaps == 1 and .pipeline.batches_missed == 2'
check "endpoint cap with one overflow row" j '(.endpoints|length) == 257 and ([.endpoints[]|select(.overflow)]|length) == 1 and .pipeline.endpoints_tracked == 256'
# worker 101 connects g1 twice and g2 once in each of its 4 batches (8 + 4),
# worker 103's snapshot says g1 = 4
check "WebSocket totals across workers" j '.websockets.total_active_connections == 16 and (.websockets.connections_per_group[0]|.group_id == "g1" and .connection_count == 12)'
check "custom event spread with numbers" j '.custom_events[0]|.event_type == "message_broadcast" and .recipient_count == 3 and .group_id == "g1"'
check "history and p95 added" j '(.history|length) >= 1 and (.endpoints[0].p95_response_time_ms|type) == "number"'
check "nginx gone: system figures degrade to null" j '.system.api_status == "down" and .system.uptime_seconds == null and .system.resources.process_memory_mb == null'
if [ -n "$db_started" ]; then
    check "database healthy and figures fresh" j '.system.mongodb_healthy and (.database.stale|not)'
fi

# --- a database of the previous shape: counted once, then read ------------
# (seeded without counters: the sidecar counts it once, unbounded by
# maxTimeMS, into "base"; later refreshes read only the counters)
if [ -n "$db_started" ]; then
    # a database of its own: the sidecar above counted "chat" once already
    # (empty), and messages added since without the module's mark are not
    # counted (they cannot be, by anything but the module)
    "$bin/seed" "$uri" chat_old 20 30000 >/dev/null 2>&1
    uri_main=$uri
    uri=${uri%/chat}/chat_old
    start_sidecar "$tmp/slow.log" --ingest "ipc://$tmp/slow.ipc" \
        --db-refresh 1 --db-timeout-ms 100
    slow_pid=$started_pid
    uri=$uri_main
    # until its first refresh is in (the count: a second or two; more under load)
    for _ in $(seq 300); do
        curl -s "http://127.0.0.1:$started_port/dashboard/api/data" >"$tmp/slow.json"
        jq -e '.database.refreshed_at != null and .database.total_messages > 0' \
            "$tmp/slow.json" >/dev/null 2>&1 && break
        sleep 0.1
    done
    sleep 1.5       # one more refresh: from "base" this time
    curl -s "http://127.0.0.1:$started_port/dashboard/api/data" >"$tmp/slow.json"
    curl -s "http://127.0.0.1:$started_port/metrics" >"$tmp/slow.prom"
    kill -TERM "$slow_pid"; wait "$slow_pid"
    slow_pid=""
    # the seed: 20 groups and 30,000 messages (2 % deleted)
    check "old database: the server is healthy and connected" \
        jq -e '.system.mongodb_healthy and .system.mongodb_status == "connected"' "$tmp/slow.json"
    jq -e '.database.total_messages == 30000' "$tmp/slow.json" >/dev/null ||
        { echo "old database: what the sidecar answered:"; jq -c .database "$tmp/slow.json"; tail -5 "$tmp/slow.log"; } >&2
    check "old database: counted once, exact" \
        jq -e '.database.total_groups == 20 and .database.total_messages == 30000 and .database.deleted_messages == 600 and .database.active_messages == 29400' "$tmp/slow.json"
    check "old database: top groups from the count" \
        jq -e '(.database.top_active_groups|length) == 10 and .database.top_active_groups[0].message_count == 1500 and (.database.top_active_groups[0].group_name|startswith("seed-group-"))' "$tmp/slow.json"
    check "old database: fresh, though a refresh may take only 100 ms" \
        jq -e '(.database.stale|not) and .database.refresh_duration_ms < 1000' "$tmp/slow.json"
    check "old database: the count is logged once" \
        test "$(grep -c 'db: counted once, 30000 messages read' "$tmp/slow.log")" = 1
    check "old database: Prometheus says fresh" \
        grep -q '^chat_db_stats_stale 0' "$tmp/slow.prom"
fi

# --- HTTP surface --------------------------------------------------------
check "health" bash -c "curl -sf '$url/health' | jq -e '.status == \"ok\"'"
for p in /health /dashboard /dashboard/api/data /metrics; do
    check "without the key: $p answers 403" bash -c \
        "test \$(command curl -s -o /dev/null -w '%{http_code}' '$url$p') = 403"
    check "a wrong key: $p answers 403" bash -c \
        "test \$(command curl -s -o /dev/null -w '%{http_code}' -H 'X-Sidecar-Key: x$SIDECAR_KEY' '$url$p') = 403"
done
check "a refused request is logged" \
    grep -q "http: refused GET /metrics: no X-Sidecar-Key" "$tmp/sidecar.log"
# what RFC 9110 allows in a field value (obs-text, HTAB) is served, and
# other control bytes too; what it forbids (NUL, a bare CR) gets a 400
# with the reason, never a silent close.  raw PORT FORMAT: the response.
raw() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf "$2" >&3
    timeout 5 cat <&3
    exec 3<&-
}
export -f raw
port=${url##*:}
for h in 'User-Agent: caf\303\251' 'User-Agent: a\tb' 'User-Agent: a\033b' \
         'User-Agent: a\001b' 'X-Via: \377\200'; do
    for p in /health /dashboard/api/data /metrics; do
        check "$h on $p: 200" bash -c "raw $port 'GET $p HTTP/1.1\r\nHost: x\r\nX-Sidecar-Key: $SIDECAR_KEY\r\n$h\r\nConnection: close\r\n\r\n' | head -1 | grep -q '^HTTP/1.1 200 '"
    done
done
check "a NUL in a header: 400 with the reason" bash -c \
    "raw $port 'GET /health HTTP/1.1\r\nX-A: a\\000b\r\n\r\n' | tr -d '\\000' | grep -q 'header line 1: a NUL byte'"
check "a bare CR in a header: 400 with the reason" bash -c \
    "raw $port 'GET /health HTTP/1.1\r\nX-A: a\rb\r\n\r\n' | grep -q 'a CR not followed by LF'"
check "a head over 16 KiB: 431" bash -c \
    "raw $port 'GET /health HTTP/1.1\r\nX-A: %020000d\r\n\r\n' | head -1 | grep -q '^HTTP/1.1 431 '"

check "405 with Allow" bash -c "curl -si -X POST '$url/metrics' | grep -q '^Allow: GET, HEAD'"
check "dashboard missing: 404" bash -c "test \$(curl -s -o /dev/null -w '%{http_code}' '$url/dashboard') = 404"
check "dashboard missing: says why" bash -c "curl -s '$url/dashboard' | grep -q 'not installed'"
echo '<html></html>' >"$tmp/html/dashboard.html"
check "dashboard page with CSP" bash -c "curl -si '$url/dashboard/' | grep -q \"^Content-Security-Policy: default-src 'none'\""
if command -v promtool >/dev/null; then
    check "promtool check metrics" bash -c "curl -s '$url/metrics' | promtool check metrics"
fi

# --- database down: answers at once, last figures kept ---------------------
if [ -n "$db_started" ]; then
    "$root/devdb/run-db.sh" stop "$tmp/db.pid" >/dev/null
    db_started=""
    sleep 2.5
fi
t=$(curl -s -o "$tmp/down.json" -w '%{time_total}' "$url/dashboard/api/data")
# the driver would wait 2 s to select a server: well under it means the
# request did not wait on the database
check "database down: answers within 1 s (server selection takes 2 s)" awk "BEGIN { exit !($t < 1) }"
check "database down: unhealthy and stale" \
    jq -e '(.system.mongodb_healthy|not) and .database.stale and (.system.mongodb_status|length) > 0' "$tmp/down.json"

kill -TERM "$sidecar_pid"
wait "$sidecar_pid"
rc=$?
sidecar_pid=""
check "SIGTERM: clean exit" test "$rc" -eq 0
check "SIGTERM: ipc socket removed" test ! -e "$tmp/ingest.ipc"

# --- who may push: --ingest-peers nginx (the default with a pid file) -----
# send-test-batch is a child of this shell: it passes as a "worker" while
# the pid file names this shell as the master, and is refused otherwise
echo $$ >"$tmp/master.pid"
start_sidecar "$tmp/peers.log" --ingest "$ipc" --nginx-pid-file "$tmp/master.pid"
sidecar_pid=$started_pid
url=http://127.0.0.1:$started_port
$S -p 201 -s 1 -n 5 >/dev/null
echo 1 >"$tmp/master.pid"           # now the pusher's parent is not nginx
$S -p 202 -s 1 -n 7 >/dev/null 2>&1    # gives up after 2 s
sleep 0.3
curl -s "$url/dashboard/api/data" >"$tmp/peers.json"
check "ingest from nginx only: by default with a pid file" \
    grep -q "ingest on $ipc from nginx's workers" "$tmp/peers.log"
check "ingest from nginx only: a child of the master is heard" \
    jq -e '.performance.total_requests == 5' "$tmp/peers.json"
check "ingest from nginx only: another process is refused and logged" \
    grep -q "ingest: refused a connection from pid [0-9]*: not a worker of the nginx in the pid file (1 refused so far)" "$tmp/peers.log"
check "--ingest-peers nginx over tcp: refused at start" \
    bash -c "! '$bin/chat-sidecar' -t --ingest tcp://127.0.0.1:9 --ingest-peers nginx --nginx-pid-file '$tmp/master.pid'"
kill -TERM "$sidecar_pid"
wait "$sidecar_pid"
sidecar_pid=""

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
