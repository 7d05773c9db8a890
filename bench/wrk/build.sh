#!/usr/bin/env bash
# Builds wrk 4.1.0 from Debian's source package with bench/wrk/connection.patch
# (request() is told which connection it writes to; see the patch header) into
# .local/wrk/bin/wrk. Does nothing when that binary exists and is newer than
# the patch. Installs the build dependencies from Debian when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
patch=$root/bench/wrk/connection.patch
bin=$root/.local/wrk/bin/wrk
if [ -x "$bin" ] && [ "$bin" -nt "$patch" ]; then exit 0; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
for p in libluajit-5.1-dev luajit libssl-dev pkg-config dpkg-dev make gcc patch; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]} (Debian packages, to build wrk)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq "${need[@]}" >/dev/null ||
    { as_root apt-get update -qq && as_root apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

build=$root/.local/build/wrk
rm -rf "$build"
mkdir -p "$build"
cd "$build"
echo "bench: building wrk from Debian's source package with the connection patch"
# The source of the version the package lists know (apt-get source wrk asks
# for the installed binary's version, which a deb-src of another release
# may not have).
fetch() {
  local v
  v=$(apt-cache showsrc wrk 2>/dev/null | awk '/^Version:/ { print $2; exit }')
  apt-get source -qq "wrk${v:+=$v}" >/dev/null 2>&1
}
if ! fetch; then
  as_root apt-get update -qq
  fetch
fi
src=$(find . -maxdepth 1 -type d -name 'wrk-*' | head -n 1)
cd "$src"
patch -p1 -s < "$patch"
ver=$(dpkg-parsechangelog -S Version 2>/dev/null || echo 4.1.0)
make -s WITH_LUAJIT=/usr WITH_OPENSSL=/usr VER="debian/$ver+hotpotato" >/dev/null 2>&1 ||
  make WITH_LUAJIT=/usr WITH_OPENSSL=/usr VER="debian/$ver+hotpotato"
mkdir -p "$(dirname "$bin")"
cp wrk "$bin"
{ "$bin" -v 2>&1 || true; } | head -n 1 # wrk -v exits 1
