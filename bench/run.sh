#!/usr/bin/env bash
# The comparative benchmark (`make bench` / `./hp bench`): hot potato
# (affinity; alternating with direct handoffs and with --handoff gateway; both
# quiet and with the shipped settings, request log on; a new connection per
# route change with and without resumption) against nginx, a one-process bound
# on the same TLS stack and Deno.serve, with wrk at 1, 50 and 500 connections,
# ECDSA and RSA certificates; then the run-length sweep (route changing every
# k requests), 10,000 idle connections and the handoff micro benchmark; a
# full run then measures body sizes (bench/sizes.ts), WebSocket echo
# (bench/ws_echo.ts), reloads under load (bench/reload.ts), 1 against 2
# gateways (bench/gateways.ts) and functions on demand (bench/cold_start.ts).
# Writes bench/results/results.{json,md}, chart.svg and sweep.svg and prints
# the tables. About 17 minutes on 2 cores. Settings: see
# bench/README.md (BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_CERTS, BENCH_SYSTEMS,
# BENCH_SWEEP, BENCH_SWEEP_KS, BENCH_IDLE, BENCH_MICRO, ...).
# `bash bench/run.sh --profile` instead profiles scenario (2) (bench/profile.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
deno=${DENO:-$(scripts/find-deno.sh)}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# wrk from Debian's source with the connection patch (.local/wrk/bin/wrk)
bash bench/wrk/build.sh
# nginx from Debian (not started as a service)
if ! command -v nginx >/dev/null; then
  echo "bench: installing nginx (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq nginx >/dev/null 2>&1 ||
    { as_root apt-get update -qq && as_root apt-get install -y -qq nginx >/dev/null; }
fi
command -v curl >/dev/null && command -v openssl >/dev/null || bash scripts/setup-tools.sh
# both certificate types (existing files are kept)
bash scripts/dev-cert.sh >/dev/null
HOTPOTATO_CERT_TYPE=rsa bash scripts/dev-cert.sh >/dev/null

# perf counts system calls and context switches per request (each cell)
if ! command -v perf >/dev/null; then
  echo "bench: installing linux-perf (Debian package) to count system calls and context switches"
  as_root apt-get install -y -qq linux-perf >/dev/null 2>&1 ||
    echo "bench: perf is missing and could not be installed: those columns stay empty" >&2
fi
ulimit -n "$(ulimit -Hn)"
mkdir -p bench/results
if [ "${1:-}" = --profile ]; then
  # where the time goes in scenario (2): V8 --cpu-prof and perf (bench/profile.ts)
  exec "$deno" run --no-prompt --allow-all bench/profile.ts
fi
if [ "${1:-}" = --ws ]; then
  # WebSocket echo rate against Deno.serve (bench/ws_echo.ts)
  exec "$deno" run --no-prompt --allow-all bench/ws_echo.ts
fi
if [ "${1:-}" = --gateways ]; then
  # handshake rates and keep-alive with 1 and 2 gateways (bench/gateways.ts)
  exec "$deno" run --no-prompt --allow-all bench/gateways.ts
fi
if [ "${1:-}" = --reload ]; then
  # SIGHUP reloads under 50 connections: handover against closing (bench/reload.ts)
  exec "$deno" run --no-prompt --allow-all bench/reload.ts
fi
if [ "${1:-}" = --cold ]; then
  # functions on demand: cold starts against a bare deno run, and a load step (bench/cold_start.ts)
  exec "$deno" run --no-prompt --allow-all bench/cold_start.ts --load
fi
if [ "${1:-}" = --sizes ]; then
  # response bodies of 1 KiB, 64 KiB, 1 MiB against nginx (bench/sizes.ts)
  exec "$deno" run --no-prompt --allow-all bench/sizes.ts
fi
rc=0
"$deno" run --no-prompt --allow-all bench/bench.ts "$@" || rc=$?
# A full run (no arguments) also measures body sizes and WebSocket echo.
if [ $# -eq 0 ] && [ -z "${BENCH_SYSTEMS:-}" ]; then
  "$deno" run --no-prompt --allow-all bench/sizes.ts || rc=1
  "$deno" run --no-prompt --allow-all bench/ws_echo.ts || rc=1
  "$deno" run --no-prompt --allow-all bench/reload.ts || rc=1
  "$deno" run --no-prompt --allow-all bench/gateways.ts || rc=1
  "$deno" run --no-prompt --allow-all bench/cold_start.ts --load || rc=1
fi
exit $rc
