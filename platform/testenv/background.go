package testenv

import (
	"context"
	"errors"
	"testing"
	"time"
)

// StopBudget is how long Background waits for a run to return after its
// context was cancelled before the test fails: an infrastructure budget for
// a loaded machine, not a latency claim.
const StopBudget = 60 * time.Second

// Running is a function started by Background.
type Running struct {
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// Background runs run(ctx) in a goroutine for the rest of the test. When the
// test ends (or Stop is called) ctx is cancelled and the run must return
// within StopBudget; an error other than context.Canceled fails the test.
func Background(t testing.TB, run func(ctx context.Context) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() {
		if err := r.Stop(t); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("background run: %v", err)
		}
	})
	return r
}

// Stop cancels the run, waits for it and returns its error (the same error
// on every call).
func (r *Running) Stop(t testing.TB) error {
	t.Helper()
	if r.ended {
		return r.err
	}
	r.cancel()
	select {
	case r.err = <-r.done:
		r.ended = true
	case <-time.After(StopBudget):
		t.Fatalf("background run did not return within %s of being stopped", StopBudget)
	}
	return r.err
}
