# run-lib.sh - what `make run` (scripts/run.sh) and `make run-cluster`
# (scripts/run-cluster.sh) share: the database, the secrets, a sidecar, an
# nginx from nginx.conf.example, waiting for a port, stopping by pid.
# Sourced (bash); $root is the repository, set by the caller.  Nothing here
# kills by name: every process is stopped by the pid its starter recorded.

# port_in_use PORT: true if something accepts on 127.0.0.1:PORT
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT PID LOG: until PORT accepts; fails (with LOG's tail) if
# PID exits first or after 10 s
wait_port() {
    local port=$1 pid=$2 log=$3
    for _ in $(seq 100); do
        port_in_use "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -5 "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "run: nothing listens on 127.0.0.1:$port after 10 s; see $log" >&2
    return 1
}

# stop_pid PID SIGNAL: signal, wait up to 5 s, then SIGKILL
stop_pid() {
    local pid=$1 sig=$2
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

# start_database VAR PIDFILE: MONGO_URI if set, else the embedded FerretDB
# with its data in VAR/db; sets mongo_uri
start_database() {
    local var=$1 pidfile=$2 base
    if [ -n "${MONGO_URI:-}" ]; then
        mongo_uri=$MONGO_URI
        echo "run: using MongoDB at $mongo_uri"
    else
        base=$(devdb/run-db.sh start "$var/db" 0 "$pidfile")
        mongo_uri="${base%/}/chat"
        echo "run: embedded FerretDB at $mongo_uri (data in ${var#"$root"/}/db)"
    fi
}

stop_database() {   # stop_database PIDFILE
    if [ -z "${MONGO_URI:-}" ] && [ -s "$1" ]; then
        devdb/run-db.sh stop "$1" >/dev/null 2>&1 || true
    fi
}

# make_secret FILE: 32 random bytes in hex, made once
make_secret() {
    [ -s "$1" ] || (umask 077; openssl rand -hex "${2:-32}" > "$1")
}

# make_htpasswd FILE USER [PASSWORD]: (re)writes FILE when a password is
# given or FILE does not exist yet (a generated one then); sets
# password_note to what to print
make_htpasswd() {
    local file=$1 user=$2 given=${3:-} password
    password_note="(unchanged: ${file#"$root"/}; set DASHBOARD_PASSWORD to replace it)"
    if [ -n "$given" ] || [ ! -s "$file" ]; then
        password=${given:-$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)}
        htpasswd -cbB "$file" "$user" "$password" 2>/dev/null
        chmod 644 "$file"        # nginx workers read it as their own user
        if [ -z "$given" ]; then
            password_note="$password   (generated; shown once, stored hashed in ${file#"$root"/})"
        else
            password_note="(as given in DASHBOARD_PASSWORD)"
        fi
    fi
}

# start_sidecar DIR PORT MONGO_URI INGEST EVENTS KEY_FILE NGINX_PID_FILE:
# the sidecar in the background, logging to DIR/logs/sidecar.log; sets
# sidecar_pid once it accepts on PORT
start_sidecar() {
    local dir=$1 port=$2 mongo=$3 ingest=$4 events=$5 keyfile=$6 nginx_pid=$7
    build/sidecar/chat-sidecar \
        --listen "127.0.0.1:$port" \
        --http-key-file "$keyfile" \
        --ingest "$ingest" \
        --events "$events" \
        --mongo-uri "$mongo" \
        --nginx-pid-file "$nginx_pid" \
        --html-dir "$root/html" \
        --pid-file "$dir/run/sidecar.pid" \
        >> "$dir/logs/sidecar.log" 2>&1 &
    sidecar_pid=$!
    wait_port "$port" "$sidecar_pid" "$dir/logs/sidecar.log"
}

# example_conf PREFIX PORT MONGO_URI JWT_FILE INGEST SIDECAR KEY HTPASSWD
# SCRAPE_TOKEN_FILE: nginx.conf.example with its placeholders replaced, on stdout
example_conf() {
    sed -e "s|@MODULE@|$root/build/ngx_chat_module.so|g" \
        -e "s|@PREFIX@|$1|g" \
        -e "s|@PORT@|$2|g" \
        -e "s|@MONGO_URI@|$3|g" \
        -e "s|@JWT_SECRET_FILE@|$4|g" \
        -e "s|@METRICS_ADDRESS@|$5|g" \
        -e "s|@SIDECAR@|$6|g" \
        -e "s|@SIDECAR_KEY@|$7|g" \
        -e "s|@HTPASSWD@|$8|g" \
        -e "s|@SCRAPE_TOKEN_FILE@|$9|g" \
        "$root/nginx.conf.example"
}

# start_nginx PREFIX CONF PORT: nginx in the foreground of a background
# job (daemon off: the master is our child); sets nginx_pid once it
# accepts on PORT
start_nginx() {
    local prefix=$1 conf=$2 port=$3
    /usr/sbin/nginx -p "$prefix" -c "$conf" -t -q || return 1
    /usr/sbin/nginx -p "$prefix" -c "$conf" -g 'daemon off;' &
    nginx_pid=$!
    wait_port "$port" "$nginx_pid" "$prefix/logs/error.log"
}

# start_nats_node DIR N CLIENT_PORT CLUSTER_PORT MONITOR_PORT ROUTES
# [EXTRA...]: one nats-server of a cluster named "chat" on 127.0.0.1
# (ROUTES: the other nodes' cluster URLs, comma-separated), logging to
# DIR/nats-N.log; sets nats_pid once its client port accepts
start_nats_node() {
    local dir=$1 n=$2 cport=$3 rport=$4 mport=$5 routes=$6
    shift 6
    nats-server -a 127.0.0.1 -p "$cport" -n "chat-$n" \
        --cluster "nats://127.0.0.1:$rport" --routes "$routes" \
        --cluster_name chat -m "$mport" "$@" \
        -l "$dir/nats-$n.log" &
    nats_pid=$!
    wait_port "$cport" "$nats_pid" "$dir/nats-$n.log"
}
