#!/usr/bin/env bash
# Builds wolfSSL $WOLFSSL_RELEASE from Debian's source package with session
# export into a project-local prefix (.local/wolfssl). Idempotent: does nothing
# when the prefix already has a library that exports wolfSSL_tls_export and
# was built by this recipe (this script and shim/patches/).
#
# The release is pinned; its Debian revision is the newest apt knows (Debian
# $WOLFSSL_SUITE with its security updates), recorded in .hotpotato-version.
#
# HOTPOTATO_WOLFSSL_PREFIX=/path uses an existing build instead (it must have
# session export): .local/wolfssl becomes a link to it and nothing is built.
set -euo pipefail

# wolfSSL 5.7.2, as Debian 13 "trixie" ships it with security updates:
# 5.5.4 (Debian 12) shares suite state between connections; see README.md.
WOLFSSL_RELEASE=5.7.2
WOLFSSL_SUITE=trixie

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$root/.local/wolfssl
lib="$prefix/lib/libwolfssl.so"

has_export() { [ -f "$1" ] && nm -D "$1" 2>/dev/null | grep -q ' T wolfSSL_tls_export$'; }

# What the build is made of: this script and the patches. A build whose stamp
# differs is rebuilt, so a new patch reaches every checkout.
shopt -s nullglob
patches=("$root"/shim/patches/*.patch)
recipe=$(cat "$0" "${patches[@]}" | sha256sum | cut -d' ' -f1)
stamp="$prefix/.hotpotato-recipe"

if [ -n "${HOTPOTATO_WOLFSSL_PREFIX:-}" ]; then
  if ! has_export "$HOTPOTATO_WOLFSSL_PREFIX/lib/libwolfssl.so"; then
    echo "setup-wolfssl: HOTPOTATO_WOLFSSL_PREFIX=$HOTPOTATO_WOLFSSL_PREFIX has no lib/libwolfssl.so with session export" >&2
    exit 1
  fi
  mkdir -p "$root/.local"
  [ -L "$prefix" ] || [ ! -e "$prefix" ] || { echo "setup-wolfssl: $prefix exists; remove it to use HOTPOTATO_WOLFSSL_PREFIX" >&2; exit 1; }
  ln -sfn "$HOTPOTATO_WOLFSSL_PREFIX" "$prefix"
  echo "setup-wolfssl: using $HOTPOTATO_WOLFSSL_PREFIX (without shim/patches/, TLS 1.3 KeyUpdate fails after a migration)" >&2
  exit 0
fi
if [ -L "$prefix" ]; then
  echo "setup-wolfssl: $prefix links to another build; unset HOTPOTATO_WOLFSSL_PREFIX and remove the link to build here" >&2
  has_export "$lib" && exit 0
  exit 1
fi
if has_export "$lib" && [ "$(cat "$stamp" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi
[ -e "$lib" ] && echo "setup-wolfssl: the build recipe changed; rebuilding"
rm -rf "$prefix"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The newest Debian revision of $WOLFSSL_RELEASE that apt knows, or nothing.
source_version() {
  apt-cache showsrc wolfssl 2>/dev/null | awk '/^Version: /{print $2}' |
    grep -E "^${WOLFSSL_RELEASE//./\\.}-" | sort -V | tail -n 1
}

# The URI of the Debian archive with label $1 (Debian, Debian-Security) that
# apt already uses on this machine.
debian_archive() {
  apt-cache policy | awk -v label="$1" '
    /^ +[0-9]+ https?:\/\// { uri = $2; next }
    /^ +release / && /o=Debian,/ && /,c=main,/ && index($0, ",l=" label ",") { print uri; exit }'
}

need_pkgs=()
for p in dpkg-dev autoconf automake libtool make gcc binutils patch; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  as_root apt-get update -qq
  echo "setup-wolfssl: installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The release comes from Debian $WOLFSSL_SUITE and its security updates: add
# deb-src entries for them (on the mirrors this machine's apt already uses)
# when apt does not know that source package yet.
if [ -z "$(source_version)" ]; then
  as_root apt-get update -qq
fi
if [ -z "$(source_version)" ]; then
  mirror=$(debian_archive Debian)
  security=$(debian_archive Debian-Security)
  [ -n "$mirror" ] || { echo "setup-wolfssl: apt has no Debian main archive configured" >&2; exit 1; }
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    echo "# Added by Hot Potato's scripts/setup-wolfssl.sh: wolfSSL $WOLFSSL_RELEASE's source package."
    echo "deb-src [signed-by=$keyring] $mirror $WOLFSSL_SUITE main"
    [ -z "$security" ] || echo "deb-src [signed-by=$keyring] $security $WOLFSSL_SUITE-security main"
  } | as_root tee /etc/apt/sources.list.d/hotpotato-wolfssl-src.list >/dev/null
  echo "setup-wolfssl: added deb-src entries for Debian $WOLFSSL_SUITE"
  as_root apt-get update -qq
fi
version=$(source_version)
[ -n "$version" ] || { echo "setup-wolfssl: Debian has no wolfssl $WOLFSSL_RELEASE source package" >&2; exit 1; }

work="$root/.local/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
echo "setup-wolfssl: fetching Debian's wolfssl $version source package"
apt-get source -qq "wolfssl=$version" >/dev/null 2>&1 || apt-get source "wolfssl=$version"
src=$(find . -maxdepth 1 -type d -name 'wolfssl-*' | head -n 1)
cd "$src"

# shim/patches/, in order: carry the TLS 1.3 traffic secrets through
# export/import (and fix 5.7.2's export/import), then TLS conformance fixes.
for p in "${patches[@]}"; do
  echo "setup-wolfssl: applying $(basename "$p")"
  patch -p1 -s < "$p"
done

echo "setup-wolfssl: configuring (about 10 s)"
[ -x ./configure ] || autoreconf -fi >/dev/null 2>&1
# WOLFSSL_GETRANDOM: no /dev/urandom open per WOLFSSL object.
# WOLFSSL_EXTRA_ALERTS: send an alert (not a silent close) on more failures,
# e.g. handshake_failure and unexpected_message for a renegotiation attempt.
# SINGLE_THREADED: sessions share their context's seeded RNG instead of
# seeding one per wolfSSL_new (12% of a worker's time on the alternating
# benchmark); only the JavaScript thread ever calls wolfSSL. (5.5.4 also
# shared the context's suite list, so one client's resumption changed what
# the next was offered; since 5.6 a session copies the list before changing
# it, and tests/tls_resumption_test.ts checks it.)
# WOLFSSL_MAX_SUITE_SZ: keep up to 512 of a ClientHello's cipher suites (the
# default, 150, refused scanners' hellos with decode_error; longer lists are
# filtered to what the server could choose, patch 0008).
# WOLFSSL_TLS13_MIDDLEBOX_COMPAT: the TLS 1.3 compatibility-mode
# ChangeCipherSpec after ServerHello/HelloRetryRequest (RFC 8446 D.4; patch
# 0005 sends it only to clients that ask, as OpenSSL does).
# MAX_HANDSHAKE_SZ: handshake messages (a ClientHello) of up to 131,396 bytes,
# OpenSSL's CLIENT_HELLO_MAX_LENGTH (the default, 18,462, refused
# post-quantum and many-extension hellos with illegal_parameter); the buffer
# is allocated per message, as large as the message.
# USE_ECC_B_PARAM: wc_ecc_point_is_on_curve(), the check of a client's
# P-256/P-384 key share (patch 0013).
./configure -q --prefix="$prefix" \
  --enable-sessionexport=nopeer \
  --enable-tls13 --disable-oldtls --enable-tlsv12 \
  --enable-aesgcm --enable-chacha --enable-poly1305 \
  --enable-ecc --enable-curve25519 \
  --enable-sni --enable-alpn --enable-session-ticket \
  --enable-aesni --enable-intelasm --enable-sp --enable-sp-asm \
  --disable-examples --disable-crypttests --disable-static \
  CFLAGS="-O2 -DWOLFSSL_GETRANDOM -DWOLFSSL_EXTRA_ALERTS -DSINGLE_THREADED -DWOLFSSL_MAX_SUITE_SZ=1024 -DWOLFSSL_TLS13_MIDDLEBOX_COMPAT -DMAX_HANDSHAKE_SZ=131396 -DUSE_ECC_B_PARAM" >/dev/null
echo "setup-wolfssl: building (about 15 s)"
make -s -j"$(nproc)" >/dev/null 2>&1 || make -j"$(nproc)"
make -s install >/dev/null
cd "$root"
rm -rf "$work"
has_export "$lib" || { echo "setup-wolfssl: built library lacks wolfSSL_tls_export" >&2; exit 1; }
echo "$recipe" > "$stamp"
echo "$version" > "$prefix/.hotpotato-version"
echo "setup-wolfssl: installed $lib"
