#!/usr/bin/env bash
# Builds wolfSSL from Debian's source package with session export into a
# project-local prefix (default: .local/wolfssl). Idempotent: does nothing when
# the prefix already has a library that exports wolfSSL_tls_export.
#
# HOTPOTATO_WOLFSSL_PREFIX=/path uses an existing build instead (it must have
# session export): .local/wolfssl becomes a link to it and nothing is built.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$root/.local/wolfssl
lib="$prefix/lib/libwolfssl.so"

has_export() { [ -f "$1" ] && nm -D "$1" 2>/dev/null | grep -q ' T wolfSSL_tls_export$'; }

# What the build is made of: this script and the patches. A build whose stamp
# differs is rebuilt, so a new patch reaches every checkout.
recipe=$(cat "$0" "$root"/shim/patches/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1)
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

need_pkgs=()
for p in dpkg-dev autoconf automake libtool make gcc binutils patch; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done

# A deb-src entry is needed for `apt-get source`.
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "setup-wolfssl: adding a deb-src entry for Debian's source packages"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    as_root sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
  else
    . /etc/os-release
    echo "deb-src http://deb.debian.org/debian ${VERSION_CODENAME} main" | as_root tee /etc/apt/sources.list.d/hotpotato-src.list >/dev/null
  fi
  apt_updated=0
fi

if [ ${#need_pkgs[@]} -gt 0 ] || [ "${apt_updated:-1}" = 0 ] || ! apt-cache showsrc wolfssl >/dev/null 2>&1; then
  as_root apt-get update -qq
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup-wolfssl: installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

work="$root/.local/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
echo "setup-wolfssl: fetching Debian's wolfssl source package"
apt-get source -qq wolfssl >/dev/null 2>&1 || apt-get source wolfssl
src=$(find . -maxdepth 1 -type d -name 'wolfssl-*' | head -n 1)
cd "$src"

# Carry the TLS 1.3 traffic secrets through export/import (see patches/).
for p in "$root"/shim/patches/*.patch; do
  [ -f "$p" ] || continue
  echo "setup-wolfssl: applying $(basename "$p")"
  patch -p1 -s < "$p"
done

echo "setup-wolfssl: configuring (about 10 s)"
[ -x ./configure ] || autoreconf -fi >/dev/null 2>&1
# WOLFSSL_GETRANDOM: no /dev/urandom open per WOLFSSL object.
# WOLFSSL_EXTRA_ALERTS: send an alert (not a silent close) on more failures,
# e.g. handshake_failure and unexpected_message for a renegotiation attempt.
# SINGLE_THREADED: sessions share their context's RNG and suite list instead
# of seeding an RNG per wolfSSL_new (12% of a worker's time on the alternating
# benchmark); only the JavaScript thread ever calls wolfSSL.
./configure -q --prefix="$prefix" \
  --enable-sessionexport=nopeer \
  --enable-tls13 --disable-oldtls --enable-tlsv12 \
  --enable-aesgcm --enable-chacha --enable-poly1305 \
  --enable-ecc --enable-curve25519 \
  --enable-sni --enable-alpn --enable-session-ticket \
  --enable-aesni --enable-intelasm --enable-sp --enable-sp-asm \
  --disable-examples --disable-crypttests --disable-static \
  CFLAGS="-O2 -DWOLFSSL_GETRANDOM -DWOLFSSL_EXTRA_ALERTS -DSINGLE_THREADED" >/dev/null
echo "setup-wolfssl: building (about 15 s)"
make -s -j"$(nproc)" >/dev/null 2>&1 || make -j"$(nproc)"
make -s install >/dev/null
cd "$root"
rm -rf "$work"
has_export "$lib" || { echo "setup-wolfssl: built library lacks wolfSSL_tls_export" >&2; exit 1; }
echo "$recipe" > "$stamp"
echo "setup-wolfssl: installed $lib"
