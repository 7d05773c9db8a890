#!/usr/bin/env bash
# Baseline benchmark (`make bench` / `deno task bench`): starts the gateway and
# the sum and product workers (logs at warning level), drives them with wrk
# and prints a table: requests/s, p50 and p99 latency, server CPU seconds per
# 10k requests, and the gateway's own counters as proof of what was measured.
#   (a) keep-alive, same route every request
#   (b) keep-alive, route alternating every request (a handoff per request)
#   (c) a new TLS connection per request (full handshake, resumption off)
# Settings: BENCH_SECONDS (10), BENCH_CONNECTIONS (50), BENCH_PORT (18743).
set -euo pipefail
cd "$(dirname "$0")/.."
deno=${DENO:-$(scripts/find-deno.sh)}
secs=${BENCH_SECONDS:-10}
conns=${BENCH_CONNECTIONS:-50}
port=${BENCH_PORT:-18743}

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get install -y -qq wrk >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq wrk >/dev/null; }
fi

run=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$run"' EXIT
flags=(--no-prompt --allow-ffi "--allow-env=HOTPOTATO_*,XDG_RUNTIME_DIR")
common=(--control "$run/ctl/gateway.sock" --log-level warning)
"$deno" run "${flags[@]}" gateway.ts "${common[@]}" --port "$port" --tls-resumption off > "$run/gateway.log" 2>&1 &
gw=$!
sleep 1
"$deno" run "${flags[@]}" workers/sum.ts "${common[@]}" > "$run/sum.log" 2>&1 &
sum=$!
"$deno" run "${flags[@]}" workers/product.ts "${common[@]}" > "$run/product.log" 2>&1 &
prod=$!
url="https://127.0.0.1:$port"
for _ in $(seq 50); do
  curl -sk "$url/sum?a=1&b=1" | grep -q result && curl -sk "$url/product?a=1&b=1" | grep -q result && break
  sleep 0.2
done

cpu() { # utime+stime of the three processes, in clock ticks
  local t=0
  for p in $gw $sum $prod; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $t
}
stats() { # the gateway's counters (printed on SIGUSR2)
  local before
  before=$(grep -c hotpotato-stats "$run/gateway.log" || true)
  kill -USR2 $gw
  for _ in $(seq 50); do
    [ "$(grep -c hotpotato-stats "$run/gateway.log")" -gt "$before" ] && break
    sleep 0.05
  done
  grep hotpotato-stats "$run/gateway.log" | tail -n 1 | sed 's/^hotpotato-stats //'
}
field() { sed -E "s/.*\"$1\":([0-9]+).*/\1/" <<<"$2"; }
ticks=$(getconf CLK_TCK)

# warm-up (JIT), not measured
wrk -t2 -c10 -d2s -s bench/alternate.lua "$url" >/dev/null

rows=()
measure() { # name, wrk threads, script
  local name=$1 threads=$2 script=$3 s0 s1 c0 c1 out
  s0=$(stats); c0=$(cpu)
  out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$script" "$url")
  c1=$(cpu); s1=$(stats)
  local rps p50 p99 reqs errs hs res ret
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
  hs=$(( $(field handshakes "$s1") - $(field handshakes "$s0") ))
  res=$(( $(field resumed "$s1") - $(field resumed "$s0") ))
  ret=$(( $(field returned "$s1") - $(field returned "$s0") ))
  local cpu10k
  cpu10k=$(awk -v d=$((c1 - c0)) -v t="$ticks" -v r="$reqs" 'BEGIN { printf "%.2f", d / t / r * 10000 }')
  rows+=("| $name | $rps | $p50 | $p99 | $cpu10k | $reqs | $hs | $res | $ret | ${errs:-none} |")
}

measure "(a) keep-alive, same route" "$conns" bench/same.lua
measure "(b) keep-alive, alternating routes" "$conns" bench/alternate.lua
measure "(c) new connection per request" 2 bench/close.lua

{
  echo "Hot potato baseline: wrk ${secs}s, $conns connections, TLS 1.3, $(openssl x509 -in .local/certs/cert.pem -noout -text | grep -m1 'Public Key Algorithm' | awk -F': ' '{print $2}'), $(nproc) cores, $(date -u +%Y-%m-%d)"
  echo
  echo "| scenario | req/s | p50 | p99 | server CPU-s / 10k req | requests | handshakes | resumed | returned to gateway | errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee bench/results/baseline.md
