#!/usr/bin/env bash
# The whole suite, as `make test` runs it (after `make setup`): static checks
# (deno fmt, lint, type check including JSDoc examples), then every deno test,
# unit and end to end, in both handoff modes. Ends with a plain "N passed, M failed" line and exits
# non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
deno=${1:-$(scripts/find-deno.sh)}
passed=0 failed=0

step() {
  local name=$1; shift
  if "$@" > .local/step.log 2>&1; then
    echo "ok   $name"; passed=$((passed + 1))
  else
    echo "FAIL $name"; sed 's/^/     /' .local/step.log | tail -n 40; failed=$((failed + 1))
  fi
}

mkdir -p .local
# As root the launcher runs each role as a user of its own, who must be able
# to pass through every directory above the checkout (a CI clone may sit in
# a private temporary directory): give those directories x for others
# (search only, not read), and say so.
if [ "$(id -u)" = 0 ]; then
  dir=$(pwd -P)
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    if [ -d "$dir" ] && [ "$(( 0$(stat -c %a "$dir") & 1 ))" = 0 ]; then
      chmod o+x "$dir" && echo "test.sh: chmod o+x $dir (the roles' users pass through to the checkout)"
    fi
  done
fi
step "deno fmt --check" "$deno" fmt --check
step "deno lint" "$deno" lint
step "deno check" "$deno" check mod.ts gateway.ts workers/ src/ ffi/ tests/
step "deno check --doc (JSDoc examples)" "$deno" check --doc mod.ts gateway.ts workers/ src/ ffi/
rm -f .local/step.log

# deno test prints "ok | N passed | M failed" (or FAILED | ...) at the end.
# The whole suite runs twice: gateways in the default handoff mode (direct,
# worker to worker), then with HOTPOTATO_HANDOFF=gateway (every route change
# through the gateway), which every gateway the tests start reads.
for mode in direct gateway; do
  echo "== deno test, --handoff $mode"
  out=$(mktemp)
  HOTPOTATO_HANDOFF=$mode NO_COLOR=1 "$deno" test --no-prompt --allow-ffi --allow-run --allow-env \
    --allow-read --allow-write --allow-net=127.0.0.1 tests/ 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$out" | tail -n 1)
  rm -f "$out"
  if [ -n "$summary" ]; then
    p=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
    f=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
    passed=$((passed + p)) failed=$((failed + f))
    [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1)) # crashed after the summary
  else
    echo "deno test (--handoff $mode) printed no summary (exit $status)"
    failed=$((failed + 1))
  fi
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
