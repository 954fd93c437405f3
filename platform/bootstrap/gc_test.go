package bootstrap

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/highgopress/highgopress/platform/logging"
)

// gcSettings reads the collector's percent and memory limit, and restores
// them when the test ends.
func gcSettings(t *testing.T) (int, int64) {
	t.Helper()
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	l := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(p)
		debug.SetMemoryLimit(l)
	})
	return p, l
}

func TestTuneGCAppliesDefaultsWithoutEnvironment(t *testing.T) {
	gcSettings(t)
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	if !tuneGC(logging.Discard(), func(string) string { return "" }) {
		t.Fatal("tuneGC did not apply the defaults with GOGC and GOMEMLIMIT unset")
	}
	if p := debug.SetGCPercent(100); p != DefaultGCPercent {
		t.Errorf("GC percent %d, want %d", p, DefaultGCPercent)
	}
	if l := debug.SetMemoryLimit(-1); l != DefaultMemoryLimit {
		t.Errorf("memory limit %d, want %d", l, DefaultMemoryLimit)
	}
}

func TestTuneGCLeavesTheEnvironmentsSettings(t *testing.T) {
	for _, env := range []map[string]string{{"GOGC": "100"}, {"GOGC": "off"}, {"GOMEMLIMIT": "1GiB"}} {
		gcSettings(t)
		debug.SetGCPercent(123)
		debug.SetMemoryLimit(1 << 30)
		if tuneGC(logging.Discard(), func(k string) string { return env[k] }) {
			t.Errorf("%v: tuneGC applied its defaults over the environment", env)
		}
		if p := debug.SetGCPercent(100); p != 123 {
			t.Errorf("%v: GC percent changed to %d", env, p)
		}
		if l := debug.SetMemoryLimit(-1); l != 1<<30 {
			t.Errorf("%v: memory limit changed to %d", env, l)
		}
	}
}
