#!/usr/bin/env bash
# The project's ONE test command:  bash scripts/test.sh [go test flags, e.g. -run X]
#
#   0. tools: the pinned buf, protoc plugins, sqlc, gotestsum and golangci-lint (built
#      once per machine); node, npm and Debian's chromium; `npm ci` in web/
#   1. generated code: `buf generate` and `sqlc generate`, fail if their output then
#      differs from git; `buf lint`; `buf format -d --exit-code`
#   2. real middleware on loopback via scripts/mw.sh (stopped again on exit), and a real
#      Kubernetes API server with etcd and controller-manager (scripts/kube.sh) for the chart
#   3. `go vet`, golangci-lint (.golangci.yml) and `go test -race` in every module of go.work, with HGP_INTEGRATION=require
#      so that a test whose server is missing fails instead of skipping; one line per test
#      (gotestsum), JSON results in .run/test-results/
#   4. clean tree: the run may not change tracked files or leave untracked ones
#
# Environment: MIDDLEWARE (servers to start), GO_TEST_TIMEOUT (default 20m),
# SKIP_GENERATE=1 (skip step 1 locally; never set in CI).
set -uo pipefail

MIDDLEWARE=${MIDDLEWARE:-redis mariadb kafka consul prometheus jaeger}
# Tests build binaries inside the checkout; do not depend on git being willing
# to read it (a checkout owned by another user makes VCS stamping fail).
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
GO_TEST_TIMEOUT=${GO_TEST_TIMEOUT:-20m}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
MW="$ROOT/scripts/mw.sh"

T_START=$SECONDS
RESULTS=()   # "phase|status|seconds"
FAILED=0

say() { printf '\n=== [test %s] %s\n' "$(date +%T)" "$*"; }
record() { # phase status started-at-seconds
  RESULTS+=("$1|$2|$((SECONDS - $3))s")
  [ "$2" = FAIL ] && FAILED=1
  say "$1: $2 ($((SECONDS - $3))s)"
}

summary() {
  echo
  echo "=================== test summary ==================="
  local r phase status took
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r phase status took <<< "$r"
    printf '  %-4s  %-44s %6s\n' "$status" "$phase" "$took"
  done
  printf '  total %ss\n' "$((SECONDS - T_START))"
  if [ $FAILED -eq 0 ]; then echo "  RESULT: PASS"; else echo "  RESULT: FAIL"; fi
  echo "===================================================="
}

# ---------------------------------------------------------------- 0. tools
# Pinned tools, each built once per machine into a cache (scripts/tools.sh);
# timed on their own so that a cold build does not hide in another phase.
phase_tools() {
  local t0=$SECONDS
  say "tools: buf, protoc plugins, sqlc, gotestsum, golangci-lint"
  if bash scripts/tools.sh buf protoc-gen-go protoc-gen-connect-go sqlc gotestsum golangci-lint; then
    record "tools (pinned, cached per machine)" PASS "$t0"
  else
    record "tools (pinned, cached per machine)" FAIL "$t0"
    return 1
  fi
  t0=$SECONDS
  say "tools: node, npm and Debian's chromium (browser tests; browsers are never downloaded), web/ npm ci"
  if browser_tools && (cd web && npm ci --no-audit --no-fund --loglevel=error); then
    record "web tools (chromium, npm ci from the lock file)" PASS "$t0"
  else
    record "web tools (chromium, npm ci from the lock file)" FAIL "$t0"
    return 1
  fi
}

# browser_tools installs node, npm and chromium from Debian when missing.
browser_tools() {
  local missing=()
  command -v node > /dev/null || missing+=(nodejs)
  command -v npm > /dev/null || missing+=(npm)
  [ -x /usr/lib/chromium/chromium ] || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq -o DPkg::Lock::Timeout=300 &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}" > /dev/null
}

