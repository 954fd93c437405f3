package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
)

func cleanup(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	for key := range rdb.Scan(ctx, 0, prefix+":*", 500).Iterator().Vals(ctx) {
		rdb.Del(ctx, key)
	}
}

// BenchmarkLimiter measures the limiter's cost per request through the
// middleware (a no-op handler behind it): in-process memory store vs the
// shared Redis store, one budget (IP) vs two (IP + user, taken in one
// pipeline job). "serial" is the added latency of one request; "parallel"
// is the throughput cost with GOMAXPROCS concurrent requests, and its
// cpu-ns/op the CPU this process (limiter and handler, not Redis) spent per
// request.
// Results: docs/bench/ratelimit.txt.
func BenchmarkLimiter(b *testing.B) {
	big := "1000000000-H"
	cases := []struct {
		name  string
		redis bool
		user  bool
	}{
		{"memory/ip", false, false},
		{"memory/ip+user", false, true},
		{"redis/ip", true, false},
		{"redis/ip+user", true, true},
	}
	for _, c := range cases {
		var rdb *redis.Client
		if c.redis {
			rdb = NewRedisClient(testenv.RedisAddr(b), "", 0)
			defer rdb.Close()
		}
		cfg := Config{WriteUser: big, ReadUser: big, WriteIP: big, ReadIP: big, RedisDown: FailOpen, RedisTimeout: 2 * time.Second}
		prefix := fmt.Sprintf("hgp:rlbench:%d", time.Now().UnixNano())
		if rdb != nil {
			defer cleanup(rdb, prefix)
		}
		opts := []Option{WithKeyPrefix(prefix)}
		if c.user {
			opts = append(opts, WithSubject(func(r *http.Request) string { return r.Header.Get("Test-User") }))
		}
		l, err := New(logging.Discard(), rdb, cfg, opts...)
		if err != nil {
			b.Fatal(err)
		}
		h := l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		newReq := func(i int) *http.Request {
			r := httptest.NewRequest(http.MethodPost, likePath, strings.NewReader("{}"))
			r.RemoteAddr = fmt.Sprintf("198.51.%d.%d:1000", i/250%250, i%250+1)
			r.Header.Set("Test-User", fmt.Sprintf("user-%d", i))
			return r
		}
		reqs := make([]*http.Request, 1024)
		for i := range reqs {
			reqs[i] = newReq(i)
		}
		b.Run(c.name+"/serial", func(b *testing.B) {
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				h.ServeHTTP(w, reqs[i%len(reqs)])
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			var n atomic.Int64
			b.ReportAllocs()
			before := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op") }()
			b.SetParallelism(16) // 32 concurrent requests on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				w := httptest.NewRecorder()
				for pb.Next() {
					h.ServeHTTP(w, reqs[int(n.Add(1))%len(reqs)])
				}
			})
		})
		if st := l.Stats(); st.Rejected != 0 || st.RedisErrors != 0 {
			b.Fatalf("%s: stats %+v", c.name, st)
		}
	}
	// A client over its limit: answered from the local cache of exhausted
	// budgets, no Redis round trip.
	b.Run("redis/over-limit/serial", func(b *testing.B) {
		rdb := NewRedisClient(testenv.RedisAddr(b), "", 0)
		defer rdb.Close()
		cfg := Config{WriteUser: "off", ReadUser: "off", WriteIP: "1-H", ReadIP: "off", RedisDown: FailOpen, RedisTimeout: 2 * time.Second}
		prefix := fmt.Sprintf("hgp:rlbench:over:%d", time.Now().UnixNano())
		defer cleanup(rdb, prefix)
		l, err := New(logging.Discard(), rdb, cfg, WithKeyPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		h := l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		r := httptest.NewRequest(http.MethodPost, likePath, strings.NewReader("{}"))
		r.RemoteAddr = "198.51.100.200:1"
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
		if st := l.Stats(); st.Allowed != 1 {
			b.Fatalf("stats %+v", st)
		}
	})
}

// cpuTime is the CPU this process spent so far (user and system), in ns:
// with the load generator in the same process, a benchmark's cost per
// request without the wall-clock noise of a shared machine.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
