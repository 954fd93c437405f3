#!/usr/bin/env bash
# End-to-end performance run on the local multi-process stack, in one go:
# the ceiling (a minimal net/http handler); Like through gateway → counter →
# Redis (relay → Kafka → consumer → MariaDB in the background) closed-loop on
# warm items and on a fresh item space (Zipf); GetCounts of 50 and of 1
# item; open loop at 0.1× and 0.25× the ceiling and at 1,000/s; the CPU
# every process spent per request of each closed-loop run, and the peak RSS
# of the Go services. Results are appended as JSON lines to $PERF_OUT
# (default .run/perf/e2e.jsonl); a markdown table of the run goes to
# $PERF_TABLE (default .run/perf/last.md) and stdout. The machine (cores,
# CPU model) and its load average are recorded with the run.
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
# (status captured first: grep -q closing the pipe early fails it under pipefail)
mw_status=$(bash "$ROOT/scripts/mw.sh" status 2>/dev/null || true)
stack_status=$(bash "$ROOT/scripts/stack.sh" status 2>/dev/null || true)
if grep -q '^redis .*running' <<<"$mw_status"; then keep_mw=1; fi
if ! grep -q '^gateway: running' <<<"$stack_status"; then
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
rss_peak_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
CORES=$(nproc)
MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
TABLE=${PERF_TABLE:-$ROOT/.run/perf/last.md}
log "machine: $CORES cores, $MODEL; load average $(loadavg); run $RUN_ID"

# hgpload prints progress every 2 s on stderr (shown); the result line is
# the last line of stdout.
load() { # label, then hgpload flags
  local label=$1; shift
  "$BIN/hgpload" -label "$label" -out "$OUT" -duration "$DUR" "$@" | tail -1
}
field() { tail -1 "$OUT" | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

ROWS=()
# measured label, then hgpload flags: a closed-loop run with the CPU every
# server process spent per request, appended as its own JSON line.
measured() {
  local label=$1; shift
  local -A before
  local n
  for n in "${!PIDS[@]}"; do before[$n]=$(cpu_ticks "${PIDS[$n]}"); done
  local la; la=$(loadavg)
  load "$label" "$@" >/dev/null
  local reqs rps p50 p99
  reqs=$(field requests); rps=$(field rps); p50=$(field p50_us); p99=$(field p99_us)
  local total=0 report="" cells=""
  for n in gateway counter redis kafka consumer mariadb consul; do
    [ -n "${PIDS[$n]}" ] || continue
    local d=$(( $(cpu_ticks "${PIDS[$n]}") - ${before[$n]} ))
    local us=$(( d * 1000000 / tick / (reqs > 0 ? reqs : 1) ))
    total=$((total + us))
    report="$report $n=${us}µs"
    cells="$cells $us /"
  done
  local ratio; ratio=$(awk -v a="$rps" -v c="$ceiling_rps" 'BEGIN { printf "%.3f", a / c }')
  log "$label: $rps req/s = ${ratio}× ceiling, p50 ${p50}µs p99 ${p99}µs; CPU per request:$report total=${total}µs"
  printf '{"label":"cpu per request","run":"%s","of":"%s","requests":%d,"rps":%s,"ratio":%s,"total_us":%d,"by_process":"%s","loadavg":"%s","time":"%s"}\n' \
    "$RUN_ID" "$label" "$reqs" "$rps" "$ratio" "$total" "${report# }" "$la" "$(date -u +%FT%TZ)" >> "$OUT"
  ROWS+=("| $label | ${rps%.*} | $ratio | $((p50 / 1000)).$(( (p50 % 1000) / 100 )) / $((p99 / 1000)).$(( (p99 % 1000) / 100 )) ms | ${cells% /} | $total | $la |")
}
# open label rate concurrency: an open-loop run, its latency row
open_loop() {
  local label=$1 rate=$2 conc=$3
  local la; la=$(loadavg)
  load "$label" -op like -secret "$JWT" -rate "$rate" -concurrency "$conc" >/dev/null
  local rps p50 p99 errs
  rps=$(field rps); p50=$(field p50_us); p99=$(field p99_us); errs=$(field errors)
  log "$label ($rate/s): $rps req/s, p50 ${p50}µs p99 ${p99}µs, $errs errors"
  OPEN_ROWS+=("| $label | $rate | ${rps%.*} | $((p50 / 1000)).$(( (p50 % 1000) / 100 )) ms | $((p99 / 1000)).$(( (p99 % 1000) / 100 )) ms | $errs | $la |")
}
OPEN_ROWS=()

"$BIN/ceiling" >/dev/null 2>&1 &
CEILING_PID=$!
for _ in $(seq 50); do curl -fsS -o /dev/null -X POST -d '{}' http://127.0.0.1:8099/ 2>/dev/null && break; sleep 0.1; done
log "ceiling (closed loop, 32 clients)"
load ceiling -url http://127.0.0.1:8099 -op ceiling -secret "$JWT" >/dev/null
kill "$CEILING_PID"; CEILING_PID=
ceiling_rps=$(field rps)
log "ceiling: $ceiling_rps req/s"

log "like: warm-up (items loaded on first touch)"
load "like warm-up" -op like -secret "$JWT" -duration 5s >/dev/null
log "like, warm items (closed loop, 32 clients)"
measured "like warm" -op like -secret "$JWT"
log "like, fresh items (a new item space, Zipf 1.1)"
measured "like fresh" -op like -secret "$JWT" -prefix "fresh-$RUN_ID-" -items 100000 -zipf 1.1
# GetCounts reads 2,000 items, all brought into Redis by an unmeasured
# pass first (an item missing from Redis is loaded from MySQL on its
# first read).
log "GetCounts: warm-up (2,000 items)"
load "getcounts warm-up" -op getcounts -batch 50 -items 2000 -duration 5s >/dev/null
log "GetCounts of 50 warm items (closed loop, 32 clients)"
measured "getcounts 50" -op getcounts -batch 50 -items 2000
log "GetCounts of 1 warm item (closed loop, 32 clients)"
measured "getcounts 1" -op getcounts -items 2000

for f in 0.1 0.25; do
  rate=$(awk -v r="$ceiling_rps" -v f="$f" 'BEGIN { printf "%d", r * f }')
  log "like, open loop at ${f}x ceiling = $rate/s"
  open_loop "like open ${f}x" "$rate" 2000
done
log "like, open loop at 1,000/s"
open_loop "like open 1000" 1000 500

rss=""
for n in gateway counter consumer; do rss="$rss $n=$(( $(rss_peak_kib "${PIDS[$n]}") / 1024 ))MiB"; done
log "peak RSS:$rss"
printf '{"label":"rss peak","run":"%s","by_process":"%s","cores":%d,"model":"%s","loadavg":"%s","time":"%s"}\n' \
  "$RUN_ID" "${rss# }" "$CORES" "$MODEL" "$(loadavg)" "$(date -u +%FT%TZ)" >> "$OUT"

{
  echo "Run $RUN_ID: $CORES cores ($MODEL), ceiling ${ceiling_rps%.*} req/s, peak RSS:$rss, load average at the end $(loadavg)"
  echo
  echo "| closed loop, c=32 | req/s | × ceiling | p50 / p99 | CPU µs per request: gateway / counter / Redis / Kafka / consumer / MariaDB / Consul | total µs | load average |"
  echo "|---|---:|---:|---|---|---:|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "| open loop | rate/s | achieved/s | p50 | p99 | errors | load average |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${OPEN_ROWS[@]}"
} | tee "$TABLE"
log "results appended to $OUT, table in $TABLE"
