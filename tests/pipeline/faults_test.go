package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/relay"
)

var faultSecret = strings.Repeat("f", identity.MinSecretLen)

// pipeline is the whole write path in this process: the real counter
// service (Connect handler over loopback, Lua writes + outbox on a private
// real Redis), one or more outbox relays and the consumer.
type pipeline struct {
	e        *env
	rdb      *redis.Client
	signer   *identity.Signer
	counters counterv1connect.CounterServiceClient
	follows  counterv1connect.FollowServiceClient
	cons     *running
}

// faultRedis starts a private Redis server (scripts/mw.sh with its own run
// directory and port) for the test: the counter's keys and its outbox
// stream (hgp:outbox) have fixed names, so two runs of these tests at the
// same time (two checkouts, or two people) must not share a server.
func faultRedis(t testing.TB) *redis.Client {
	t.Helper()
	srv := pipetest.StartPrivate(t, "redis")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newPipeline wires the counter service on the fault database and the
// consumer on e (not started).
func newPipeline(t testing.TB, e *env) *pipeline {
	t.Helper()
	rdb := faultRedis(t)
	signer, err := identity.NewSigner([]byte(faultSecret))
	if err != nil {
		t.Fatal(err)
	}
	c, err := counter.New(logging.Discard(), rdb, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	url, client := rpctest.Serve(t, c.Handler())
	return &pipeline{
		e: e, rdb: rdb, signer: signer,
		counters: counterv1connect.NewCounterServiceClient(client, url),
		follows:  counterv1connect.NewFollowServiceClient(client, url),
	}
}

// startRelay runs an outbox relay on the counter's outbox until the test
// ends (or until the returned stop is called).
func (p *pipeline) startRelay(t testing.TB, name string) (stop func()) {
	t.Helper()
	w := events.NewWriter(p.e.Brokers, p.e.Topic)
	r := relay.New(logging.Discard(), p.rdb, w, relay.WithConsumerName(name),
		relay.WithClaimIdle(time.Second, 200*time.Millisecond), relay.WithBlock(100*time.Millisecond),
		relay.WithBackoff(50*time.Millisecond, time.Second), relay.WithRegisterer(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("relay %s did not stop", name)
			}
			_ = w.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func (p *pipeline) load(seed uint64, pace time.Duration) *pipetest.Load {
	return &pipetest.Load{Counters: p.counters, Follows: p.follows, Signer: p.signer, Users: 100, Items: 30, Seed: seed, Pace: pace}
}

// checkLoad fails the test when a request failed or contradicted the
// history (the oracle is only exact when every request was acknowledged).
func checkLoad(t testing.TB, res pipetest.LoadResult) {
	t.Helper()
	if len(res.Errors) > 0 {
		t.Fatalf("%d of the counter's answers were errors or wrong, first: %v", len(res.Errors), errors.Join(res.Errors[:min(5, len(res.Errors))]...))
	}
}

// outboxEmpty reports nil when every outbox entry was relayed and
// acknowledged.
func (p *pipeline) outboxEmpty(ctx context.Context) error {
	n, err := p.rdb.XLen(ctx, outbox.Stream).Result()
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("outbox still holds %d entries", n)
	}
	pend, err := p.rdb.XPending(ctx, outbox.Stream, outbox.Group).Result()
	if err != nil {
		return err
	}
	if pend.Count != 0 {
		return fmt.Errorf("%d outbox entries still pending in the relay group: %v", pend.Count, pend.Consumers)
	}
	return nil
}

// drainAndCheck waits until the outbox is empty, the consumer group has
// no lag, MySQL's pipeline_offsets reached the end of every partition and
// MySQL equals want; then checks that Redis equals MySQL.
func (p *pipeline) drainAndCheck(t testing.TB, want pipetest.State) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	pipetest.Eventually(t, 180*time.Second, func() error {
		if p.cons != nil {
			if err, ended := p.cons.done(); ended {
				t.Fatalf("consumer ended while draining: %v", err)
			}
		}
		if err := p.outboxEmpty(ctx); err != nil {
			return err
		}
		if err := pipetest.Drained(ctx, p.e.Brokers, p.e.Group, p.e.Topic); err != nil {
			return err
		}
		if err := pipetest.Applied(ctx, p.e.conn, p.e.Brokers, p.e.Topic); err != nil {
			if errors.Is(err, pipetest.ErrMarkPastEnd) {
				t.Fatal(err)
			}
			return err
		}
		got, err := pipetest.Snapshot(ctx, p.e.conn)
		if err != nil {
			return err
		}
		if d := pipetest.Diff(got, want); d != "" {
			return errors.New("MySQL differs from the oracle: " + d)
		}
		return nil
	})
	t.Logf("drained in %s", time.Since(start).Round(time.Millisecond))
	mysqlState, err := pipetest.Snapshot(ctx, p.e.conn)
	if err != nil {
		t.Fatal(err)
	}
	if d := pipetest.Diff(mysqlState, want); d != "" {
		t.Fatalf("MySQL differs from the oracle after drain: %s", d)
	}
	redisState, err := redisState(ctx, p.rdb)
	if err != nil {
		t.Fatal(err)
	}
	if d := pipetest.Diff(redisState, mysqlState); d != "" {
		t.Fatalf("Redis differs from MySQL after drain: %s", d)
	}
	t.Logf("MySQL = Redis = oracle: %d likes, %d follows, %d counts, %d users", len(want.Likes), len(want.Follows), len(want.Counts), len(want.Users))
}

// waitProgress waits until at least n requests were acknowledged and the
// consumer committed something past committed (a lag sample), so a fault
// lands while events flow through every stage.
func (p *pipeline) waitProgress(t testing.TB, l *pipetest.Load, n int64) {
	t.Helper()
	pipetest.Eventually(t, 120*time.Second, func() error {
		if a := l.Acked(); a < n {
			return fmt.Errorf("%d of %d requests acknowledged", a, n)
		}
		var rows int
		if err := p.e.conn.QueryRow("SELECT COUNT(*) FROM item_likes").Scan(&rows); err != nil {
			return err
		}
		if rows == 0 {
			return errors.New("nothing reached MySQL yet")
		}
		return nil
	})
}

// TestFaultEndToEndThroughCounter: 20,000 mixed requests from 200 users
// through the real counter service (Connect → Lua → outbox), relayed to
// Kafka and applied by the consumer while they are made. After drain,
// MySQL equals the oracle built from the acknowledged responses, and Redis
// equals MySQL.
func TestFaultEndToEndThroughCounter(t *testing.T) {
	e := setup(t)
	p := newPipeline(t, e)
	p.cons = startConsumer(t, e, 500)
	p.startRelay(t, "relay-a")
	p.startRelay(t, "relay-b")
	l := p.load(1, 0)
	l.Users = 200
	start := time.Now()
	res := l.Run(context.Background(), 100, nil)
	checkLoad(t, res)
	t.Logf("%d requests acknowledged in %s", res.Acked, time.Since(start).Round(time.Millisecond))
	if res.Acked < 20000 {
		t.Fatalf("only %d requests acknowledged", res.Acked)
	}
	p.drainAndCheck(t, res.Want)
}

// restartUnderLoad runs paced writes through the whole pipeline, applies
// fault once events reach MySQL, keeps writing for a while after it, then
// checks nothing was lost or counted twice.
func restartUnderLoad(t *testing.T, p *pipeline, seed uint64, fault func()) {
	t.Helper()
	p.cons = startConsumer(t, p.e, 500)
	p.startRelay(t, "relay-a")
	l := p.load(seed, 100*time.Millisecond) // ≈1,000 requests/s
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }) }
	t.Cleanup(stopLoad)
	results := make(chan pipetest.LoadResult, 1)
	go func() { results <- l.Run(context.Background(), 1500, stop) }() // ≤ 150s per user
	p.waitProgress(t, l, 2000)
	before := l.Acked()
	fault()
	after := l.Acked()
	t.Logf("fault with %d requests acknowledged before, %d during", before, after-before)
	pipetest.Eventually(t, 60*time.Second, func() error { // writes go on after recovery
		if a := l.Acked(); a < after+2000 {
			return fmt.Errorf("%d requests since recovery", a-after)
		}
		return nil
	})
	stopLoad()
	var res pipetest.LoadResult
	select {
	case res = <-results:
	case <-time.After(60 * time.Second):
		t.Fatal("load did not stop")
	}
	checkLoad(t, res)
	t.Logf("%d requests acknowledged in all", res.Acked)
	p.drainAndCheck(t, res.Want)
}

