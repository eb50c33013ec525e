#!/usr/bin/env bash
# Start the compose file's Kafka: fill the passwords into server.properties, format the
# storage once with the SCRAM users (KRaft keeps them in its metadata log), then run.
set -euo pipefail
secrets=/etc/kafka/secrets
config=/tmp/server.properties
admin=$(cat "$secrets/kafka_admin_password")
app=$(cat "$secrets/kafka_vitalstream_password")
sed "s/@KAFKA_ADMIN_PASSWORD@/$admin/" /etc/kafka/vitalstream/server.properties > "$config"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format --config "$config" --cluster-id "${CLUSTER_ID:-4L6g3nShT-eMCtK--X86sw}" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$admin]" \
    --add-scram "SCRAM-SHA-512=[name=vitalstream,password=$app]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
