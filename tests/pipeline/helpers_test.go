package pipeline_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/consumer"
)

// pipelineRedisDB is the Redis database this module's tests own: the
// rebuild tests flush it, the others use stream and key names of their own
// in it. No other test package uses it.
const pipelineRedisDB = 15

// partitions of each test's event topic.
const partitions = 4

// env is one test's pipeline resources (pipetest.Env) and its connection.
type env struct {
	*pipetest.Env
	conn *sql.DB
}

func setup(t testing.TB) *env {
	t.Helper()
	return setupOn(t, strings.Split(testenv.KafkaBrokers(t), ","), testenv.MySQLDSN(t))
}

// setupOn is setup on the given Kafka brokers and MySQL server.
func setupOn(t testing.TB, brokers []string, baseDSN string) *env {
	t.Helper()
	return &env{Env: pipetest.NewEnv(t, brokers, baseDSN, partitions)}
}

// running is a consumer service started by startConsumer.
type running struct {
	*testenv.Running
	done func() (error, bool)
}

// startConsumer runs the consumer service (migrating e's database, two
// group members, batches of up to batch events) until the test ends; its
// MySQL pool becomes e.conn.
func startConsumer(t testing.TB, e *env, batch int) *running {
	t.Helper()
	cfg := consumer.Config{
		Kafka: config.Kafka{Brokers: e.Brokers, Topic: e.Topic, DLQTopic: e.DLQ}, Group: e.Group, Partitions: partitions,
		SessionTimeout: 6 * time.Second, DSN: e.DSN, Migrate: true, BatchMax: batch, BatchWait: 20 * time.Millisecond, Workers: 2,
	}
	svc, err := consumer.Open(context.Background(), logging.Discard(), cfg, consumer.WithRegisterer(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() }) // after the run stopped (cleanups run in reverse)
	if e.conn == nil {
		e.conn = svc.DB()
	}
	ended := make(chan error, 1)
	r := testenv.Background(t, func(ctx context.Context) error {
		err := svc.Run(ctx)
		ended <- err
		return err
	})
	return &running{Running: r, done: func() (error, bool) {
		select {
		case err := <-ended:
			ended <- err
			return err, true
		default:
			return nil, false
		}
	}}
}
