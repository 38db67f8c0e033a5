#!/bin/bash
# test-asan.sh - the Test::Nginx suite and the sidecar's unit tests with
# AddressSanitizer + UBSan (make test-asan).  nginx is Debian's binary with
# the ASan runtime preloaded (a wrapper script, so that perl and the test
# tools are not instrumented); the module and the sidecar are the ASan
# builds.  Reports are written to files; any file fails the run.
set -uo pipefail

cd "$(dirname "$0")/.."
root=$PWD

reports=$(mktemp -d /tmp/chat-asan.XXXXXX)
chmod 1777 "$reports"        # nginx workers may run as another user
wrapper=$root/build/asan/nginx-asan
libasan=$(gcc -print-file-name=libasan.so)

cat > "$wrapper" <<WRAP
#!/bin/sh
# nginx with the ASan runtime first in the library list
export LD_PRELOAD=$libasan
export ASAN_OPTIONS=log_path=$reports/nginx:detect_leaks=0:abort_on_error=0:handle_abort=1
export UBSAN_OPTIONS=log_path=$reports/nginx-ubsan:print_stacktrace=1
exec /usr/sbin/nginx "\$@"
WRAP
chmod +x "$wrapper"

export TEST_NGINX_BINARY=$wrapper
export TEST_NGINX_LOAD_MODULES=$root/build/asan/ngx_chat_module.so
export TEST_NGINX_SIDECAR_BIN=$root/build/sidecar-asan/chat-sidecar
# the sidecar: leaks matter there (it frees everything at exit)
export ASAN_OPTIONS=log_path=$reports/sidecar:detect_leaks=1
export UBSAN_OPTIONS=log_path=$reports/sidecar-ubsan:print_stacktrace=1
# UBSan lines a worker wrote to its error log (the harness copies them here)
export TEST_NGINX_SANITIZER_REPORTS=$reports

status=0
scripts/test.sh "${@:-nginx}" || status=1

unset ASAN_OPTIONS UBSAN_OPTIONS
echo "== sanitizer reports"
if compgen -G "$reports/*" > /dev/null; then
    for f in "$reports"/*; do
        echo "--- $f"
        head -60 "$f"
    done
    echo "test-asan: sanitizer reports found: 0 passed, 1 failed"
    status=1
else
    echo "test-asan: no AddressSanitizer/UBSan report: 1 passed, 0 failed"
fi

# KEEP_ASAN_REPORTS=DIR: a copy of the reports, to read after the run
[ -n "${KEEP_ASAN_REPORTS:-}" ] && cp -r "$reports" "$KEEP_ASAN_REPORTS" 2>/dev/null
rm -rf "$reports"
exit $status
