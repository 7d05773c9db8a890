#!/usr/bin/env bash
# Runs tlsfuzzer's scripts against a TLS server and prints one line per
# script: what passed and which cases failed (docs/tls.md#conformance).
# tlsfuzzer is on no package registry; this needs GitHub (not available in
# CI), so CI runs tests/tls_conformance_test.ts instead, which turns each
# finding into a test of our own.
#
#   bash scripts/tlsfuzzer.sh PORT [SCRIPT...]     (default: the issue-22 set)
#
# Against `make start` on 8443 with an RSA certificate (most TLS 1.3 scripts
# offer RSA-PSS only):
#   openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa-key.pem \
#     -out rsa-cert.pem -days 30 -subj /CN=localhost
#   HOTPOTATO_CERT=$PWD/rsa-cert.pem HOTPOTATO_KEY=$PWD/rsa-key.pem make start
# (as root the key must be readable by the gateway's user, hotpotato-gw).
# TLSFUZZER_DIR (default .local/tlsfuzzer) holds the clones; TLSFUZZER_OUT
# (default .local/tlsfuzzer/out) each script's whole output.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${1:?usage: tlsfuzzer.sh PORT [SCRIPT...]}
shift
dir=${TLSFUZZER_DIR:-$root/.local/tlsfuzzer}
out=${TLSFUZZER_OUT:-$dir/out}
scripts=("$@")
if [ ${#scripts[@]} -eq 0 ]; then
  scripts=(test-tls13-conversation test-tls13-hrr test-tls13-ccs test-ccs
    test-tls13-ecdhe-curves test-tls13-crfg-curves test-record-layer-fragmentation
    test-tls13-zero-content-type test-large-hello test-tls13-record-layer-limits
    test-tls13-zero-length-data)
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Debian's python3, where python3-ecdsa installs (not a pyenv one on PATH).
py=/usr/bin/python3
"$py" -c 'import ecdsa' 2>/dev/null ||
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-ecdsa >/dev/null
mkdir -p "$dir" "$out"
for repo in tlsfuzzer tlslite-ng; do
  [ -d "$dir/$repo" ] || git clone -q --depth 1 "https://github.com/tlsfuzzer/$repo" "$dir/$repo"
done
ln -sfn "$dir/tlslite-ng/tlslite" "$dir/tlsfuzzer/tlslite"

cd "$dir/tlsfuzzer"
for s in "${scripts[@]}"; do
  # The TLS 1.2 scripts default to RSA key exchange and CBC, which we do not
  # offer: ECDHE with AES-GCM instead.
  case $s in
    test-ccs | test-record-layer-fragmentation) args=(-d -C TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) ;;
    test-large-hello) args=(-d) ;;
    *) args=() ;;
  esac
  rc=0
  PYTHONPATH=. timeout 300 "$py" "scripts/$s.py" -h 127.0.0.1 -p "$port" "${args[@]}" \
    >"$out/$s.txt" 2>&1 || rc=$?
  summary=$(grep -E '^(PASS|FAIL):' "$out/$s.txt" | tr '\n' ' ' || true)
  failed=$(sed -n '/^FAILED:/,/^=/p' "$out/$s.txt" | grep $'^\t' | tr -d '\t' | tr '\n' ';' || true)
  echo "$s: ${summary:-no summary (exit $rc)}${failed:+ failed: $failed}"
done
