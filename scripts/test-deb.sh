#!/bin/bash
# test-deb.sh [--build | DEB_DIR] - `make test-deb`: the Debian packages
# installed on this machine, the packaged stack run, then purged.
#
#   DEB_DIR   where `make deb` left the .deb files (default build/deb)
#   --build   build them first, into this run's scratch directory (t/17)
#
# 1. apt-get installs libnginx-mod-http-chat and chat-sidecar; checks what
#    their maintainer scripts did (modules-enabled link, system user, the
#    config's owner and mode, the sidecar's key and nginx's snippet holding
#    it, kept when the package is installed again) and that the system's
#    nginx configuration still passes `nginx -t` with the module enabled;
# 2. starts the sidecar from its packaged unit: with systemctl when systemd
#    is PID 1, otherwise exactly as the unit's ExecStart would run, as its
#    User (setpriv), in its RuntimeDirectory; its settings are the packaged
#    /etc/chat-sidecar/chat-sidecar.conf with the database, the port and
#    nginx's pid file edited, as an operator would;
# 3. runs Debian's nginx with the module loaded the packaged way (the
#    modules-enabled link) and nginx.conf.example's configuration on a free
#    127.0.0.1 port in a private directory (never the system's nginx), its
#    @SIDECAR_KEY@ from the packaged key file; checks the API with a JWT,
#    the dashboard behind auth_basic, that the requests reached the
#    sidecar over the packaged ingest socket, and that the sidecar refuses
#    whoever does not send the key; then the same with the shipped
#    examples/chat-site.conf, which includes the packaged key snippet;
# 4. purges both packages and checks that nothing is left: files, links,
#    the key and the snippet, the system user and group, systemd's
#    enablement state.
#
# Needs root (dpkg).  Skips if either package is installed already (it
# would purge an operator's installation) or if the system's nginx runs
# (the package's nginx-reload trigger would reload it).  Runs under a lock, so two
# checkouts on one machine take turns.  The database is the embedded one
# (build/devdb) or MONGO_URI's server.  Prints TAP.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

mod_pkg=libnginx-mod-http-chat
side_pkg=chat-sidecar
unit=/lib/systemd/system/chat-sidecar.service
conf=/etc/chat-sidecar/chat-sidecar.conf
key_file=/etc/chat-sidecar/http-key
snippet=/etc/chat-sidecar/nginx-sidecar-key.conf
enabled_link=/etc/nginx/modules-enabled/50-mod-http-chat.conf

n=0
failed=0
ok() {   # ok COND-STATUS NAME
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        failed=$((failed + 1))
    fi
    return "$1"
}
check() {   # check NAME COMMAND...
    local name=$1
    shift
    "$@" >/dev/null 2>&1
    ok $? "$name"
}
diag() { sed 's/^/# /' >&2; }
bail() { echo "Bail out! $*"; exit 1; }

build=0
debs=build/deb
case ${1:-} in
    --build) build=1 ;;
    "") ;;
    *) debs=$1 ;;
esac

[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (dpkg)"; exit 0; }

# --- one run at a time on this machine --------------------------------------
exec 9>/run/lock/chat-test-deb.lock
flock -w 300 9 || bail "another test-deb run holds /run/lock/chat-test-deb.lock"

for p in $mod_pkg $side_pkg; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
        echo "1..0 # SKIP $p is installed on this machine; not touching it"
        exit 0
    fi
done

# installing a module package makes dpkg ask the system's nginx to reload
# (Debian's nginx-reload trigger); a running one is left alone
sys_pid=$(cat /run/nginx.pid 2>/dev/null)
if [ -n "$sys_pid" ] && kill -0 "$sys_pid" 2>/dev/null \
   && [ -z "${DEB_TEST_RELOAD_OK:-}" ]; then
    echo "1..0 # SKIP the system's nginx runs (pid $sys_pid): installing would reload it (DEB_TEST_RELOAD_OK=1 allows it)"
    exit 0
fi

# /run: visible to a systemd service with PrivateTmp (the sidecar reads
# nginx's pid file here)
scratch=$(mktemp -d /run/chat-test-deb.XXXXXX)
chmod 755 "$scratch"
db_pid_file=$scratch/devdb.pid
nginx_pid=
sidecar_pid=
installed=0
systemd=0
[ -d /run/systemd/system ] && systemd=1

stop_nginx() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"
        for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nginx_pid" 2>/dev/null
    fi
    nginx_pid=
}

