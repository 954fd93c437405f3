package liveconfig

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
)

type settings struct {
	Budget   int
	ReadOnly bool
}

func testSchema(name string) Schema[settings] {
	return Schema[settings]{
		Name:    name,
		Runtime: []string{"T_BUDGET", "T_READ_ONLY"},
		Parse: func(r *config.Reader) settings {
			return settings{Budget: r.Int("T_BUDGET", 10, 1, 1000), ReadOnly: r.Bool("T_READ_ONLY", false)}
		},
	}
}

func TestParseDocument(t *testing.T) {
	for _, tc := range []struct {
		raw, wantErr string
		want         Document
	}{
		{raw: "", want: Document{}},
		{raw: "  \n", want: Document{}},
		{raw: `{}`, want: Document{}},
		{raw: `{"T_BUDGET":"5"}`, want: Document{"T_BUDGET": "5"}},
		{raw: `{"T_BUDGET":5}`, wantErr: "T_BUDGET: wrong type"},
		{raw: `{"T_BUDGET":true,"T_READ_ONLY":null}`, wantErr: "T_READ_ONLY: wrong type"},
		{raw: `[1]`, wantErr: "not a JSON object"},
		{raw: `null`, wantErr: "null"},
		{raw: `{"a":"b"} {}`, wantErr: "after its JSON object"},
		{raw: `{"a":`, wantErr: "not a JSON object"},
		{raw: `{"a":"` + strings.Repeat("x", MaxDocumentBytes) + `"}`, wantErr: "more than"},
	} {
		got, err := ParseDocument([]byte(tc.raw))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDocument(%.40q) error = %v, want %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) || got["T_BUDGET"] != tc.want["T_BUDGET"] {
			t.Errorf("ParseDocument(%q) = %v, %v; want %v", tc.raw, got, err, tc.want)
		}
	}
}

func TestValidateUsesStartupRulesAndRejectsWholeDocuments(t *testing.T) {
	s := testSchema("svc")
	base := config.FromMap(map[string]string{"T_BUDGET": "20", "T_ADDR": "127.0.0.1:1"})
	got, err := s.Validate(base, Document{"T_READ_ONLY": "true"})
	if err != nil || got != (settings{Budget: 20, ReadOnly: true}) {
		t.Fatalf("valid override: %+v, %v (the environment's budget must stay)", got, err)
	}
	for doc, want := range map[string]Document{
		"T_BUDGET: 0 is outside [1, 1000]":      {"T_BUDGET": "0", "T_READ_ONLY": "true"},
		`T_READ_ONLY: "maybe" is not a boolean`: {"T_READ_ONLY": "maybe"},
		"T_ADDR: not a run-time setting of svc": {"T_ADDR": "0.0.0.0:1", "T_BUDGET": "5"},
		"NOPE: not a run-time setting":          {"NOPE": "1"},
	} {
		if _, err := s.Validate(base, want); err == nil || !strings.Contains(err.Error(), doc) {
			t.Errorf("Validate(%v) = %v, want an error containing %q", want, err, doc)
		}
	}
}

// harness runs a Watcher against a Consul agent and records what it applies.
type harness struct {
	kv      *api.KV
	key     string
	w       *Watcher[settings]
	reg     *prometheus.Registry
	applied atomic.Pointer[settings]
}

func startWatcher(t *testing.T, addr string) *harness {
	t.Helper()
	client, err := discovery.NewClient(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("test-%d-%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	h := &harness{kv: client.KV(), key: Key(name), reg: prometheus.NewRegistry()}
	initial := settings{Budget: 10}
	h.applied.Store(&initial)
	h.w = NewWatcher(logging.Discard(), client, testSchema(name), config.FromMap(nil), initial,
		func(s settings) { h.applied.Store(&s) },
		WithWait(2*time.Second), WithBackoff(50*time.Millisecond, 500*time.Millisecond), WithRegisterer(h.reg))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_, _ = h.kv.Delete(h.key, nil)
	})
	return h
}

func (h *harness) put(t *testing.T, value string) {
	t.Helper()
	// generous budget: the machine may be loaded
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := h.kv.Put(&api.KVPair{Key: h.key, Value: []byte(value)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		t.Fatalf("consul put %s: %v", h.key, err)
	}
}

func (h *harness) waitApplied(t *testing.T, want settings) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("settings %+v applied", want), func() bool {
		return *h.applied.Load() == want
	})
}

func (h *harness) rejected() float64 {
	return testutil.ToFloat64(h.w.mRejected.WithLabelValues(h.w.schema.Name))
}

