package ratelimit

import (
	"context"
	"runtime"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/redisbatch"
)

// pipelinedClient is the client the ulule Redis store talks to. Its
// EvalSha — what every take of a budget runs — goes through a batcher, so
// the takes of concurrent requests (and the user and IP budgets of one
// request) share pipelines: one round trip and one Redis wake-up for many.
// Everything else goes straight to the client.
type pipelinedClient struct {
	redis.UniversalClient
	b *redisbatch.Batcher
}

// pipelineMax bounds the commands of one shared pipeline.
const pipelineMax = 128

func newPipelinedClient(rdb redis.UniversalClient) pipelinedClient {
	workers := 2 * runtime.GOMAXPROCS(0)
	return pipelinedClient{UniversalClient: rdb, b: redisbatch.New(rdb, true, workers, pipelineMax, workers*pipelineMax)}
}

func (c pipelinedClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", sha, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
	if err := c.b.Do(ctx, cmd); err != nil {
		// A caller that stopped waiting does not own cmd any more: the
		// batcher may still be writing its reply. Answer with a command
		// of our own that carries the error.
		failed := redis.NewCmd(ctx, a...)
		failed.SetErr(err)
		return failed
	}
	return cmd
}