stop_sidecar() {
    if [ $systemd = 1 ]; then
        systemctl stop chat-sidecar 2>/dev/null
    elif [ -n "$sidecar_pid" ] && kill -0 "$sidecar_pid" 2>/dev/null; then
        kill -TERM "$sidecar_pid"
        for _ in $(seq 50); do kill -0 "$sidecar_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$sidecar_pid" 2>/dev/null
        # systemd removes the RuntimeDirectory when the service stops
        rm -rf /run/chat-sidecar
    fi
    sidecar_pid=
}

stop_stack() {
    stop_nginx
    stop_sidecar
}

cleanup() {
    stop_stack
    if [ $installed = 1 ]; then
        dpkg --purge $mod_pkg $side_pkg >/dev/null 2>&1
    fi
    if [ -s "$db_pid_file" ]; then
        devdb/run-db.sh stop "$db_pid_file" >/dev/null 2>&1
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the packages -------------------------------------------------------------
if [ $build = 1 ]; then
    debs=$scratch/deb
    scripts/build-deb.sh "$debs" > "$scratch/build-deb.out" 2>&1
    ok $? "the packages build (dpkg-buildpackage, lintian without errors)" \
        || { diag < "$scratch/build-deb.out"; }
fi
version=$(dpkg-parsechangelog -S Version)
mod_deb=$(ls "$debs"/${mod_pkg}_"${version}"_*.deb 2>/dev/null | head -1)
side_deb=$(ls "$debs"/${side_pkg}_"${version}"_*.deb 2>/dev/null | head -1)
[ -n "$mod_deb" ] && [ -n "$side_deb" ] \
    || bail "no $mod_pkg/$side_pkg $version .deb in $debs (make deb)"

# no path of the checkout or of the build directory inside any package
leaks=
for d in "$debs"/*_"$version"_*.deb; do
    for p in "$root" "$(realpath "$debs")"; do
        if dpkg-deb --fsys-tarfile "$d" | grep -aqF "$p"; then
            leaks="$leaks $(basename "$d"):$p"
        fi
    done
done
ok $([ -z "$leaks" ]; echo $?) "no build path in the packages${leaks:+:$leaks}"

check "the system's nginx configuration passes nginx -t before" /usr/sbin/nginx -t -q

# --- 1. install ---------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
installed=1
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 \
    "$(realpath "$mod_deb")" "$(realpath "$side_deb")" > "$scratch/install.log" 2>&1
ok $? "apt-get install ./$(basename "$mod_deb") ./$(basename "$side_deb")" \
    || diag < "$scratch/install.log"

check "the module is in nginx's module directory" \
    test -f /usr/lib/nginx/modules/ngx_http_chat_module.so
check "mod-http-chat.conf loads it from modules/" \
    grep -qx 'load_module modules/ngx_http_chat_module.so;' \
    /usr/share/nginx/modules-available/mod-http-chat.conf
check "postinst enabled it: $enabled_link" \
    test "$(readlink "$enabled_link")" = /usr/share/nginx/modules-available/mod-http-chat.conf
check "the module package depends on nginx's ABI" \
    sh -c "dpkg-query -W -f='\${Depends}' $mod_pkg | grep -q 'nginx-abi-'"
/usr/sbin/nginx -t -q > "$scratch/nginx-t.log" 2>&1
ok $? "the system's nginx configuration still passes nginx -t, module enabled" \
    || diag < "$scratch/nginx-t.log"

# what the system's nginx now runs: Debian's nginx.conf includes
# modules-enabled/*.conf; a site that uses no chat_* directive must answer
# exactly as before (no handler, no header)
plain_port=$(devdb/run-db.sh free-port)
mkdir -p "$scratch/plain/logs"
cat > "$scratch/plain/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
error_log $scratch/plain/logs/error.log;
pid $scratch/plain/logs/nginx.pid;
events {}
http {
    access_log off;
    client_body_temp_path $scratch/plain/body;
    proxy_temp_path $scratch/plain/proxy;
    fastcgi_temp_path $scratch/plain/fastcgi;
    uwsgi_temp_path $scratch/plain/uwsgi;
    scgi_temp_path $scratch/plain/scgi;
    server {
        listen 127.0.0.1:$plain_port;
        location / { return 200 "plain\n"; }
    }
}
CONF
/usr/sbin/nginx -c "$scratch/plain/nginx.conf" -g 'daemon off;' 2>/dev/null &
plain_pid=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$plain_port") 2>/dev/null && break
    sleep 0.1
done
curl -s -D "$scratch/plain/headers" -H 'X-Correlation-ID: abc-1' \
    "http://127.0.0.1:$plain_port/" > "$scratch/plain/body.txt"
check "a site of the system's nginx without chat_* answers as before" \
    grep -qx plain "$scratch/plain/body.txt"
check "... with no X-Correlation-ID header" \
    sh -c "! grep -qi '^X-Correlation-ID' '$scratch/plain/headers'"
kill -QUIT "$plain_pid" 2>/dev/null
wait "$plain_pid" 2>/dev/null

# the site the module package ships for sites-available: nginx -t with it
# in Debian's nginx.conf layout (its secret, htpasswd and logs moved here)
site=/usr/share/doc/$mod_pkg/examples/chat-site.conf
mkdir -p "$scratch/site/logs"
(umask 077; openssl rand -hex 32 > "$scratch/site/jwt-secret")
sed -e "s|/etc/nginx/chat-jwt-secret|$scratch/site/jwt-secret|" \
    -e "s|/etc/nginx/chat-dashboard.htpasswd|$scratch/site/htpasswd|" \
    -e "s|/var/log/nginx/|$scratch/site/logs/|" \
    -e "s|listen  *80;|listen 127.0.0.1:$plain_port;|" \
    "$site" > "$scratch/site/chat"
cat > "$scratch/site/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
error_log $scratch/site/logs/error.log;
pid $scratch/site/logs/nginx.pid;
events {}
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $scratch/site/body;
    proxy_temp_path $scratch/site/proxy;
    fastcgi_temp_path $scratch/site/fastcgi;
    uwsgi_temp_path $scratch/site/uwsgi;
    scgi_temp_path $scratch/site/scgi;
    include $scratch/site/chat;
}
CONF
/usr/sbin/nginx -t -q -c "$scratch/site/nginx.conf" > "$scratch/site/t.log" 2>&1
ok $? "the shipped examples/chat-site.conf passes nginx -t" || diag < "$scratch/site/t.log"

# the packages ship no logrotate file: the sidecar logs to the journal, and
# the site's logs are in /var/log/nginx/, which nginx-common rotates
logs=$(sed -n 's/^ *\(access\|error\)_log *\([^ ;]*\).*/\2/p' "$site" | sort -u)
others=$(grep -v '^/var/log/nginx/[^/]*\.log$' <<< "$logs")
ok $([ -n "$logs" ] && [ -z "$others" ]; echo $?) \
    "the site's logs are all /var/log/nginx/*.log ($(echo $logs))"
check "... which /etc/logrotate.d/nginx rotates" \
    grep -qx '/var/log/nginx/\*\.log {' /etc/logrotate.d/nginx

check "system user chat-sidecar" sh -c \
    'getent passwd chat-sidecar | awk -F: '"'"'$3 < 1000 && $7 ~ /nologin|false/ {f=1} END {exit !f}'"'"
check "its own group" getent group chat-sidecar
check "the config is root:chat-sidecar 0640 (it may hold database credentials)" \
    test "$(stat -c '%U:%G %a' "$conf")" = "root:chat-sidecar 640"
check "the config is a conffile" \
    sh -c "dpkg-query -W -f='\${Conffiles}' $side_pkg | grep -q ' $conf '"
check "the dashboard page is installed" test -s /usr/share/chat-sidecar/html/dashboard.html

# the sidecar's key: generated by the postinst, one per installation
check "the sidecar's key $key_file is root:chat-sidecar 0640" \
    test "$(stat -c '%U:%G %a' "$key_file")" = "root:chat-sidecar 640"
check "... one line of 64 hex characters (32 random bytes)" \
    sh -c "test \$(wc -l < '$key_file') = 1 && grep -qxE '[0-9a-f]{64}' '$key_file'"
sidecar_key=$(cat "$key_file" 2>/dev/null)
check "the packaged config reads it (http-key-file)" \
    grep -qx "http-key-file = $key_file" "$conf"
check "the nginx snippet $snippet is root:root 0600 (nginx's master only)" \
    test "$(stat -c '%U:%G %a' "$snippet")" = "root:root 600"
check "... and sends that key as X-Sidecar-Key" \
    sh -c "grep -v '^#' '$snippet' | grep -qxE 'proxy_set_header +X-Sidecar-Key +\"$sidecar_key\";'"
check "neither is a file of the package (so neither is in the .deb)" \
    sh -c "! dpkg -S '$key_file' && ! dpkg -S '$snippet'"
snippet_sum=$(md5sum < "$snippet")
dpkg -i "$(realpath "$side_deb")" > "$scratch/reinstall.log" 2>&1
ok $? "dpkg -i $(basename "$side_deb") again (postinst configure, as an upgrade)" \
    || diag < "$scratch/reinstall.log"
check "... keeps the key" test "$(cat "$key_file")" = "$sidecar_key"
check "... and its owner and mode" \
    test "$(stat -c '%U:%G %a' "$key_file")" = "root:chat-sidecar 640"
check "... and the snippet" test "$(md5sum < "$snippet")" = "$snippet_sum"
for key in 'User=chat-sidecar' 'ProtectSystem=strict' 'NoNewPrivileges=yes' \
           'ProtectHome=yes' 'PrivateTmp=yes' 'RuntimeDirectory=chat-sidecar' \
           'CapabilityBoundingSet='; do
    check "the unit has $key" grep -qx "$key" "$unit"
done
check "the unit is enabled (multi-user.target.wants)" \
    test -L /etc/systemd/system/multi-user.target.wants/chat-sidecar.service
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$unit" > "$scratch/verify.log" 2>&1
    ok $? "systemd-analyze verify $unit" || diag < "$scratch/verify.log"
fi

# --- the database -------------------------------------------------------------
# MONGO_URI's server, or the suite's (scripts/test.sh), with a database of
# this run's own; else the embedded one
server_uri=${MONGO_URI:-${TEST_NGINX_MONGO_URI:-}}
if [ -n "$server_uri" ]; then
    base=${server_uri%%\?*}
    hosts=${base#mongodb://}
    mongo_uri="mongodb://${hosts%%/*}/chat_test_deb_$$"
else
    uri=$(devdb/run-db.sh start "$scratch/db" 0 "$db_pid_file") \
        || bail "the embedded database did not start (make devdb)"
    mongo_uri="${uri%/}/chat_test_deb"
fi

# --- 2. the sidecar, as its unit runs it --------------------------------------
conf_get() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$conf" | tail -1; }
conf_set() { sed -i "s|^[[:space:]]*$1[[:space:]]*=.*|$1 = $2|" "$conf"; }

sidecar_port=$(devdb/run-db.sh free-port)
nginx_port=$(devdb/run-db.sh free-port)
mkdir -p "$scratch/nginx/logs" "$scratch/nginx/tmp"
conf_set listen "127.0.0.1:$sidecar_port"
conf_set mongo-uri "$mongo_uri"
conf_set nginx-pid-file "$scratch/nginx/logs/nginx.pid"
check "chat-sidecar -t accepts the packaged config" \
    runuser -u chat-sidecar -- /usr/sbin/chat-sidecar -c "$conf" -t

unit_get() { sed -n "s/^$1=//p" "$unit" | tail -1; }
start_sidecar() {
    if [ $systemd = 1 ]; then
        systemctl daemon-reload
        systemctl restart chat-sidecar
        sidecar_pid=$(systemctl show -P MainPID chat-sidecar)
    else
        # what systemd does for this unit: RuntimeDirectory= owned by User=,
        # UMask=, then ExecStart= as User=/Group= with no new privileges and
        # no capabilities; stderr to the journal (here: a file)
        local user group rundir exec_start
        user=$(unit_get User)
        group=$(unit_get Group)
        rundir=/run/$(unit_get RuntimeDirectory)
        install -d -o "$user" -g "$group" -m "$(unit_get RuntimeDirectoryMode)" "$rundir"
        read -r -a exec_start <<< "$(unit_get ExecStart)"
        (
            umask "$(unit_get UMask)"
            cd /
            exec setpriv --reuid="$user" --regid="$group" --init-groups \
                --no-new-privs --inh-caps=-all --bounding-set=-all \
                -- "${exec_start[@]}" < /dev/null >> "$scratch/journal.log" 2>&1
        ) &
        sidecar_pid=$!
    fi
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$sidecar_port") 2>/dev/null && break
        sleep 0.1
    done
}
start_sidecar
check "the sidecar listens on 127.0.0.1:$sidecar_port" \
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$sidecar_port"
check "it runs as chat-sidecar" \
    test "$(ps -o user= -p "$sidecar_pid" | tr -d ' ')" = chat-sidecar
ingest=$(conf_get ingest)
events=$(conf_get events)
check "the ingest socket ${ingest#ipc://} is there, 0666 (nginx's workers)" \
    test "$(stat -c '%a %U' "${ingest#ipc://}")" = "666 chat-sidecar"
check "the events socket ${events#ipc://} is 0660, group chat-sidecar" \
    test "$(stat -c '%a %G' "${events#ipc://}")" = "660 chat-sidecar"
health=$(curl -s -H "X-Sidecar-Key: $sidecar_key" "http://127.0.0.1:$sidecar_port/health")
check "its /health reports version ${version%-*} (debian/changelog = SIDECAR_VERSION)" \
    test "$(jq -r .version <<< "$health")" = "${version%-*}"

code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sidecar_port/health")
ok $([ "$code" = 403 ]; echo $?) "the sidecar directly, without the key: 403 (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sidecar_port/dashboard/api/data")
ok $([ "$code" = 403 ]; echo $?) "... on the dashboard's JSON too: 403 (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Sidecar-Key: ${sidecar_key%?}x" \
    "http://127.0.0.1:$sidecar_port/health")
ok $([ "$code" = 403 ]; echo $?) "... with another key: 403 (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $sidecar_key" \
    "http://127.0.0.1:$sidecar_port/metrics")
ok $([ "$code" = 200 ]; echo $?) "a scraper's Authorization: Bearer KEY: 200 (got $code)"

# --- 3. nginx with the packaged module ---------------------------------------
(umask 077; openssl rand -hex 32 > "$scratch/jwt-secret")
(umask 077; openssl rand -hex 32 > "$scratch/scrape-token")
password=$(openssl rand -hex 12)
htpasswd -cbB "$scratch/htpasswd" admin "$password" 2>/dev/null
chmod 644 "$scratch/htpasswd"
# nginx.conf.example, with the packaged load file instead of @MODULE@ and
# the addresses the packaged sidecar config holds; no -p: the prefix stays
# Debian's /usr/share/nginx, where "modules/" resolves
sed -e "s|^load_module @MODULE@;|include $enabled_link;|" \
    -e "s|@PREFIX@|$scratch/nginx|g" \
    -e "s|@PORT@|$nginx_port|g" \
    -e "s|@MONGO_URI@|$mongo_uri|g" \
    -e "s|@JWT_SECRET_FILE@|$scratch/jwt-secret|g" \
    -e "s|@METRICS_ADDRESS@|$ingest|g" \
    -e "s|@SIDECAR@|$(conf_get listen)|g" \
    -e "s|@HTPASSWD@|$scratch/htpasswd|g" \
    -e "s|@SCRAPE_TOKEN_FILE@|$scratch/scrape-token|g" \
    -e "s|@SIDECAR_KEY@|$sidecar_key|g" \
    nginx.conf.example > "$scratch/nginx.conf.tmp"
# it holds the sidecar's key: root's only, like the snippet
chmod 600 "$scratch/nginx.conf.tmp"
mv "$scratch/nginx.conf.tmp" "$scratch/nginx.conf"
check "every @PLACEHOLDER@ of nginx.conf.example is rendered" \
    sh -c "! grep -v '^ *#' '$scratch/nginx.conf' | grep -q '@[A-Z_]*@'"
check "the derived configuration loads the module through $enabled_link" \
    grep -q "^include $enabled_link;" "$scratch/nginx.conf"
MONGOC_DISABLE_SHM=1 /usr/sbin/nginx -c "$scratch/nginx.conf" -g 'daemon off;' \
    > "$scratch/nginx.out" 2>&1 &
nginx_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
done
check "nginx answers on 127.0.0.1:$nginx_port" \
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$nginx_port"

base=http://127.0.0.1:$nginx_port
token=$(CHAT_JWT_SECRET_FILE=$scratch/jwt-secret scripts/mint-jwt.sh alice)
H="Authorization: Bearer $token"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/chat/groups")
ok $([ "$code" = 401 ]; echo $?) "the API without a token: 401 (got $code)"
created=$(curl -s -w '\n%{http_code}' -H "$H" -H 'Content-Type: application/json' \
    -d '{"name":"packaged"}' "$base/api/chat/groups")
code=${created##*$'\n'}
ok $([ "$code" = 201 ]; echo $?) "POST /api/chat/groups with a JWT: 201 (got $code)" \
    || diag <<< "$created"
gid=$(jq -r .id <<< "${created%$'\n'*}" 2>/dev/null)
code=$(curl -s -o "$scratch/msg.json" -w '%{http_code}' -H "$H" \
    -H 'Content-Type: application/json' -d '{"content":"hello from the .deb"}' \
    "$base/api/chat/groups/$gid/messages")
ok $([ "$code" = 201 ]; echo $?) "POST a message: 201 (got $code)"
check "GET the group's messages returns it" sh -c \
    "curl -sf -H '$H' '$base/api/chat/groups/$gid/messages' | jq -e '.messages[0].content == \"hello from the .deb\"'"

code=$(curl -s -o /dev/null -w '%{http_code}' "$base/dashboard")
ok $([ "$code" = 401 ]; echo $?) "the dashboard without credentials: 401 (got $code)"
code=$(curl -s -o "$scratch/dashboard.html" -w '%{http_code}' -u "admin:$password" "$base/dashboard")
ok $([ "$code" = 200 ]; echo $?) "the dashboard through nginx (auth_basic, the key added): 200 (got $code)"
check "... the dashboard page" grep -qi '<html' "$scratch/dashboard.html"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/sidecar/health")
ok $([ "$code" = 200 ]; echo $?) "the sidecar's health through nginx: 200 (got $code)"
requests=0
for _ in $(seq 50); do
    requests=$(curl -sf -u "admin:$password" "$base/dashboard/api/data" \
               | jq -r '.performance.total_requests // 0' 2>/dev/null)
    [ "${requests:-0}" -ge 4 ] 2>/dev/null && break
    sleep 0.2
done
ok $([ "${requests:-0}" -ge 4 ] 2>/dev/null; echo $?) \
    "the sidecar recorded nginx's requests over the packaged ingest socket ($requests)"
check "Prometheus metrics through nginx" sh -c \
    "curl -sf -u 'admin:$password' '$base/metrics' | grep -q '^chat_http_requests_total'"
check "the dashboard access is in the audit log" \
    grep -q 'user="admin" "GET /dashboard ' "$scratch/nginx/logs/dashboard-audit.log"
check "nothing refused at the ingest (peer check passed)" \
    sh -c "! grep -q 'refused a connection' '$scratch/journal.log' 2>/dev/null"
stop_nginx

# the shipped site, as an operator enables it (examples/chat-site.conf in
# Debian's nginx.conf layout, as for nginx -t above): its dashboard
# locations include the packaged snippet, nothing else gives the key; the
# same pid file, so that the sidecar's peer check lets its workers in
cp "$scratch/htpasswd" "$scratch/site/htpasswd"
sed -e "s|listen 127.0.0.1:$plain_port;|listen 127.0.0.1:$nginx_port;|" \
    -e "s|^\( *server  *\)127.0.0.1:9180;|\1$(conf_get listen);|" \
    -e "s|\"mongodb://127.0.0.1:27017/chat\"|\"$mongo_uri\"|" \
    "$scratch/site/chat" > "$scratch/site/chat-run"
sed -e "s|^pid .*|pid $scratch/nginx/logs/nginx.pid;|" \
    -e "s|include $scratch/site/chat;|include $scratch/site/chat-run;|" \
    "$scratch/site/nginx.conf" > "$scratch/site/nginx-run.conf"
check "the site's snippet include is in each sidecar location (3)" \
    test "$(grep -c "^ *include  *$snippet;" "$scratch/site/chat-run")" = 3
MONGOC_DISABLE_SHM=1 /usr/sbin/nginx -c "$scratch/site/nginx-run.conf" -g 'daemon off;' \
    > "$scratch/site/nginx.out" 2>&1 &
nginx_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
done
check "nginx with the shipped site answers on 127.0.0.1:$nginx_port" \
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$nginx_port"
code=$(curl -s -o "$scratch/site/health.json" -w '%{http_code}' "$base/sidecar/health")
ok $([ "$code" = 200 ]; echo $?) "the site's /sidecar/health: 200 (got $code)" \
    || diag < "$scratch/site/health.json"
code=$(curl -s -o "$scratch/site/data.json" -w '%{http_code}' -u "admin:$password" \
    -H 'X-Sidecar-Key: forged' "$base/dashboard/api/data")
ok $([ "$code" = 200 ]; echo $?) "the site's dashboard JSON (a client's forged X-Sidecar-Key dropped): 200 (got $code)"
check "... is the dashboard's JSON" jq -e '.performance.total_requests >= 0' "$scratch/site/data.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$password" "$base/metrics")
ok $([ "$code" = 200 ]; echo $?) "the site's /metrics: 200 (got $code)"

# a new pair from the postinst: both files deleted, dpkg-reconfigure
rm -f "$key_file" "$snippet"
dpkg-reconfigure -f noninteractive chat-sidecar > "$scratch/reconfigure.log" 2>&1
ok $? "dpkg-reconfigure chat-sidecar, without key and snippet" \
    || diag < "$scratch/reconfigure.log"
check "... generates a new key, root:chat-sidecar 0640" sh -c \
    "test \"\$(stat -c '%U:%G %a' '$key_file')\" = 'root:chat-sidecar 640' \
     && grep -qxE '[0-9a-f]{64}' '$key_file' && ! grep -qx '$sidecar_key' '$key_file'"
check "... and its snippet, root:root 0600" sh -c \
    "test \"\$(stat -c '%U:%G %a' '$snippet')\" = 'root:root 600' \
     && grep -qF \"\$(cat '$key_file')\" '$snippet'"

# the rotation of OPERATIONS.md ("The sidecar's key"), its commands as
# written there (this machine's systemctl or not: the sidecar restarted as
# above, nginx reloaded by its master's HUP)
old_key=$sidecar_key
rotation() { awk '/^To rotate the key/ {f=1} f && /^```sh$/ {g=1; next} g && /^```$/ {exit} g'; }
doc=/usr/share/doc/$side_pkg/OPERATIONS.md.gz
if [ -f "$doc" ]; then
    rotate=$(zcat "$doc" | rotation)
else
    rotate=$(rotation < docs/OPERATIONS.md)
fi
rotate_files=$(grep -v '^systemctl \|^nginx -t' <<< "$rotate")
ok $([ -n "$rotate_files" ] && [ "$rotate_files" != "$rotate" ]; echo $?) \
    "OPERATIONS.md has the rotation's commands (the packaged copy)"
(set -e; eval "$rotate_files") > "$scratch/rotate.log" 2>&1
ok $? "... writing the new key and the snippet" || diag < "$scratch/rotate.log"
sidecar_key=$(cat "$key_file" 2>/dev/null)
check "... a new key, root:chat-sidecar 0640, no file left behind" sh -c \
    "test \"\$(stat -c '%U:%G %a' '$key_file')\" = 'root:chat-sidecar 640' \
     && grep -qxE '[0-9a-f]{64}' '$key_file' && test '$sidecar_key' != '$old_key' \
     && test \"\$(ls /etc/chat-sidecar | sort | tr '\n' ' ')\" = 'chat-sidecar.conf http-key nginx-sidecar-key.conf '"
check "... the snippet sends it, root:root 0600" sh -c \
    "test \"\$(stat -c '%U:%G %a' '$snippet')\" = 'root:root 600' \
     && grep -v '^#' '$snippet' | grep -qxE 'proxy_set_header +X-Sidecar-Key +\"$sidecar_key\";'"
stop_sidecar
start_sidecar
kill -HUP "$nginx_pid"
code=
for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$password" "$base/dashboard/api/data")
    [ "$code" = 200 ] && break
    sleep 0.1
done
ok $([ "$code" = 200 ]; echo $?) "sidecar restarted, nginx reloaded: the site's dashboard JSON: 200 (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Sidecar-Key: $old_key" \
    "http://127.0.0.1:$sidecar_port/health")
