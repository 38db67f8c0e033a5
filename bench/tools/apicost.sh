#!/bin/bash
# apicost.sh [MODULE.so...] - instructions per request on nginx's thread
# (callgrind) for the chat API as nginx.conf.example configures it: a
# static file (/bench/static), the newest page of a group from the page
# cache (GET .../messages?limit=50, one token), and POST a message, N (200)
# of each, one after the other on one keep-alive connection; nginx as one
# process (master_process off), devdb with 10 groups x 1,000 messages
# (bench/tools/seedlog.c).  callgrind_control zeroes the counters before a
# phase and dumps them after it.  Each module given (default: build/'s) in
# turn, on the same data.  Prints "RESULT module phase per_req_main
# per_req_all_threads".  Loopback only; processes stopped by pid.
cd "$(dirname "$0")/../.."
source bench/lib.sh
N=${N:-200}
mods=("$@"); [ ${#mods[@]} -gt 0 ] || mods=(build/ngx_chat_module.so)
top=$OUT/apicost; rm -rf "$top"; mkdir -p "$top" "$BIN"
for t in hreq; do cc -O2 -Wall -o "$BIN/$t" bench/tools/$t.c || exit 1; done
cc -O2 -Wall -o "$BIN/seedlog" bench/tools/seedlog.c $(pkg-config --cflags --libs libmongoc-1.0) || exit 1
cp build/sidecar/chat-sidecar "$BIN/chat-sidecar" || exit 1
trap "bench_cleanup; stop_db $top/db" EXIT
uri=$(start_db "$top/db") || exit 1
track "$(cat "$top/db.pid")" TERM
mongo="${uri%/}/bench"
"$BIN/seedlog" "${uri%/}/?serverSelectionTimeoutMS=10000" bench 10 10000 "$top/groups" 2> /dev/null || exit 1
make_secrets "$top/sec"; token=$(cat "$top/sec/token")
H="Authorization: Bearer $token"
g=$(head -1 "$top/groups")
for so in "${mods[@]}"; do
    name=$(basename "$so" .so)
    dir=$top/$name; mkdir -p "$dir"
    cp "$so" "$BIN/$name.so" || exit 1
    ingest="ipc://$dir/metrics.ipc"
    read -r spid sport < <(start_sidecar "$dir/sidecar" "$ingest" "$mongo" "") || exit 1
    port=$(free_port)
    EXAMPLE_MODULE=$name.so example_conf "$dir/ngx" "$port" "$mongo" "$ingest" "$sport" "$top/sec/htpasswd" \
        "$top/sec/jwt-secret" | sed -e '/^ *limit_req  *zone=/d' -e '/^ *limit_conn  *chat_user_conn/d' > "$dir/nginx.conf"
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.out.%p" \
        "$NGINX" -p "$dir/ngx" -c "$dir/nginx.conf" -g 'daemon off; master_process off;' > "$dir/valgrind.log" 2>&1 &
    vp=$!; track $vp QUIT
    wait_port "$port" "$vp" || { log "nginx under callgrind did not start"; exit 1; }
    for i in $(seq 300); do grep -q 'indexes are in place' "$dir/ngx/logs/error.log" && break; sleep 0.2; done
    base=http://127.0.0.1:$port/api/chat/groups/$g/messages
    curl -s -o /dev/null -H "$H" "$base?limit=50"               # the page into the cache
    "$BIN/hreq" -p "$port" -n 20 -u /bench/static > /dev/null
    urls=(); for i in $(seq "$N"); do urls+=(-o /dev/null "$base"); done
    k=0
    for ph in static get post; do
        k=$((k + 1))
        callgrind_control -z "$vp" > /dev/null
        case $ph in
        static) "$BIN/hreq" -p "$port" -n "$N" -u /bench/static > "$dir/$ph.out" ;;
        get)    "$BIN/hreq" -p "$port" -n "$N" -u "/api/chat/groups/$g/messages?limit=50" -H "$H" > "$dir/$ph.out" ;;
        post)   curl -s -w '%{http_code}\n' -X POST -H "$H" -H 'Content-Type: application/json' \
                    -d '{"content":"apicost"}' "${urls[@]}" > "$dir/$ph.out" ;;
        esac
        callgrind_control -d "$ph" "$vp" > /dev/null
        main=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.out.$vp.$k-01")
        all=$(for f in "$dir/cg.out.$vp.$k"-*; do awk '/^(summary|totals):/ {print $2; exit}' "$f"; done | awk '{s += $1} END {print s}')
        echo "RESULT $name $ph $((main / N)) $((all / N))"
    done
    [ "$(grep -c '^201$' "$dir/post.out")" = "$N" ] || log "apicost: not every POST was 201: $(sort "$dir/post.out" | uniq -c | tr '\n' ' ')"
    stop_pid "$vp" QUIT; stop_pid "$spid" TERM
done
