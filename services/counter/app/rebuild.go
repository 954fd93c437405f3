package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/highgopress/highgopress/services/counter/domain"
)

// Durable is the durable record (MySQL) that state missing from the store
// is rebuilt from. It is only read.
type Durable interface {
	// LoadItem returns the item's likers and metrics.
	LoadItem(ctx context.Context, item domain.ItemRef) (domain.ItemSnapshot, error)
	// LoadUser returns whom the user follows and who follows the user.
	LoadUser(ctx context.Context, user string) (domain.UserSnapshot, error)
}

// Seeder installs rebuilt state in the store, only while it is still
// missing there (so a concurrent seeder on another instance, or a write
// that ran in between, is never overwritten).
type Seeder interface {
	SeedItem(ctx context.Context, item domain.ItemRef, snap domain.ItemSnapshot) (int64, error)
	SeedUser(ctx context.Context, user string, snap domain.UserSnapshot) (int64, error)
	// ItemLoaded and UserLoaded report whether the state is complete in
	// the store (a rebuild that just finished elsewhere need not be
	// repeated).
	ItemLoaded(ctx context.Context, item domain.ItemRef) (bool, error)
	UserLoaded(ctx context.Context, user string) (bool, error)
}

// rebuilder rebuilds missing state once per key and instance at a time: a
// keyed single-flight around "load from the durable record, seed the store".
type rebuilder struct {
	durable Durable
	seeder  Seeder
	timeout time.Duration
	// parallel bounds concurrent rebuilds of one request.
	parallel int

	loads   atomic.Int64
	waiting atomic.Int64

	mu      sync.Mutex
	flights map[string]*rebuildFlight
}

type rebuildFlight struct {
	done chan struct{}
	err  error
}

// do runs fn for key unless a run for key is in flight, whose result it
// then shares. fn runs detached from ctx's cancellation (bounded by the
// rebuilder's timeout), so a caller that gives up does not fail the others.
func (r *rebuilder) do(ctx context.Context, key string, fn func(context.Context) error) error {
	r.mu.Lock()
	f, ok := r.flights[key]
	if !ok {
		f = &rebuildFlight{done: make(chan struct{})}
		r.flights[key] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
			f.err = fn(fctx)
			cancel()
			r.mu.Lock()
			delete(r.flights, key)
			r.mu.Unlock()
			close(f.done)
		}()
	}
	r.mu.Unlock()
	if ok {
		r.waiting.Add(1)
		defer r.waiting.Add(-1)
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// item rebuilds it. Concurrent reads and writes of it share one rebuild,
// made the way its leader needs: a write that joins a read's rebuild of an
// item the durable record does not have finds an absent entry, which it
// does not accept, and rebuilds again (see withRebuild's attempts).
func (r *rebuilder) item(ctx context.Context, it domain.ItemRef, forRead bool) error {
	return r.do(ctx, "i:"+itemKey(it), func(ctx context.Context) error {
		if ok, err := r.seeder.ItemLoaded(ctx, it); err != nil || ok {
			return err
		}
		r.loads.Add(1)
		snap, err := r.durable.LoadItem(ctx, it)
		if err != nil {
			return fmt.Errorf("%w: rebuild item %s/%s from the durable record: %w", domain.ErrUnavailable, it.Namespace, it.ID, err)
		}
		snap.ForRead = forRead
		if _, err := r.seeder.SeedItem(ctx, it, snap); err != nil {
			return fmt.Errorf("seed item %s/%s: %w", it.Namespace, it.ID, err)
		}
		return nil
	})
}

func (r *rebuilder) user(ctx context.Context, user string, forRead bool) error {
	return r.do(ctx, "u:"+user, func(ctx context.Context) error {
		if ok, err := r.seeder.UserLoaded(ctx, user); err != nil || ok {
			return err
		}
		r.loads.Add(1)
		snap, err := r.durable.LoadUser(ctx, user)
		if err != nil {
			return fmt.Errorf("%w: rebuild user %s from the durable record: %w", domain.ErrUnavailable, user, err)
		}
		snap.ForRead = forRead
		if _, err := r.seeder.SeedUser(ctx, user, snap); err != nil {
			return fmt.Errorf("seed user %s: %w", user, err)
		}
		return nil
	})
}

// rebuild restores everything nl names (each once), all at once: the
// durable record reads concurrent loads together (one catch-up wait and one
// transaction for many items) and the store's batcher pipelines the
// seeds, so a read of 500 items never seen costs a few round trips, not
// 500 in sequence. forRead: the operation is a read (see
// domain.ItemSnapshot.ForRead).
func (r *rebuilder) rebuild(ctx context.Context, nl *domain.NotLoadedError, forRead bool) error {
	jobs := make([]func() error, 0, len(nl.Items)+len(nl.Users))
	seenItems := make(map[domain.ItemRef]bool, len(nl.Items))
	for _, it := range nl.Items {
		if !seenItems[it] {
			seenItems[it] = true
			jobs = append(jobs, func() error { return r.item(ctx, it, forRead) })
		}
	}
	seenUsers := make(map[string]bool, len(nl.Users))
	for _, u := range nl.Users {
		if !seenUsers[u] {
			seenUsers[u] = true
			jobs = append(jobs, func() error { return r.user(ctx, u, forRead) })
		}
	}
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, r.parallel)
	var wg sync.WaitGroup
	for i, job := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = job()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxRebuildParallel bounds the rebuilds one request runs at once: as many
// as a request can name (500 items, or 500 users and the viewer), so that
// all of them reach the durable record's and the store's batching together.
const maxRebuildParallel = 501

// rebuildAttempts bounds how often one request rebuilds state that keeps
// disappearing (a FLUSHALL between the seed and the retry).
const rebuildAttempts = 3

// withRebuild runs op; when it fails because state is missing from the
// store, rebuilds that state from the durable record and runs op again.
// forRead says op is a read.
func withRebuild[T any](ctx context.Context, s *Service, forRead bool, op func() (T, error)) (T, error) {
	v, err := op()
	var nl *domain.NotLoadedError
	if err == nil || s.rebuilder == nil || !errors.As(err, &nl) {
		return v, err
	}
	var zero T
	for range rebuildAttempts {
		if err := s.rebuilder.rebuild(ctx, nl, forRead); err != nil {
			return zero, err
		}
		if v, err = op(); !errors.As(err, &nl) {
			return v, err
		}
	}
	// Removed again after every rebuild (repeated FLUSHALLs).
	return zero, fmt.Errorf("%w: state was removed from Redis again while it was rebuilt, %d times: %w",
		domain.ErrUnavailable, rebuildAttempts, err)
}

// RebuildStats describes the rebuilds of missing state by this instance.
type RebuildStats struct {
	// Loads is how many times an item's or a user's state was loaded from
	// the durable record.
	Loads int64
	// Waiting is the number of requests now waiting for a rebuild another
	// request leads.
	Waiting int64
}

// RebuildStats returns the rebuild statistics (zero without a durable record).
func (s *Service) RebuildStats() RebuildStats {
	if s.rebuilder == nil {
		return RebuildStats{}
	}
	return RebuildStats{Loads: s.rebuilder.loads.Load(), Waiting: s.rebuilder.waiting.Load()}
}