ok $([ "$code" = 403 ]; echo $?) "the old key, directly: 403 (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Sidecar-Key: $sidecar_key" \
    "http://127.0.0.1:$sidecar_port/health")
ok $([ "$code" = 200 ]; echo $?) "the new key, directly: 200 (got $code)"

stop_stack

# --- 4. purge -----------------------------------------------------------------
apt-get purge -y -q -o DPkg::Lock::Timeout=120 $mod_pkg $side_pkg \
    > "$scratch/purge.log" 2>&1
ok $? "apt-get purge $mod_pkg $side_pkg" || diag < "$scratch/purge.log"
installed=0
for p in $mod_pkg $side_pkg; do
    check "$p is not known to dpkg any more" \
        sh -c "! dpkg-query -W -f='\${Status}' $p 2>/dev/null | grep -q ."
done
for f in /usr/lib/nginx/modules/ngx_http_chat_module.so \
         /usr/share/nginx/modules-available/mod-http-chat.conf \
         "$enabled_link" "$enabled_link.removed" \
         "$key_file" "$snippet" \
         /etc/chat-sidecar /usr/sbin/chat-sidecar /usr/share/chat-sidecar \
         /usr/share/doc/$mod_pkg /usr/share/doc/$side_pkg "$unit" \
         /etc/systemd/system/multi-user.target.wants/chat-sidecar.service \
         /var/lib/systemd/deb-systemd-helper-enabled/chat-sidecar.service.dsh-also \
         /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/chat-sidecar.service \
         /run/chat-sidecar; do
    check "gone: $f" sh -c "! test -e '$f' && ! test -L '$f'"
done
check "the user chat-sidecar is gone" sh -c '! getent passwd chat-sidecar'
check "the group chat-sidecar is gone" sh -c '! getent group chat-sidecar'
check "the system's nginx configuration passes nginx -t after" /usr/sbin/nginx -t -q

echo "1..$n"
if [ $failed -gt 0 ]; then
    echo "# $failed of $n failed; logs were in $scratch:" >&2
    for f in install.log reinstall.log reconfigure.log rotate.log journal.log nginx.out nginx/logs/error.log \
             site/nginx.out site/logs/chat-error.log purge.log; do
        [ -s "$scratch/$f" ] && { echo "## $f" ; tail -20 "$scratch/$f"; } | diag
    done
    exit 1
fi
exit 0
