// Package antest holds the analytics tests' helpers: a Redis client on the
// analytics test database with a key prefix of the test's own, a settable
// clock, and event builders.
package antest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/testenv"
)

// RedisDB is the analytics tests' Redis database.
const RedisDB = 8

// Redis returns a client on the test Redis (DB 8) and a key prefix unique
// to the test; the test's keys are deleted when it ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: RedisDB, MaxRetries: -1})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	prefix := "hgp:an:t" + Suffix() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for key := range iter.Vals(ctx) {
			rdb.Unlink(ctx, key)
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// Suffix is a random hex string.
func Suffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now implements window.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Like returns a LIKE (or UNLIKE when like is false) of item by user at
// time at with version v.
func Like(like bool, ns, item, user string, v uint64, at time.Time) *eventsv1.Event {
	k := eventsv1.Kind_KIND_UNLIKE
	if like {
		k = eventsv1.Kind_KIND_LIKE
	}
	return &eventsv1.Event{
		EventId: "e" + user + item, Kind: k, Namespace: ns, ItemId: item, UserId: user,
		Version: v, Time: timestamppb.New(at),
	}
}

// Version is the counter's version of a write at t with sequence seq.
func Version(t time.Time, seq uint64) uint64 { return uint64(t.UnixMilli())<<20 | seq }

// APICall returns an API_CALL event.
func APICall(id, proc, code string, calls int64, at time.Time, hist map[int32]int64) *eventsv1.Event {
	return &eventsv1.Event{
		EventId: id, Kind: eventsv1.Kind_KIND_API_CALL, Procedure: proc, Code: code, Delta: calls,
		Time: timestamppb.New(at), LatencyUsBuckets: hist,
	}
}
