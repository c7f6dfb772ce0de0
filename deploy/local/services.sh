#!/usr/bin/env bash
# Local platform on real services: RabbitMQ, Memcached, FerretDB (MongoDB wire protocol, SQLite backend)
# and Mosquitto (MQTT, for the mqtt connector). Idempotent: `up` starts what is not running and waits until
# every service answers; `down` stops what `up` started. Data and logs stay in the ignored .local/ folder.
#
#   deploy/local/services.sh up [rabbitmq|memcached|ferretdb|mosquitto ...]
#   deploy/local/services.sh down [...]
#   deploy/local/services.sh status
#
# Ports and names come from the environment (defaults in brackets):
#   TRIBUTARY_LOCAL_DIR [<repo>/.local]  RABBITMQ_PORT [5672]  RABBITMQ_MGMT_PORT [15672]
#   RABBITMQ_DIST_PORT [25672]  RABBITMQ_NODE [tributary@localhost]  MEMCACHED_PORT [11211]
#   FERRETDB_PORT [27017]  MQTT_PORT [1883]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL=${TRIBUTARY_LOCAL_DIR:-$ROOT/.local}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
RABBITMQ_MGMT_PORT=${RABBITMQ_MGMT_PORT:-15672}
RABBITMQ_DIST_PORT=${RABBITMQ_DIST_PORT:-25672}
RABBITMQ_NODE=${RABBITMQ_NODE:-tributary@localhost}
MEMCACHED_PORT=${MEMCACHED_PORT:-11211}
FERRETDB_PORT=${FERRETDB_PORT:-27017}
MQTT_PORT=${MQTT_PORT:-1883}
RABBITMQCTL=/usr/sbin/rabbitmqctl
[ -x "$RABBITMQCTL" ] || RABBITMQCTL=rabbitmqctl

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  log "$1 did not open port $2 within $3 s; see $LOCAL/log/"
  return 1
}

need_packages() { # install Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() { # name pidfile
  if pid_alive "$2"; then
    local pid
    pid=$(cat "$2")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "$1 stopped"
  fi
  rm -f "$2"
}

rabbit_env() {
  export RABBITMQ_NODENAME=$RABBITMQ_NODE RABBITMQ_NODE_PORT=$RABBITMQ_PORT RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT
  export RABBITMQ_MNESIA_BASE=$LOCAL/data/rabbitmq-$RABBITMQ_PORT RABBITMQ_LOG_BASE=$LOCAL/log/rabbitmq-$RABBITMQ_PORT
  export RABBITMQ_PID_FILE=$LOCAL/run/rabbitmq-$RABBITMQ_PORT.pid
  export RABBITMQ_ENABLED_PLUGINS_FILE=$LOCAL/run/rabbitmq-$RABBITMQ_PORT.plugins
  export RABBITMQ_CONFIG_FILE=$LOCAL/run/rabbitmq-$RABBITMQ_PORT.conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$LOCAL/run/rabbitmq-$RABBITMQ_PORT.advanced.config
}

up_rabbitmq() {
  need_packages rabbitmq-server
  rabbit_env
  mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
  if ! port_open "$RABBITMQ_PORT"; then
    printf 'listeners.tcp.default = 127.0.0.1:%s\nmanagement.tcp.port = %s\nmanagement.tcp.ip = 127.0.0.1\nloopback_users = none\n' \
      "$RABBITMQ_PORT" "$RABBITMQ_MGMT_PORT" >"$RABBITMQ_CONFIG_FILE"
    echo '[].' >"$RABBITMQ_ADVANCED_CONFIG_FILE"
    echo '[rabbitmq_management].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    # Debian's wrapper drops root to the rabbitmq user: give it the node's folders and files.
    if [ "$(id -u)" -eq 0 ] && id rabbitmq >/dev/null 2>&1; then
      chown -R rabbitmq: "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE" "$RABBITMQ_CONFIG_FILE" \
        "$RABBITMQ_ADVANCED_CONFIG_FILE" "$RABBITMQ_ENABLED_PLUGINS_FILE"
      chmod 777 "$LOCAL/run"
    fi
    log "starting rabbitmq $RABBITMQ_NODE on $RABBITMQ_PORT (management $RABBITMQ_MGMT_PORT)"
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  # await_startup fails at once while the node is not yet registered: retry it.
  local i
  for ((i = 0; i < 90; i++)); do
    "$RABBITMQCTL" -n "$RABBITMQ_NODE" await_startup --timeout 5 >/dev/null 2>&1 && break
    sleep 1
  done
  ((i < 90)) || { log "rabbitmq did not start; see $RABBITMQ_LOG_BASE"; return 1; }
  wait_port rabbitmq "$RABBITMQ_PORT" 30
  wait_port rabbitmq-management "$RABBITMQ_MGMT_PORT" 60
  log "rabbitmq ready on 127.0.0.1:$RABBITMQ_PORT"
}

down_rabbitmq() {
  rabbit_env
  if "$RABBITMQCTL" -n "$RABBITMQ_NODE" status >/dev/null 2>&1; then
    "$RABBITMQCTL" -n "$RABBITMQ_NODE" stop >/dev/null 2>&1 || true
    log "rabbitmq stopped"
  fi
  stop_pidfile rabbitmq "$RABBITMQ_PID_FILE"
}

