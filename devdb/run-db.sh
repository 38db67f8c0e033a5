#!/bin/sh
# run-db.sh: start and stop the development database (build/devdb, an
# embedded FerretDB) for `make run` and the tests.
#
#   run-db.sh start DATA_DIR PORT PIDFILE
#       Start devdb in the background on 127.0.0.1:PORT (0 = a free port
#       chosen by the kernel, race-free), wait until it answers a MongoDB
#       ping, print its URI (mongodb://127.0.0.1:PORT/) on stdout.
#       Its log goes to DATA_DIR/devdb.log; its address to PIDFILE.addr.
#   run-db.sh stop PIDFILE
#       SIGTERM the pid in PIDFILE, wait, SIGKILL after a grace period.
#       Succeeds if it is not running. Never kills by name.
#   run-db.sh status PIDFILE
#       Print the URI and exit 0 if it runs, exit 1 if not.
#   run-db.sh free-port
#       Print a TCP port free on 127.0.0.1 right now (racy: prefer PORT 0).
#
# Environment: DEVDB_BIN (default: build/devdb next to this folder),
# DEVDB_LOG_LEVEL (warn), DEVDB_START_TIMEOUT (30 s), DEVDB_STOP_GRACE (10 s).
#
# Exit status: 0 success, 1 failure, 2 usage.

set -u

here=$(cd "$(dirname "$0")" && pwd)
bin=${DEVDB_BIN:-$here/../build/devdb}

die() {
    echo "run-db.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# is_devdb PID: true if PID is a live devdb process (not a zombie, not a
# recycled pid now used by something else).
is_devdb() {
    [ -r "/proc/$1/cmdline" ] || return 1
    ! is_zombie "$1" || return 1
    argv0=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n 1)
    case "$argv0" in
        devdb | */devdb) return 0 ;;
    esac
    return 1
}

is_zombie() {
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" \
        2>/dev/null)
    [ "$state" = "Z" ]
}

read_pid() {
    [ -s "$1" ] || return 1
    pid=$(head -n 1 "$1")
    case "$pid" in
        '' | *[!0-9]*) return 1 ;;
    esac
    echo "$pid"
}

cmd_start() {
    [ $# -eq 3 ] || usage
    data=$1 port=$2 pidfile=$3

    case "$port" in
        '' | *[!0-9]*) die "PORT must be a number (0 = any free port): '$port'" ;;
    esac

    [ -x "$bin" ] || die "$bin not found; build it first:" \
        "cd devdb && go build -trimpath -buildvcs=false -o ../build/devdb ." \
        "(see devdb/README.md)"

    if pid=$(read_pid "$pidfile") && is_devdb "$pid"; then
        die "already running (pid $pid, $(cat "$pidfile.addr" 2>/dev/null))" \
            "per $pidfile; stop it first"
    fi

    mkdir -p "$data" "$(dirname "$pidfile")" || die "cannot create directories"
    ready=$pidfile.addr
    log=$data/devdb.log
    rm -f "$ready"

    # stdin/stdout/stderr redirected, so that URI=$(run-db.sh start ...)
    # returns instead of waiting for the server's end of the pipe.
    "$bin" -listen "127.0.0.1:$port" -data "$data" -ready-file "$ready" \
        -log-level "${DEVDB_LOG_LEVEL:-warn}" </dev/null >>"$log" 2>&1 &
    pid=$!
    if ! { echo "$pid" >"$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"; }; then
        kill -TERM "$pid" 2>/dev/null
        die "cannot write $pidfile; stopped devdb (pid $pid) again"
    fi

    # Poll in 0.1 s steps; devdb writes the ready file only after a
    # successful ping, and exits non-zero if it cannot start.
    limit=$(( ${DEVDB_START_TIMEOUT:-30} * 10 ))
    i=0
    while [ ! -s "$ready" ]; do
        # Our own child, so its pid cannot be recycled yet; is_devdb would
        # race with the exec right after the fork.
        if ! kill -0 "$pid" 2>/dev/null || is_zombie "$pid"; then
            wait "$pid" 2>/dev/null
            rc=$?
            rm -f "$pidfile"
            echo "run-db.sh: devdb exited with status $rc; end of $log:" >&2
            tail -n 5 "$log" >&2
            exit 1
        fi
        i=$((i + 1))
        if [ "$i" -gt "$limit" ]; then
            echo "run-db.sh: devdb (pid $pid) not ready after" \
                "${DEVDB_START_TIMEOUT:-30} s; stopping it" >&2
            tail -n 5 "$log" >&2
            cmd_stop "$pidfile" >/dev/null
            exit 1
        fi
        sleep 0.1
    done

    echo "mongodb://$(cat "$ready")/"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    pidfile=$1

    if ! pid=$(read_pid "$pidfile"); then
        rm -f "$pidfile.addr"
        return 0
    fi

    if ! is_devdb "$pid"; then
        # Already gone, or the pid now belongs to another program.
        rm -f "$pidfile" "$pidfile.addr"
        return 0
    fi

    # SIGCONT too: a stalled (SIGSTOPped) server acts on SIGTERM only
    # once it runs again.
    kill -TERM "$pid" 2>/dev/null
    kill -CONT "$pid" 2>/dev/null

    limit=$(( ${DEVDB_STOP_GRACE:-10} * 10 ))
    i=0
    while is_devdb "$pid"; do
        i=$((i + 1))
        if [ "$i" -gt "$limit" ]; then
            echo "run-db.sh: devdb (pid $pid) ignored SIGTERM for" \
                "${DEVDB_STOP_GRACE:-10} s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
            sleep 0.2
            break
        fi
        sleep 0.1
    done

    rm -f "$pidfile" "$pidfile.addr"
}

cmd_status() {
    [ $# -eq 1 ] || usage
    if pid=$(read_pid "$1") && is_devdb "$pid" && [ -s "$1.addr" ]; then
        echo "mongodb://$(cat "$1.addr")/"
        return 0
    fi
    return 1
}

cmd_free_port() {
    [ $# -eq 0 ] || usage
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
    elif command -v perl >/dev/null 2>&1; then
        perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die;
bind(S, sockaddr_in(0, inet_aton("127.0.0.1"))) or die;
print((sockaddr_in(getsockname(S)))[0], "\n")'
    else
        die "free-port needs python3 or perl"
    fi
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    free-port) cmd_free_port "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
