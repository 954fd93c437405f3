//go:build tools

// Package tools pins the Consul agent's main package so that `go mod tidy` keeps
// every module it needs; scripts/mw.sh builds it with
// `go build -o <cache>/bin/consul github.com/hashicorp/consul`.
package tools

import _ "github.com/hashicorp/consul"
