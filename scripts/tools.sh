#!/usr/bin/env bash
# Installs the project's pinned developer tools into ./.bin (idempotent).
# Usage: scripts/tools.sh [tool...]   (default: the code-generation tools)
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
  [helm]=helm.sh/helm/v3/cmd/helm@v3.22.0
)

tools=("$@")
if [ ${#tools[@]} -eq 0 ]; then tools=(buf protoc-gen-go protoc-gen-connect-go); fi
for t in "${tools[@]}"; do
  spec="${PKG[$t]:?unknown tool $t}"
  stamp="$BIN/.$t.version"
  if [ -x "$BIN/$t" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then continue; fi
  echo "tools: installing $spec" >&2
  (cd "$ROOT" && GOWORK=off GOBIN="$BIN" go install "$spec")
  echo "$spec" > "$stamp"
done
