#!/usr/bin/env bash
# Creates a self-signed development certificate (ECDSA P-256 by default, or
# RSA-2048 with HOTPOTATO_CERT_TYPE=rsa) for localhost and 127.0.0.1, in
# .local/certs/ (git-ignored). Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/.local/certs
type=${HOTPOTATO_CERT_TYPE:-ecdsa}
cert=$dir/cert.pem key=$dir/key.pem
[ "$type" = rsa ] && cert=$dir/cert-rsa.pem key=$dir/key-rsa.pem
[ -s "$cert" ] && [ -s "$key" ] && exit 0
mkdir -p "$dir"
chmod 700 "$dir"
case "$type" in
  ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
  rsa) newkey=(-newkey rsa:2048) ;;
  *) echo "dev-cert: HOTPOTATO_CERT_TYPE must be ecdsa or rsa" >&2; exit 1 ;;
esac
umask 077
openssl req -x509 "${newkey[@]}" -nodes -days 825 -sha256 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -keyout "$key" -out "$cert" 2>/dev/null
chmod 600 "$key"
echo "dev-cert: wrote $cert ($type)"
