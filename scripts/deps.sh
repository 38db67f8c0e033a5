#!/bin/bash
# deps.sh - install the Debian packages this project needs, when missing.
# Idempotent; uses sudo only when not root. Called by `make run` and
# `make test` (and `make deps`).
set -euo pipefail

packages=(
    # build: the module against Debian's nginx, the sidecar
    nginx nginx-dev build-essential pkg-config
    libmongoc-dev libbson-dev libcjson-dev libnng-dev libssl-dev
    libpcre2-dev zlib1g-dev
    # run: dashboard credentials, scripts
    apache2-utils openssl curl jq procps
    # tests: Test::Nginx's dependencies, WebSocket client, sanitizers,
    # promtool (checks the Prometheus exposition)
    libtest-base-perl libtest-longstring-perl liblist-moreutils-perl
    libhttp-message-perl libprotocol-websocket-perl libjson-pp-perl
    clang libclang-rt-14-dev lld-14 prometheus
    # browser tests (t/07-dashboard-browser.t): Debian's chromium, node
    chromium nodejs
)

# NodeSource's nodejs carries npm and conflicts with Debian's npm package;
# Debian's nodejs does not carry it
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
         | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Debian starts the packaged nginx on port 80 when it is installed; this
# project never uses that one and does not touch it.
