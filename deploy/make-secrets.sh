#!/usr/bin/env sh
# Certificates and passwords for docker-compose.yml's TLS / SASL set-up (docs/security.md).
#
#   deploy/make-secrets.sh            # writes deploy/secrets/ (git-ignored); keeps what exists
#
# A private CA signs the Kafka broker's and Redis's server certificates (names: kafka,
# redis, localhost) and one client certificate. Passwords are random. For a hospital
# deployment replace the CA and certificates with ones from the hospital's PKI and keep
# the passwords in its secret store; the file names are what the compose file mounts.
set -eu
cd "$(dirname "$0")"
out=secrets
mkdir -p "$out"
umask 077

password() { [ -s "$out/$1" ] || openssl rand -hex 24 > "$out/$1"; }
password kafka_admin_password        # the broker's own SCRAM user (inter-broker, tooling)
password kafka_vitalstream_password  # the application's SCRAM user
password redis_password              # the application's Redis ACL user
password grafana_admin_password
[ -s "$out/pseudonym_key" ] || openssl rand -hex 32 > "$out/pseudonym_key"

if [ ! -s "$out/ca.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=vitalstream compose CA" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi

# server NAME SAN...: a key (PKCS#8, as Kafka's PEM key store wants it) and a certificate.
server() {
  name=$1; san=$2
  [ -s "$out/$name.crt" ] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$out/$name.ext"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days 825 -extfile "$out/$name.ext" -out "$out/$name.crt" 2>/dev/null
  rm -f "$out/$name.csr" "$out/$name.ext"
}
server kafka "DNS:kafka,DNS:localhost,IP:127.0.0.1"
server redis "DNS:redis,DNS:localhost,IP:127.0.0.1"
server client "DNS:vitalstream"
# Kafka's PEM key store: the private key followed by its certificate chain.
cat "$out/kafka.key" "$out/kafka.crt" "$out/ca.crt" > "$out/kafka.keystore.pem"

# The dashboard's users file: one admin (add nurses and viewers with
# `vitalstream dashboard add-user deploy/secrets/dashboard_users.toml NAME --role nurse`).
# The hash is dashboard.auth's format: scrypt$N$r$p$salt$digest (base64, unpadded).
[ -s "$out/dashboard_admin_password" ] || openssl rand -base64 18 | tr -d '/+=' > "$out/dashboard_admin_password"
if [ ! -s "$out/dashboard_users.toml" ]; then
  python3 - "$out/dashboard_admin_password" "$out/dashboard_users.toml" <<'PY'
import base64, hashlib, secrets, sys
password = open(sys.argv[1]).read().strip()
salt = secrets.token_bytes(16)
digest = hashlib.scrypt(password.encode(), salt=salt, n=2**15, r=8, p=1, maxmem=128 * 2**20, dklen=32)
b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
hashed = f"scrypt${2**15}$8$1${b64(salt)}${b64(digest)}"
open(sys.argv[2], "w").write(f'[users.admin]\nrole = "admin"\nname = "Administrator"\npassword = "{hashed}"\n')
PY
fi

# The containers run as other users than the one running this script: the secrets are
# readable by them, the CA key is not needed by any container and stays private.
chmod 644 "$out"/*.crt "$out"/*.pem "$out"/*.key "$out"/*password "$out/pseudonym_key" "$out/dashboard_users.toml"
chmod 600 "$out/ca.key"
echo "secrets in $(pwd)/$out"