# ---------------------------------------------------------------- 1. generated code
phase_generate() {
  local t0=$SECONDS
  if [ ! -f buf.yaml ]; then
    say "generate: no buf.yaml yet, skipping buf steps"
    record "buf generate / lint / format" SKIP "$t0"
    return
  fi
  if [ "${SKIP_GENERATE:-}" = 1 ] && [ "${CI:-}" != true ]; then
    record "buf generate / lint / format (SKIP_GENERATE=1)" SKIP "$t0"
    return
  fi
  say "generate: buf generate, lint, format"
  local ok=PASS
  if ! PATH="$ROOT/.bin:$PATH" buf generate; then
    echo "buf generate failed"; ok=FAIL
  elif [ -n "$(git status --porcelain -- gen web/src/gen)" ]; then
    echo "gen/ or web/src/gen is not what buf generate produces from proto/ (commit the regenerated code):"
    git status --porcelain -- gen web/src/gen
    git --no-pager diff --stat -- gen web/src/gen
    git --no-pager diff -- gen web/src/gen | head -n 200
    ok=FAIL
  fi
  record "buf generate (gen/, web/src/gen up to date)" "$ok" "$t0"

  if [ -f sqlc.yaml ]; then
    t0=$SECONDS
    ok=PASS
    local sqlc_out
    sqlc_out=$(sed -n 's/^[[:space:]]*out:[[:space:]]*//p' sqlc.yaml)
    if ! (cd "$ROOT" && "$ROOT/.bin/sqlc" generate); then
      echo "sqlc generate failed"; ok=FAIL
    elif [ -n "$(git status --porcelain -- $sqlc_out)" ]; then
      echo "sqlc output is not what sqlc generate produces (commit the regenerated code):"
      git status --porcelain -- $sqlc_out
      git --no-pager diff -- $sqlc_out | head -n 200
      ok=FAIL
    fi
    record "sqlc generate (queries up to date)" "$ok" "$t0"
  fi

  t0=$SECONDS
  if PATH="$ROOT/.bin:$PATH" buf lint; then record "buf lint" PASS "$t0"; else record "buf lint" FAIL "$t0"; fi
  t0=$SECONDS
  if PATH="$ROOT/.bin:$PATH" buf format -d --exit-code; then
    record "buf format" PASS "$t0"
  else
    echo "proto files are not formatted: run  .bin/buf format -w"
    record "buf format" FAIL "$t0"
  fi
}

