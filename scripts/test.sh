#!/usr/bin/env bash
# The whole suite, as `make test` runs it (after `make setup`): static checks
# (deno fmt, lint, type check including JSDoc examples), then every deno test,
# unit and end to end, with the default handoff mode (direct), and the test
# files whose behaviour depends on the mode once more with the other
# (gateway; see "handoff-mode" below). Ends with a plain "N passed, M failed"
# line and exits non-zero when anything failed.
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

# Which test files run in both handoff modes: those whose behaviour depends
# on the mode say so with a line of their own, `// handoff-mode: both`, at the
# top (a request on a connection a worker holds is for another function's
# route, or the file reads HANDOFF_MODE; tests/support/system.ts says more).
# Every file runs with --handoff direct (the default); the marked ones run
# again with --handoff gateway. A file that reads HANDOFF_MODE without the
# marker fails the run here.
MARKER='^// handoff-mode: both$'
both_modes=$(grep -rl --include='*_test.ts' -- "$MARKER" tests/ | sort)
unmarked() {
  local f bad=0
  for f in $(grep -rlw --include='*_test.ts' HANDOFF_MODE tests/); do
    if ! grep -q -- "$MARKER" "$f"; then
      echo "$f reads HANDOFF_MODE but lacks the line '// handoff-mode: both'"
      bad=1
    fi
  done
  return $bad
}
step "handoff-mode markers (HANDOFF_MODE read only by marked files)" unmarked
rm -f .local/step.log

# deno test prints "ok | N passed | M failed" (or FAILED | ...) at the end.
# The gateways the tests start (and the launchers, tests/support/launched.ts)
# read HOTPOTATO_HANDOFF: the whole suite with direct (worker to worker), then
# the marked files with gateway (every route change through the gateway).
# --no-check: "deno check" above type-checked tests/ already (a failure there
# is counted); each pass would check its own set of files again.
for mode in direct gateway; do
  if [ "$mode" = direct ]; then
    files=(tests/)
    echo "== deno test, --handoff $mode: every test file"
  else
    mapfile -t files < <(printf '%s\n' "$both_modes" | grep .)
    echo "== deno test, --handoff $mode: the ${#files[@]} files marked handoff-mode: both"
    [ "${#files[@]}" -eq 0 ] && continue
  fi
  out=$(mktemp)
  HOTPOTATO_HANDOFF=$mode NO_COLOR=1 "$deno" test --no-check --no-prompt --allow-ffi --allow-run --allow-env \
    --allow-read --allow-write --allow-net=127.0.0.1 "${files[@]}" 2>&1 | tee "$out"
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
