package ratelimit

import (
	"net/http"
	"strconv"
	"testing"
)

// TestBothBudgetsInOneRoundTrip: a request limited by IP and by user takes
// both budgets in one pipeline (one job, one round trip), and each budget
// still counts on its own: the user budget rejects first, with its own
// headers, and the IP budget went down by every request.
func TestBothBudgetsInOneRoundTrip(t *testing.T) {
	rdb := realRedis(t)
	cfg := cfgWith(func(c *Config) { c.WriteUser = "3-H"; c.WriteIP = "5-H" })
	subject := func(r *http.Request) string { return r.Header.Get("Test-User") }
	lim := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb)), WithSubject(subject))
	if lim.incrSHA.Load() == nil {
		t.Fatal("the store's budget script was not recorded: every take would go through the store one at a time")
	}
	h := lim.Middleware(okHandler)
	b0, c0 := lim.piped.b.Stats()
	var codes []int
	var remaining []string
	for range 4 {
		w := do(h, "198.51.100.20:1", likePath, map[string]string{"Test-User": "carol"})
		codes = append(codes, w.Code)
		remaining = append(remaining, w.Header().Get(HeaderRemaining)+"/"+w.Header().Get(HeaderLimit))
	}
	b1, c1 := lim.piped.b.Stats()
	// Sequential requests: nothing else shares the pipelines.
	if b1-b0 != 4 || c1-c0 != 8 {
		t.Fatalf("4 requests of two budgets ran %d pipelines of %d commands, want 4 of 8 in all", b1-b0, c1-c0)
	}
	want := []string{"2/3", "1/3", "0/3", "0/3"}
	for i := range codes {
		if wantCode := http.StatusOK; i == 3 {
			wantCode = http.StatusTooManyRequests
			if codes[i] != wantCode {
				t.Fatalf("request %d: status %d, want %d", i+1, codes[i], wantCode)
			}
		} else if codes[i] != wantCode {
			t.Fatalf("request %d: status %d, want %d", i+1, codes[i], wantCode)
		}
		if remaining[i] != want[i] {
			t.Fatalf("request %d: RateLimit remaining/limit %s, want %s (the user budget decides)", i+1, remaining[i], want[i])
		}
	}
	// The IP budget was spent by all four (5-H: one left), so dave, a
	// new user at the same IP, gets the last unit and then the IP's 429.
	w := do(h, "198.51.100.20:1", likePath, map[string]string{"Test-User": "dave"})
	if w.Code != http.StatusOK || w.Header().Get(HeaderRemaining) != "0" || w.Header().Get(HeaderLimit) != "5" {
		t.Fatalf("dave's first like: %d, remaining %s of %s; want 200, 0 of 5 (the IP budget)", w.Code,
			w.Header().Get(HeaderRemaining), w.Header().Get(HeaderLimit))
	}
	w = do(h, "198.51.100.20:1", likePath, map[string]string{"Test-User": "dave"})
	if w.Code != http.StatusTooManyRequests || w.Header().Get(HeaderLimit) != "5" {
		t.Fatalf("dave's second like: %d, limit %s; want 429 from the IP budget of 5", w.Code, w.Header().Get(HeaderLimit))
	}
}

// TestLostScriptIsLoadedAgain: when Redis does not know the budget script
// (restarted, SCRIPT FLUSH; here a SHA it never saw) the take goes through
// the store, which loads the script again, and the budget still counts.
func TestLostScriptIsLoadedAgain(t *testing.T) {
	rdb := realRedis(t)
	cfg := cfgWith(func(c *Config) { c.WriteIP = "2-H" })
	lim := newLimiter(t, rdb, cfg, WithKeyPrefix(testPrefix(t, rdb)))
	unknown := "0000000000000000000000000000000000000000"
	lim.incrSHA.Store(&unknown)
	h := lim.Middleware(okHandler)
	var got []string
	for range 3 {
		w := do(h, "198.51.100.21:1", likePath, nil)
		got = append(got, strconv.Itoa(w.Code)+" "+w.Header().Get(HeaderRemaining))
	}
	if want := "[200 1 200 0 429 0]"; "["+got[0]+" "+got[1]+" "+got[2]+"]" != want {
		t.Fatalf("with the script unknown to Redis: %v, want %s", got, want)
	}
	if st := lim.Stats(); st.RedisErrors != 0 || st.RedisDown || st.LocalDecisions != 0 {
		t.Fatalf("stats %+v: a lost script is not an outage", st)
	}
}
