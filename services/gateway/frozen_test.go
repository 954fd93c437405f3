package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
)

// pause freezes the process (SIGSTOP): its sockets stay open, nothing
// answers. The returned func resumes it (SIGCONT) and is safe to call
// twice; the caller registers it as a cleanup so the process can be
// stopped gracefully.
func (p *counterProc) pause(t *testing.T) func() {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP counter: %v", err)
	}
	var once sync.Once
	resume := func() { once.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// TestFrozenCounter: one of two real counter processes is frozen with
// SIGSTOP (a stalled process: connections open, no answers) while readers
// and writers call through the gateway over all three protocols. With the
// per-attempt timeout (HGP_GATEWAY_ATTEMPT_TIMEOUT, 500ms here) no call
// waits for the frozen instance longer than that: reads are retried on the
// other instance and succeed, writes that were sent to it fail Unavailable
// (never retried; at most one per writer, those in flight before the
// instance was ejected), the balancer ejects it at the first timeout, and
// every call is answered well within the client's 8s deadline. After
// SIGCONT, Redis holds every acknowledged like and at most the failed ones
// besides.
func TestFrozenCounter(t *testing.T) {
	const attempt = 500 * time.Millisecond
	pair := startConsulPair(t, "frozen", map[string]string{
		"HGP_GATEWAY_MAX_TIMEOUT":     "10s",
		"HGP_GATEWAY_ATTEMPT_TIMEOUT": attempt.String(),
	})
	victim, survivor, gw, rl, rdb, itemID := pair.victim, pair.survivor, pair.gw, pair.rl, pair.rdb, pair.itemID
	readClient := counterv1connect.NewCounterServiceClient(gw.client, gw.url)
	testenv.Eventually(t, 20*time.Second, "reads reach both instances", func() bool {
		_, _ = readClient.GetCounts(context.Background(), connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}}))
		a, _, _ := rl.snapshot(victim.addr)
		b, _, _ := rl.snapshot(survivor.addr)
		return a > 0 && b > 0
	})

	const readers, writers = 4, 4
	const clientTimeout = 8 * time.Second
	var (
		wg               sync.WaitGroup
		stop             = make(chan struct{})
		reads, readErrs  atomic.Int64
		acked, writeErrs atomic.Int64
		slowest          atomic.Int64 // nanoseconds
		mu               sync.Mutex
		errMsgs          = map[string]int{}
	)
	note := func(kind string, took time.Duration, err error) {
		for {
			cur := slowest.Load()
			if int64(took) <= cur || slowest.CompareAndSwap(cur, int64(took)) {
				break
			}
		}
		if err != nil {
			mu.Lock()
			errMsgs[kind+": "+connect.CodeOf(err).String()+": "+err.Error()]++
			mu.Unlock()
		}
	}
	for i := range readers {
		p := rpctest.Protocols[i%len(rpctest.Protocols)]
		cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, p.Opts...)
		wg.Go(func() {
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
				start := time.Now()
				_, err := cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item(itemID)}}))
				cancel()
				reads.Add(1)
				if err != nil {
					readErrs.Add(1)
				}
				note("read/"+p.Name, time.Since(start), err)
			}
		})
	}
	for i := range writers {
		p := rpctest.Protocols[i%len(rpctest.Protocols)]
		wg.Go(func() {
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprintf("fz%d-%d", i, n)
				cs := counterv1connect.NewCounterServiceClient(gw.client, gw.url, append(p.Opts, withHeaders(bearer(token(t, user))))...)
				ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
				start := time.Now()
				_, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item(itemID)}))
				cancel()
				if err != nil {
					writeErrs.Add(1)
					if c := connect.CodeOf(err); c != connect.CodeUnavailable {
						note("write/"+p.Name+" (want unavailable)", time.Since(start), err)
						continue
					}
				} else {
					acked.Add(1)
				}
				note("write/"+p.Name, time.Since(start), err)
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopLoad)

	// Let the load run on both instances, then freeze one for 3s of load.
	callsBefore := reads.Load() + acked.Load()
	testenv.Eventually(t, 20*time.Second, "load before the freeze", func() bool {
		return reads.Load()+acked.Load() > callsBefore+100
	})
	if n := readErrs.Load() + writeErrs.Load(); n != 0 {
		t.Fatalf("%d calls failed before the freeze: %v", n, errMsgs)
	}
	slowest.Store(0)
	rl.setMark()
	resume := victim.pause(t)
	frozenAt := time.Now()
	callsAtFreeze := reads.Load() + acked.Load()
	testenv.Eventually(t, 30*time.Second, "calls keep being answered while the counter is frozen", func() bool {
		return time.Since(frozenAt) > 3*time.Second && reads.Load()+acked.Load() > callsAtFreeze+200
	})
	stopLoad()
	frozenFor := time.Since(frozenAt)
	resume()

	_, lastToVictim, sentAfter := rl.snapshot(victim.addr)
	st := gw.g.Stats()
	t.Logf("frozen for %v: reads %d (failed %d), writes acknowledged %d (failed %d), slowest call %v; "+
		"%d attempts sent to the frozen instance, the last %v after the freeze; ejections %d",
		frozenFor.Round(time.Millisecond), reads.Load(), readErrs.Load(), acked.Load(), writeErrs.Load(),
		time.Duration(slowest.Load()).Round(time.Millisecond), sentAfter, lastToVictim.Sub(frozenAt).Round(time.Millisecond),
		st.Backends.Balancer.Ejections)
	if len(errMsgs) > 0 {
		t.Logf("errors: %v", errMsgs)
	}
	if n := readErrs.Load(); n != 0 {
		t.Errorf("%d reads failed while one instance was frozen: %v", n, errMsgs)
	}
	if n := writeErrs.Load(); n > writers {
		t.Errorf("%d writes failed; at most %d (one in flight per writer before the ejection) may: %v", n, writers, errMsgs)
	}
	for k, n := range errMsgs {
		if strings.Contains(k, "(want unavailable)") {
			t.Errorf("%d writes failed with another code than unavailable: %s", n, k)
		}
	}
	// A call that met the frozen instance waited one attempt timeout (plus a
	// retry for a read), never the client's 8s: 3s leaves room for a
	// loaded 2-core machine under -race.
	if s := time.Duration(slowest.Load()); s > 3*time.Second {
		t.Errorf("slowest call took %v while the counter was frozen; the attempt timeout is %v", s, attempt)
	}
	if sentAfter > 0 && st.Backends.Balancer.Ejections == 0 {
		t.Errorf("attempts went to the frozen instance but it was never ejected")
	}

	// State: every acknowledged like is there, besides at most the failed
	// ones (a write may have reached the frozen process and be applied
	// once it resumes).
	ctx := context.Background()
	count, err := rdb.HGet(ctx, "hgp:c:{article:"+itemID+"}", "likes").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if count < acked.Load() || count > acked.Load()+writeErrs.Load() {
		t.Fatalf("redis: %d likes; acknowledged %d, failed %d", count, acked.Load(), writeErrs.Load())
	}
}
