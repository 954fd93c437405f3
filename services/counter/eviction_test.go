package counter_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
)

// newLogBuffer returns a JSON logger writing into a buffer the test reads.
func newLogBuffer() (*testenv.SyncBuffer, *slog.Logger) {
	l := &testenv.SyncBuffer{}
	return l, slog.New(slog.NewJSONHandler(l, nil))
}

// setMaxMemoryPolicy sets Redis's (server-wide) maxmemory-policy for the
// rest of the test and restores the current one when it ends. Without a
// maxmemory limit (the test server's) no policy evicts anything, so other
// tests sharing the server are not affected.
func setMaxMemoryPolicy(t *testing.T, rdb *redis.Client, policy string) {
	t.Helper()
	cur, err := rdb.ConfigGet(bg, "maxmemory-policy").Result()
	if err != nil || cur["maxmemory-policy"] == "" {
		t.Fatalf("CONFIG GET maxmemory-policy: %v, %v", cur, err)
	}
	t.Cleanup(func() {
		if err := rdb.ConfigSet(bg, "maxmemory-policy", cur["maxmemory-policy"]).Err(); err != nil {
			t.Errorf("restore maxmemory-policy %s: %v", cur["maxmemory-policy"], err)
		}
	})
	if err := rdb.ConfigSet(bg, "maxmemory-policy", policy).Err(); err != nil {
		t.Fatalf("CONFIG SET maxmemory-policy %s: %v", policy, err)
	}
}

// TestEvictionPolicy: Prepare warns about a Redis that may evict keys,
// refuses it under WithRequireNoEviction (and Build under
// HGP_COUNTER_REQUIRE_NOEVICTION), and only warns when CONFIG is not
// available.
func TestEvictionPolicy(t *testing.T) {
	rdb := realRedis(t)
	prepare := func(opts ...counter.Option) (string, error) {
		t.Helper()
		logs, logger := newLogBuffer()
		c, err := counter.New(logger, rdb, newSigner(t), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Prepare(bg)
		return logs.String(), err
	}

	setMaxMemoryPolicy(t, rdb, "noeviction")
	for _, require := range []bool{false, true} {
		if logs, err := prepare(counter.WithRequireNoEviction(require)); err != nil || strings.Contains(logs, "maxmemory") {
			t.Fatalf("noeviction, require=%v: Prepare = %v, logs %s", require, err, logs)
		}
	}

	setMaxMemoryPolicy(t, rdb, "allkeys-lru")
	logs, err := prepare()
	if err != nil {
		t.Fatalf("allkeys-lru without require: Prepare = %v; want a warning only", err)
	}
	for _, want := range []string{`"level":"WARN"`, "not noeviction", "allkeys-lru", "like count twice"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("warning %s does not contain %q", logs, want)
		}
	}
	_, err = prepare(counter.WithRequireNoEviction(true))
	if err == nil || !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), "HGP_COUNTER_REQUIRE_NOEVICTION") {
		t.Fatalf("allkeys-lru with require: Prepare = %v; want an error naming the policy and the variable", err)
	}
	comp, err := counter.Build(bg, logging.Discard(), configFor(t, "HGP_COUNTER_REQUIRE_NOEVICTION", "true"))
	if err == nil {
		_ = comp.Close()
		t.Fatal("Build with HGP_COUNTER_REQUIRE_NOEVICTION=true accepted an evicting Redis")
	}
	if !strings.Contains(err.Error(), "HGP_COUNTER_REQUIRE_NOEVICTION") {
		t.Fatalf("Build error %q does not name HGP_COUNTER_REQUIRE_NOEVICTION", err)
	}

	// A Redis without CONFIG (managed services disable it; miniredis does
	// not have it): a warning, also when noeviction is required.
	m := miniredis.RunT(t)
	mini := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer mini.Close()
	for _, require := range []bool{false, true} {
		logs, logger := newLogBuffer()
		c, err := counter.New(logger, mini, newSigner(t), counter.WithRequireNoEviction(require))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Prepare(bg)
		_ = c.Close()
		if err != nil || !strings.Contains(logs.String(), "cannot read Redis maxmemory-policy") {
			t.Fatalf("without CONFIG, require=%v: Prepare = %v, logs %s; want a warning", require, err, logs)
		}
	}
}
