#!/usr/bin/env bash
# Alternating before/after measurement of the like path's CPU per request:
# two builds of gateway and counter (directories holding a `gateway` and a
# `counter` binary), run in turns A B B A A B … on private ports next to the
# shared middleware (scripts/mw.sh) and one consumer, each turn a warm-up and
# then a closed-loop like run of warm items with the CPU every process spent
# per like read from /proc/<pid>/stat. On a machine shared with other work
# only alternation in the same time window makes two builds comparable; the
# load average is recorded with every turn and the medians printed at the end.
#
#   scripts/perf-ab.sh DIR_A DIR_B [rounds]     (default 3 rounds; 2 turns each)
#
# AB_DURATION (8s), AB_WARMUP (3s), AB_CONCURRENCY (32), AB_OP (like),
# AB_FLAGS (extra hgpload flags). Results: JSON lines in $AB_OUT
# (default .run/perf/ab.jsonl). Loopback only; every run bounded in time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
A=$(cd "$1" && pwd) B=$(cd "$2" && pwd) ROUNDS=${3:-3}
DUR=${AB_DURATION:-8s} WARM=${AB_WARMUP:-3s} CONC=${AB_CONCURRENCY:-32} OP=${AB_OP:-like}
OUT=${AB_OUT:-$ROOT/.run/perf/ab.jsonl}
RUN="$ROOT/.run/perf-ab"
mkdir -p "$RUN" "$(dirname "$OUT")"
log() { printf '[ab %s] %s\n' "$(date +%T)" "$*" >&2; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

bash "$ROOT/scripts/mw.sh" start redis mariadb kafka consul >/dev/null
# shellcheck disable=SC1091
source "$ROOT/.run/env"
(cd "$ROOT" && go build -o "$RUN/hgpload" ./loadtest/cmd/hgpload && go build -o "$RUN/consumer" ./services/consumer/cmd/consumer)
for f in identity jwt; do [ -s "$RUN/$f.secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/$f.secret"; done
IDENT=$(cat "$RUN/identity.secret") JWT=$(cat "$RUN/jwt.secret")
TAG="ab-$$"
GW_PORT=18580 CT_PORT=18581
PIDS=()
stop() { # pid…: TERM, then KILL after 15 s
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    local deadline=$((SECONDS + 15))
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
cleanup() { [ ${#PIDS[@]} -eq 0 ] || stop "${PIDS[@]}"; }
trap cleanup EXIT

env HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" HGP_MYSQL_DSN="$HGP_TEST_MYSQL_DSN" \
  HGP_CONSUMER_ADDR=127.0.0.1:18583 HGP_CONSUL_ADDR="$HGP_TEST_CONSUL_ADDR" HGP_CONSUL_TAGS="$TAG" \
  "$RUN/consumer" >>"$RUN/consumer.log" 2>&1 &
CONSUMER=$!
PIDS+=("$CONSUMER")

REDIS_PID=$(pgrep -f "redis-server ${HGP_TEST_REDIS_ADDR}" | head -1 || true)
KAFKA_PID=$(pgrep -f 'kafka.Kafka' | head -1 || true)
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

turn() { # variant-name dir
  local name=$1 dir=$2
  env HGP_IDENTITY_SECRET="$IDENT" HGP_REDIS_ADDR="$HGP_TEST_REDIS_ADDR" HGP_COUNTER_ADDR=127.0.0.1:$CT_PORT \
    HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" HGP_MYSQL_DSN="$HGP_TEST_MYSQL_DSN" HGP_RECONCILE_INTERVAL=1m \
    HGP_CONSUL_ADDR="$HGP_TEST_CONSUL_ADDR" HGP_CONSUL_TAGS="$TAG" HGP_METRICS_ADDR=127.0.0.1:19581 \
    "$dir/counter" >>"$RUN/counter-$name.log" 2>&1 &
  local ct=$!
  env HGP_IDENTITY_SECRET="$IDENT" HGP_JWT_HS256_SECRET="$JWT" HGP_GATEWAY_ADDR=127.0.0.1:$GW_PORT \
    HGP_CONSUL_ADDR="$HGP_TEST_CONSUL_ADDR" HGP_GATEWAY_CONSUL_TAG="$TAG" HGP_REDIS_ADDR="$HGP_TEST_REDIS_ADDR" \
    HGP_KAFKA_BROKERS="$HGP_TEST_KAFKA_BROKERS" HGP_METRICS_ADDR=127.0.0.1:19580 \
    HGP_RATE_WRITE_USER=10000000-S HGP_RATE_READ_USER=10000000-S HGP_RATE_WRITE_IP=10000000-S HGP_RATE_READ_IP=10000000-S \
    "$dir/gateway" >>"$RUN/gateway-$name.log" 2>&1 &
  local gw=$!
  PIDS+=("$ct" "$gw")
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
      -d '{"items":[{"namespace":"probe","id":"up"}]}' "http://127.0.0.1:$GW_PORT/highgopress.counter.v1.CounterService/GetCounts" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { log "$name did not come up; see $RUN/*-$name.log"; exit 1; }
    sleep 0.2
  done
  # shellcheck disable=SC2086
  "$RUN/hgpload" -url "http://127.0.0.1:$GW_PORT" -op "$OP" -secret "$JWT" -prefix ab- -duration "$WARM" \
    -concurrency "$CONC" ${AB_FLAGS:-} >/dev/null 2>&1
  local la; la=$(cut -d' ' -f1 /proc/loadavg)
  local g0 c0 r0 k0 u0
  g0=$(cpu $gw) c0=$(cpu $ct) r0=$(cpu "$REDIS_PID") k0=$(cpu "$KAFKA_PID") u0=$(cpu $CONSUMER)
  local line
  # shellcheck disable=SC2086
  "$RUN/hgpload" -url "http://127.0.0.1:$GW_PORT" -op "$OP" -secret "$JWT" -prefix ab- -duration "$DUR" \
    -concurrency "$CONC" -label "ab $name" -out "$RUN/last.jsonl" ${AB_FLAGS:-} >/dev/null 2>&1
  line=$(tail -1 "$RUN/last.jsonl")
  local g1 c1 r1 k1 u1
  g1=$(cpu $gw) c1=$(cpu $ct) r1=$(cpu "$REDIS_PID") k1=$(cpu "$KAFKA_PID") u1=$(cpu $CONSUMER)
  stop "$gw" "$ct"
  PIDS=("$CONSUMER")
  local reqs rps p99
  reqs=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$line")
  rps=$(sed -n 's/.*"rps":\([0-9.]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*"p99_us":\([0-9]*\).*/\1/p' <<<"$line")
  [ "${reqs:-0}" -gt 0 ] || { log "$name: no requests: $line"; return; }
  us() { echo $(( ($2 - $1) * 1000000 / tick / reqs )); }
  local g c r k u
  g=$(us "$g0" "$g1") c=$(us "$c0" "$c1") r=$(us "$r0" "$r1") k=$(us "$k0" "$k1") u=$(us "$u0" "$u1")
  [ "${RECORD:-1}" = 1 ] || { log "$name: first turn (items warmed up), not recorded"; return; }
  log "$name: $rps req/s p99 ${p99}µs; CPU µs per $OP: gateway $g counter $c redis $r kafka $k consumer $u (load $la)"
  printf '{"ab":"%s","variant":"%s","dir":"%s","op":"%s","requests":%d,"rps":%s,"p99_us":%s,"gateway_us":%d,"counter_us":%d,"redis_us":%d,"kafka_us":%d,"consumer_us":%d,"load1":%s,"time":"%s"}\n' \
    "$TAG" "$name" "$dir" "$OP" "$reqs" "$rps" "${p99:-0}" "$g" "$c" "$r" "$k" "$u" "$la" "$(date -u +%FT%TZ)" >>"$OUT"
}

# The first turn touches the items for the first time (loaded, then warm):
# it is not recorded.
RECORD=0 WARM=${AB_FIRST_WARMUP:-10s} turn A "$A"
WARM=${AB_WARMUP:-3s}
for ((i = 0; i < ROUNDS; i++)); do
  if ((i % 2 == 0)); then turn A "$A"; turn B "$B"; else turn B "$B"; turn A "$A"; fi
done
# medians per variant of this session
python3 - "$OUT" "$TAG" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if f'"ab":"{sys.argv[2]}"' in l]
for v in ("A", "B"):
    r = [x for x in rows if x["variant"] == v]
    if not r:
        continue
    med = {k: statistics.median(x[k] for x in r) for k in ("rps", "gateway_us", "counter_us", "redis_us", "kafka_us", "load1")}
    print(f'{v} ({len(r)} turns, {r[0]["dir"]}): median {med["rps"]:.0f} req/s, CPU µs per {r[0]["op"]}: '
          f'gateway {med["gateway_us"]:.0f} counter {med["counter_us"]:.0f} redis {med["redis_us"]:.0f} '
          f'kafka {med["kafka_us"]:.0f}; load1 {med["load1"]}; gateway turns {[x["gateway_us"] for x in r]}, counter turns {[x["counter_us"] for x in r]}')
EOF
