#!/usr/bin/env bash
# `make up`: the whole platform on this machine. Starts RabbitMQ, Memcached, FerretDB and Mosquitto (if not
# running), then the hub (API and recorders), one ingest instance, the stream service and a demo publisher as
# separate processes under honcho. Ctrl-C stops them all, and the platform services this script started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
LOCAL=${TRIBUTARY_LOCAL_DIR:-$ROOT/.local}
mkdir -p "$LOCAL/run"

# Which platform services were already up, so that Ctrl-C stops only what this script started.
started=()
for pair in rabbitmq:${RABBITMQ_PORT:-5672} memcached:${MEMCACHED_PORT:-11211} ferretdb:${FERRETDB_PORT:-27017} mosquitto:${MQTT_PORT:-1883}; do
  (exec 3<>"/dev/tcp/127.0.0.1/${pair#*:}") 2>/dev/null || started+=("${pair%%:*}")
done
deploy/local/services.sh up
cleanup() {
  if [ ${#started[@]} -gt 0 ]; then deploy/local/services.sh down "${started[@]}" || true; fi
}
trap cleanup EXIT

# A development secret of this machine's own, so the printed token is not the public default.
secret_file=$LOCAL/run/jwt-secret
[ -s "$secret_file" ] || head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$secret_file"
export TRIBUTARY_JWT_SECRET=$(cat "$secret_file")
export TRIBUTARY_LOG_JSON=${TRIBUTARY_LOG_JSON:-false}
export PATH=$ROOT/.venv/bin:$PATH
export PYTHONUNBUFFERED=1

honcho -f deploy/local/Procfile -d "$ROOT" start
