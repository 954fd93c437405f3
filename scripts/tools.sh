#!/usr/bin/env bash
# Installs the project's pinned developer tools into ./.bin (idempotent).
# Usage: scripts/tools.sh [tool...]   (default: the code-generation tools)
#
# Each pinned version is built once per machine into a cache
# (${XDG_CACHE_HOME:-~/.cache}/highgopress/tools/<tool>@<version>) and linked
# into .bin, so fresh clones on the same machine do not rebuild.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.bin"
mkdir -p "$BIN"

declare -A PKG=(
  [buf]=github.com/bufbuild/buf/cmd/buf@v1.75.0
  [protoc-gen-go]=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
  [protoc-gen-connect-go]=connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.19.1
  [task]=github.com/go-task/task/v3/cmd/task@v3.54.0
  [sqlc]=github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1
  [helm]=helm.sh/helm/v4/cmd/helm@v4.3.2
  [gotestsum]=gotest.tools/gotestsum@v1.13.0
  [golangci-lint]=github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
)

tools=("$@")
if [ ${#tools[@]} -eq 0 ]; then tools=(buf protoc-gen-go protoc-gen-connect-go); fi
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/highgopress/tools"
for t in "${tools[@]}"; do
  spec="${PKG[$t]:?unknown tool $t (known: ${!PKG[*]})}"
  dir="$CACHE/$t@${spec##*@}"
  if [ ! -x "$dir/$t" ]; then
    echo "tools: installing $spec" >&2
    mkdir -p "$dir"
    (cd "$ROOT" && GOWORK=off GOBIN="$dir" go install "$spec")
  fi
  ln -sfn "$dir/$t" "$BIN/$t"
done
