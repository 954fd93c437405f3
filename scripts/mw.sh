#!/usr/bin/env bash
# shellcheck disable=SC2317  # per-server functions (<name>_prepare, _launch, _health, ...) are called by name
# scripts/mw.sh — the ONE place that knows how to install, start, health-check and stop
# the real middleware servers used by tests and the local stack. Every server is a
# native process on loopback with all of its state under $ROOT/.run/<name>/
# (config, data dir, <name>.log, <name>.pid). See docs/middleware.md.
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
# Names: redis mariadb kafka consul prometheus (or `all` where it makes sense).
# `start`, `stop`, `restart` refresh $ROOT/.run/env (source it to get the HGP_TEST_* variables).
#
# Ports are fixed so that tests and humans can find the servers; each can be overridden:
#   HGP_MW_REDIS_PORT=16379  HGP_MW_MARIADB_PORT=13306  HGP_MW_KAFKA_PORT=19092
#   HGP_MW_KAFKA_CONTROLLER_PORT=19093  HGP_MW_CONSUL_HTTP_PORT=18500  HGP_MW_PROMETHEUS_PORT=19090
# Other knobs: HGP_MW_RUN (state dir, default $ROOT/.run), HGP_MW_CACHE (downloads and
# builds shared by every clone, default ~/.cache/highgopress), HGP_MW_KAFKA_VERSION,
# HGP_MW_KAFKA_HEAP, HGP_MW_BIN_CONSUL (use this consul binary instead of building one),
# PROMETHEUS_CONFIG (prometheus.yml to run instead of the generated one),
# HGP_MW_START_TIMEOUT / HGP_MW_STOP_TIMEOUT (seconds, override every server's deadlines).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${HGP_MW_RUN:-$ROOT/.run}"
CACHE="${HGP_MW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/highgopress}"
ALL=(redis mariadb kafka consul prometheus)
HOST=127.0.0.1

