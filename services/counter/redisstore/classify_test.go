package redisstore

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/redisbatch"
	"github.com/highgopress/highgopress/services/counter/domain"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		err         error
		unavailable bool
	}{
		{errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"), true},
		{redis.ErrClosed, true},
		{redisbatch.ErrClosed, true},
		{redisErr("LOADING Redis is loading the dataset in memory"), true},
		{redisErr("READONLY You can't write against a read only replica."), true},
		// Replies of Redis 7.0, copied from a server: OOM under
		// noeviction, for a command and for a write inside a script.
		{redisErr("OOM command not allowed when used memory > 'maxmemory'."), true},
		{redisErr("OOM command not allowed when used memory > 'maxmemory'. script: f4d24541261242fd1be161c98c2e7d1a6910a6dc, on @user_script:1."), true},
		{redisErr("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), true},
		{redisErr("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true},
		{redisErr("READONLY You can't write against a read only replica. script: 9d3f, on @user_script:3."), true},
		{redisErr("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), true},
		{redisErr("NOREPLICAS Not enough good replicas to write."), true},
		{redisErr("ERR max number of clients reached"), true},
		// Redis 6 wraps errors raised inside scripts.
		{redisErr("ERR Error running script (call to f_4d2a): @user_script:1: @user_script: 1: -OOM command not allowed when used memory > 'maxmemory'."), true},
		{redisErr("ERR Error running script: increment would overflow"), false},
		{redisErr("ERR Error running script (call to f_4d2a): @user_script:1: user_script:1: attempt to compare nil with number"), false},
		{redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		// Only whole codes: these are mistakes, not "busy".
		{redisErr("BUSYKEY Target key name already exists."), false},
		{redisErr("BUSYGROUP Consumer Group name already exists"), false},
		{redisErr("ERR OOM-like text in an unrelated error"), false},
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
