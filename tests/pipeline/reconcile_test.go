package pipeline_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/consumer/migrations"
	"github.com/highgopress/highgopress/services/consumer/sink"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// reconcileFixture: MySQL holds an applied random history (the consumer's
// sink wrote it), the event topic is empty and everything in it applied,
// and the counter's Redis database is empty: all of Redis's state is lost.
type reconcileFixture struct {
	e    *env
	conn *sql.DB
	rdb  *redis.Client
	want pipetest.State
}

func newReconcileFixture(t *testing.T) *reconcileFixture {
	t.Helper()
	ctx := context.Background()
	e := setup(t)
	if _, err := migrations.Up(ctx, logging.Discard(), e.DSN); err != nil {
		t.Fatal(err)
	}
	conn, err := consumer.OpenDB(e.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	o := pipetest.NewOracle(9)
	if _, err := sink.New(logging.Discard(), conn).Apply(ctx, pipetest.Events(o.Generate(3000, 30, 10), 1), nil); err != nil {
		t.Fatal(err)
	}
	f := &reconcileFixture{e: e, conn: conn, want: o.Want()}
	pipetest.AssertState(t, conn, f.want)
	f.rdb = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: pipelineRedisDB})
	t.Cleanup(func() { _ = f.rdb.Close() })
	if err := f.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is the counter's configuration on the fixture (plus kv).
func (f *reconcileFixture) config(kv ...string) *config.Reader {
	m := map[string]string{
		"HGP_IDENTITY_SECRET": strings.Repeat("r", 32),
		"HGP_COUNTER_ADDR":    "127.0.0.1:0",
		"HGP_REDIS_ADDR":      f.rdb.Options().Addr,
		"HGP_REDIS_DB":        strconv.Itoa(pipelineRedisDB),
		"HGP_MYSQL_DSN":       f.e.DSN,
		"HGP_KAFKA_BROKERS":   strings.Join(f.e.Brokers, ","),
		"HGP_KAFKA_TOPIC":     f.e.Topic,
		"HGP_RELAY_CONSUMER":  "relay-" + pipetest.Suffix(),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return config.FromMap(m)
}

// redisEqualsMySQL reports nil when the counter's Redis holds exactly
// MySQL's state.
func (f *reconcileFixture) redisEqualsMySQL(ctx context.Context) error {
	got, err := redisState(ctx, f.rdb)
	if err != nil {
		return err
	}
	if d := pipetest.Diff(got, f.want); d != "" {
		return errors.New("Redis differs from MySQL: " + d)
	}
	return nil
}

// someItemCount returns the Redis key and field of one count MySQL holds.
func (f *reconcileFixture) someItemCount() (key, field string) {
	for k := range f.want.Counts {
		p := strings.SplitN(k, "/", 3)
		return "hgp:c:{" + p[0] + ":" + p[1] + "}", p[2]
	}
	panic("the history has no counts")
}

// TestReconcileCommandRebuildsLostRedis: `counter reconcile` (Reconcile)
// against real MySQL, Kafka and Redis. While an outbox entry waits to be
// relayed nothing is rebuilt; once the pipeline is quiescent every lost
// item and user is rebuilt from MySQL, and Redis equals MySQL.
func TestReconcileCommandRebuildsLostRedis(t *testing.T) {
	ctx := context.Background()
	f := newReconcileFixture(t)
	if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: map[string]any{"k": "like", "u": "x", "ns": "a", "id": "b"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := counter.Reconcile(ctx, logging.Discard(), f.config()); err != nil {
		t.Fatal(err)
	}
	if keys, err := f.rdb.Keys(ctx, "*").Result(); err != nil || len(keys) != 1 {
		t.Fatalf("Redis holds %v (%v) after a reconciliation that was not quiescent; want only the outbox", keys, err)
	}

	if err := f.rdb.Del(ctx, outbox.Stream).Err(); err != nil {
		t.Fatal(err)
	}
	if err := counter.Reconcile(ctx, logging.Discard(), f.config()); err != nil {
		t.Fatal(err)
	}
	if err := f.redisEqualsMySQL(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBuildReconcilesPeriodically: the counter component (Build, with
// MySQL, Kafka and HGP_RECONCILE_INTERVAL) rebuilds a lost Redis without a
// single read, lets its settle worker settle the rebuilds, and later
// corrects a count that drifted and rebuilds a user whose keys were lost.
func TestBuildReconcilesPeriodically(t *testing.T) {
	ctx := context.Background()
	f := newReconcileFixture(t)
	comp, err := counter.Build(ctx, logging.Discard(), f.config("HGP_RECONCILE_INTERVAL", "100ms", "HGP_COUNTER_SETTLE_DELAY", "50ms"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logging.Discard(), comp) })
	settled := func() error {
		if err := f.redisEqualsMySQL(ctx); err != nil {
			return err
		}
		if n, err := f.rdb.ZCard(ctx, redisstore.SettleQueue).Result(); err != nil || n > 0 {
			return fmt.Errorf("%d rebuilds wait to be settled (%v)", n, err)
		}
		return nil
	}
	testenv.EventuallyNoError(t, 60*time.Second, "Redis rebuilt from MySQL and settled", settled)

	key, field := f.someItemCount()
	if err := f.rdb.HIncrBy(ctx, key, field, 3).Err(); err != nil {
		t.Fatal(err)
	}
	var user string
	for u := range f.want.Users {
		user = u
		break
	}
	if err := f.rdb.Del(ctx, redisstore.UserKey(user), redisstore.FollowingKey(user), redisstore.FollowersKey(user)).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyNoError(t, 60*time.Second, "the drifted count corrected and the lost user rebuilt", settled)
}