REDIS_PORT=${HGP_MW_REDIS_PORT:-16379}
MARIADB_PORT=${HGP_MW_MARIADB_PORT:-13306}
KAFKA_PORT=${HGP_MW_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${HGP_MW_KAFKA_CONTROLLER_PORT:-19093}
CONSUL_HTTP_PORT=${HGP_MW_CONSUL_HTTP_PORT:-18500}
CONSUL_DNS_PORT=${HGP_MW_CONSUL_DNS_PORT:-18600}
CONSUL_SERVER_PORT=${HGP_MW_CONSUL_SERVER_PORT:-18300}
CONSUL_SERF_LAN_PORT=${HGP_MW_CONSUL_SERF_LAN_PORT:-18301}
CONSUL_SERF_WAN_PORT=${HGP_MW_CONSUL_SERF_WAN_PORT:-18302}
CONSUL_GRPC_PORT=${HGP_MW_CONSUL_GRPC_PORT:-18502}
PROMETHEUS_PORT=${HGP_MW_PROMETHEUS_PORT:-19090}

KAFKA_VERSION=${HGP_MW_KAFKA_VERSION:-4.4.0}
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_HEAP=${HGP_MW_KAFKA_HEAP:--Xms256m -Xmx512m}
CONSUL_BIN=${HGP_MW_BIN_CONSUL:-$CACHE/bin/consul}

MYSQL_USER=hgp MYSQL_PASSWORD=hgp MYSQL_DATABASE=highgopress

# ---------------------------------------------------------------- helpers

log() { printf '[mw %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }
since() { # start-microseconds -> "12.3s"
  local us=$(( $(now_us) - $1 ))
  printf '%d.%ds' $((us / 1000000)) $(((us % 1000000) / 100000))
}
is_name() { local n; for n in "${ALL[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
dir_of() { echo "$RUN/$1"; }
logfile() { echo "$RUN/$1/$1.log"; }
pidfile() { echo "$RUN/$1/$1.pid"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# expand_names args... : sets NAMES from the command line; `all` is every server
NAMES=()
expand_names() {
  local n m seen
  NAMES=()
  for n in "$@"; do
    if [ "$n" = all ]; then set -- "${ALL[@]}"; break; fi
  done
  for n in "$@"; do
    is_name "$n" || die "unknown server '$n' (known: ${ALL[*]} or all)"
    seen=
    for m in "${NAMES[@]}"; do [ "$m" = "$n" ] && seen=1; done
    [ -n "$seen" ] || NAMES+=("$n")
  done
  [ ${#NAMES[@]} -gt 0 ] || die "name at least one server (known: ${ALL[*]} or all)"
}

# Mutating commands take a lock so that concurrent callers (e.g. tests restarting a
# server while another one starts) never interleave. Servers never inherit the fd.
take_lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/.mw.lock"
  flock -w 900 9 || die "could not take $RUN/.mw.lock within 900s"
}

# --- process bookkeeping: the pid file holds "pid starttime" so a recycled pid is
# never mistaken for our server.
proc_starttime() { # pid -> starttime (field 22 of /proc/pid/stat), empty if gone/zombie
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) }
  # shellcheck disable=SC2086
  set -- $rest
  [ "$1" = Z ] && return 0
  echo "${20}"
}
proc_lingers() { # pid -> succeeds while any thread of the process still runs
  # A killed JVM's main thread can be a zombie while other threads still hold
  # its listening ports: only a process with no live thread is gone.
  local st
  for st in /proc/"$1"/task/*/stat; do
    [ -r "$st" ] || continue
    st=$(cat "$st" 2>/dev/null) || continue
    st=${st##*) }
    [ "${st%% *}" != Z ] && return 0
  done
  return 1
}

record_pid() { echo "$2 $(proc_starttime "$2")" > "$(pidfile "$1")"; }
# running_pid name -> prints pid and returns 0 if our server process is alive
running_pid() {
  local f pid st
  f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  read -r pid st < "$f" || true
  [ -n "${pid:-}" ] || return 1
  [ -n "$st" ] && [ "$(proc_starttime "$pid")" = "$st" ] || return 1
  echo "$pid"
}
# The executable every server runs as (resolved), to find strays that lost their pid file.
exe_of() {
  local b
  case $1 in
    redis) b=redis-server ;; mariadb) b=mariadbd ;; kafka) b=java ;;
    consul) b=$CONSUL_BIN ;; prometheus) b=prometheus ;;
  esac
  b=$(PATH="$PATH:/usr/sbin:/sbin" command -v "$b" 2>/dev/null) || return 0
  readlink -f "$b"
}
# stray_pids name -> live processes of that server's executable whose command line
# names this checkout's state dir (.run/<name>/).
stray_pids() {
  local marker="$RUN/$1/" exe pid
  exe=$(exe_of "$1")
  [ -n "$exe" ] || return 0
  for pid in $(pgrep -f -- "$(printf '%s' "$marker" | sed 's/[][\\.*^$+?(){}|]/\\&/g')" || true); do
    [ "$pid" = "$$" ] && continue
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || continue
    [ -n "$(proc_starttime "$pid")" ] && echo "$pid"
  done
  return 0
}
all_pids() { { running_pid "$1" || true; stray_pids "$1"; } | awk 'NF && !seen[$0]++'; }

port_listening() { # port -> 0 if something listens on 127.0.0.1:port or *:port (tcp)
  [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}
require_free_port() { # name port
  if port_listening "$2"; then
    die "$1: port $2 is already in use by another process: $(ss -Hltnp "sport = :$2" | head -3)"
  fi
}

# launch name cmd... : start a server in its own session, output appended to its log
launch() {
  local name=$1; shift
  local lf; lf=$(logfile "$name")
  printf '\n===== %s mw.sh start: %s\n' "$(date -Is)" "$*" >> "$lf"
  setsid "$@" >> "$lf" 2>&1 < /dev/null 9>&- &
  local pid=$!
  record_pid "$name" "$pid"
  log "$name: launched pid $pid (log ${lf#"$ROOT"/})"
}

show_log_tail() { # the current run's part of the log (since the last launch marker)
  local lf; lf=$(logfile "$1")
  log "---- last 40 lines of $lf ----"
  awk '/^===== .* mw.sh start: /{n=0} {buf[n++]=$0} END{for(i=(n>40?n-40:0);i<n;i++) print buf[i]}' "$lf" >&2 2>/dev/null || true
  if [ "$1" = kafka ] && [ -f "$RUN/kafka/logs/server.log" ]; then
    log "---- last 20 lines of $RUN/kafka/logs/server.log ----"
    tail -n 20 "$RUN/kafka/logs/server.log" >&2
  fi
  log "---- end of log ----"
}

start_timeout() {
  if [ -n "${HGP_MW_START_TIMEOUT:-}" ]; then echo "$HGP_MW_START_TIMEOUT"; return; fi
  case $1 in redis) echo 30 ;; mariadb) echo 120 ;; kafka) echo 180 ;; consul) echo 60 ;; prometheus) echo 60 ;; esac
}
stop_timeout() {
  if [ -n "${HGP_MW_STOP_TIMEOUT:-}" ]; then echo "$HGP_MW_STOP_TIMEOUT"; return; fi
  case $1 in redis) echo 30 ;; mariadb) echo 90 ;; kafka) echo 60 ;; consul) echo 20 ;; prometheus) echo 30 ;; esac
}

# wait_all_healthy names... : poll every server's <name>_health round-robin until each
# passes (then runs <name>_ready), its process dies or its deadline passes. Prints how
# long each took since T0[name]; sets FAILED_NAMES.
declare -A T0=()
FAILED_NAMES=()
wait_all_healthy() {
  local pending=("$@") n next deadline
  declare -A dl=()
  for n in "$@"; do dl[$n]=$((SECONDS + $(start_timeout "$n"))); done
  while [ ${#pending[@]} -gt 0 ]; do
    next=()
    for n in "${pending[@]}"; do
      if "${n}_health"; then
        if "${n}_ready"; then
          log "$n: ready at $("${n}_addr") in $(since "${T0[$n]}")"
        else
          show_log_tail "$n"; FAILED_NAMES+=("$n")
        fi
      elif ! running_pid "$n" > /dev/null; then
        log "$n: process exited during startup"
        show_log_tail "$n"; FAILED_NAMES+=("$n")
      elif [ $SECONDS -ge "${dl[$n]}" ]; then
        log "$n: not healthy after $(start_timeout "$n")s"
        show_log_tail "$n"; FAILED_NAMES+=("$n")
      else
        next+=("$n")
      fi
    done
    pending=("${next[@]}")
    [ ${#pending[@]} -gt 0 ] && sleep 0.2
  done
  return 0
}

# --------------------------------------------------------- installation

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
    redis) echo redis-server redis-tools procps iproute2 ;;
    mariadb) echo mariadb-server mariadb-client procps iproute2 ;;
    kafka) echo procps iproute2 ;;
    consul) echo curl procps iproute2 ;;
    prometheus) echo prometheus curl procps iproute2 ;;
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

install_names() { # names...
  local n pkgs=()
  mkdir -p "$CACHE"
  for n in "$@"; do
    # shellcheck disable=SC2207
    pkgs+=($(apt_packages_of "$n"))
  done
  [ ${#pkgs[@]} -gt 0 ] && apt_install "${pkgs[@]}"
  for n in "$@"; do
    case $n in kafka) kafka_install ;; consul) consul_install ;; esac
  done
}

# ---------------------------------------------------------------- redis

redis_prepare() {
  local d; d=$(dir_of redis)
  mkdir -p "$d/data"
  cat > "$d/redis.conf" <<EOF
# generated by scripts/mw.sh — edits are overwritten on every start
bind $HOST
port $REDIS_PORT
protected-mode no
daemonize no
supervised no
dir $d/data
logfile ""
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
EOF
}
redis_launch() { launch redis redis-server "$(dir_of redis)/redis.conf"; }
redis_health() { [ "$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
redis_ready() { :; }
redis_env() { echo "HGP_TEST_REDIS_ADDR=$HOST:$REDIS_PORT"; echo "HGP_MW_REDIS_DATA_DIR=$RUN/redis/data"; }
redis_addr() { echo "$HOST:$REDIS_PORT"; }

# -------------------------------------------------------------- mariadb

mariadb_socket() {
  local s="$RUN/mariadb/mariadbd.sock"
  # unix socket paths are limited to 107 bytes; fall back to /tmp for deep checkouts
  if [ ${#s} -gt 100 ]; then s="/tmp/hgp-mariadb-$(echo "$RUN" | sha256sum | cut -c1-12).sock"; fi
  echo "$s"
}
mariadb_cnf() { echo "$RUN/mariadb/my.cnf"; }
mariadb_prepare() {
  local d; d=$(dir_of mariadb)
  mkdir -p "$d"
  cat > "$d/my.cnf" <<EOF
# generated by scripts/mw.sh — edits are overwritten on every start
[mysqld]
user = root
datadir = $d/data
socket = $(mariadb_socket)
pid-file = $d/mariadbd.pid
port = $MARIADB_PORT
bind-address = $HOST
skip-name-resolve
max_connections = 500
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
innodb_flush_log_at_trx_commit = 1
innodb_buffer_pool_size = 256M
innodb_log_file_size = 512M
innodb_log_buffer_size = 64M
innodb_flush_neighbors = 0
innodb_io_capacity = 2000
# the binary log is off; if it is ever enabled it must be durable too
sync_binlog = 1
log_warnings = 1

[client]
socket = $(mariadb_socket)
port = $MARIADB_PORT
user = root
EOF
  if [ ! -d "$d/data/mysql" ]; then
    local t0; t0=$(now_us)
    log "mariadb: initialising datadir $d/data"
    rm -rf "$d/data"
    if ! mariadb-install-db --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal \
        --skip-test-db --user=root > "$d/install-db.log" 2>&1; then
      tail -n 30 "$d/install-db.log" >&2
      die "mariadb: mariadb-install-db failed (log $d/install-db.log)"
    fi
    log "mariadb: datadir initialised in $(since "$t0")"
  fi
}
mariadb_launch() { launch mariadb mariadbd --defaults-file="$(mariadb_cnf)"; }
mariadb_health() { timeout 3 mariadb-admin --defaults-file="$(mariadb_cnf)" --connect-timeout=2 ping > /dev/null 2>&1; }
mariadb_root_sql() { mariadb --defaults-file="$(mariadb_cnf)" --batch -e "$1"; }
mariadb_hgp_sql() {
  timeout 10 mariadb --no-defaults --protocol=TCP -h "$HOST" -P "$MARIADB_PORT" -u"$MYSQL_USER" -p"$MYSQL_PASSWORD" \
    --connect-timeout=5 --batch --skip-column-names "$MYSQL_DATABASE" -e "$1"
}
# after the server answers: the application user and database, then a real query as it
mariadb_ready() {
  mariadb_root_sql "
    CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4;
    CREATE USER IF NOT EXISTS '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
    CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
    GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'%';
    GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'localhost';
    DROP USER IF EXISTS ''@'localhost';
    DROP USER IF EXISTS ''@'$(hostname)';
    DROP USER IF EXISTS 'root'@'$(hostname)';
    FLUSH PRIVILEGES;" || { log "mariadb: creating user/database failed"; return 1; }
  [ "$(mariadb_hgp_sql 'SELECT 1')" = 1 ] || { log "mariadb: query as $MYSQL_USER over TCP failed"; return 1; }
}
mariadb_env() {
  echo "HGP_TEST_MYSQL_DSN=$MYSQL_USER:$MYSQL_PASSWORD@tcp($HOST:$MARIADB_PORT)/$MYSQL_DATABASE?parseTime=true&multiStatements=true"
  echo "HGP_MW_MARIADB_SOCKET=$(mariadb_socket)"
  echo "HGP_MW_MARIADB_CNF=$(mariadb_cnf)"
}
mariadb_addr() { echo "$HOST:$MARIADB_PORT"; }

# ---------------------------------------------------------------- kafka

kafka_java() { # main-class args... (runs in the foreground; tools log WARN+ to stderr)
  java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$RUN/kafka/tools-log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}
kafka_prepare() {
  local d; d=$(dir_of kafka)
  mkdir -p "$d/data" "$d/logs"
  cat > "$d/server.properties" <<EOF
# generated by scripts/mw.sh — edits are overwritten on every start
# single node, KRaft, combined broker + controller
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$d/data
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# after a kill -9 the restarted broker cannot register until the dead one's session
# expires (default 9s); a shorter session makes crash/restart tests faster
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=4
log.retention.hours=24
EOF
  cat > "$d/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $d/logs/server.log
appender.file.filePattern = $d/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
appender.out.filter.threshold.type = ThresholdFilter
appender.out.filter.threshold.level = warn
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
  cat > "$d/tools-log4j2.properties" <<EOF
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = ERR
EOF
  if [ ! -f "$d/data/meta.properties" ]; then
    local t0 cid; t0=$(now_us)
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    # "--cluster-id=ID": an id may start with "-", which a separate argument would turn into an option.
    log "kafka: formatting storage (cluster id $cid)"
    if ! kafka_java kafka.tools.StorageTool format --standalone --cluster-id="$cid" -c "$d/server.properties" \
        > "$d/format.log" 2>&1; then
      cat "$d/format.log" >&2
      die "kafka: storage format failed"
    fi
    log "kafka: storage formatted in $(since "$t0")"
  fi
}
kafka_launch() {
  local d; d=$(dir_of kafka)
  # a fresh server.log per run: the health check looks for this run's "started" line
  if [ -f "$d/logs/server.log" ]; then mv -f "$d/logs/server.log" "$d/logs/server.log.prev"; fi
  # shellcheck disable=SC2086
  launch kafka java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$d/logs" -Dlog4j2.configurationFile="$d/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$d/server.properties"
}
# A real Kafka protocol round trip: ApiVersions v0 request, the answer must carry our
# correlation id (error 0, or 35 UNSUPPORTED_VERSION which still proves the broker
# processes requests).
kafka_apiversions() {
  local out
  out=$(timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$KAFKA_PORT
    printf '\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x02mw' >&3
    head -c 10 <&3 | od -An -tx1" 2>/dev/null) || return 1
  out=${out//[$' \n']/}
  # size(4) | correlation id 0x2a (4) | error code (2)
  [ "${out:8:12}" = 0000002a0000 ] || [ "${out:8:12}" = 0000002a0023 ]
}
kafka_health() {
  grep -q 'Kafka Server started' "$RUN/kafka/logs/server.log" 2>/dev/null || return 1
  kafka_apiversions
}
kafka_ready() { :; }
kafka_env() {
  echo "HGP_TEST_KAFKA_BROKERS=$HOST:$KAFKA_PORT"
  echo "HGP_MW_KAFKA_HOME=$KAFKA_HOME"
  echo "HGP_MW_KAFKA_CONFIG=$RUN/kafka/server.properties"
}
kafka_addr() { echo "$HOST:$KAFKA_PORT"; }

# --------------------------------------------------------------- consul

consul_prepare() {
  local d; d=$(dir_of consul)
  mkdir -p "$d/data"
  cat > "$d/consul.hcl" <<EOF
# generated by scripts/mw.sh — edits are overwritten on every start
node_name = "hgp-dev"
bind_addr = "$HOST"
client_addr = "$HOST"
advertise_addr = "$HOST"
data_dir = "$d/data"
log_level = "INFO"
disable_update_check = true
ports {
  http     = $CONSUL_HTTP_PORT
  https    = -1
  dns      = $CONSUL_DNS_PORT
  server   = $CONSUL_SERVER_PORT
  serf_lan = $CONSUL_SERF_LAN_PORT
  serf_wan = $CONSUL_SERF_WAN_PORT
  grpc     = $CONSUL_GRPC_PORT
  grpc_tls = -1
}
EOF
}
consul_launch() { launch consul "$CONSUL_BIN" agent -dev -config-file="$(dir_of consul)/consul.hcl"; }
consul_health() {
  local leader
  leader=$(curl -fsS --max-time 2 "http://$HOST:$CONSUL_HTTP_PORT/v1/status/leader" 2>/dev/null) || return 1
  [ ${#leader} -gt 2 ]
}
consul_ready() { :; }
consul_env() {
  echo "HGP_TEST_CONSUL_ADDR=$HOST:$CONSUL_HTTP_PORT"
  echo "HGP_MW_BIN_CONSUL=$CONSUL_BIN"
}
consul_addr() { echo "$HOST:$CONSUL_HTTP_PORT"; }

# ----------------------------------------------------------- prometheus

prometheus_config() {
  if [ -n "${PROMETHEUS_CONFIG:-}" ]; then
    [ -f "$PROMETHEUS_CONFIG" ] || die "PROMETHEUS_CONFIG=$PROMETHEUS_CONFIG does not exist"
    realpath "$PROMETHEUS_CONFIG"
  else
    echo "$RUN/prometheus/prometheus.yml"
  fi
}
prometheus_prepare() {
  local d; d=$(dir_of prometheus)
  mkdir -p "$d/data"
  cat > "$d/prometheus.yml" <<EOF
# generated by scripts/mw.sh (used unless PROMETHEUS_CONFIG names another file)
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["$HOST:$PROMETHEUS_PORT"]
EOF
}
prometheus_launch() {
  local d; d=$(dir_of prometheus)
  launch prometheus prometheus --config.file="$(prometheus_config)" --storage.tsdb.path="$d/data" \
    --storage.tsdb.retention.time=2d --web.listen-address="$HOST:$PROMETHEUS_PORT" \
    --web.enable-lifecycle --web.enable-admin-api
}
prometheus_health() { curl -fsS --max-time 2 -o /dev/null "http://$HOST:$PROMETHEUS_PORT/-/ready" 2>/dev/null; }
prometheus_ready() { :; }
prometheus_env() {
  echo "HGP_TEST_PROMETHEUS_URL=http://$HOST:$PROMETHEUS_PORT"
  echo "HGP_MW_PROMETHEUS_CONFIG=$(prometheus_config)"
}
prometheus_addr() { echo "http://$HOST:$PROMETHEUS_PORT"; }

# -------------------------------------------------------- generic verbs

main_port() {
  case $1 in
    redis) echo "$REDIS_PORT" ;; mariadb) echo "$MARIADB_PORT" ;; kafka) echo "$KAFKA_PORT" ;;
    consul) echo "$CONSUL_HTTP_PORT" ;; prometheus) echo "$PROMETHEUS_PORT" ;;
  esac
}
other_ports() {
  case $1 in
    kafka) echo "$KAFKA_CONTROLLER_PORT" ;;
    consul) echo "$CONSUL_SERVER_PORT $CONSUL_SERF_LAN_PORT $CONSUL_SERF_WAN_PORT $CONSUL_GRPC_PORT" ;;
  esac
}

env_lines() {
  local n line
  echo "# generated by scripts/mw.sh at $(date -Is) — servers running at that moment"
  echo "export HGP_MW_SCRIPT='$ROOT/scripts/mw.sh'"
  echo "export HGP_MW_RUN_DIR='$RUN'"
  for n in "${ALL[@]}"; do
    running_pid "$n" > /dev/null || continue
    "${n}_env" | while IFS= read -r line; do echo "export ${line%%=*}='${line#*=}'"; done
  done
}
write_env() {
  mkdir -p "$RUN"
  env_lines > "$RUN/env.tmp.$$"
  mv "$RUN/env.tmp.$$" "$RUN/env"
}

cmd_install() {
  expand_names "$@"; local names=("${NAMES[@]}")
  local t0; t0=$(now_us)
  install_names "${names[@]}"
  log "installed: ${names[*]} ($(since "$t0"))"
}

cmd_start() {
  local n p pid; expand_names "$@"; local names=("${NAMES[@]}")
  local t_all; t_all=$(now_us)
  install_names "${names[@]}"
  local waiting=() to_launch=()
  FAILED_NAMES=()
  # 1. decide, check ports, write configs and initialise data dirs (first start only)
  for n in "${names[@]}"; do
    T0[$n]=$(now_us)
    if pid=$(running_pid "$n"); then
      if "${n}_health"; then log "$n: already running (pid $pid), healthy"; continue; fi
      log "$n: running (pid $pid) but not healthy yet; waiting"
      waiting+=("$n"); continue
    fi
    # strays from a lost pid file would hold the ports and the data dir
    if [ -n "$(stray_pids "$n")" ]; then
      log "$n: stopping stray processes $(stray_pids "$n" | tr '\n' ' ')"; stop_one "$n" quiet
    fi
    for p in $(main_port "$n") $(other_ports "$n"); do require_free_port "$n" "$p"; done
    "${n}_prepare"
    to_launch+=("$n")
  done
  # 2. launch them all, 3. wait for all of them at once
  for n in "${to_launch[@]}"; do
    T0[$n]=$(now_us)
    "${n}_launch"
    waiting+=("$n")
  done
  [ ${#waiting[@]} -gt 0 ] && wait_all_healthy "${waiting[@]}"
  for n in "${FAILED_NAMES[@]}"; do
    log "$n: FAILED to start; stopping it"
    stop_one "$n" quiet || true
  done
  write_env
  [ ${#FAILED_NAMES[@]} -eq 0 ] || die "failed to start: ${FAILED_NAMES[*]}"
  log "started ${names[*]} in $(since "$t_all"); env: ${RUN#"$ROOT"/}/env"
}

# stop_one name [quiet]: TERM, wait with a deadline, then KILL; also catches strays
stop_one() {
  local name=$1 quiet=${2:-} pids deadline t0
  mapfile -t pids < <(all_pids "$name")
  if [ ${#pids[@]} -eq 0 ]; then
    [ -n "$quiet" ] || log "$name: not running"
    rm -f "$(pidfile "$name")"
    return 0
  fi
  t0=$(now_us)
  kill -TERM "${pids[@]}" 2>/dev/null || true
  deadline=$((SECONDS + $(stop_timeout "$name")))
  while :; do
    local alive=() p
    for p in "${pids[@]}"; do proc_lingers "$p" && alive+=("$p"); done
    [ ${#alive[@]} -eq 0 ] && break
    if [ $SECONDS -ge $deadline ]; then
      log "$name: still alive after $(stop_timeout "$name")s (pids ${alive[*]}), sending KILL"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      local d2=$((SECONDS + 10))
      while [ $SECONDS -lt $d2 ]; do
        local any=
        for p in "${alive[@]}"; do proc_lingers "$p" && any=1; done
        [ -z "$any" ] && break
        sleep 0.1
      done
      break
    fi
    sleep 0.1
  done
  rm -f "$(pidfile "$name")"
  log "$name: stopped (pids ${pids[*]}) in $(since "$t0")"
}

cmd_stop() {
  local n; expand_names "$@"; local names=("${NAMES[@]}")
  for n in "${names[@]}"; do stop_one "$n"; done
  write_env
}

cmd_kill9() {
  local n pids p; expand_names "$@"; local names=("${NAMES[@]}")
  for n in "${names[@]}"; do
    mapfile -t pids < <(all_pids "$n")
    if [ ${#pids[@]} -eq 0 ]; then log "$n: not running"; continue; fi
    kill -KILL "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    for p in "${pids[@]}"; do
      while proc_lingers "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    done
    rm -f "$(pidfile "$n")"
    log "$n: killed with SIGKILL (pids ${pids[*]})"
  done
}

cmd_restart() {
  local n; expand_names "$@"; local names=("${NAMES[@]}")
  for n in "${names[@]}"; do stop_one "$n" quiet; done
  cmd_start "${names[@]}"
}

cmd_status() {
  local n pid state health
  printf '%-11s %-9s %-8s %-24s %s\n' SERVER STATE PID ADDRESS HEALTH
  for n in "${ALL[@]}"; do
    health=-
    if pid=$(running_pid "$n"); then
      state=running
      if "${n}_health"; then health=ok; else health=FAILING; fi
    else
      pid=-
      if [ -n "$(stray_pids "$n")" ]; then state=stray; else state=stopped; fi
    fi
    printf '%-11s %-9s %-8s %-24s %s\n' "$n" "$state" "$pid" "$("${n}_addr")" "$health"
  done
}

cmd_logs() {
  local n=${1:?usage: mw.sh logs <name> [lines]}
  is_name "$n" || die "unknown server '$n'"
  tail -n "${2:-50}" "$(logfile "$n")"
}

cmd_kafka_topics() {
  running_pid kafka > /dev/null || die "kafka is not running (scripts/mw.sh start kafka)"
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "$@"
}
cmd_kafka_topic() {
  local topic=${1:?usage: mw.sh kafka-topic <topic> <partitions>} parts=${2:?usage: mw.sh kafka-topic <topic> <partitions>}
  cmd_kafka_topics --create --if-not-exists --topic "$topic" --partitions "$parts" --replication-factor 1
}

usage() { sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; }

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    install) take_lock; cmd_install "$@" ;;
    start) take_lock; cmd_start "$@" ;;
    stop) take_lock; cmd_stop "$@" ;;
    restart) take_lock; cmd_restart "$@" ;;
    kill9) take_lock; cmd_kill9 "$@" ;;
    status) cmd_status ;;
    env) env_lines ;;
    running) is_name "${1:-}" || die "usage: mw.sh running <name>"; running_pid "$1" > /dev/null ;;
    logs) cmd_logs "$@" ;;
    kafka-topic) cmd_kafka_topic "$@" ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"; exit $?  # on one line: bash must not read past it (safe to edit while running)
