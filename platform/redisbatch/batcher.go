// Package redisbatch runs concurrent callers' Redis commands in shared
// pipelines (automatic pipelining): a pool of workers takes what callers
// queued and sends it in one round trip each, so N concurrent commands cost
// far fewer syscalls and Redis wake-ups than N round trips.
package redisbatch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// ErrClosed reports a command submitted after Close.
var ErrClosed = errors.New("redis batcher is closed")

// Client is what the batcher needs from a Redis client (*redis.Client
// qualifies).
type Client interface {
	Pipeline() redis.Pipeliner
	Process(ctx context.Context, cmd redis.Cmder) error
}

// job is one caller's commands, executed together in some pipeline.
type job struct {
	ctx  context.Context
	cmds []redis.Cmder
	// done receives nil once every command holds its reply (or its own
	// error), or the error that kept the commands from running. It is
	// buffered so that a worker never waits for a caller that gave up.
	done chan error
}

// Batcher runs concurrent callers' commands in shared pipelines: a pool of
// workers takes jobs from one channel, and each worker sends everything
// queued (up to max commands) in one round trip. With batching disabled each
// caller runs its own commands directly.
type Batcher struct {
	client  Client
	enabled bool
	max     atomic.Int64 // commands per pipeline; SetMax changes it at run time
	jobs    chan *job

	mu     sync.RWMutex // guards closing jobs against concurrent sends
	closed bool
	off    atomic.Bool // closed, for the unbatched path
	wg     sync.WaitGroup

	batches  atomic.Int64
	commands atomic.Int64
}

// New starts workers taking up to max commands per pipeline from a queue of
// queue jobs (callers beyond it wait to enqueue: backpressure). With enabled
// false every Do runs its own commands directly.
func New(client Client, enabled bool, workers, max, queue int) *Batcher {
	b := &Batcher{client: client, enabled: enabled}
	if max < 1 {
		max = 1
	}
	b.max.Store(int64(max))
	if !enabled {
		return b
	}
	b.jobs = make(chan *job, queue)
	b.wg.Add(workers)
	for range workers {
		go b.work()
	}
	return b
}

// Do runs cmds in one pipeline, possibly shared with other callers. When it
// returns nil every command holds its own reply or error.
//
// A caller whose ctx ends stops waiting at once, but its commands may still
// be queued or running: after Do returns an error the commands belong to the
// batcher, and the caller must neither read nor modify them (not even
// SetErr) — build a new command to carry the error if one is needed.
func (b *Batcher) Do(ctx context.Context, cmds ...redis.Cmder) error {
	if !b.enabled {
		if b.off.Load() {
			return ErrClosed
		}
		b.batches.Add(1)
		b.commands.Add(int64(len(cmds)))
		return execDirect(ctx, b.client, cmds)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	j := &job{ctx: ctx, cmds: cmds, done: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case b.jobs <- j:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func execDirect(ctx context.Context, client Client, cmds []redis.Cmder) error {
	if len(cmds) == 1 {
		return transportErr(client.Process(ctx, cmds[0]))
	}
	pipe := client.Pipeline()
	for _, c := range cmds {
		_ = pipe.Process(ctx, c) // queues; never fails
	}
	_, err := pipe.Exec(ctx)
	return transportErr(err)
}

// transportErr drops errors that are replies to single commands (each
// command keeps its own) and keeps those that stopped the whole exchange.
func transportErr(err error) error {
	var rerr redis.Error
	if err == nil || errors.As(err, &rerr) {
		return nil
	}
	return err
}

// SetMax changes how many commands one pipeline takes at most (values
// below 1 mean 1); pipelines already being filled keep their limit.
func (b *Batcher) SetMax(n int) { b.max.Store(int64(max(n, 1))) }

// Max returns the current limit of commands per pipeline.
func (b *Batcher) Max() int { return int(b.max.Load()) }

func (b *Batcher) work() {
	defer b.wg.Done()
	batch := make([]*job, 0, b.max.Load())
	for j := range b.jobs {
		batch = append(batch[:0], j)
		n := len(j.cmds)
	fill:
		for limit := int(b.max.Load()); n < limit; {
			select {
			case next, ok := <-b.jobs:
				if !ok {
					break fill
				}
				batch = append(batch, next)
				n += len(next.cmds)
			default:
				break fill
			}
		}
		b.run(batch)
		clear(batch) // let finished jobs be collected
	}
}

// run executes one batch. Jobs whose callers already gave up are skipped.
func (b *Batcher) run(batch []*job) {
	pipe := b.client.Pipeline()
	live := 0
	n := 0
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		for _, c := range j.cmds {
			_ = pipe.Process(j.ctx, c) // queues; never fails
		}
		n += len(j.cmds)
		batch[live] = j
		live++
	}
	if live == 0 {
		return
	}
	b.batches.Add(1)
	b.commands.Add(int64(n))
	// The pipeline serves many callers: none of their cancellations may cut
	// it short. The client's read and write timeouts bound it.
	_, err := pipe.Exec(context.Background())
	err = transportErr(err)
	for _, j := range batch[:live] {
		j.done <- err
	}
}

// Stats returns how many pipelines (or direct calls, when batching is off)
// ran and how many commands they carried.
func (b *Batcher) Stats() (batches, commands int64) {
	return b.batches.Load(), b.commands.Load()
}

// Close stops accepting commands and waits until everything queued ran.
func (b *Batcher) Close() {
	b.off.Store(true)
	if !b.enabled {
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	close(b.jobs)
	b.mu.Unlock()
	b.wg.Wait()
}
