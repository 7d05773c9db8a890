#!/usr/bin/env bash
# Installs the Debian packages the build and the tests use when they are
# missing: a C compiler, binutils (nm), curl and openssl (real clients in the
# end-to-end tests), chromium (the headless browser of
# tests/websocket_browser_test.ts; about 50 s to install, ~480 MB), haproxy and
# iproute2 (the load balancer and the network namespaces of
# tests/cluster_test.ts and `make cluster`), systemd (systemd-analyze verify of
# deploy/systemd in tests/deploy_test.ts). Idempotent;
# asks apt only when something is missing.
set -euo pipefail
missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v nm >/dev/null || missing+=(binutils)
command -v make >/dev/null || missing+=(make)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v ip >/dev/null || missing+=(iproute2)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "setup-tools: installing ${missing[*]}"
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
