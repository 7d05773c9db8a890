#!/usr/bin/env bash
# Creates a development certificate authority and a server certificate it
# signs, for localhost, 127.0.0.1 and ::1, in .local/certs/ (git-ignored,
# mode 0700). The server key is ECDSA P-256 by default, RSA-2048 with
# HOTPOTATO_CERT_TYPE=rsa (cert-rsa.pem / key-rsa.pem). Clients trust ca.pem.
# Idempotent: existing files are kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/.local/certs
type=${HOTPOTATO_CERT_TYPE:-ecdsa}
case "$type" in
  ecdsa) cert=$dir/cert.pem key=$dir/key.pem newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
  rsa) cert=$dir/cert-rsa.pem key=$dir/key-rsa.pem newkey=(-newkey rsa:2048) ;;
  *) echo "dev-cert: HOTPOTATO_CERT_TYPE must be ecdsa or rsa" >&2; exit 1 ;;
esac
[ -s "$cert" ] && [ -s "$key" ] && [ -s "$dir/ca.pem" ] && exit 0
command -v openssl >/dev/null || { echo "dev-cert: openssl is needed" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca-key.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -sha256 \
    -subj "/CN=Hot Potato development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -new "${newkey[@]}" -nodes -subj "/CN=localhost" -keyout "$key" -out "$tmp/req.csr" 2>/dev/null
cat > "$tmp/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$tmp/req.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
  -days 825 -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$dir/ca.pem" > "$cert"
chmod 600 "$key" "$dir/ca-key.pem"
chmod 644 "$cert" "$dir/ca.pem"
echo "dev-cert: wrote $cert ($type), signed by $dir/ca.pem"
