#!/usr/bin/env bash
# A gateway killed under load (issue 24): the shipped `./hp start` with
# --gateways N, 50 keep-alive clients alternating routes (wrk, alternate.lua)
# and a client that opens a new connection every 10 ms (curl -m 8, one
# request each); the primary gateway is SIGKILLed KILLS times, PAUSE s apart.
# The first kill comes once the gateway has run 11 s (healthy: restarted at
# once; in a crash loop the launcher backs off).
# Prints: new connections refused (curl exit 7), new connections answered
# other than 200, the slowest new connection beside the median, wrk's
# errors on the live connections (by status and body), and how the time
# from the first kill to the first answer on a new connection splits (the
# new gateway listening: the restart and Deno's start; each worker
# registered with it; the first answer).
#
#   bash bench/gateway_kill.sh [GATEWAYS=1] [KILLS=1] [PAUSE=1]
set -uo pipefail
cd "$(dirname "$0")/.."
gateways=${1:-1} kills=${2:-1} pause=${3:-1}
deno=${DENO:-$(scripts/find-deno.sh)}
wrk=.local/wrk/bin/wrk
[ -x "$wrk" ] || bash bench/wrk/build.sh
port=${BENCH_PORT:-9643}
out=$(mktemp -d)
started=$SECONDS
HOTPOTATO_PORT=$port HOTPOTATO_ADMIN_PORT=off setsid "$deno" task start --gateways "$gateways" \
  >"$out/system.log" 2>&1 </dev/null &
for _ in $(seq 1 120); do
  [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/product?a=1&b=1")" = 200 ] &&
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/sum?a=1&b=1")" = 200 ] && break
  sleep 0.25
done
launcher=$(pgrep -f "src/operations/launcher.ts" | head -n 1)
wait_s=$((started + 11 - SECONDS > 3 ? started + 11 - SECONDS : 3))
seconds=$((wait_s + kills * pause + 4))
BENCH_DIR=bench "$wrk" -t2 -c50 -d"${seconds}s" -s bench/alternate_errors.lua "https://127.0.0.1:$port" \
  >"$out/wrk.txt" 2>&1 &
wrkpid=$!
# New connections, one every 10 ms, each in the background.
(
  end=$((SECONDS + seconds))
  i=0
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    (curl -sk -m 8 -o /dev/null -w '%{http_code} %{time_total}\n' \
      "https://127.0.0.1:$port/sum?a=$i&b=1" >>"$out/new.txt" 2>/dev/null ||
      echo "exit$? 0" >>"$out/new.txt") &
    sleep 0.01
  done
  wait
) &
newpid=$!
sleep "$wait_s"
for k in $(seq 1 "$kills"); do
  gw=""
  for c in $(pgrep -P "$launcher"); do
    for p in $c $(pgrep -P "$c") $(pgrep -P "$(pgrep -P "$c" | head -n 1)" 2>/dev/null); do
      if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "gateway.ts" &&
        ! tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q "HOTPOTATO_SATELLITE=on"; then
        gw=$p
      fi
    done
  done
  [ -n "$gw" ] && kill -9 "$gw" && echo "kill $k: gateway pid $gw"
  sleep "$pause"
done
wait "$newpid"
wait "$wrkpid"
pkill -INT -f "src/operations/launcher.ts"
sleep 3
total=$(wc -l <"$out/new.txt")
refused=$(grep -c '^exit7 ' "$out/new.txt")
other=$(grep -vc '^200 ' "$out/new.txt")
read -r median slowest < <(grep '^200 ' "$out/new.txt" | awk '{print $2}' | sort -n |
  awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[NR]}')
echo "gateways=$gateways kills=$kills pause=${pause}s: new connections $total, refused $refused," \
  "answered other than 200: $other; new-connection answer: median ${median}s, slowest ${slowest}s"
grep -E "Non-2xx|Socket errors|requests in" "$out/wrk.txt" | sed 's/^/  wrk (50 keep-alive, alternating): /'
grep '^not-200 ' "$out/wrk.txt" | sort | uniq -c | sort -rn | head -5 | sed 's/^/  live, /'
grep -v '^200 ' "$out/new.txt" | awk '{print $1}' | sort | uniq -c | sort -rn | head -5 |
  sed 's/^/  new connection, not 200: /'
# The first kill's timeline, from the children's log times (one clock; a
# client's own stamps would carry its fork delays): the gateway's death (the
# first worker to see its control socket close), the new gateway listening,
# each worker registered with it, the first answer to a request a new
# connection brought (a "handoffs 1" line).
ms() { awk -F'[:.]' '{ printf "%d\n", (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'; }
death=$(grep -E "\| .* gateway went away" "$out/system.log" | head -n 1 | awk '{print $3}' | ms)
listen=$(grep -E "^gateway +\| .*listening on the launcher's socket" "$out/system.log" | sed -n 2p |
  awk '{print $3}' | ms)
if [ -n "$death" ] && [ -n "$listen" ]; then
  regs=$(grep -E "\| .*registered .* with gateway pid" "$out/system.log" | awk '{print $3}' | ms |
    sort -n | awk -v l="$listen" -v d="$death" '$1 >= l {printf "%d ", $1 - d}')
  first=$(grep -E " 200 .* handoffs 1$" "$out/system.log" | awk '{print $3}' | ms | sort -n |
    awk -v l="$listen" -v d="$death" '$1 >= l {print $1 - d; exit}')
  echo "  first kill, ms after the gateway died: new gateway listening $((listen - death))," \
    "workers registered ${regs}, first answer on a new connection $first"
fi
rm -rf "$out"
