package discovery

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
)

// TestFailoverUnderLoad: two real instances registered in Consul, a
// watcher and a balancer, side-effect-free calls from 4 workers retried once
// on another instance after a connection error. One instance is killed
// mid-load: no call fails, the dead instance gets no traffic once ejected,
// and the watcher drops it within seconds (both windows are logged).
func TestFailoverUnderLoad(t *testing.T) {
	c := consulClient(t, testenv.ConsulAddr(t))
	svc := uniqueService(t)
	h1, h2 := startHealthServer(t), startHealthServer(t)
	var hits [2]atomic.Int64
	for i, h := range []*healthServer{h1, h2} {
		h.srv.Handle("/read", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			_, _ = w.Write([]byte("ok"))
		}))
		d, err := Register(context.Background(), logging.Discard(), c, h.registration(svc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d(context.Background()) })
	}
	w := NewWatcher(logging.Discard(), c, svc, WithWaitTime(10*time.Second))
	runWatcher(t, w)
	testenv.Eventually(t, 15*time.Second, "two healthy instances", func() bool { return len(w.Instances()) == 2 })
	bal := NewBalancer(logging.Discard(), map[string]Source{svc: w})
	client := server.NewH2CClient()
	t.Cleanup(client.CloseIdleConnections)

	call := func(ctx context.Context) (string, error) {
		var avoid string
		for attempt := 0; attempt < 2; attempt++ {
			be, err := bal.PickExcluding(ctx, svc, avoid)
			if err != nil {
				return "", err
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, be.URL.String()+"/read", strings.NewReader("{}"))
			res, err := client.Do(req)
			if err == nil {
				res.Body.Close()
				be.Done(nil)
				return be.URL.Host, nil
			}
			be.Done(err)
			if !IsConnectionError(err) {
				return "", err
			}
			avoid = be.URL.Host // reads are retried elsewhere
		}
		return "", errors.New("retry failed too")
	}

	var (
		killedAt   atomic.Int64
		lastDead   atomic.Int64 // unix nanos of the last call answered by or sent to the dead instance
		failures   atomic.Int64
		calls      atomic.Int64
		stop       = make(chan struct{})
		wg         sync.WaitGroup
		failureMsg sync.Map
	)
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 200000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				host, err := call(ctx)
				cancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					failureMsg.Store(err.Error(), true)
					continue
				}
				if host == h1.addr && killedAt.Load() != 0 {
					lastDead.Store(time.Now().UnixNano())
				}
			}
		})
	}
	testenv.Eventually(t, 10*time.Second, "load on both instances", func() bool { return hits[0].Load() > 50 && hits[1].Load() > 50 })
	killedAt.Store(time.Now().UnixNano())
	h1.kill()
	dropped := testenv.Eventually(t, 15*time.Second, "dead instance dropped by the watcher", func() bool {
		return slices.Equal(ids(w), []string{h2.registration(svc).ID})
	})
	// Keep the load going a little after the watcher dropped it.
	after := calls.Load()
	testenv.Eventually(t, 10*time.Second, "more calls after the drop", func() bool { return calls.Load() > after+200 })
	close(stop)
	wg.Wait()

	if n := failures.Load(); n != 0 {
		var msgs []string
		failureMsg.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Fatalf("%d of %d reads failed during failover: %v", n, calls.Load(), msgs)
	}
	st := bal.Stats()
	if st.Ejections == 0 {
		t.Fatal("dead instance was never ejected")
	}
	window := "none after the kill"
	if ld := lastDead.Load(); ld != 0 {
		window = time.Duration(ld - killedAt.Load()).String()
	}
	t.Logf("FAILOVER UNDER LOAD: %d calls, 0 failed; last call answered by the dead instance after the kill: %s; "+
		"ejections %d; watcher dropped it after %s", calls.Load(), window, st.Ejections, dropped)
}