up_memcached() {
  need_packages memcached
  local pidfile=$LOCAL/run/memcached-$MEMCACHED_PORT.pid
  if ! port_open "$MEMCACHED_PORT"; then
    log "starting memcached on $MEMCACHED_PORT"
    # Debian's memcached refuses to run as root without -u.
    memcached -d -u "$(id -un)" -l 127.0.0.1 -p "$MEMCACHED_PORT" -m 256 -c 4096 -P "$pidfile" \
      >>"$LOCAL/log/memcached-$MEMCACHED_PORT.log" 2>&1
  fi
  wait_port memcached "$MEMCACHED_PORT" 10
  log "memcached ready on 127.0.0.1:$MEMCACHED_PORT"
}

down_memcached() { stop_pidfile memcached "$LOCAL/run/memcached-$MEMCACHED_PORT.pid"; }

ferretdb_bin() {
  local bin=$LOCAL/bin/ferretdb-local src=$ROOT/deploy/local/ferretdb
  if [ ! -x "$bin" ] || [ "$src/main.go" -nt "$bin" ] || [ "$src/go.sum" -nt "$bin" ]; then
    log "building FerretDB (embedded; SQLite backend by default) into $bin"
    (cd "$src" && go build -o "$bin" .)
  fi
  echo "$bin"
}

set_aside_unopenable() { # data dir: database files FerretDB cannot open, moved to <data>-broken/
  # FerretDB killed while making a database (it has crashed under heavy concurrent writes: SIGBUS in SQLite's WAL
  # index) can leave a file without its `_ferretdb_collections` table, and then refuses to start at all
  # ("no such table: _ferretdb_collections"). Such a file holds nothing FerretDB can read; it is kept aside, named.
  local f
  command -v python3 >/dev/null || return 0 # the check needs it; without it, nothing is moved
  for f in "$1"/*.sqlite; do
    [ -e "$f" ] || continue
    python3 - "$f" <<'PY' && continue
import sqlite3, sys
try:
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    ok = db.execute("SELECT 1 FROM sqlite_master WHERE name = '_ferretdb_collections'").fetchone() is not None
except sqlite3.Error:
    ok = False
sys.exit(0 if ok else 1)
PY
    mkdir -p "$1-broken"
    mv "$f" "$1-broken/"
    for side in "$f-wal" "$f-shm"; do [ -e "$side" ] && mv "$side" "$1-broken/"; done
    log "ferretdb cannot open database file $(basename "$f"): moved to $1-broken/ (its database starts empty)"
  done
}

up_ferretdb() {
  local bin pidfile=$LOCAL/run/ferretdb-$FERRETDB_PORT.pid data=$LOCAL/data/ferretdb-$FERRETDB_PORT
  bin=$(ferretdb_bin)
  if ! port_open "$FERRETDB_PORT"; then
    log "starting ferretdb on $FERRETDB_PORT"
    mkdir -p "$data"
    set_aside_unopenable "$data"
    nohup "$bin" -listen "127.0.0.1:$FERRETDB_PORT" -data "$data" \
      >>"$LOCAL/log/ferretdb-$FERRETDB_PORT.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  wait_port ferretdb "$FERRETDB_PORT" 30
  log "ferretdb ready on 127.0.0.1:$FERRETDB_PORT"
}

down_ferretdb() { stop_pidfile ferretdb "$LOCAL/run/ferretdb-$FERRETDB_PORT.pid"; }

up_mosquitto() {
  need_packages mosquitto
  local pidfile=$LOCAL/run/mosquitto-$MQTT_PORT.pid conf=$LOCAL/run/mosquitto-$MQTT_PORT.conf
  if ! port_open "$MQTT_PORT"; then
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\npid_file %s\n' "$MQTT_PORT" "$pidfile" >"$conf"
    [ "$(id -u)" -eq 0 ] && echo "user root" >>"$conf"
    log "starting mosquitto on $MQTT_PORT"
    mosquitto -d -c "$conf" >>"$LOCAL/log/mosquitto-$MQTT_PORT.log" 2>&1
  fi
  wait_port mosquitto "$MQTT_PORT" 10
  log "mosquitto ready on 127.0.0.1:$MQTT_PORT"
}

down_mosquitto() { stop_pidfile mosquitto "$LOCAL/run/mosquitto-$MQTT_PORT.pid"; }

status() {
  for pair in "rabbitmq:$RABBITMQ_PORT" "rabbitmq-management:$RABBITMQ_MGMT_PORT" "memcached:$MEMCACHED_PORT" \
    "ferretdb:$FERRETDB_PORT" "mosquitto:$MQTT_PORT"; do
    if port_open "${pair#*:}"; then echo "${pair%%:*} up (${pair#*:})"; else echo "${pair%%:*} down (${pair#*:})"; fi
  done
}

mkdir -p "$LOCAL/run" "$LOCAL/log" "$LOCAL/data" "$LOCAL/bin"
action=${1:-up}
shift || true
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(rabbitmq memcached ferretdb mosquitto)
case $action in
  up) for c in "${components[@]}"; do "up_$c"; done ;;
  down) for c in "${components[@]}"; do "down_$c"; done ;;
  status) status ;;
  packages) need_packages "$@" ;; # Debian packages the tests use (promtool: prometheus)
  *) echo "usage: $0 up|down|status [component ...] | packages <debian package ...>" >&2; exit 2 ;;
esac
