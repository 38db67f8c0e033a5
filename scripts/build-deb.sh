#!/bin/bash
# build-deb.sh [OUT] - `make deb`: the two binary packages of debian/
# (libnginx-mod-http-chat, chat-sidecar), built by dpkg-buildpackage from a
# copy of the checkout's files in OUT (default build/deb), so that nothing
# is written beside the checkout; then lintian on the result.
#
# The .deb files, .buildinfo, .changes and lintian.txt end up in OUT.
# DEB_BUILD_OPTIONS is passed through (default: parallel=2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=${1:-build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

source=$(dpkg-parsechangelog -S Source)
version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
arch=$(dpkg --print-architecture)
src=$out/$source-$upstream

# the tracked files and new ones not ignored, as they are in the work tree
# (uncommitted edits included); no build/, var/ or test leftovers
rm -rf "$src" "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -I{} sh -c 'test -e "$1" && printf "%s\0" "$1"' _ {} \
    | tar -c --null -T - | tar -x -C "$src"

echo "deb: building $source $version in $out" >&2
(
    cd "$src"
    DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-parallel=2} \
        dpkg-buildpackage -b --no-sign > "$out/build.log" 2>&1
) || { tail -40 "$out/build.log" >&2; echo "deb: build failed, see $out/build.log" >&2; exit 1; }

changes=$out/${source}_${version}_$arch.changes
# lintian's exit status is non-zero on errors only (warnings are listed)
lintian_status=0
lintian --display-info --tag-display-limit 0 "$changes" > "$out/lintian.raw" 2>&1 \
    || lintian_status=$?
grep -v '^running with root privileges' "$out/lintian.raw" > "$out/lintian.txt" || true
rm -f "$out/lintian.raw"
if [ $lintian_status != 0 ]; then
    cat "$out/lintian.txt" >&2
    echo "deb: lintian found errors" >&2
    exit 1
fi

rm -rf "$src"
ls -1 "$out"/*.deb
if [ -s "$out/lintian.txt" ]; then
    echo "deb: lintian (no errors):" >&2
    sed 's/^/  /' "$out/lintian.txt" >&2
fi