# ------------------------------------------------------------------- 2. middleware
STARTED_MW=()
stop_middleware() {
  [ ${#STARTED_MW[@]} -eq 0 ] && return 0
  say "middleware: stopping ${STARTED_MW[*]}"
  bash "$MW" stop "${STARTED_MW[@]}" || true
  STARTED_MW=()
}
on_exit() {
  local rc=$?
  stop_kube
  stop_middleware
  exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

phase_middleware() {
  local t0=$SECONDS n
  [ -n "${MIDDLEWARE// /}" ] || { record "middleware (none requested)" SKIP "$t0"; return 0; }
  say "middleware: starting $MIDDLEWARE"
  # only what this run starts is stopped again; servers a developer already runs stay up
  for n in $MIDDLEWARE; do
    bash "$MW" running "$n" 2> /dev/null || STARTED_MW+=("$n")
  done
  # shellcheck disable=SC2086
  if bash "$MW" start $MIDDLEWARE; then
    record "middleware start ($MIDDLEWARE)" PASS "$t0"
  else
    record "middleware start ($MIDDLEWARE)" FAIL "$t0"
    return 1
  fi
  # shellcheck disable=SC1091
  source "$ROOT/.run/env"
  bash "$MW" status
}

# ------------------------------------------------------- 2b. Kubernetes control plane
# A real kube-apiserver + etcd + kube-controller-manager on loopback (no nodes) for the
# chart tests in tests/deploy; the tools are built once per machine (scripts/kube.sh).
KUBE_STARTED=
phase_kube() {
  local t0=$SECONDS
  say "kube: kube-apiserver, kube-controller-manager, kubectl v1.37.2, etcd v3.6.13, helm v4.3.2 (cached per machine)"
  if bash scripts/kube.sh build; then
    record "kube tools (cold build 8-40 min, then cached)" PASS "$t0"
  else
    record "kube tools (cold build 8-40 min, then cached)" FAIL "$t0"
    return 1
  fi
  t0=$SECONDS
  bash scripts/kube.sh status > /dev/null 2>&1 || KUBE_STARTED=1
  # bounded lifetime: it stops by itself even if this script is killed
  if bash scripts/kube.sh start 3600; then
    eval "$(bash scripts/kube.sh env)"
    record "kube-apiserver + etcd + controller-manager (loopback)" PASS "$t0"
  else
    record "kube-apiserver + etcd + controller-manager (loopback)" FAIL "$t0"
  fi
}
stop_kube() {
  [ -n "$KUBE_STARTED" ] || return 0
  bash scripts/kube.sh stop || true
  KUBE_STARTED=
}

# -------------------------------------------------------------------- 3. go vet + test
go_modules() {
  go work edit -json | sed -n 's/^[[:space:]]*"DiskPath": "\(.*\)".*/\1/p'
}

phase_go() {
  local mods m t0
  mapfile -t mods < <(go_modules)
  if [ ${#mods[@]} -eq 0 ]; then
    say "go: no modules in go.work"; record "go modules" FAIL "$SECONDS"; return
  fi
  export HGP_INTEGRATION=require
  say "go: ${#mods[@]} modules: ${mods[*]}"
  for m in "${mods[@]}"; do
    t0=$SECONDS
    say "go vet $m"
    if (cd "$m" && go vet ./...); then record "go vet $m" PASS "$t0"; else record "go vet $m" FAIL "$t0"; fi
    t0=$SECONDS
    say "golangci-lint $m"
    if (cd "$m" && "$ROOT/.bin/golangci-lint" run --allow-serial-runners --config "$ROOT/.golangci.yml" ./...); then
      record "golangci-lint $m" PASS "$t0"
    else
      record "golangci-lint $m" FAIL "$t0"
    fi
  done
  for m in "${mods[@]}"; do
    t0=$SECONDS
    say "go test $m"
    # one line per test (and the output of every failed one), the list of
    # failures again at the end, and a JSON record under .run/test-results
    if (cd "$m" && "$ROOT/.bin/gotestsum" --format testname --format-hide-empty-pkg \
          --jsonfile "$RESULTS_DIR/$(echo "$m" | tr '/.' '__').json" -- \
          -race -count=1 -timeout "$GO_TEST_TIMEOUT" "$@" ./...); then
      record "go test $m" PASS "$t0"
    else
      record "go test $m" FAIL "$t0"
    fi
  done
}

# ------------------------------------------------------------- 4. clean tree
# Nothing the tests or the generators do may change tracked files or leave
# untracked ones behind (go.work.sum included: commit it complete).
phase_clean_tree() {
  local t0=$SECONDS
  if [ ! -d .git ] && ! git rev-parse --git-dir > /dev/null 2>&1; then
    record "clean tree after tests (not a git checkout)" SKIP "$t0"
    return
  fi
  local dirty
  dirty=$(git status --porcelain --untracked-files=all)
  if [ "$dirty" = "$TREE_BEFORE" ]; then
    record "clean tree after tests" PASS "$t0"
  else
    echo "the tree changed while testing (commit or ignore these):"
    diff <(echo "$TREE_BEFORE") <(echo "$dirty")
    git --no-pager diff --stat
    record "clean tree after tests" FAIL "$t0"
  fi
}

say "HighGoPress tests in $ROOT ($(go version | cut -d' ' -f3), CI=${CI:-})"
# what a developer had changed before the run is not the run's doing
TREE_BEFORE=$(git status --porcelain --untracked-files=all 2> /dev/null)
RESULTS_DIR="$ROOT/.run/test-results"
mkdir -p "$RESULTS_DIR"
if phase_tools; then
  phase_generate
  if phase_middleware; then
    phase_kube
    phase_go "$@"
    stop_kube
  else
    echo "middleware did not start: not running the Go tests (they need the servers)"
  fi
else
  echo "tools could not be installed: nothing else can run"
fi
stop_middleware
phase_clean_tree
summary
[ $FAILED -eq 0 ]
