package identity

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clock is a settable time for a Signer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func clocked(t *testing.T, at time.Time) (*Signer, *clock) {
	t.Helper()
	s := newSigner(t, strings.Repeat("k", 32))
	c := &clock{t: at}
	s.now = c.now
	return s, c
}

// TestSignIsStableWithinAPeriod: within one Period a user's value for a
// procedure is the same (HPACK can index it; no HMAC per call); it changes
// with the period, the user and the procedure, and every one verifies.
func TestSignIsStableWithinAPeriod(t *testing.T) {
	start := time.Unix(1_800_000_000-1_800_000_000%periodSeconds, 0)
	s, c := clocked(t, start.Add(time.Second))
	get := "/highgopress.counter.v1.CounterService/GetCounts"
	first := s.Sign("u1", like)
	c.t = start.Add(Period - time.Millisecond)
	if v := s.Sign("u1", like); v != first {
		t.Fatalf("same period, different values: %q then %q", first, v)
	}
	if !strings.HasPrefix(first, "v2:"+strconv.FormatInt(start.Unix(), 10)+":") {
		t.Fatalf("value %q not stamped with the period's start %d", first, start.Unix())
	}
	for name, v := range map[string]string{
		"other user":      s.Sign("u2", like),
		"other procedure": s.Sign("u1", get),
	} {
		if v == first {
			t.Fatalf("%s: same value %q", name, v)
		}
	}
	c.t = start.Add(Period)
	next := s.Sign("u1", like)
	if next == first {
		t.Fatalf("next period, same value %q", next)
	}
	for _, v := range []string{first, next} {
		if u, err := s.Verify(v, like); err != nil || u != "u1" {
			t.Fatalf("Verify(%q) = %q, %v", v, u, err)
		}
	}
	// A fresh signer (nothing remembered) signs the same value: the
	// remembered one is exactly what Sign computes.
	fresh, _ := clocked(t, start.Add(Period+time.Second))
	if v := fresh.Sign("u1", like); v != next {
		t.Fatalf("remembered %q, computed %q", next, v)
	}
}

// TestRememberedValueIsStillCheckedForAge: a value verified once (and
// remembered) is refused once its stamp is older than MaxSkew, and is never
// accepted for another procedure.
func TestRememberedValueIsStillCheckedForAge(t *testing.T) {
	start := time.Unix(1_800_000_000-1_800_000_000%periodSeconds, 0)
	s, c := clocked(t, start.Add(Period-time.Second))
	v := s.Sign("u1", like)
	for range 2 { // the second answer comes from what Verify remembered
		if u, err := s.Verify(v, like); err != nil || u != "u1" {
			t.Fatalf("Verify = %q, %v", u, err)
		}
		if _, err := s.Verify(v, "/highgopress.counter.v1.CounterService/Unlike"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("replayed on another procedure: %v", err)
		}
	}
	// Valid until exactly MaxSkew after its stamp (not after it was signed).
	c.t = start.Add(MaxSkew)
	if _, err := s.Verify(v, like); err != nil {
		t.Fatalf("at MaxSkew after the stamp: %v", err)
	}
	c.t = start.Add(MaxSkew + time.Second)
	if _, err := s.Verify(v, like); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("remembered value past MaxSkew: %v, want stale", err)
	}
	// The same from a value stamped in the future beyond MaxSkew.
	c.t = start.Add(-MaxSkew - time.Second)
	if _, err := s.Verify(v, like); !errors.Is(err, ErrInvalid) {
		t.Fatalf("remembered value from the future: %v", err)
	}
}

// TestMemoIsBounded: a shard never holds more than memoShardMax entries,
// and entries older than keep are swept as new ones are written.
func TestMemoIsBounded(t *testing.T) {
	m := newMemo(20)
	const n = memoShards*memoShardMax + 5000
	for i := range n {
		m.put(memoKey{"p", strconv.Itoa(i)}, memoEntry{value: "x", stamp: 100}, 100)
	}
	total := 0
	for i := range m.shards {
		if l := len(m.shards[i].m); l > memoShardMax {
			t.Fatalf("shard %d holds %d entries, bound %d", i, l, memoShardMax)
		} else {
			total += l
		}
	}
	if total < memoShards*memoShardMax/2 {
		t.Fatalf("only %d of %d entries kept", total, n)
	}
	// 21 s later every old entry of a shard that is written goes.
	k := memoKey{"p", "new"}
	m.put(k, memoEntry{value: "y", stamp: 121}, 121)
	s := m.shard(k)
	if len(s.m) != 1 {
		t.Fatalf("shard holds %d entries after the sweep, want only the new one", len(s.m))
	}
	if e, ok := m.get(k); !ok || e.value != "y" {
		t.Fatalf("get after sweep = %+v, %v", e, ok)
	}
}

func BenchmarkSignVerify(b *testing.B) {
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		u := users[i%len(users)]
		if got, err := s.Verify(s.Sign(u, like), like); err != nil || got != u {
			b.Fatal(got, err)
		}
	}
}
