#!/bin/bash
# test.sh [all|nginx|FILE.t...] - run the test suites (called by `make test`).
#
#   1. the bundled harness's self-tests (t/harness/t), unless only files
#      were named;
#   2. the Test::Nginx suite (t/*.t, which includes the sidecar's C unit
#      tests through t/00-sidecar-unit.t), against the real nginx, the
#      module, the sidecar and a database.
#
# The database: the embedded FerretDB (build/devdb), started once for the
# run in a throwaway directory and stopped by pid at the end; or, when
# MONGO_URI is set, that server (each run uses its own database name).
#
# An installed Test::Nginx is used when present, the bundled clean-room
# one (t/harness) otherwise.  Exit status is non-zero if anything failed.
set -uo pipefail

cd "$(dirname "$0")/.."
root=$PWD

what=${1:-all}
files=()
if [ $# -gt 0 ] && [ "$1" != all ] && [ "$1" != nginx ]; then
    files=("$@")
    what=files
fi

status=0

scratch=$(mktemp -d /tmp/chat-test.XXXXXX)
db_pid_file=$scratch/devdb.pid

cleanup() {
    if [ -s "$db_pid_file" ]; then
        devdb/run-db.sh stop "$db_pid_file" >/dev/null 2>&1
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if perl -MTest::Nginx::Socket -e1 2>/dev/null; then
    harness_inc=()
    echo "test.sh: using the installed Test::Nginx"
else
    harness_inc=(-I "$root/t/harness")
    echo "test.sh: using the bundled Test::Nginx (t/harness)"
fi

if [ "$what" = all ]; then
    echo "== harness self-tests"
    prove -I "$root/t/harness" t/harness/t/ || status=1
fi

echo "== database"
if [ -n "${MONGO_URI:-}" ]; then
    base=${MONGO_URI%%\?*}
    query=
    [ "$base" != "$MONGO_URI" ] && query="?${MONGO_URI#*\?}"
    # mongodb://host[,host]/db -> keep the hosts, use our own database
    hosts=${base#mongodb://}
    hosts=${hosts%%/*}
    uri="mongodb://$hosts/chat_test_$$$query"
    echo "test.sh: using MONGO_URI's server, database chat_test_$$"
else
    uri=$(devdb/run-db.sh start "$scratch/db" 0 "$db_pid_file") || {
        echo "test.sh: the embedded database did not start" >&2
        cat "$scratch/db/devdb.log" >&2 2>/dev/null
        exit 1
    }
    uri="${uri%/}/chat_test"
    echo "test.sh: embedded FerretDB at $uri"
fi

export TEST_NGINX_MONGO_URI=$uri
# mongo-c-driver's shared-memory counters would leave /dev/shm/mongoc-PID
# behind every killed nginx master; nothing here reads them
export MONGOC_DISABLE_SHM=1
export TEST_NGINX_DEVDB_PID_FILE=$db_pid_file
export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
export TEST_NGINX_LOAD_MODULES=${TEST_NGINX_LOAD_MODULES:-$root/build/ngx_chat_module.so}
export TEST_NGINX_SIDECAR_BIN=${TEST_NGINX_SIDECAR_BIN:-$root/build/sidecar/chat-sidecar}
export TEST_NGINX_HTML_DIR=$root/html
export TEST_NGINX_ROOT=$root
export TEST_NGINX_RANDOMIZE=1

# The chaos test (t/31: 3 workers, 20 subscribers, 3 publishers, reloads
# and a kill) keeps both cores busy for a minute or more: in the whole
# suite it runs alone, first, so that the timing of the others (a worker
# redialing a restarted sidecar, a reconnect ordered within the sidecar's
# window) is not measured against it.
alone=()
if [ ${#files[@]} -eq 0 ]; then
    alone=(t/31-event-order-chaos.t)
    files=()
    for f in t/*.t; do
        [ "$f" = "${alone[0]}" ] || files+=("$f")
    done
fi

echo "== Test::Nginx suite"
if [ ${#alone[@]} -gt 0 ]; then
    prove ${PROVE_FLAGS:-} "${harness_inc[@]}" -I "$root/t/lib" "${alone[@]}" ||
        { status=1; echo "test.sh: ${alone[*]} failed (above)"; }
fi
prove ${PROVE_FLAGS:-} -j"${TEST_JOBS:-2}" "${harness_inc[@]}" -I "$root/t/lib" "${files[@]}" \
    || status=1

# prove's closing line is the last batch's: say so when an earlier one failed
[ $status = 0 ] || [ ${#alone[@]} -eq 0 ] || echo "test.sh: Result: FAIL (see the failures above)"

exit $status
