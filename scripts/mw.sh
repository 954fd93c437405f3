#!/usr/bin/env bash
# scripts/mw.sh — the ONE command that installs, starts, health-checks and stops the
# real middleware servers used by tests and the local stack. Every server is a native
# process on loopback with all of its state under $ROOT/.run/<name>/ (config, data dir,
# <name>.log, <name>.pid). This script installs; everything else is done by the Go
# program tools/mw (built once per change of its sources into the cache). See
# docs/middleware.md.
#
#   scripts/mw.sh install <name...>      install (idempotent; fast when already installed)
#   scripts/mw.sh start   <name...>      install if needed, start, wait until it really answers
#   scripts/mw.sh stop    <name...|all>  TERM, wait with a deadline, then KILL
#   scripts/mw.sh restart <name...>      stop (graceful) + start
#   scripts/mw.sh kill9   <name...>      SIGKILL (crash tests); `start`/`restart` brings it back
#   scripts/mw.sh status                 state, pid, address and health of every server
#   scripts/mw.sh env                    `export VAR=value` lines for every running server
#   scripts/mw.sh running <name>         exit 0 if the server is running (no output)
#   scripts/mw.sh logs <name> [lines]    tail of the server's log
#   scripts/mw.sh kafka-topic <topic> <partitions>   create a topic (if it does not exist)
#   scripts/mw.sh kafka-topics <args...>             run Kafka's TopicCommand (--bootstrap-server is added)
#
# Names: redis mariadb kafka consul prometheus jaeger (or `all` where it makes sense), and the
# clusters kafka-cluster (3 KRaft brokers), consul-cluster (3 servers + a client agent) and
# redis-cluster (3 masters + 3 replicas); one node of a cluster is <cluster>:<n>, e.g.
# `kill9 kafka-cluster:2`, `start consul-cluster:client`, `kill9 redis-cluster:1`.
# `start`, `stop`, `restart` refresh $ROOT/.run/env (source it to get the HGP_TEST_* variables).
#
# Ports are fixed so that tests and humans can find the servers; each can be overridden:
#   HGP_MW_REDIS_PORT=16379  HGP_MW_MARIADB_PORT=13306  HGP_MW_KAFKA_PORT=19092
#   HGP_MW_KAFKA_CONTROLLER_PORT=19093  HGP_MW_CONSUL_HTTP_PORT=18500  HGP_MW_PROMETHEUS_PORT=19090
#   HGP_MW_JAEGER_PORT=14318 (OTLP/HTTP)  HGP_MW_JAEGER_QUERY_PORT=16686
#   HGP_MW_KAFKA_CLUSTER_PORT=19200 (node i: +i broker, +10+i controller)
#   HGP_MW_CONSUL_CLUSTER_PORT=18700 (agent j: +10j HTTP, +10j+1 RPC, +10j+2 serf LAN, +10j+3 serf WAN)
#   HGP_MW_REDIS_CLUSTER_PORT=17100 (node i of 6: +i clients, +10+i cluster bus)
# Other knobs: HGP_MW_RUN (state dir, default $ROOT/.run), HGP_MW_CACHE (downloads and
# builds shared by every clone, default ~/.cache/highgopress), HGP_MW_KAFKA_VERSION,
# HGP_MW_KAFKA_HEAP, HGP_MW_KAFKA_CLUSTER_HEAP, HGP_MW_BIN_CONSUL (use this consul binary instead of building one),
# PROMETHEUS_CONFIG (prometheus.yml to run instead of the generated one),
# HGP_MW_START_TIMEOUT / HGP_MW_STOP_TIMEOUT (seconds, override every server's deadlines).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${HGP_MW_RUN:-$ROOT/.run}"
CACHE="${HGP_MW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/highgopress}"

KAFKA_VERSION=${HGP_MW_KAFKA_VERSION:-4.4.0}
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
CONSUL_BIN=${HGP_MW_BIN_CONSUL:-$CACHE/bin/consul}
JAEGER_BIN=${HGP_MW_BIN_JAEGER:-$CACHE/bin/jaeger}

