#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the chart tests (no nodes, no Docker).
#
#   scripts/kube.sh build            build (once per machine, cached) kube-apiserver,
#                                    kube-controller-manager, kubectl v1.37.2, etcd v3.6.13
#                                    and helm v4.3.2; link them into .bin/kube
#   scripts/kube.sh start [SECONDS]  start etcd + kube-apiserver + kube-controller-manager
#                                    on 127.0.0.1 (state in .run/kube); they stop by
#                                    themselves after SECONDS (default 1800) at the latest
#   scripts/kube.sh env              print the exports the tests read:
#                                    HGP_KUBE_BIN_DIR  directory holding helm, kubectl, ...
#                                    HGP_KUBECONFIG    kubeconfig of the running API server
#   scripts/kube.sh status | stop
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/highgopress/tools/{kube@v1.37.2,etcd@v3.6.13,helm@v4.3.2}.
# A cold build of kube-apiserver takes about 6.5 min and 2.4 GB of memory; warm: seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.13
HELM_VERSION=v4.3.2
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/highgopress/tools"
BIN="$ROOT/.bin/kube"
RUN="$ROOT/.run/kube"

log() { printf '[kube %s] %s\n' "$(date +%T)" "$*" >&2; }

# ------------------------------------------------------------------ build
STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client cri-streaming csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
  pod-security-admission sample-apiserver streaming)

build_kube() {
  local dir="$CACHE/kube@$KUBE_VERSION"
  if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kube-controller-manager" ] && [ -x "$dir/kubectl" ]; then
    return 0
  fi
  local t0=$SECONDS src="$dir.src"
  log "building kube-apiserver, kube-controller-manager, kubectl $KUBE_VERSION (cold: ~8 min, 2.4 GB RAM)"
  mkdir -p "$src" "$dir"
  {
    echo "module highgopress.local/kubebuild"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    local m
    for m in "${STAGING[@]}"; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
    echo ")"
  } > "$src/go.mod"
  cat > "$src/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  (
    cd "$src"
    export GOWORK=off GOFLAGS=-mod=mod
    go mod tidy
    local c
    for c in kube-apiserver kube-controller-manager kubectl; do
      local t1=$SECONDS
      go build -trimpath -ldflags "$ld" -o "$dir/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$dir/$c.tmp" "$dir/$c"
      log "built $c in $((SECONDS - t1))s"
    done
  )
  log "kube $KUBE_VERSION built in $((SECONDS - t0))s (cold build time)"
  echo "$((SECONDS - t0))" > "$dir/BUILD_SECONDS"
}

build_etcd() {
  local dir="$CACHE/etcd@$ETCD_VERSION"
  [ -x "$dir/etcd" ] && return 0
  local t0=$SECONDS src="$dir.src"
  log "building etcd $ETCD_VERSION"
  mkdir -p "$src" "$dir"
  printf 'module highgopress.local/etcdbuild\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$src/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$src/tools.go"
  (
    cd "$src"
    export GOWORK=off GOFLAGS=-mod=mod
    go mod tidy
    go build -trimpath -ldflags "-s -w" -o "$dir/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$dir/etcd.tmp" "$dir/etcd"
  )
  log "etcd built in $((SECONDS - t0))s"
}

build_helm() {
  local dir="$CACHE/helm@$HELM_VERSION"
  [ -x "$dir/helm" ] && return 0
  local t0=$SECONDS
  log "building helm $HELM_VERSION"
  mkdir -p "$dir"
  (cd "$ROOT" && GOWORK=off GOFLAGS= GOBIN="$dir" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
  log "helm built in $((SECONDS - t0))s"
}

cmd_build() {
  local t0=$SECONDS
  build_helm
  build_etcd
  build_kube
  mkdir -p "$BIN"
  ln -sfn "$CACHE/helm@$HELM_VERSION/helm" "$BIN/helm"
  ln -sfn "$CACHE/etcd@$ETCD_VERSION/etcd" "$BIN/etcd"
  local c
  for c in kube-apiserver kube-controller-manager kubectl; do
    ln -sfn "$CACHE/kube@$KUBE_VERSION/$c" "$BIN/$c"
  done
  log "tools ready in $BIN ($((SECONDS - t0))s)"
}

# ------------------------------------------------------------------ run
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a loopback port nothing listens on
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    port_free "$p" && { echo "$p"; return 0; }
  done
  return 1
}

