package redisbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/testenv"
)

// fakeClient answers every command with OK and can hold pipelines until
// the test lets them go.
type fakeClient struct {
	mu      sync.Mutex
	batches [][]redis.Cmder
	hold    chan struct{} // when set, every exec waits for a value
	started chan int      // when set, receives each exec's size as it starts
	// stop, closed when the test ends, releases every held exec, so that a
	// failing test cannot leave workers blocked (and Close waiting for them).
	stop chan struct{}
}

type fakePipe struct {
	redis.Pipeliner
	c    *fakeClient
	cmds []redis.Cmder
}

// newHeldBatcher returns a batcher over a fakeClient whose pipelines wait
// for the test. When the test ends the fake's holds are released first,
// then the batcher is closed.
func newHeldBatcher(t *testing.T, workers, max, queue int) (*fakeClient, *Batcher) {
	t.Helper()
	f := &fakeClient{hold: make(chan struct{}), started: make(chan int, 64), stop: make(chan struct{})}
	b := New(f, true, workers, max, queue)
	t.Cleanup(b.Close)
	t.Cleanup(func() { close(f.stop) }) // runs before b.Close
	return f, b
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
		select {
		case f.started <- len(cmds):
		case <-f.stop:
		}
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-f.stop:
		}
	}
	f.mu.Lock()
	f.batches = append(f.batches, cmds)
	f.mu.Unlock()
	for _, c := range cmds {
		c.(*redis.StatusCmd).SetVal("OK")
	}
	return nil
}

// release lets one held pipeline finish, or fails the test at the deadline.
func (f *fakeClient) release(t *testing.T) {
	t.Helper()
	select {
	case f.hold <- struct{}{}:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a pipeline to release")
	}
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

// waitTimeout bounds every wait in these tests: a broken batcher fails a
// test instead of hanging the run.
const waitTimeout = 30 * time.Second

// recv receives from ch or fails the test at the deadline.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// TestBatcherCoalesces: jobs queued while the only worker is busy go out
// together, at most max commands per pipeline.
//
// It once hung for 14 minutes in a full run: any failure (a deadline of
// waitFor under load, a wrong size) ran the deferred Close, which waited
// for the worker, which waited forever on the fake's hold channel; and the
// bare channel receives had no deadline either. Now every wait has a
// deadline and the fake's holds are released before Close runs.
func TestBatcherCoalesces(t *testing.T) {
	f, b := newHeldBatcher(t, 1, 4, 16)

	errs := make(chan error, 10)
	cmds := make([]*redis.StatusCmd, 10)
	for i := range cmds {
		cmds[i] = ok(context.Background())
	}
	go func() { errs <- b.Do(context.Background(), cmds[0]) }()
	if n := recv(t, f.started, "the first pipeline"); n != 1 {
		t.Fatalf("first pipeline carries %d commands; want 1", n)
	}
	// The only worker is busy: the next nine queue up.
	for _, c := range cmds[1:] {
		go func() { errs <- b.Do(context.Background(), c) }()
	}
	testenv.Eventually(t, waitTimeout, "nine queued jobs", func() bool { return len(b.jobs) == 9 })
	for i := range 3 { // pipelines of 1, 4, 4 and 1 commands
		f.release(t)
		recv(t, f.started, fmt.Sprintf("pipeline %d", i+2))
	}
	f.release(t)
	for range cmds {
		if err := recv(t, errs, "a Do"); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if c.Val() != "OK" {
			t.Fatalf("command %d has no reply", i)
		}
	}
	if got := f.sizes(); !slices.Equal(got, []int{1, 4, 4, 1}) {
		t.Fatalf("pipeline sizes %v; want [1 4 4 1]", got)
	}
	if batches, commands := b.Stats(); batches != 4 || commands != 10 {
		t.Fatalf("Stats = %d, %d; want 4, 10", batches, commands)
	}
}

func TestBatcherCallerGivesUp(t *testing.T) {
	f, b := newHeldBatcher(t, 1, 8, 16)

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
	recv(t, f.started, "the first pipeline")
	cancel()
	if err := recv(t, first, "the abandoned Do"); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Do = %v", err)
	}
	// A caller that gives up while queued is skipped by the worker.
	qctx, qcancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() { queued <- b.Do(qctx, ok(qctx)) }()
	testenv.Eventually(t, waitTimeout, "queued job", func() bool { return len(b.jobs) == 1 })
	qcancel()
	if err := recv(t, queued, "the queued Do"); !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Do = %v", err)
	}
	f.release(t) // finish the abandoned pipeline

	live := ok(context.Background())
	res := make(chan error, 1)
	go func() { res <- b.Do(context.Background(), live) }()
	if n := recv(t, f.started, "the next pipeline"); n != 1 {
		t.Fatalf("next pipeline carries %d commands; want only the live one", n)
	}
	f.release(t)
	if err := recv(t, res, "the live Do"); err != nil || live.Val() != "OK" {
		t.Fatalf("live Do = %v, %q", err, live.Val())
	}
}

func TestBatcherCloseDrains(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), started: make(chan int, 64), stop: make(chan struct{})}
	t.Cleanup(func() { close(f.stop) })
	b := New(f, true, 2, 4, 4)
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
			case errors.Is(err, ErrClosed):
				refused.Add(1)
			default:
				t.Errorf("Do: %v", err)
			}
		}()
	}
	recv(t, f.started, "the first pipeline")
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
	recv(t, closed, "Close to return")
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(t, done, "every Do to return")
	if succeeded.Load()+refused.Load() != n {
		t.Fatalf("%d succeeded + %d refused != %d", succeeded.Load(), refused.Load(), n)
	}
	if err := b.Do(context.Background(), ok(context.Background())); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v", err)
	}
}

func TestBatcherSetMax(t *testing.T) {
	f, b := newHeldBatcher(t, 1, 4, 16)
	b.SetMax(2)
	if b.Max() != 2 {
		t.Fatalf("Max = %d after SetMax(2)", b.Max())
	}
	errs := make(chan error, 5)
	go func() { errs <- b.Do(context.Background(), ok(context.Background())) }()
	recv(t, f.started, "the first pipeline")
	for range 4 {
		go func() { errs <- b.Do(context.Background(), ok(context.Background())) }()
	}
	testenv.Eventually(t, waitTimeout, "four queued jobs", func() bool { return len(b.jobs) == 4 })
	for i := range 2 { // pipelines of 1, 2, 2
		f.release(t)
		recv(t, f.started, fmt.Sprintf("pipeline %d", i+2))
	}
	f.release(t)
	for range 5 {
		if err := recv(t, errs, "a Do"); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.sizes(); !slices.Equal(got, []int{1, 2, 2}) {
		t.Fatalf("pipeline sizes %v; want [1 2 2] after SetMax(2)", got)
	}
	b.SetMax(0)
	if b.Max() != 1 {
		t.Fatalf("SetMax(0) gave %d; want 1", b.Max())
	}
}
