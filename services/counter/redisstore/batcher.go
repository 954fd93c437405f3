package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// errClosed reports a command submitted after Close.
var errClosed = errors.New("redis store is closed")

// pipeliner is what the batcher needs from a Redis client.
type pipeliner interface {
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

// batcher runs concurrent callers' commands in shared pipelines: a pool of
// workers takes jobs from one channel, and each worker sends everything
// queued (up to max commands) in one round trip. With batching disabled each
// caller runs its own commands directly.
type batcher struct {
	client  pipeliner
	enabled bool
	max     int
	jobs    chan *job

	mu     sync.RWMutex // guards closing jobs against concurrent sends
	closed bool
	off    atomic.Bool // closed, for the unbatched path
	wg     sync.WaitGroup

	batches  atomic.Int64
	commands atomic.Int64
}

// newBatcher starts workers taking up to max commands per pipeline from a
// queue of queue jobs (callers beyond it wait to enqueue: backpressure).
func newBatcher(client pipeliner, enabled bool, workers, max, queue int) *batcher {
	b := &batcher{client: client, enabled: enabled, max: max}
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
// returns nil every command holds its own reply or error. A caller whose ctx
// ends stops waiting at once; its commands may still run.
func (b *batcher) Do(ctx context.Context, cmds ...redis.Cmder) error {
	if !b.enabled {
		if b.off.Load() {
			return errClosed
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
		return errClosed
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

func execDirect(ctx context.Context, client pipeliner, cmds []redis.Cmder) error {
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

func (b *batcher) work() {
	defer b.wg.Done()
	batch := make([]*job, 0, b.max)
	for j := range b.jobs {
		batch = append(batch[:0], j)
		n := len(j.cmds)
	fill:
		for n < b.max {
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
func (b *batcher) run(batch []*job) {
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
func (b *batcher) Stats() (batches, commands int64) {
	return b.batches.Load(), b.commands.Load()
}

// Close stops accepting commands and waits until everything queued ran.
func (b *batcher) Close() {
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
