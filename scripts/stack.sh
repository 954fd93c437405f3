#!/usr/bin/env bash
# The local multi-process stack: real middleware from scripts/mw.sh and every
# service as its own process, logs and pids under .run/stack/.
#
#   scripts/stack.sh up      build, start middleware and services, print a dev token
#   scripts/stack.sh down    stop services and middleware (STACK_KEEP_MIDDLEWARE=1:
#                            services only)
#   scripts/stack.sh status  what is running
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.run/stack"
BIN="$ROOT/.bin"
MIDDLEWARE=${STACK_MIDDLEWARE:-redis mariadb kafka consul}
SERVICES=(counter consumer gateway)

log() { printf '[stack %s] %s\n' "$(date +%T)" "$*" >&2; }

secret() {
  local f="$RUN/$1"
  [ -s "$f" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f"
  cat "$f"
}

wait_http() { # url deadline-seconds: a real read, gateway → counter → Redis
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
      -d '{"items":[{"namespace":"probe","id":"up"}]}' "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.2
  done
}

start_service() { # name, then env assignments
  local name=$1; shift
  local pidf="$RUN/$name.pid"
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidf"))"; return
  fi
  env "$@" "$BIN/$name" >>"$RUN/$name.log" 2>&1 &
  echo $! > "$pidf"
  log "$name started (pid $!, log .run/stack/$name.log)"
}

up() {
  mkdir -p "$RUN" "$BIN"
  bash "$ROOT/scripts/mw.sh" start $MIDDLEWARE
  # shellcheck disable=SC1091
  source "$ROOT/.run/env"
  for s in "${SERVICES[@]}"; do
    log "building $s"
    (cd "$ROOT" && go build -o "$BIN/$s" "./services/$s/cmd/$s")
  done
  local ident jwt
  ident=$(secret identity.secret)
  jwt=$(secret jwt.secret)
  # Every service registers with Consul; the gateway routes by Consul's
  # catalog (no static backend list).
  start_service counter HGP_IDENTITY_SECRET="$ident" HGP_REDIS_ADDR="$HGP_TEST_REDIS_ADDR" \
    HGP_COUNTER_ADDR=127.0.0.1:8081 HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" HGP_MYSQL_DSN="$HGP_TEST_MYSQL_DSN" \
    HGP_RECONCILE_INTERVAL=1m HGP_CONSUL_ADDR="$HGP_TEST_CONSUL_ADDR" HGP_METRICS_ADDR=127.0.0.1:9181
  start_service consumer HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" HGP_MYSQL_DSN="$HGP_TEST_MYSQL_DSN" \
    HGP_CONSUMER_ADDR=127.0.0.1:8083 HGP_CONSUL_ADDR="$HGP_TEST_CONSUL_ADDR"
  start_service gateway HGP_IDENTITY_SECRET="$ident" HGP_JWT_HS256_SECRET="$jwt" \
    HGP_GATEWAY_ADDR=127.0.0.1:8080 HGP_CONSUL_ADDR="$HGP_TEST_CONSUL_ADDR" \
    HGP_REDIS_ADDR="$HGP_TEST_REDIS_ADDR" HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" \
    HGP_METRICS_ADDR=127.0.0.1:9180
  if ! wait_http http://127.0.0.1:8080/highgopress.counter.v1.CounterService/GetCounts 30; then
    log "gateway did not answer; see .run/stack/*.log"; exit 1
  fi
  local token
  token=$(cd "$ROOT" && go run ./services/gateway/cmd/devtoken -secret "$jwt" -sub dev-user)
  log "stack is up: gateway http://127.0.0.1:8080 (metrics: gateway :9180, counter :9181, consumer :8083/metrics)"
  echo "export TOKEN=$token"
}

down() {
  local i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    local s=${SERVICES[$i]}
    local pidf="$RUN/$s.pid"
    [ -f "$pidf" ] || continue
    local pid; pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      local deadline=$((SECONDS + 15))
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      log "$s stopped"
    fi
    rm -f "$pidf"
  done
  if [ "${STACK_KEEP_MIDDLEWARE:-0}" != 1 ]; then
    bash "$ROOT/scripts/mw.sh" stop all
  fi
}

status() {
  for s in "${SERVICES[@]}"; do
    local pidf="$RUN/$s.pid"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
      echo "$s: running (pid $(cat "$pidf"))"
    else
      echo "$s: stopped"
    fi
  done
  bash "$ROOT/scripts/mw.sh" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
