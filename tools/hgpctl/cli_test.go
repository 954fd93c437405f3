package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

type result struct {
	code           int
	stdout, stderr string
}

func hgpctl(t *testing.T, consul string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "HGP_CONSUL_ADDR" {
			return consul, true
		}
		return "", false
	}
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb, lookup)
	return result{code, out.String(), errb.String()}
}

func (r result) want(t *testing.T, code int, parts ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	all := r.stdout + r.stderr
	for _, p := range parts {
		if !strings.Contains(all, p) {
			t.Fatalf("output lacks %q:\nstdout: %s\nstderr: %s", p, r.stdout, r.stderr)
		}
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	r := hgpctl(t, "", "", "help")
	r.want(t, 0, "config keys", "config get", "config set", "config validate", "config diff", "config put", "config delete")
	for name := range tasks {
		r.want(t, 0, "hgpctl "+name)
	}
	hgpctl(t, "", "").want(t, 2, "Configuration centre")
	hgpctl(t, "", "", "frobnicate").want(t, 2, `unknown command "frobnicate"`)
	hgpctl(t, "", "", "migrate", "--help").want(t, 0, "schema migrations")
	hgpctl(t, "", "", "reconcile", "extra").want(t, 2, "takes no arguments")
	hgpctl(t, "", "", "config", "keys", "gateway").want(t, 0, "HGP_RATE_WRITE_USER", "HGP_GATEWAY_READ_ONLY", "HGP_APISTATS_FLUSH_INTERVAL")
	hgpctl(t, "", "", "config", "keys").want(t, 0, "counter (highgopress/config/counter)", "HGP_COUNTER_WRITES_OFF", "HGP_COUNTER_CACHE_TTL")
	hgpctl(t, "", `{"HGP_COUNTER_WRITES_OFF":"article,Bad!"}`, "config", "validate", "counter").want(t, 1, "HGP_COUNTER_WRITES_OFF", "Bad!")
	hgpctl(t, "", "", "config", "get", "nosuch").want(t, 2, `no run-time settings for service "nosuch"`)
}

func TestValidateReadsStdinAndFiles(t *testing.T) {
	hgpctl(t, "", `{"HGP_RATE_WRITE_USER":"5-S"}`, "config", "validate", "gateway").want(t, 0, "valid: 1 setting(s)")
	hgpctl(t, "", `{"HGP_RATE_WRITE_USER":"5 per second"}`, "config", "validate", "gateway", "-").want(t, 1, "HGP_RATE_WRITE_USER", "rate")
	hgpctl(t, "", `{"HGP_RATE_WRITE_USER":5}`, "config", "validate", "gateway").want(t, 1, "wrong type")
	hgpctl(t, "", `{"HGP_GATEWAY_ADDR":"0.0.0.0:80"}`, "config", "validate", "gateway").want(t, 1, "not a run-time setting of gateway")
	f := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(f, []byte(`{"HGP_GATEWAY_READ_ONLY":"maybe"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	hgpctl(t, "", "", "config", "validate", "gateway", f).want(t, 1, `"maybe" is not a boolean`)
}

// TestConfigAgainstConsul drives get/set/put/diff/delete against a real
// Consul agent, and a gateway's configuration watcher applies what hgpctl
// wrote.
func TestConfigAgainstConsul(t *testing.T) {
	agent := testenv.StartConsulAgent(t)
	addr := agent.Addr()
	client, err := discovery.NewClient(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	var applied atomic.Pointer[gateway.Live]
	initial := gateway.Live{}
	w := liveconfig.NewWatcher(logging.Discard(), client, gateway.LiveSchema, config.FromMap(nil), initial,
		func(l gateway.Live) { applied.Store(&l) }, liveconfig.WithWait(2*time.Second))
	run := testenv.Background(t, w.Run)
	defer func() { _ = run.Stop(t) }()

	hgpctl(t, addr, "", "config", "get", "gateway").want(t, 0, "no document")
	hgpctl(t, addr, "", "config", "set", "gateway", "HGP_RATE_WRITE_USER=5-S", "HGP_GATEWAY_READ_ONLY=true").
		want(t, 0, "+ HGP_RATE_WRITE_USER=5-S", "+ HGP_GATEWAY_READ_ONLY=true", "written highgopress/config/gateway")
	testenv.Eventually(t, 20*time.Second, "the watcher applies what hgpctl wrote", func() bool {
		l := applied.Load()
		return l != nil && l.Rate.WriteUser == "5-S" && l.ReadOnly
	})
	hgpctl(t, addr, "", "config", "get", "gateway").want(t, 0, "version", `"HGP_RATE_WRITE_USER": "5-S"`)

	// Merge: only the named key changes; a bad value writes nothing.
	hgpctl(t, addr, "", "config", "set", "gateway", "HGP_GATEWAY_READ_ONLY=false").
		want(t, 0, "- HGP_GATEWAY_READ_ONLY=true", "+ HGP_GATEWAY_READ_ONLY=false")
	hgpctl(t, addr, "", "config", "set", "gateway", "HGP_RATE_READ_IP=lots").want(t, 1, "not written", "HGP_RATE_READ_IP")
	hgpctl(t, addr, "", "config", "set", "gateway", "HGP_IDENTITY_SECRET=x").want(t, 1, "not a run-time setting")
	hgpctl(t, addr, "", "config", "set", "gateway").want(t, 2, "at least one")
	got := hgpctl(t, addr, "", "config", "get", "gateway")
	got.want(t, 0, `"HGP_GATEWAY_READ_ONLY": "false"`, `"HGP_RATE_WRITE_USER": "5-S"`)
	if strings.Contains(got.stdout, "HGP_RATE_READ_IP") || strings.Contains(got.stdout, "IDENTITY") {
		t.Fatalf("a refused change was stored:\n%s", got.stdout)
	}

	hgpctl(t, addr, `{"HGP_RATE_WRITE_USER":"5-S","HGP_RATE_READ_USER":"9-S"}`, "config", "diff", "gateway", "-").
		want(t, 0, "- HGP_GATEWAY_READ_ONLY=false", "+ HGP_RATE_READ_USER=9-S")
	hgpctl(t, addr, `{"HGP_RATE_WRITE_USER":"5-S","HGP_GATEWAY_READ_ONLY":"false"}`, "config", "diff", "gateway", "-").want(t, 0, "no change")
	hgpctl(t, addr, "", "config", "set", "gateway", "-replace", "HGP_RATE_READ_USER=9-S", "-unset", "HGP_RATE_WRITE_USER").
		want(t, 0, "- HGP_RATE_WRITE_USER=5-S", "+ HGP_RATE_READ_USER=9-S")
	testenv.Eventually(t, 20*time.Second, "replace applied", func() bool {
		l := applied.Load()
		return l.Rate.ReadUser == "9-S" && l.Rate.WriteUser == "20-S" && !l.ReadOnly
	})

	// Check-and-set: a write based on a stale read is refused.
	kv := client.KV()
	doc, stale, err := fetch(context.Background(), kv, "gateway")
	if err != nil || stale == nil {
		t.Fatalf("fetch: %v %v", stale, err)
	}
	hgpctl(t, addr, "", "config", "set", "gateway", "HGP_RATE_READ_USER=10-S").want(t, 0, "written")
	var out bytes.Buffer
	err = store(context.Background(), kv, gateway.LiveSchema, "gateway", stale, doc, liveconfig.Document{"HGP_RATE_READ_USER": "11-S"}, &out)
	if err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Fatalf("stale check-and-set: %v", err)
	}
	pair, _, err := kv.Get(liveconfig.Key("gateway"), nil)
	if err != nil || !strings.Contains(string(pair.Value), "10-S") {
		t.Fatalf("after the refused stale write the document is %s (%v)", pair.Value, err)
	}

	hgpctl(t, addr, "", "config", "delete", "gateway").want(t, 0, "environment settings")
	testenv.Eventually(t, 20*time.Second, "delete applied", func() bool { return applied.Load().Rate.ReadUser == "200-S" })
	hgpctl(t, addr, "", "config", "get", "gateway").want(t, 0, "no document")
}
