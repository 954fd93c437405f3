#!/usr/bin/env bash
# analytics-stack.sh start|stop — the four services as processes on loopback
# for the analytics load scenarios of hgpload (docs/performance.md):
# gateway :18180, counter :18181, consumer :18182, analytics :18183, routed
# by static URLs (no Consul), on a private redis-server (:18179, no
# persistence: the counter's outbox and keys have fixed names), the shared
# Kafka of scripts/mw.sh (a fresh topic per start) and MariaDB (a fresh
# database per start). Rate limits are raised far above the load.
#
#   source .run/env; bash loadtest/scripts/analytics-stack.sh start
#   go run ./loadtest/cmd/hgpload -url http://127.0.0.1:18180 -op topitems -rate 1000 -duration 20s
#   bash loadtest/scripts/analytics-stack.sh stop
set -euo pipefail
cmd=${1:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
run=${HGP_LOADSTACK_DIR:-/tmp/hgp-loadstack}
secret=${HGP_JWT_HS256_SECRET:-loadstack-jwt-secret-0123456789abcdef}
identity=loadstack-identity-secret-0123456789ab

stop() {
  for f in "$run"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

wait_port() { # host:port
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "analytics-stack: $1 did not open" >&2; return 1
}

start() {
  : "${HGP_TEST_KAFKA_BROKERS:?source .run/env (scripts/mw.sh start kafka mariadb)}"
  : "${HGP_TEST_MYSQL_DSN:?source .run/env}"
  stop
  mkdir -p "$run/bin"
  (cd "$root" && go build -o "$run/bin/" ./services/gateway/cmd/gateway ./services/counter/cmd/counter \
    ./services/consumer/cmd/consumer ./services/analytics/cmd/analytics)
  suffix=$(date +%s)
  topic=hgp-load-$suffix
  db=hgp_load_$suffix
  mysql_dsn=${HGP_TEST_MYSQL_DSN/\/highgopress\?//$db?}
  [[ $HGP_TEST_MYSQL_DSN =~ ^([^:]+):([^@]*)@tcp\(([^:]+):([0-9]+)\) ]] || { echo "analytics-stack: DSN not understood" >&2; exit 1; }
  MYSQL_PWD=${BASH_REMATCH[2]} mysql -h"${BASH_REMATCH[3]}" -P"${BASH_REMATCH[4]}" -u"${BASH_REMATCH[1]}" -e "CREATE DATABASE $db"
  redis-server --port 18179 --bind 127.0.0.1 --save '' --appendonly no --dir "$run" >"$run/redis.log" 2>&1 &
  echo $! >"$run/redis.pid"
  wait_port 127.0.0.1:18179
  common=(HGP_LOG_LEVEL=warn HGP_REDIS_ADDR=127.0.0.1:18179 HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" HGP_KAFKA_TOPIC="$topic")
  launch() { # name addr vars...
    local name=$1 addr=$2; shift 2
    env -i PATH="$PATH" HOME="$HOME" "${common[@]}" "$@" "$run/bin/$name" >"$run/$name.log" 2>&1 &
    echo $! >"$run/$name.pid"
    wait_port "$addr"
  }
  launch consumer 127.0.0.1:18182 HGP_CONSUMER_ADDR=127.0.0.1:18182 HGP_KAFKA_DLQ_TOPIC="$topic-dlq" \
    HGP_KAFKA_GROUP="hgp-load-$suffix" HGP_MYSQL_DSN="$mysql_dsn" HGP_KAFKA_PARTITIONS=4
  launch counter 127.0.0.1:18181 HGP_COUNTER_ADDR=127.0.0.1:18181 HGP_IDENTITY_SECRET=$identity HGP_MYSQL_DSN="$mysql_dsn"
  launch analytics 127.0.0.1:18183 HGP_ANALYTICS_ADDR=127.0.0.1:18183 HGP_KAFKA_DLQ_TOPIC="$topic-dlq" \
    HGP_ANALYTICS_GROUP="hgp-load-an-$suffix"
  launch gateway 127.0.0.1:18180 HGP_GATEWAY_ADDR=127.0.0.1:18180 HGP_IDENTITY_SECRET=$identity \
    HGP_JWT_HS256_SECRET="$secret" HGP_GATEWAY_COUNTER_URLS=http://127.0.0.1:18181 \
    HGP_GATEWAY_ANALYTICS_URLS=http://127.0.0.1:18183 HGP_RATE_WRITE_USER=100000-S HGP_RATE_READ_USER=100000-S \
    HGP_RATE_WRITE_IP=1000000-S HGP_RATE_READ_IP=1000000-S
  echo "analytics-stack: gateway http://127.0.0.1:18180 (topic $topic, database $db, logs in $run)"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
