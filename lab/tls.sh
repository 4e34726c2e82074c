#!/usr/bin/env bash
# Throwaway TLS material for the lab's and the tests' brokers, made anew on
# every call (scripts/lab up, every molecule create) and never committed
# (.lab/ is ignored):
#
#   lab/tls.sh DIR
#
# DIR/ca.pem, ca.key          a CA of this run (a day's validity)
# DIR/broker.pem, broker.key  the broker's certificate, signed by it, for
#                             localhost, broker.lab.test and 127.0.0.1
# DIR/client.pem, client.key  a client certificate signed by it
#                             (CN=celery-client), for brokers that ask for one
# DIR/other-ca.pem            an unrelated CA: the tests' wrong CA
#
# Keys are RSA 2048 in PKCS#8 PEM ("BEGIN PRIVATE KEY"), mode 0600; the
# broker's copies get their own modes in lab/broker.yml.
set -euo pipefail

dir="${1:?usage: lab/tls.sh DIR}"
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
rm -f ./*.pem ./*.key ./*.csr ./*.srl ./*.ext
umask 077

subj=/O=celery-fleet-lab
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "$subj/CN=celery lab CA $(date -u +%Y%m%dT%H%M%S)" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "$subj/CN=unrelated CA" \
    -keyout other-ca.key -out other-ca.pem 2>/dev/null
rm -f other-ca.key

sign() { # NAME CN EXTENSIONS
    openssl req -newkey rsa:2048 -nodes -subj "$subj/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
sign broker localhost "subjectAltName=DNS:localhost,DNS:broker.lab.test,IP:127.0.0.1
extendedKeyUsage=serverAuth"
sign client celery-client "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 0644 ./*.pem
echo "TLS material in $dir: CA $(openssl x509 -in ca.pem -noout -subject)"
