package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// slowScript holds Redis busy for ARGV[1] milliseconds, then answers 1: long
// enough that a caller with a shorter deadline gives up while the batcher
// still waits for the reply.
const slowScript = `
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]) * 1000
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= deadline
return 1`

// TestEvalShaTimeoutDoesNotTouchBatchedCommand: a take whose deadline ends
// while its command is in a shared pipeline gets the deadline error on a
// command of its own; the batcher, still reading the reply into the
// original command, is not raced (run under -race: the test command does).
func TestEvalShaTimeoutDoesNotTouchBatchedCommand(t *testing.T) {
	rdb := realRedis(t)
	sha, err := rdb.ScriptLoad(context.Background(), slowScript).Result()
	if err != nil {
		t.Fatal(err)
	}
	c := newPipelinedClient(rdb)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		cmd := c.EvalSha(ctx, sha, nil, 50)
		cancel()
		// ulule reads the reply as soon as EvalSha returns.
		if _, err := cmd.Result(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("EvalSha past its deadline: %v, want %v", err, context.DeadlineExceeded)
		}
	}
	// Close waits for the batcher to finish every pipeline it holds, so
	// the replies were written while the test could still see a race.
	c.b.Close()
	// A caller with time to wait gets the script's reply.
	c = newPipelinedClient(rdb)
	defer c.b.Close()
	if v, err := c.EvalSha(context.Background(), sha, nil, 1).Int(); err != nil || v != 1 {
		t.Fatalf("EvalSha with time to wait: %d, %v", v, err)
	}
}