log() { printf '[mw %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }
since() { # start-microseconds -> "12.3s"
  local us=$(( $(now_us) - $1 ))
  printf '%d.%ds' $((us / 1000000)) $(((us % 1000000) / 100000))
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ------------------------------------------------------- the Go program

# mw_bin: tools/mw built into the cache, keyed by a hash of its sources (built when
# missing; concurrent callers each build and rename into place).
mw_bin() {
  local src="$ROOT/tools/mw" h bin files
  files=$(cd "$src" && ls go.mod go.sum ./*.go | grep -v '_test\.go$')
  # shellcheck disable=SC2086
  h=$(cd "$src" && cat $files | sha256sum | cut -c1-16)
  bin="$CACHE/bin/hgpmw-$h"
  if [ ! -x "$bin" ]; then
    command -v go > /dev/null || die "the go toolchain is needed to build tools/mw"
    local t0; t0=$(now_us)
    mkdir -p "$CACHE/bin"
    if ! (cd "$src" && GOWORK=off GOFLAGS=-buildvcs=false \
          go build -o "$bin.tmp.$$" .) >&2; then
      rm -f "$bin.tmp.$$"
      die "building tools/mw failed"
    fi
    mv -f "$bin.tmp.$$" "$bin"
    # older builds of it (other source versions), unused for a day
    find "$CACHE/bin" -maxdepth 1 -name 'hgpmw-*' ! -name "hgpmw-$h" -mtime +0 -delete 2> /dev/null || true
    log "mw: built tools/mw in $(since "$t0")"
  fi
  echo "$bin"
}
# mw_exec args...: replace this shell by the Go program
mw_exec() {
  local bin
  bin=$(mw_bin) || exit 1
  exec 9>&- # never hand the install lock to the servers
  HGP_MW_ROOT="$ROOT" HGP_MW_RUN="$RUN" HGP_MW_CACHE="$CACHE" exec "$bin" "$@"
}
# names args... -> the server names the arguments stand for (`all`, duplicates, unknown)
names() {
  local bin
  bin=$(mw_bin) || exit 1
  HGP_MW_ROOT="$ROOT" HGP_MW_RUN="$RUN" HGP_MW_CACHE="$CACHE" "$bin" names "$@"
}

# --------------------------------------------------------- installation

# Installs hold a lock so that concurrent callers never run apt, Maven or the consul
# build at the same time. Servers never inherit the fd.
take_lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/.mw.lock"
  flock -w 900 9 || die "could not take $RUN/.mw.lock within 900s"
}

APT_UPDATED=
apt_install() { # debian packages...
  local p missing=()
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local t0; t0=$(now_us)
  log "apt: installing ${missing[*]}"
  # Never let a package's postinst start the system-wide service (we run our own).
  local made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d > /dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local rc=0
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq -o DPkg::Lock::Timeout=300 || rc=$?
    APT_UPDATED=1
  fi
  if [ $rc -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}" > "$CACHE/apt-install.log" 2>&1 || rc=$?
  fi
  if [ -n "$made_policy" ]; then as_root rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  if [ $rc -ne 0 ]; then
    tail -n 30 "$CACHE/apt-install.log" >&2 || true
    die "apt-get install ${missing[*]} failed"
  fi
  log "apt: installed ${missing[*]} in $(since "$t0")"
}

apt_packages_of() {
  case $1 in
    redis | redis-cluster-*) echo redis-server redis-tools procps iproute2 ;;
    mariadb) echo mariadb-server mariadb-client procps iproute2 ;;
    kafka | kafka-cluster-*) echo procps iproute2 ;;
    consul | consul-cluster-*) echo curl procps iproute2 ;;
    prometheus) echo prometheus curl procps iproute2 ;;
    jaeger) echo curl procps iproute2 ;;
  esac
}

kafka_install() {
  local stamp="$KAFKA_HOME/.installed" want
  want="$KAFKA_VERSION $(sha256sum "$ROOT/scripts/mw/kafka/pom.xml" | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    return 0
  fi
  command -v java > /dev/null || apt_install default-jre-headless
  command -v mvn > /dev/null || apt_install maven
  local t0 tmp; t0=$(now_us)
  log "kafka: fetching Apache Kafka $KAFKA_VERSION jars with Maven into $KAFKA_HOME/libs"
  mkdir -p "$KAFKA_HOME"
  tmp="$KAFKA_HOME/libs.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -B -q -f "$ROOT/scripts/mw/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
      > "$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 30 "$KAFKA_HOME/mvn.log" >&2
    rm -rf "$tmp"
    die "kafka: mvn dependency:copy-dependencies failed (log $KAFKA_HOME/mvn.log)"
  fi
  [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
  rm -rf "$KAFKA_HOME/libs"
  mv "$tmp" "$KAFKA_HOME/libs"
  echo "$want" > "$stamp"
  log "kafka: $(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars in $(since "$t0")"
}

consul_install() {
  if [ -n "${HGP_MW_BIN_CONSUL:-}" ]; then
    [ -x "$HGP_MW_BIN_CONSUL" ] || die "HGP_MW_BIN_CONSUL=$HGP_MW_BIN_CONSUL is not an executable"
    return 0
  fi
  local mod="$ROOT/scripts/mw/consul" stamp="$CACHE/bin/.consul.stamp" want
  want=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" | sha256sum | cut -c1-16)
  if [ -x "$CONSUL_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  command -v go > /dev/null || die "consul: the go toolchain is needed to build the consul agent"
  local t0 src="$CACHE/consul-src"; t0=$(now_us)
  log "consul: building the consul agent from the Go module proxy (a few minutes when cold)"
  mkdir -p "$src" "$CACHE/bin"
  cp "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" "$src/"
  if ! (cd "$src" && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
        go build -trimpath -o "$CONSUL_BIN.tmp" github.com/hashicorp/consul) > "$CACHE/consul-build.log" 2>&1; then
    tail -n 30 "$CACHE/consul-build.log" >&2
    die "consul: go build failed (log $CACHE/consul-build.log)"
  fi
  mv "$CONSUL_BIN.tmp" "$CONSUL_BIN"
  echo "$want" > "$stamp"
  log "consul: built $("$CONSUL_BIN" version | head -1) in $(since "$t0")"
}

# jaeger_install: Jaeger v2 built from its Go module in scripts/mw/jaeger (its own
# go.mod: its dependency versions must not mix with the project's), once per machine.
jaeger_install() {
  if [ -n "${HGP_MW_BIN_JAEGER:-}" ]; then
    [ -x "$HGP_MW_BIN_JAEGER" ] || die "HGP_MW_BIN_JAEGER=$HGP_MW_BIN_JAEGER is not an executable"
    return 0
  fi
  local mod="$ROOT/scripts/mw/jaeger" stamp="$CACHE/bin/.jaeger.stamp" want
  want=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$JAEGER_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  command -v go > /dev/null || die "jaeger: the go toolchain is needed to build jaeger"
  local t0 src="$CACHE/jaeger-src"; t0=$(now_us)
  log "jaeger: building jaeger from the Go module proxy (a few minutes when cold)"
  mkdir -p "$src" "$CACHE/bin"
  cp "$mod/go.mod" "$mod/go.sum" "$src/"
  if ! (cd "$src" && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
        go build -trimpath -o "$JAEGER_BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger) > "$CACHE/jaeger-build.log" 2>&1; then
    tail -n 30 "$CACHE/jaeger-build.log" >&2
    die "jaeger: go build failed (log $CACHE/jaeger-build.log)"
  fi
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
  echo "$want" > "$stamp"
  log "jaeger: built in $(since "$t0")"
}

install_names() { # names...
  local n pkgs=()
  mkdir -p "$CACHE"
  for n in "$@"; do
    # shellcheck disable=SC2207
    pkgs+=($(apt_packages_of "$n"))
  done
  [ ${#pkgs[@]} -gt 0 ] && apt_install "${pkgs[@]}"
  for n in "$@"; do
    case $n in
      kafka | kafka-cluster-*) kafka_install ;;
      consul | consul-cluster-*) consul_install ;;
      jaeger) jaeger_install ;;
    esac
  done
}

cmd_install() { # names... (already expanded)
  local t0; t0=$(now_us)
  take_lock
  install_names "$@"
  log "installed: $* ($(since "$t0"))"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; }

main() {
  local cmd=${1:-} list
  [ $# -gt 0 ] && shift
  case $cmd in
    install)
      list=$(names "$@") || exit 1
      # shellcheck disable=SC2086
      cmd_install $list ;;
    start | restart)
      list=$(names "$@") || exit 1
      take_lock
      # shellcheck disable=SC2086
      install_names $list
      mw_exec "$cmd" "$@" ;;
    stop | kill9 | status | env | running | logs | kafka-topic | kafka-topics)
      mw_exec "$cmd" "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"; exit $?  # on one line: bash must not read past it (safe to edit while running)