func TestWatcherAppliesRejectsAndReverts(t *testing.T) {
	h := startWatcher(t, testenv.ConsulAddr(t))
	testenv.Eventually(t, 20*time.Second, "first answer from consul", func() bool {
		select {
		case <-h.w.Ready():
			return true
		default:
			return false
		}
	})
	if _, v := h.w.Current(); v.Index != 0 {
		t.Fatalf("no document yet, version %v", v)
	}

	h.put(t, `{"T_BUDGET":"3"}`)
	h.waitApplied(t, settings{Budget: 3})
	_, good := h.w.Current()
	if good.Index == 0 || testutil.ToFloat64(h.w.mVersion.WithLabelValues(h.w.schema.Name)) != float64(good.Index) {
		t.Fatalf("version %v not exposed (gauge %v)", good, testutil.ToFloat64(h.w.mVersion.WithLabelValues(h.w.schema.Name)))
	}

	// A bad document (one good value, one out of range) is rejected whole.
	h.put(t, `{"T_BUDGET":"4","T_READ_ONLY":"perhaps"}`)
	testenv.Eventually(t, 20*time.Second, "bad document rejected", func() bool { return h.rejected() == 1 })
	if got := *h.applied.Load(); got != (settings{Budget: 3}) {
		t.Fatalf("after a rejected document the settings are %+v, want the last good {3 false}", got)
	}
	if _, v := h.w.Current(); v.Index == good.Index {
		t.Fatal("the rejected version should be remembered so it is reported once")
	}
	if n, msg := h.w.Rejected(); n != 1 || !strings.Contains(msg, `T_READ_ONLY: "perhaps" is not a boolean`) {
		t.Fatalf("Rejected() = %d, %q", n, msg)
	}
	// A static setting is refused the same way.
	h.put(t, `{"HGP_GATEWAY_ADDR":"0.0.0.0:80"}`)
	testenv.Eventually(t, 20*time.Second, "static key rejected", func() bool { return h.rejected() == 2 })
	if got := *h.applied.Load(); got != (settings{Budget: 3}) {
		t.Fatalf("settings changed to %+v by a refused document", got)
	}

	h.put(t, `{"T_READ_ONLY":"true"}`)
	h.waitApplied(t, settings{Budget: 10, ReadOnly: true})

	// Deleting the document goes back to the environment.
	if _, err := h.kv.Delete(h.key, nil); err != nil {
		t.Fatal(err)
	}
	h.waitApplied(t, settings{Budget: 10})
	if _, v := h.w.Current(); v.Index != 0 {
		t.Fatalf("version after delete = %v, want env", v)
	}
	if got := h.rejected(); got != 2 {
		t.Fatalf("rejections = %v, want 2", got)
	}
}

func TestWatcherKeepsLastGoodWhileConsulIsDown(t *testing.T) {
	agent := testenv.StartConsulServer(t)
	h := startWatcher(t, agent.Addr())
	testenv.EventuallyNoError(t, 30*time.Second, "put on the fresh server", func() error {
		_, err := h.kv.Put(&api.KVPair{Key: h.key, Value: []byte(`{"T_BUDGET":"7"}`)}, nil)
		return err
	})
	h.waitApplied(t, settings{Budget: 7})
	applies := testutil.ToFloat64(h.w.mApplied.WithLabelValues(h.w.schema.Name))

	agent.Kill()
	errs := func() float64 { return testutil.ToFloat64(h.w.mErrors.WithLabelValues(h.w.schema.Name)) }
	testenv.Eventually(t, 30*time.Second, "the watcher notices consul is gone", func() bool { return errs() >= 2 })
	if got := *h.applied.Load(); got != (settings{Budget: 7}) {
		t.Fatalf("consul down changed the settings to %+v", got)
	}

	agent.Start(t)
	before := errs()
	testenv.Eventually(t, 60*time.Second, "the watcher queries consul again", func() bool {
		_, v := h.w.Current()
		return v.Index != 0 && errs() == before // no new errors: answering again
	})
	// The same document came back: nothing re-applied, nothing rejected.
	if got := *h.applied.Load(); got != (settings{Budget: 7}) {
		t.Fatalf("after consul restarted the settings are %+v", got)
	}
	if got := testutil.ToFloat64(h.w.mApplied.WithLabelValues(h.w.schema.Name)); got != applies {
		t.Fatalf("applied %v times after the restart, want %v (no flapping)", got, applies)
	}
	if h.rejected() != 0 {
		t.Fatal("a rejection appeared")
	}
	h.put(t, `{"T_BUDGET":"8"}`)
	h.waitApplied(t, settings{Budget: 8})
}
