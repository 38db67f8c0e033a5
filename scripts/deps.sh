#!/bin/bash
# deps.sh [run|test|deb] [--list] - install the Debian packages this
# project needs, when missing.  Idempotent; uses sudo only when not root.
#
#   run    build and run (make run, make deps): the module against Debian's
#          nginx, the sidecar, the tools run.sh and the README's examples use
#   test   all of run, plus what the test suites use (make test, make
#          test-asan, make fuzz, make deps-test), including what deb has
#   deb    all of run, plus Debian's packaging tools (make deb, make
#          test-deb): debhelper, dpkg-dev, fakeroot, lintian
#
# --list prints the profile's packages, one a line, and installs nothing.
set -euo pipefail

profile=run
list=0
for arg in "$@"; do
    case $arg in
        run|test|deb) profile=$arg ;;
        --list)   list=1 ;;
        *) echo "usage: deps.sh [run|test|deb] [--list]" >&2; exit 2 ;;
    esac
done

packages=(
    # build: the module against Debian's nginx, the sidecar
    nginx nginx-dev build-essential pkg-config
    libmongoc-dev libbson-dev libcjson-dev libnng-dev libssl-dev
    libpcre2-dev zlib1g-dev
    # the cluster transport (chat_cluster): nats.c; make run-cluster's
    # servers
    libnats-dev nats-server
    # run: dashboard credentials, scripts, the README's examples
    apache2-utils openssl curl jq procps
)

if [ "$profile" = deb ] || [ "$profile" = test ]; then
    packages+=(
        # make deb: debian/ builds with dh and nginx-dev's dh-sequence-nginx;
        # make test-deb starts the packaged sidecar as its user (setpriv)
        debhelper dpkg-dev fakeroot lintian util-linux
    )
fi

if [ "$profile" = test ]; then
    packages+=(
        # Test::Nginx's dependencies, the WebSocket client
        libtest-base-perl libtest-longstring-perl liblist-moreutils-perl
        libhttp-message-perl libprotocol-websocket-perl libjson-pp-perl
        # sanitizers and libFuzzer; promtool (checks the Prometheus
        # exposition and deploy/prometheus); ip (t/09's interface checks)
        clang libclang-rt-14-dev lld-14 prometheus iproute2
        # deploy/'s tests (t/42, t/43): TLS clients and stand-in servers
        libio-socket-ssl-perl
        # browser tests (t/07-dashboard-browser.t): Debian's chromium, node
        chromium nodejs
    )
    # NodeSource's nodejs carries npm and conflicts with Debian's npm
    # package; Debian's nodejs does not carry it
    command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

if [ $list = 1 ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

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
