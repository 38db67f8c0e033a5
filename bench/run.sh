#!/bin/bash
# bench/run.sh [CASE...] - `make bench`: build the load tools, snapshot the
# module and the sidecar, run the cases (default: all but the soak), and
# write bench/RESULTS.md.  QUICK=1: a ~4-5 minute smoke run into
# bench/out/quick/ (its report: bench/out/quick/RESULTS.md).  Cases:
#   overhead cardinality exactness scrape chatapi reads fanout memory resume dbstats
#   cluster
#   (+ soak)
# Bounded: every case has fixed durations and request counts; all traffic
# on 127.0.0.1; processes started here are stopped by pid.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# a QUICK run is a smoke test: its data and report stay apart from the
# reported ones (bench/out/quick/, bench/out/quick/RESULTS.md)
[ "${QUICK:-0}" = 1 ] && export BENCH_OUT=${BENCH_OUT:-$here/out/quick}
source "$here/lib.sh"

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(overhead cardinality exactness scrape chatapi reads fanout memory resume dbstats cluster)

# --- tools ------------------------------------------------------------------
missing=()
command -v wrk > /dev/null || missing+=(wrk)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
command -v valgrind > /dev/null || missing+=(valgrind)
command -v bc > /dev/null || missing+=(bc)
[ -f /usr/include/liburing.h ] || missing+=(liburing-dev)     # bench/tools/sendfloor.c
if [ ${#missing[@]} -gt 0 ]; then
    # Debian may start its own nginx after installing a module package:
    # note the masters before, stop only one that appears with the
    # system's pid file
    before=$(cat /run/nginx.pid 2>/dev/null || true)
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null; } || exit 1
    after=$(cat /run/nginx.pid 2>/dev/null || true)
    if [ -n "$after" ] && [ "$after" != "$before" ]; then
        log "stopping the system nginx the package installation started (pid $after)"
        kill -QUIT "$after" 2>/dev/null || true
    fi
fi

mkdir -p "$BIN"
# a snapshot of what was built, so that a teammate's rebuild during the run
# changes nothing (replaced with mv: a running copy stays valid)
for f in "$BENCH_ROOT/build/ngx_chat_module.so" "$BENCH_ROOT/build/sidecar/chat-sidecar"; do
    cp "$f" "$BIN/.tmp" && mv -f "$BIN/.tmp" "$BIN/$(basename "$f")" || exit 1
done
[ -x "$BENCH_ROOT/build/sidecar/send-test-batch" ] ||
    make -s -C "$BENCH_ROOT/sidecar" tools BUILD_DIR="$BENCH_ROOT/build/sidecar" || exit 1
cp "$BENCH_ROOT/build/sidecar/send-test-batch" "$BIN/.stb" && mv -f "$BIN/.stb" "$BIN/send-test-batch" || exit 1
for t in wsbench hreq oload seed natsflood sendfloor; do
    libs=(); [ $t = seed ] && libs=($(pkg-config --cflags --libs libmongoc-1.0))
    [ $t = sendfloor ] && libs=(-luring)
    [ $t = natsflood ] && libs=($(pkg-config --cflags --libs libnats) -lpthread)
    cc -O2 -Wall -o "$BIN/.$t" "$BENCH_DIR/tools/$t.c" "${libs[@]}" && mv -f "$BIN/.$t" "$BIN/$t" || exit 1
done
trap bench_cleanup EXIT

{
    echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit:   $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null) (module .so sha256 $(sha256sum "$BIN/ngx_chat_module.so" | cut -c1-12))"
    echo "nproc:    $(nproc)"
    echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel:   $(uname -srm)"
    echo "os:       $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "wrk:      $(wrk -v 2>&1 | head -1)"
    echo "valgrind: $(valgrind --version)"
    echo "nchan:    $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null)"
    echo "load avg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "QUICK=$QUICK cases: ${cases[*]}"
    echo "nginx -V:"
    "$NGINX" -V 2>&1 | sed 's/^/  /'
} > "$OUT/machine.txt"

status=0
for c in "${cases[@]}"; do
    [ -x "$BENCH_DIR/cases/$c.sh" ] || { log "no such case: $c"; status=1; continue; }
    log "== $c"
    t0=$SECONDS
    # which code this case measures: teammates commit while benchmarks run
    mkdir -p "$OUT/$c"
    {
        echo "commit $(git -C "$BENCH_ROOT" log -1 --format='%h %cd' --date=format:'%Y-%m-%d %H:%M:%S' 2>/dev/null)"
        echo "uncommitted_files $(git -C "$BENCH_ROOT" status --porcelain -- ngx_chat_module sidecar wire config 2>/dev/null | wc -l)"
        echo "module_sha256 $(sha256sum "$BIN/ngx_chat_module.so" | cut -c1-12)"
        echo "sidecar_sha256 $(sha256sum "$BIN/chat-sidecar" | cut -c1-12)"
    } > "$OUT/$c.build"
    "$BENCH_DIR/cases/$c.sh" || { log "case $c failed"; status=1; }
    log "== $c done in $((SECONDS - t0)) s"
done
report=$BENCH_DIR/RESULTS.md
[ "$QUICK" = 1 ] && report=$OUT/RESULTS.md
python3 "$BENCH_DIR/tools/report.py" "$OUT" "$report" || status=1
log "report: $report"
exit $status
