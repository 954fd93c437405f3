package counter_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// TestFrozenRedis: with the counter's Redis frozen (SIGSTOP of a private
// redis-server), likes and reads fail Unavailable within the configured
// budget (HGP_COUNTER_REDIS_TIMEOUT) instead of waiting for go-redis'
// defaults, and DeadlineExceeded when the client's own deadline is
// shorter; after SIGCONT everything works, and once the failed likes are
// retried every count is exact and every state change has exactly one
// outbox entry (a like whose reply was lost may have been applied: the
// retry then answers changed=false).
func TestFrozenRedis(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			r := testenv.StartRedisServer(t)
			const budget = 250 * time.Millisecond
			// Generous for a loaded 2-core machine under -race, and still well
			// below go-redis' defaults (3 s read, 5 s dial), which the
			// counter used before it had budgets.
			const bound = 2500 * time.Millisecond
			comp, err := counter.Build(bg, logging.Discard(), configFor(t,
				"HGP_REDIS_ADDR", r.Addr, "HGP_REDIS_DB", "0",
				"HGP_COUNTER_BATCHING", strconv.FormatBool(batching), "HGP_COUNTER_CACHE_TTL", "0",
				"HGP_COUNTER_REDIS_TIMEOUT", budget.String()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = comp.Close() })
			url, client := rpctest.Serve(t, comp.Server.Handler())
			e := &env{url: url, http: client, signer: newSigner(t)}
			cs := e.counters(rpctest.Protocols[0])
			item := ref("articles", "frozen")
			like := func(ctx context.Context, user string) (*connect.Response[counterv1.LikeResponse], error) {
				return cs.Like(ctx, as(e, user, &counterv1.LikeRequest{Item: item}))
			}
			if _, err := like(bg, "warm"); err != nil { // pooled connections exist
				t.Fatal(err)
			}

			r.Signal(t, syscall.SIGSTOP)
			// One like at a time, then 40 at once (they queue in the batcher).
			start := time.Now()
			_, err = like(bg, "u0")
			if d := time.Since(start); connect.CodeOf(err) != connect.CodeUnavailable || d > bound {
				t.Fatalf("like with Redis frozen: %v after %s; want unavailable within %s", err, d, bound)
			}
			const n = 40
			errs := make([]error, n)
			took := make([]time.Duration, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := time.Now()
					_, errs[i] = like(bg, fmt.Sprint("u", i+1))
					took[i] = time.Since(s)
				}()
			}
			waitGroup(t, &wg, "likes against a frozen Redis")
			for i, err := range errs {
				if connect.CodeOf(err) != connect.CodeUnavailable || took[i] > bound {
					t.Fatalf("like %d with Redis frozen: %v after %s; want unavailable within %s", i+1, err, took[i], bound)
				}
			}
			// Reads fail the same way.
			s := time.Now()
			_, err = cs.GetCounts(bg, as(e, "", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}))
			if d := time.Since(s); connect.CodeOf(err) != connect.CodeUnavailable || d > bound {
				t.Fatalf("GetCounts with Redis frozen: %v after %s; want unavailable within %s", err, d, bound)
			}
			// A client deadline shorter than the budget: the server answers
			// DeadlineExceeded (asked over raw HTTP, so that the code is the
			// server's, not the client's own timer).
			body := []byte(`{"item":{"namespace":"articles","id":"frozen"}}`)
			req, _ := http.NewRequest(http.MethodPost, url+"/highgopress.counter.v1.CounterService/Like", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Connect-Timeout-Ms", "50")
			req.Header.Set("Hgp-Actor", e.signer.Sign("u-deadline", "/highgopress.counter.v1.CounterService/Like"))
			s = time.Now()
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			st := connectStatus(t, res)
			_ = res.Body.Close()
			if d := time.Since(s); st.code != connect.CodeDeadlineExceeded || d > bound {
				t.Fatalf("like with a 50 ms deadline, Redis frozen: %+v after %s; want deadline_exceeded", st, d)
			}

			r.Signal(t, syscall.SIGCONT)
			testenv.EventuallyNoError(t, waitTimeout, "likes to work again", func() error {
				_, err := like(bg, "after")
				return err
			})
			// Retry every like that failed: each is applied exactly once,
			// whether or not Redis ran it when it resumed.
			users := []string{"warm", "after", "u-deadline"}
			for i := range n + 1 {
				users = append(users, fmt.Sprint("u", i))
			}
			for _, u := range users {
				if _, err := like(bg, u); err != nil {
					t.Fatalf("retry of %s: %v", u, err)
				}
			}
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
			defer rdb.Close()
			got, err := cs.GetCounts(bg, as(e, "", &counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item}}))
			if err != nil || got.Msg.Counts[0].Likes != int64(len(users)) {
				t.Fatalf("GetCounts after recovery = %v, %v; want %d likes", got, err, len(users))
			}
			if l, err := rdb.XLen(bg, outbox.Stream).Result(); err != nil || l != int64(len(users)) {
				t.Fatalf("outbox holds %d entries (%v); want %d, one per like", l, err, len(users))
			}
		})
	}
}
