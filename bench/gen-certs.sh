#!/bin/sh
# Throwaway PKI for the HAProxy mTLS pair: a P-256 CA, a server certificate
# (DNS server.local + a SPIFFE URI) and a client certificate (SPIFFE URI).
# Usage: bench/gen-certs.sh [DIR]   (default bench/out/pki). Never use these keys elsewhere.
set -eu
dir=${1:-$(dirname "$0")/out/pki}
mkdir -p "$dir"
cd "$dir"
if [ -s ca.pem ] && [ -s server.bundle.pem ] && [ -s client.bundle.pem ]; then
  exit 0
fi
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 30 \
  -subj "/O=zring-bench/CN=zring bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for who in server client; do
  if [ $who = server ]; then
    san="DNS:server.local,URI:spiffe://cluster.local/ns/default/sa/server"; eku=serverAuth
  else
    san="URI:spiffe://cluster.local/ns/default/sa/client"; eku=clientAuth
  fi
  openssl req $ec -keyout $who.key -out $who.csr -subj "/O=zring-bench/CN=$who.local" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
    "$san" "$eku" > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile $who.ext -out $who.pem 2>/dev/null
  cat $who.pem $who.key > $who.bundle.pem
  rm -f $who.csr $who.ext
done
chmod 600 *.key *.bundle.pem   # haproxy loads them as root, before dropping privileges
echo "$dir"
