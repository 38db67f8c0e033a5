#!/bin/bash
# fuzz/run.sh fuzz|regress OUT_DIR TARGET... - called by mk/fuzz.mk.
#
#   fuzz     each harness for FUZZ_SECONDS on a copy of fuzz/corpus/<t>/
#            (plus fuzz/regressions/<t>/, read only) in OUT_DIR/work/<t>/;
#            findings go to OUT_DIR/artifacts/<t>/.  FUZZ_PARALLEL harnesses
#            run at once (default 1).  Prints one line per harness; exits 1
#            if any harness found something.
#   regress  each harness once over every committed input of its corpus and
#            of fuzz/regressions/<t>/; exits 1 if any input fails.
set -uo pipefail

mode=$1 out=$2
shift 2

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-20}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
here=$(cd "$(dirname "$0")" && pwd)

# leaks are findings; a UBSan report aborts (-fno-sanitize-recover too)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

fuzz_one() {
    local t=$1 bin="$out/fuzz_$1" work="$out/work/$1" art="$out/artifacts/$1"
    local dict=() reg=()

    rm -rf "$work" "$art"
    mkdir -p "$work/corpus" "$art"
    cp "$here/corpus/$t/"* "$work/corpus/" 2>/dev/null
    [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
    [ -d "$here/regressions/$t" ] && reg=("$here/regressions/$t")

    date +%s >"$work/start"
    ( "$bin" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb="$FUZZ_RSS_MB" \
        -timeout="$FUZZ_TIMEOUT" -print_final_stats=1 \
        -artifact_prefix="$art/" "${dict[@]}" \
        "$work/corpus" "${reg[@]}"; exit $? ) >"$work/log" 2>&1
    echo $? >"$work/rc"
    date +%s >"$work/end"
}

report_one() {
    local t=$1 work="$out/work/$1" art="$out/artifacts/$1"
    local rc execs secs found

    rc=$(cat "$work/rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    # a crash ends the run before the stats: the last status line counts
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$work/log" | tail -1 | tr -d '#')
    secs=$(( $(cat "$work/end") - $(cat "$work/start") ))
    found=$(find "$art" -type f | sort)

    printf 'fuzz %-13s %12s execs in %4ss, corpus %4d -> %5d: ' "$t" \
        "${execs:-?}" "${secs:-?}" "$(count "$here/corpus/$t")" \
        "$(count "$work/corpus")"

    if [ "$rc" = 0 ] && [ -z "$found" ]; then
        echo "no findings"
        return 0
    fi

    echo "FOUND (exit $rc)"
    for f in $found; do echo "    $f"; done
    grep -m2 -E '^(==[0-9]+==ERROR|SUMMARY: (Address|Undefined|Leak)|.*runtime error|.*invariant failed|ngx_shim:)' \
        "$work/log" | sed 's/^/    /'
    echo "    log: $work/log"
    return 1
}

status=0

case $mode in

fuzz)
    running=0
    for t in "$@"; do
        fuzz_one "$t" &
        running=$((running + 1))
        if [ "$running" -ge "$FUZZ_PARALLEL" ]; then
            wait -n
            running=$((running - 1))
        fi
    done
    wait

    for t in "$@"; do
        report_one "$t" || status=1
    done

    [ $status = 0 ] && echo "fuzz: $# harnesses, no findings" \
                    || echo "fuzz: FINDINGS (see above)" >&2
    ;;

regress)
    # the corpus in one run, each kept regression input in a run of its own
    # (libFuzzer stops at the first failing input)
    passed=0 failed=0
    for t in "$@"; do
        bin="$out/fuzz_$t"
        runs=()
        [ -d "$here/corpus/$t" ] && runs+=("$here/corpus/$t")
        while IFS= read -r f; do runs+=("$f"); done < <(
            find "$here/regressions/$t" -maxdepth 1 -type f 2>/dev/null | sort)

        for r in "${runs[@]}"; do
            if [ -d "$r" ]; then
                files=("$r"/*) what="corpus ($(count "$r") inputs)"
            else
                files=("$r") what="regressions/$t/${r##*/}"
            fi
            log="$out/regress-$t.log"
            if ( "$bin" -rss_limit_mb="$FUZZ_RSS_MB" -timeout="$FUZZ_TIMEOUT" \
                     "${files[@]}"; exit $? ) >"$log" 2>&1; then
                printf 'fuzz-regress %-13s ok      %s\n' "$t" "$what"
                passed=$((passed + 1))
            else
                printf 'fuzz-regress %-13s FAILED  %s\n' "$t" "$what"
                [ -d "$r" ] && sed -n 's/^Running: /    input: /p' "$log" | tail -1
                grep -m2 -E '^(==[0-9]+==ERROR|SUMMARY: (Address|Undefined|Leak)|.*runtime error|.*invariant failed|ngx_shim:)' \
                    "$log" | sed 's/^/    /'
                cp "$log" "$out/regress-$t-${r##*/}.log"
                echo "    log: $out/regress-$t-${r##*/}.log"
                failed=$((failed + 1))
                status=1
            fi
        done
    done
    echo "fuzz-regress: $passed passed, $failed failed"
    ;;

*)
    echo "usage: $0 fuzz|regress OUT_DIR TARGET..." >&2
    exit 2
    ;;
esac

exit $status
