package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/services/counter/domain"
)

// fakeClient answers every command with OK and can hold pipelines until
// the test lets them go.
type fakeClient struct {
	mu      sync.Mutex
	batches [][]redis.Cmder
	hold    chan struct{} // when set, every exec waits for a value
	started chan int      // when set, receives each exec's size as it starts
}

type fakePipe struct {
	redis.Pipeliner
	c    *fakeClient
	cmds []redis.Cmder
}

func (f *fakeClient) Pipeline() redis.Pipeliner { return &fakePipe{c: f} }
func (f *fakeClient) Process(_ context.Context, cmd redis.Cmder) error {
	return f.exec([]redis.Cmder{cmd})
}

func (p *fakePipe) Process(_ context.Context, cmd redis.Cmder) error {
	p.cmds = append(p.cmds, cmd)
	return nil
}

func (p *fakePipe) Exec(context.Context) ([]redis.Cmder, error) { return p.cmds, p.c.exec(p.cmds) }

func (f *fakeClient) exec(cmds []redis.Cmder) error {
	if f.started != nil {
		f.started <- len(cmds)
	}
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	f.batches = append(f.batches, cmds)
	f.mu.Unlock()
	for _, c := range cmds {
		c.(*redis.StatusCmd).SetVal("OK")
	}
	return nil
}

func (f *fakeClient) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, b := range f.batches {
		out = append(out, len(b))
	}
	return out
}

func ok(ctx context.Context) *redis.StatusCmd { return redis.NewStatusCmd(ctx, "ping") }

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherCoalesces(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), started: make(chan int, 16)}
	b := newBatcher(f, true, 1, 4, 16)
	defer b.Close()

	errs := make(chan error, 10)
	cmds := make([]*redis.StatusCmd, 10)
	for i := range cmds {
		cmds[i] = ok(context.Background())
	}
	go func() { errs <- b.Do(context.Background(), cmds[0]) }()
	if n := <-f.started; n != 1 {
		t.Fatalf("first pipeline carries %d commands; want 1", n)
	}
	// The only worker is busy: the next nine queue up.
	for _, c := range cmds[1:] {
		go func() { errs <- b.Do(context.Background(), c) }()
	}
	waitFor(t, "nine queued jobs", func() bool { return len(b.jobs) == 9 })
	for range 3 { // pipelines of 1, 4, 4 and 1 commands
		f.hold <- struct{}{}
		<-f.started
	}
	f.hold <- struct{}{}
	for range cmds {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if c.Val() != "OK" {
			t.Fatalf("command %d has no reply", i)
		}
	}
	if got := f.sizes(); len(got) != 4 || got[0] != 1 || got[1] != 4 || got[2] != 4 || got[3] != 1 {
		t.Fatalf("pipeline sizes %v; want [1 4 4 1]", got)
	}
	if batches, commands := b.Stats(); batches != 4 || commands != 10 {
		t.Fatalf("Stats = %d, %d; want 4, 10", batches, commands)
	}
}

func TestBatcherCallerGivesUp(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), started: make(chan int, 16)}
	b := newBatcher(f, true, 1, 8, 16)
	defer b.Close()

	// A caller whose context is already done never queues.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Do(done, ok(done)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with cancelled ctx = %v", err)
	}

	// A caller that gives up while its pipeline runs returns at once, and
	// the worker is not stuck on it afterwards.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- b.Do(ctx, ok(ctx)) }()
	<-f.started
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Do = %v", err)
	}
	// A caller that gives up while queued is skipped by the worker.
	qctx, qcancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() { queued <- b.Do(qctx, ok(qctx)) }()
	waitFor(t, "queued job", func() bool { return len(b.jobs) == 1 })
	qcancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Do = %v", err)
	}
	f.hold <- struct{}{} // finish the abandoned pipeline

	live := ok(context.Background())
	res := make(chan error, 1)
	go func() { res <- b.Do(context.Background(), live) }()
	if n := <-f.started; n != 1 {
		t.Fatalf("next pipeline carries %d commands; want only the live one", n)
	}
	f.hold <- struct{}{}
	if err := <-res; err != nil || live.Val() != "OK" {
		t.Fatalf("live Do = %v, %q", err, live.Val())
	}
}

func TestBatcherCloseDrains(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), started: make(chan int, 64)}
	b := newBatcher(f, true, 2, 4, 4)
	const n = 20
	var succeeded, refused atomic.Int32
	var wg sync.WaitGroup
	cmds := make([]*redis.StatusCmd, n)
	for i := range n {
		cmds[i] = ok(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := b.Do(context.Background(), cmds[i]); {
			case err == nil:
				succeeded.Add(1)
				if cmds[i].Val() != "OK" {
					t.Errorf("command %d returned without its reply", i)
				}
			case errors.Is(err, errClosed):
				refused.Add(1)
			default:
				t.Errorf("Do: %v", err)
			}
		}()
	}
	<-f.started
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	go func() { // keep pipelines flowing until Close returns
		for {
			select {
			case f.hold <- struct{}{}:
			case <-closed:
				return
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	wg.Wait()
	if succeeded.Load()+refused.Load() != n {
		t.Fatalf("%d succeeded + %d refused != %d", succeeded.Load(), refused.Load(), n)
	}
	if err := b.Do(context.Background(), ok(context.Background())); !errors.Is(err, errClosed) {
		t.Fatalf("Do after Close = %v", err)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err         error
		unavailable bool
	}{
		{errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"), true},
		{redis.ErrClosed, true},
		{errClosed, true},
		{redisErr("LOADING Redis is loading the dataset in memory"), true},
		{redisErr("READONLY You can't write against a read only replica."), true},
		{redisErr("ERR Error running script: increment would overflow"), false},
		{redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
	}
	for _, c := range cases {
		if got := errors.Is(classify(c.err), domain.ErrUnavailable); got != c.unavailable {
			t.Errorf("classify(%v) unavailable = %v; want %v", c.err, got, c.unavailable)
		}
	}
	if err := classify(context.Canceled); err != context.Canceled {
		t.Errorf("classify(Canceled) = %v", err)
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}