// TestFaultKafkaRestartUnderLoad: the (private) Kafka broker is killed
// with SIGKILL and started again on the same data while writes flow
// through counter, relay and consumer.
func TestFaultKafkaRestartUnderLoad(t *testing.T) {
	kafkaSrv := pipetest.StartPrivate(t, "kafka")
	e := setupOn(t, []string{kafkaSrv.Addr()}, testenv.MySQLDSN(t))
	p := newPipeline(t, e)
	restartUnderLoad(t, p, 2, func() {
		if err := kafkaSrv.Kill9(); err != nil {
			t.Fatal(err)
		}
		if err := kafkaSrv.Do("start"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFaultMariaDBRestartUnderLoad: the (private) MariaDB server is killed
// with SIGKILL mid-stream and started again (InnoDB crash recovery); the
// consumer retries its batches.
func TestFaultMariaDBRestartUnderLoad(t *testing.T) {
	db := pipetest.StartPrivate(t, "mariadb")
	e := setupOn(t, strings.Split(testenv.KafkaBrokers(t), ","), db.DSN())
	p := newPipeline(t, e)
	restartUnderLoad(t, p, 3, func() {
		if err := db.Kill9(); err != nil {
			t.Fatal(err)
		}
		if err := db.Do("start"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFaultKill9CounterRelayProcess: a real counter process runs the relay;
// a burst of writes (through the counter's Lua scripts, in this process,
// on the same Redis database) fills the outbox and the process is killed
// with SIGKILL while the outbox is not empty, preferably with entries read
// but not acknowledged. A second counter process under another relay
// consumer name must relay the rest and take over the dead one's pending
// entries; MySQL then equals the oracle.
func TestFaultKill9CounterRelayProcess(t *testing.T) {
	e := setup(t)
	p := newPipeline(t, e)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "counter")
	build := exec.Command("go", "build", "-o", bin, "github.com/highgopress/highgopress/services/counter/cmd/counter")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build counter: %v\n%s", err, out)
	}
	startCounter := func(name string) *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(),
			"HGP_IDENTITY_SECRET="+faultSecret,
			"HGP_COUNTER_ADDR=127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)),
			"HGP_REDIS_ADDR="+p.rdb.Options().Addr,
			"HGP_KAFKA_BROKERS="+strings.Join(e.Brokers, ","),
			"HGP_KAFKA_TOPIC="+e.Topic,
			"HGP_RELAY_CLAIM_IDLE=1s",
			"HGP_RELAY_CONSUMER="+name,
			"HGP_RELAY_BATCH=200",
			"HGP_LOG_LEVEL=warn",
		)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	p.cons = startConsumer(t, e, 500)
	victim := startCounter("victim")

	l := p.load(4, 0)
	results := make(chan pipetest.LoadResult, 1)
	go func() { results <- l.Run(ctx, 200, nil) }() // ≈20,000 requests, a burst
	// Freeze the victim (SIGSTOP) and look: kill it (SIGKILL) once it is
	// frozen holding entries it read but did not acknowledge while the
	// outbox is not empty; otherwise let it go on (SIGCONT) and look again.
	pipetest.Eventually(t, 60*time.Second, func() error { // mid-burst, after the victim relayed a lot
		if a := l.Acked(); a < 5000 {
			return fmt.Errorf("%d requests acknowledged", a)
		}
		return nil
	})
	// Freeze the victim, look; keep it frozen and kill it once it holds
	// unacknowledged entries while the outbox is non-empty, else let it go on.
	var pendingAtKill int64
	testenv.Eventually(t, 60*time.Second, "the victim relay to hold unacknowledged entries with a non-empty outbox", func() bool {
		if err := victim.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		xlen, err1 := p.rdb.XLen(ctx, outbox.Stream).Result()
		pend, err2 := p.rdb.XPending(ctx, outbox.Stream, outbox.Group).Result()
		if err1 == nil && err2 == nil && xlen > 0 && pend.Consumers["victim"] > 0 {
			pendingAtKill = pend.Consumers["victim"]
			return true
		}
		if err := victim.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		return false
	})
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = victim.Wait()
	xlen, _ := p.rdb.XLen(ctx, outbox.Stream).Result()
	t.Logf("killed the counter process with %d outbox entries, %d of them read by it and unacknowledged, %d requests acknowledged so far", xlen, pendingAtKill, l.Acked())
	var res pipetest.LoadResult
	select {
	case res = <-results:
	case <-time.After(120 * time.Second):
		t.Fatal("load did not end")
	}
	checkLoad(t, res)
	startCounter("survivor")
	p.drainAndCheck(t, res.Want)
	pend, err := p.rdb.XPending(ctx, outbox.Stream, outbox.Group).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pend.Count != 0 {
		t.Fatalf("entries still pending after drain: %v", pend.Consumers)
	}
}
