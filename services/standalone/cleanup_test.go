package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/highgopress/highgopress/platform/logging"
)

// TestRunReleasesWhatItBuiltOnFailure: when a later step of the start-up
// fails (here the gateway's port is taken), run returns the error and has
// released what it built before: the counter's port is free again.
func TestRunReleasesWhatItBuiltOnFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counterAddr := probe.Addr().String()
	_ = probe.Close()
	t.Setenv("HGP_GATEWAY_ADDR", taken.Addr().String())
	t.Setenv("HGP_COUNTER_ADDR", counterAddr)

	err = run(context.Background(), logging.Discard(), nil, func(Ready) { t.Error("ready although the gateway cannot listen") })
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("run = %v; want the gateway's listen error", err)
	}
	ln, err := net.Listen("tcp", counterAddr)
	if err != nil {
		t.Fatalf("the counter's port is still held after run failed: %v", err)
	}
	_ = ln.Close()
}
