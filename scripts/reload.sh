#!/usr/bin/env bash
# ./hp reload (deno task reload): send SIGHUP to this user's Hot Potato
# launchers started from this checkout (`make start`, `./hp start`,
# `./hp dev`), which reload every function without dropping a connection. ./hp reload --gateway sends SIGUSR1
# instead: a new gateway process takes over from the running one. The launcher's own output
# says how each reload went (versions, time taken, connections handed over,
# failures); /metrics on the admin port counts them (hotpotato_reloads_total).
set -euo pipefail
signal=HUP
case "${1:-}" in
  "") ;;
  --gateway) signal=USR1 ;;
  *)
    echo "usage: ./hp reload [--gateway]" >&2
    exit 2
    ;;
esac
uid=$(id -u)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
sent=0
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = $$ ] && continue
  owner=$(stat -c %u "$dir" 2>/dev/null) || continue
  [ "$owner" = "$uid" ] || continue
  [ "$(readlink "$dir/cwd" 2>/dev/null)" = "$root" ] || continue # another checkout's
  cmdline=$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null) || continue
  case "$cmdline" in
    *" run "*"src/operations/launcher.ts"*)
      kill -"$signal" "$pid" && echo "reload: sent SIG$signal to launcher pid $pid" && sent=$((sent + 1))
      ;;
  esac
done
if [ "$sent" = 0 ]; then
  echo "reload: no launcher of yours runs from $root (start one with make start)" >&2
  exit 1
fi
