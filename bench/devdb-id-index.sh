#!/bin/bash
# bench/devdb-id-index.sh [DOCS] [LOOKUPS] - find({_id}) latency on the
# embedded database (build/devdb) without and with its _id index
# (devdb/README.md, "The _id index").  Defaults: 100000 documents, 200
# lookups, one connection.  About a minute on 2 cores.
#
#   1. devdb -id-index=false on an empty directory: seed DOCS documents,
#      time LOOKUPS lookups (FerretDB's own indexes only: SQLite scans);
#   2. devdb (default) on the same files: it indexes the collection at
#      start (the log line says how long), time the lookups again;
#   3. devdb (default) on an empty directory: seed again (the cost of
#      keeping one more index on inserts), time the lookups.
#
# WITH_ONLY=1 runs step 3 alone (e.g. at 1000000 documents, where step 1's
# lookups would take seconds each).
#
# Needs build/devdb (make devdb) and libmongoc-dev.  Data goes to a
# temporary directory, removed at the end; devdb is stopped by pid.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
docs=${1:-100000}
lookups=${2:-200}
devdb=${DEVDB_BIN:-$root/build/devdb}

[ -x "$devdb" ] || { echo "no $devdb: make devdb" >&2; exit 1; }
tmp=$(mktemp -d /tmp/devdb-id-index.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tool=$tmp/idlookup
# shellcheck disable=SC2046
cc -O2 -Wall -o "$tool" "$root/bench/tools/idlookup.c" \
    $(pkg-config --cflags --libs libmongoc-1.0) || exit 1

start() {   # start DATA [FLAGS...]: sets pid and uri
    local data=$1; shift
    rm -f "$tmp/ready"
    "$devdb" -listen 127.0.0.1:0 -data "$data" -ready-file "$tmp/ready" \
        -log-level error "$@" </dev/null >>"$data.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do
        [ -s "$tmp/ready" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$data.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -s "$tmp/ready" ] || { echo "devdb not ready" >&2; exit 1; }
    uri="mongodb://$(cat "$tmp/ready")/?serverSelectionTimeoutMS=5000"
}

stop() {
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=
}

run() {   # run LABEL ACTION N
    printf '%-28s ' "$1"
    # mongoc's "Couldn't send endSessions" warning (devdb/README.md) is
    # noise here; anything else on stderr is shown
    "$tool" "$uri" bench messages "$2" "$3" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    grep -v endSessions "$tmp/err" >&2
}

echo "devdb _id lookups: $docs documents, $lookups lookups, one connection"

if [ "${WITH_ONLY:-0}" != 1 ]; then
    start "$tmp/a" -id-index=false
    run "without the index: seed" seed "$docs"
    run "without the index: lookups" lookup "$lookups"
    stop

    start "$tmp/a"
    printf '%-28s %s\n' "restarted with the index:" \
        "$(grep -o 'indexed _id of bench.messages.*' "$tmp/a.log")"
    run "with the index: lookups" lookup "$lookups"
    stop
    rm -rf "$tmp/a"
fi

start "$tmp/b"
run "fresh, with the index: seed" seed "$docs"
run "fresh, with: lookups" lookup "$lookups"
grep -o 'indexed _id of bench.messages.*' "$tmp/b.log" |
    sed 's/^/                             /'
stop
