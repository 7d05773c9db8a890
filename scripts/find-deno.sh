#!/usr/bin/env bash
# Prints the deno binary to use: $HOTPOTATO_DENO, else a deno >= 2.9 on PATH,
# else the pinned one from npm (node_modules/@deno/linux-x64-glibc/deno).
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${HOTPOTATO_DENO:-}" ]; then echo "$HOTPOTATO_DENO"; exit 0; fi
if d=$(command -v deno 2>/dev/null); then
  v=$("$d" --version 2>/dev/null | head -n 1 | awk '{print $2}')
  major=${v%%.*} rest=${v#*.} minor=${rest%%.*}
  if [ -n "$major" ] && { [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "${minor:-0}" -ge 9 ]; }; }; then
    echo "$d"; exit 0
  fi
fi
echo "$root/node_modules/@deno/linux-x64-glibc/deno"