cmd_start() {
  local lifetime="${1:-1800}" t0=$SECONDS
  cmd_status > /dev/null 2>&1 && { log "already running"; cmd_env; return 0; }
  cmd_build
  rm -rf "$RUN/data" "$RUN/pki"
  mkdir -p "$RUN/data" "$RUN/pki" "$RUN/logs"
  local pki="$RUN/pki" etcd_client etcd_peer etcd_metrics api
  etcd_client=$(free_port); etcd_peer=$(free_port); etcd_metrics=$(free_port); api=$(free_port)
  openssl genrsa -out "$pki/sa.key" 2048 2> /dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2> /dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$pki/serving.key" -out "$pki/serving.crt" 2> /dev/null
  local token; token=$(openssl rand -hex 24)
  echo "$token,admin,uid-admin,\"system:masters\"" > "$pki/tokens.csv"
  chmod 600 "$pki"/*

  # every process dies with this watchdog at the latest: a test run that is
  # killed cannot leave a control plane behind for longer than $lifetime
  "$BIN/etcd" --name hgp --data-dir "$RUN/data/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "hgp=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "http://127.0.0.1:$etcd_metrics" \
    --log-level warn > "$RUN/logs/etcd.log" 2>&1 &
  echo $! > "$RUN/etcd.pid"

  "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address 127.0.0.1 --secure-port "$api" --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none \
    --tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC --allow-privileged=true \
    > "$RUN/logs/kube-apiserver.log" 2>&1 &
  echo $! > "$RUN/kube-apiserver.pid"

  cat > "$RUN/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
  - name: hgp
    cluster:
      server: https://127.0.0.1:$api
      certificate-authority: $pki/serving.crt
users:
  - name: admin
    user:
      token: $token
contexts:
  - name: hgp
    context: { cluster: hgp, user: admin }
current-context: hgp
KCFG
  chmod 600 "$RUN/kubeconfig"

  local i ok=
  for i in $(seq 1 120); do
    if "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" get --raw /readyz > /dev/null 2>&1; then ok=1; break; fi
    if ! kill -0 "$(cat "$RUN/kube-apiserver.pid")" 2> /dev/null; then break; fi
    sleep 0.5
  done
  if [ -z "$ok" ]; then
    tail -n 30 "$RUN/logs/kube-apiserver.log" >&2
    cmd_stop
    log "kube-apiserver did not become ready"
    return 1
  fi

  "$BIN/kube-controller-manager" --kubeconfig "$RUN/kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port 0 \
    --service-account-private-key-file "$pki/sa.key" --use-service-account-credentials=false \
    --controllers deployment-controller,replicaset-controller,statefulset-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller \
    > "$RUN/logs/kube-controller-manager.log" 2>&1 &
  echo $! > "$RUN/kube-controller-manager.pid"

  # bounded lifetime
  (
    trap 'exit 0' TERM
    sleep "$lifetime" & wait $!
    for c in kube-controller-manager kube-apiserver etcd; do
      [ -f "$RUN/$c.pid" ] && kill "$(cat "$RUN/$c.pid")" 2> /dev/null
    done
  ) > /dev/null 2>&1 &
  echo $! > "$RUN/watchdog.pid"

  { echo "export HGP_KUBECONFIG=$RUN/kubeconfig"; echo "export HGP_KUBE_BIN_DIR=$BIN"; } > "$RUN/env"
  log "control plane up on https://127.0.0.1:$api in $((SECONDS - t0))s (stops by itself after ${lifetime}s; source $RUN/env)"
  cmd_env
}

cmd_env() { cat "$RUN/env"; }

cmd_status() {
  local c rc=0
  for c in etcd kube-apiserver kube-controller-manager; do
    if [ -f "$RUN/$c.pid" ] && kill -0 "$(cat "$RUN/$c.pid")" 2> /dev/null; then
      echo "$c: running (pid $(cat "$RUN/$c.pid"))"
    else
      echo "$c: stopped"; rc=1
    fi
  done
  return $rc
}

cmd_stop() {
  local c pid
  for c in watchdog kube-controller-manager kube-apiserver etcd; do
    [ -f "$RUN/$c.pid" ] || continue
    pid=$(cat "$RUN/$c.pid")
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2> /dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2> /dev/null || true
    rm -f "$RUN/$c.pid"
  done
  rm -rf "$RUN/data" "$RUN/env"
  log "control plane stopped"
}

case "${1:-}" in
  build) cmd_build ;;
  start) shift; cmd_start "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 build|start [SECONDS]|env|status|stop" >&2; exit 2 ;;
esac
