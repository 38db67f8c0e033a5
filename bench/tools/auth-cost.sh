#!/bin/bash
# bench/tools/auth-cost.sh [MODULE] - instructions nginx's event loop
# spends admitting one dashboard poll, by credential: callgrind of nginx
# as one process (master_process off) serving a 3-byte file from a location
# guarded as nginx.conf.example guards /metrics (satisfy any,
# chat_bearer_token_file, auth_basic with an htpasswd made by
# `htpasswd -B`, as scripts/run.sh makes it), 50 and 250 keep-alive
# requests each; the difference divided by 200.  Variants: none (the same
# location with no credential checked), basic (the password: bcrypt via
# crypt(3)), bearer (the machines' token: one SHA-256).  Prints one line
# per variant; the profiles stay in $OUT/auth-cost/.  Default module:
# build/ngx_chat_module.so.  Loopback only; processes stopped by pid.
source "$(dirname "$0")/../lib.sh"
trap bench_cleanup EXIT
SO=${1:-$BENCH_ROOT/build/ngx_chat_module.so}
dir=$OUT/auth-cost; rm -rf "$dir"; mkdir -p "$dir"
htpasswd -cbB "$dir/htpasswd" admin benchpass 2>/dev/null
(umask 077; openssl rand -hex 32 > "$dir/scrape-token")
basic="Authorization: Basic $(printf 'admin:benchpass' | base64 -w0)"
bearer="Authorization: Bearer $(cat "$dir/scrape-token")"

run() {     # run VARIANT N -> instructions of nginx's thread
    local v=$1 n=$2 d=$dir/$1-$2 port pid guard hh=()
    mkdir -p "$d/logs" "$d/tmp" "$d/html"
    echo ok > "$d/html/metrics"
    port=$(free_port)
    case $v in
    none)   guard="" ;;
    *)      guard="satisfy any; chat_bearer_token_file $dir/scrape-token;
                    auth_basic \"Dashboard\"; auth_basic_user_file $dir/htpasswd;" ;;
    esac
    [ "$v" = basic ] && hh=(-H "$basic")
    [ "$v" = bearer ] && hh=(-H "$bearer")
    cat > "$d/nginx.conf" <<CONF
load_module $SO;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
    uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
    server {
        listen 127.0.0.1:$port;
        # a static file: "return" would answer before the access phase
        location = /metrics { $guard root $d/html; }
    }
}
CONF
    valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.out" \
        "$NGINX" -p "$d" -c "$d/nginx.conf" -g 'daemon off; master_process off;' \
        > "$d/valgrind.log" 2>&1 &
    pid=$!
    track "$pid" QUIT
    # valgrind's start on a busy machine can take longer than one wait_port
    local i
    for i in 1 2 3 4 5 6; do wait_port "$port" "$pid" && break; done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
        { log "nginx under callgrind did not start"; return 1; }
    sleep 1
    "$BIN/hreq" -p "$port" -n "$n" -u /metrics "${hh[@]}" > "$d/hreq.json"
    # TERM, then a connection now and then: under valgrind the signal
    # does not always interrupt nginx's epoll_wait (one process, no timer
    # pending: it would wait forever); once it exits, callgrind writes its
    # profile (stop_pid's KILL after 10 s would lose it)
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
        sleep 0.5
    done
    wait "$pid"
    [ "$(jq .errors "$d/hreq.json")" = 0 ] || { log "$v: $(cat "$d/hreq.json")"; return 1; }
    awk '/^(summary|totals):/ {print $2; exit}' "$d/callgrind.out" | grep . ||
        { log "$v n=$n: no callgrind profile"; return 1; }
}

for v in none bearer basic; do
    a=$(run "$v" 50) && b=$(run "$v" 250) || exit 1
    echo "$v: $(( (b - a) / 200 )) instructions per request (n 50: $a, n 250: $b)"
done
