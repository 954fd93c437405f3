#!/usr/bin/env bash
# End-to-end performance run on the local multi-process stack, in one go:
# the ceiling (a minimal net/http handler), Like through gateway → counter →
# Redis (relay → Kafka → consumer → MariaDB in the background) closed-loop
# and open-loop at 0.25× the ceiling, and the CPU each process spent per
# like. Results are appended as JSON lines to $PERF_OUT (default
# .run/perf/e2e.jsonl) and printed as a table.
#
#   scripts/perf.sh            uses the running stack, or starts it (and stops
#                              what it started at the end)
#
# Every request goes to 127.0.0.1; every run is bounded by its duration.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=${PERF_OUT:-$ROOT/.run/perf/e2e.jsonl}
DUR=${PERF_DURATION:-10s}
BIN="$ROOT/.bin"
mkdir -p "$(dirname "$OUT")" "$BIN"
log() { printf '[perf %s] %s\n' "$(date +%T)" "$*" >&2; }

# The limiter runs but rejects nothing: its cost is part of the path.
export HGP_RATE_WRITE_USER=10000000-S HGP_RATE_READ_USER=10000000-S \
  HGP_RATE_WRITE_IP=10000000-S HGP_RATE_READ_IP=10000000-S

started=0
# Middleware that was running before (tests, another stack) stays running.
keep_mw=0
if bash "$ROOT/scripts/mw.sh" status 2>/dev/null | grep -q '^redis .*running'; then keep_mw=1; fi
if ! bash "$ROOT/scripts/stack.sh" status 2>/dev/null | grep -q '^gateway: running'; then
  log "starting the stack"
  bash "$ROOT/scripts/stack.sh" up >/dev/null
  started=1
fi
cleanup() {
  [ -n "${CEILING_PID:-}" ] && kill "$CEILING_PID" 2>/dev/null || true
  if [ $started = 1 ]; then
    STACK_KEEP_MIDDLEWARE=$keep_mw bash "$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

(cd "$ROOT" && go build -o "$BIN/hgpload" ./loadtest/cmd/hgpload && go build -o "$BIN/ceiling" ./loadtest/cmd/ceiling)
JWT=$(cat "$ROOT/.run/stack/jwt.secret")

# pids of every server process of the path, by name
declare -A PIDS
for s in gateway counter consumer; do PIDS[$s]=$(cat "$ROOT/.run/stack/$s.pid"); done
PIDS[redis]=$(pgrep -f 'redis-server 127.0.0.1:16379' | head -1 || true)
PIDS[kafka]=$(pgrep -f 'kafka.Kafka' | head -1 || true)
PIDS[mariadb]=$(pgrep -x mariadbd | head -1 || true)
PIDS[consul]=$(pgrep -f 'consul agent' | head -1 || true)
tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

load() { # label, then hgpload flags
  local label=$1; shift
  "$BIN/hgpload" -label "$label" -out "$OUT" -duration "$DUR" "$@" | tail -1
}

"$BIN/ceiling" >/dev/null 2>&1 &
CEILING_PID=$!
for _ in $(seq 50); do curl -fsS -o /dev/null -X POST -d '{}' http://127.0.0.1:8099/ 2>/dev/null && break; sleep 0.1; done
log "ceiling (closed loop, 32 clients)"
load ceiling -url http://127.0.0.1:8099 -op ceiling -secret "$JWT"
kill "$CEILING_PID"; CEILING_PID=
ceiling_rps=$(tail -1 "$OUT" | sed 's/.*"rps":\([0-9.]*\).*/\1/')

log "like: warm-up (items loaded from MySQL on first touch)"
load "like warm-up" -op like -secret "$JWT" -duration 5s >/dev/null
log "like (closed loop, 32 clients) with CPU accounting"
declare -A before
for n in "${!PIDS[@]}"; do before[$n]=$(cpu_ticks "${PIDS[$n]}"); done
load "like e2e warm" -op like -secret "$JWT"
likes=$(tail -1 "$OUT" | sed 's/.*"requests":\([0-9]*\).*/\1/')
total=0
report=""
for n in gateway counter redis kafka consumer mariadb consul; do
  [ -n "${PIDS[$n]}" ] || continue
  d=$(( $(cpu_ticks "${PIDS[$n]}") - ${before[$n]} ))
  us=$(( d * 1000000 / tick / (likes > 0 ? likes : 1) ))
  total=$((total + us))
  report="$report $n=${us}µs"
done
log "CPU per like:$report total=${total}µs ($likes likes)"
printf '{"label":"cpu per like","likes":%d,"total_us":%d,"by_process":"%s","time":"%s"}\n' \
  "$likes" "$total" "${report# }" "$(date -u +%FT%TZ)" >> "$OUT"

rate=$(awk -v r="$ceiling_rps" 'BEGIN { printf "%d", r / 4 }')
log "like (open loop at 0.25x ceiling = $rate/s)"
load "like open 0.25x" -op like -secret "$JWT" -rate "$rate" -concurrency 2000
log "like (open loop at 1,000/s)"
load "like open 1000" -op like -secret "$JWT" -rate 1000 -concurrency 500

log "results appended to $OUT"
