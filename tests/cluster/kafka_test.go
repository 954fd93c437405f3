package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// partitions of each test's event topic: one leader per broker when the
// controller spreads them evenly.
const partitions = 3

var sharedKafka struct {
	once sync.Once
	c    *cluster
}

// kafkaCluster is the package's private three-broker cluster (started on
// first use, stopped when the package's tests end). Every call starts the
// nodes that are not running, so a test finds all three brokers up.
func kafkaCluster(t testing.TB) *cluster {
	t.Helper()
	sharedKafka.once.Do(func() {
		sharedKafka.c = newCluster(t, "kafka-cluster", "HGP_MW_KAFKA_CLUSTER_PORT", func(b int) []int {
			return []int{b + 1, b + 2, b + 3, b + 11, b + 12, b + 13}
		}, false)
		c := sharedKafka.c
		atExit(func() { c.stop(stderrT{}) })
	})
	c := sharedKafka.c
	took, err := c.do(t, "start")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kafka-cluster up (three brokers) after %s", took.Round(time.Millisecond))
	return c
}

// brokers are the cluster's three broker addresses (node i is brokers[i-1]).
func (c *cluster) brokers() []string {
	return []string{"127.0.0.1:" + strconv.Itoa(c.base+1), "127.0.0.1:" + strconv.Itoa(c.base+2), "127.0.0.1:" + strconv.Itoa(c.base+3)}
}

// kafkaRun is one test's pipeline on the cluster: its topics, group and
// MySQL database (pipetest.Env), the counters' Redis database and the
// running processes.
type kafkaRun struct {
	c      *cluster
	e      *pipetest.Env
	conn   *sql.DB
	rdb    *redis.Client
	signer *identity.Signer
}

func setupKafka(t *testing.T) *kafkaRun {
	t.Helper()
	c := kafkaCluster(t)
	r := &kafkaRun{c: c}
	r.rdb = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: redisDB})
	t.Cleanup(func() { _ = r.rdb.Close() })
	if err := r.rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	r.e = pipetest.NewEnv(t, c.brokers(), testenv.MySQLDSN(t), partitions)
	conn, err := sql.Open("mysql", r.e.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r.conn = conn
	if r.signer, err = identity.NewSigner([]byte(identitySecret)); err != nil {
		t.Fatal(err)
	}
	// the topic is what the cluster promises: three replicas, all in sync
	poll(t, 60*time.Second, 200*time.Millisecond, "three in-sync replicas of every partition", func() error {
		parts, err := r.partitions(context.Background())
		if err != nil {
			return err
		}
		for _, p := range parts {
			if len(p.Replicas) != 3 || len(p.Isr) != 3 {
				return fmt.Errorf("partition %d: replicas %d, in sync %d", p.ID, len(p.Replicas), len(p.Isr))
			}
		}
		return nil
	})
	return r
}

// partitions is the topic's metadata.
func (r *kafkaRun) partitions(ctx context.Context, brokers ...string) ([]kafka.Partition, error) {
	if len(brokers) == 0 {
		brokers = r.c.brokers()
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 3 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{r.e.Topic}})
	if err != nil {
		return nil, err
	}
	for _, tp := range meta.Topics {
		if tp.Name == r.e.Topic {
			if tp.Error != nil {
				return nil, tp.Error
			}
			return tp.Partitions, nil
		}
	}
	return nil, fmt.Errorf("topic %s not in the metadata", r.e.Topic)
}

// startConsumer runs a consumer process (one group member) of the run;
// migrate: it applies the schema first.
func (r *kafkaRun) startConsumer(t testing.TB, name string, migrate bool) *proc {
	t.Helper()
	addr := freeAddr(t)
	return startProc(t, "consumer", name, addr, map[string]string{
		"HGP_CONSUMER_ADDR":         addr,
		"HGP_METRICS_ADDR":          freeAddr(t),
		"HGP_KAFKA_BROKERS":         joinComma(r.c.brokers()),
		"HGP_KAFKA_TOPIC":           r.e.Topic,
		"HGP_KAFKA_DLQ_TOPIC":       r.e.DLQ,
		"HGP_KAFKA_GROUP":           r.e.Group,
		"HGP_KAFKA_CREATE_TOPICS":   "false",
		"HGP_KAFKA_SESSION_TIMEOUT": "6s",
		"HGP_MYSQL_DSN":             r.e.DSN,
		"HGP_CONSUMER_MIGRATE":      strconv.FormatBool(migrate),
		"HGP_CONSUMER_WORKERS":      "1",
		"HGP_CONSUMER_BATCH_MAX":    "500",
		"HGP_LOG_LEVEL":             "warn",
	})
}

// startCounter runs the counter process whose outbox relay produces to the
// cluster (acks=all: events.NewWriter).
func (r *kafkaRun) startCounter(t testing.TB) (*proc, string) {
	t.Helper()
	addr, metrics := freeAddr(t), freeAddr(t)
	p := startProc(t, "counter", "counter", addr, map[string]string{
		"HGP_IDENTITY_SECRET":   identitySecret,
		"HGP_COUNTER_ADDR":      addr,
		"HGP_METRICS_ADDR":      metrics,
		"HGP_REDIS_ADDR":        r.rdb.Options().Addr,
		"HGP_REDIS_DB":          strconv.Itoa(redisDB),
		"HGP_KAFKA_BROKERS":     joinComma(r.c.brokers()),
		"HGP_KAFKA_TOPIC":       r.e.Topic,
		"HGP_RELAY_CLAIM_IDLE":  "1s",
		"HGP_RELAY_CONSUMER":    "relay-cluster-test",
		"HGP_COUNTER_CACHE_TTL": "0s",
		"HGP_LOG_LEVEL":         "warn",
	})
	return p, "http://" + metrics + "/metrics"
}

// load is the bounded write load on the counter: 40 users, one request
// each per 100 ms at most (≤ 400 requests/s), likes, unlikes, follows and
// increments (pipetest.Load keeps the oracle of acknowledged answers).
func (r *kafkaRun) load(counterAddr string, seed uint64) *pipetest.Load {
	client := server.NewH2CClient()
	url := "http://" + counterAddr
	return &pipetest.Load{
		Counters: counterv1connect.NewCounterServiceClient(client, url),
		Follows:  counterv1connect.NewFollowServiceClient(client, url),
		Signer:   r.signer, Users: 40, Items: 20, Seed: seed, Pace: 100 * time.Millisecond,
	}
}

// running is a load in progress.
type running struct {
	l       *pipetest.Load
	stop    func()
	results chan pipetest.LoadResult
}

func (r *kafkaRun) run(t testing.TB, l *pipetest.Load) *running {
	stop := make(chan struct{})
	var once sync.Once
	rn := &running{l: l, stop: func() { once.Do(func() { close(stop) }) }, results: make(chan pipetest.LoadResult, 1)}
	t.Cleanup(rn.stop)
	go func() { rn.results <- l.Run(context.Background(), 3000, stop) }() // ≤ 300 s per user; stopped sooner
	return rn
}

// finish stops the load and returns what was acknowledged.
func (rn *running) finish(t testing.TB) pipetest.LoadResult {
	t.Helper()
	rn.stop()
	select {
	case res := <-rn.results:
		return res
	case <-time.After(60 * time.Second):
		t.Fatal("load did not stop")
	}
	return pipetest.LoadResult{}
}

// waitAcked waits until n requests were acknowledged in all and something
// reached MySQL.
func (r *kafkaRun) waitAcked(t testing.TB, l *pipetest.Load, n int64) {
	t.Helper()
	poll(t, 120*time.Second, 100*time.Millisecond, fmt.Sprintf("%d acknowledged requests", n), func() error {
		if a := l.Acked(); a < n {
			return fmt.Errorf("%d acknowledged", a)
		}
		var rows int
		if err := r.conn.QueryRow("SELECT COUNT(*) FROM item_likes").Scan(&rows); err != nil {
			return err
		}
		if rows == 0 {
			return errors.New("nothing in MySQL yet")
		}
		return nil
	})
}

// outcome is what one run measured.
type outcome struct {
	acked, lost, dup  int64
	clientErrors      int
	produced, resends int // messages in the topic, and how many repeated an event id (absorbed by the sink)
	relayErrors       float64
}

// drain waits until the outbox is empty, the group has no lag, MySQL's
// pipeline_offsets reached the end of every partition and MySQL equals the
// oracle; on time-out it reports what was lost and duplicated.
func (r *kafkaRun) drain(t testing.TB, want pipetest.State, o *outcome) time.Duration {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(150 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := r.drained(ctx, want)
		if err == nil {
			break
		}
		if errors.Is(err, pipetest.ErrMarkPastEnd) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			if got, serr := pipetest.Snapshot(ctx, r.conn); serr == nil {
				o.lost, o.dup = lostAndDuplicated(got, want)
			}
			t.Fatalf("not drained after 150s (lost %d, applied twice %d): %v", o.lost, o.dup, err)
		}
		<-tick.C
	}
	got, err := pipetest.Snapshot(ctx, r.conn)
	if err != nil {
		t.Fatal(err)
	}
	o.lost, o.dup = lostAndDuplicated(got, want)
	if d := pipetest.Diff(got, want); d != "" || o.lost != 0 || o.dup != 0 {
		t.Fatalf("MySQL differs from the acknowledged history (lost %d, applied twice %d): %s", o.lost, o.dup, d)
	}
	return time.Since(start)
}

func (r *kafkaRun) drained(ctx context.Context, want pipetest.State) error {
	n, err := r.rdb.XLen(ctx, outbox.Stream).Result()
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("outbox holds %d entries", n)
	}
	if err := pipetest.Drained(ctx, r.c.brokers(), r.e.Group, r.e.Topic); err != nil {
		return err
	}
	if err := pipetest.Applied(ctx, r.conn, r.c.brokers(), r.e.Topic); err != nil {
		return err
	}
	got, err := pipetest.Snapshot(ctx, r.conn)
	if err != nil {
		return err
	}
	if d := pipetest.Diff(got, want); d != "" {
		return errors.New("MySQL differs from the oracle: " + d)
	}
	return nil
}

// lostAndDuplicated counts, against the oracle, the acknowledged changes
// MySQL lacks (a like row missing, a count below) and those it holds too
// often (a row that should not be there, a count above).
func lostAndDuplicated(got, want pipetest.State) (lost, dup int64) {
	for k := range want.Likes {
		if !got.Likes[k] {
			lost++
		}
	}
	for k := range got.Likes {
		if !want.Likes[k] {
			dup++
		}
	}
	for k := range want.Follows {
		if !got.Follows[k] {
			lost++
		}
	}
	for k := range got.Follows {
		if !want.Follows[k] {
			dup++
		}
	}
	diff := func(g, w int64) {
		if g < w {
			lost += w - g
		} else {
			dup += g - w
		}
	}
	keys := map[string]bool{}
	for k := range want.Counts {
		keys[k] = true
	}
	for k := range got.Counts {
		keys[k] = true
	}
	for k := range keys {
		diff(got.Counts[k], want.Counts[k])
	}
	users := map[string]bool{}
	for k := range want.Users {
		users[k] = true
	}
	for k := range got.Users {
		users[k] = true
	}
	for k := range users {
		diff(got.Users[k][0], want.Users[k][0])
		diff(got.Users[k][1], want.Users[k][1])
	}
	return lost, dup
}

// topicCensus reads every message of the topic and counts them and the
// repeated event ids (the relay is at-least-once: a produce retried after
// a lost acknowledgement is in Kafka twice; the sink applies it once).
func (r *kafkaRun) topicCensus(t testing.TB, o *outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := events.EndOffsets(ctx, r.c.brokers(), r.e.Topic)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for p, end := range ends {
		if end == 0 {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: r.c.brokers(), Topic: r.e.Topic, Partition: p, MaxBytes: 8 << 20, MaxWait: 200 * time.Millisecond})
		for {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				_ = rd.Close()
				t.Fatalf("read %s/%d: %v", r.e.Topic, p, err)
			}
			o.produced++
			ev, err := events.Decode(m.Value)
			if err != nil {
				t.Fatalf("%s/%d@%d: %v", r.e.Topic, p, m.Offset, err)
			}
			if seen[ev.GetEventId()] {
				o.resends++
			}
			seen[ev.GetEventId()] = true
			if m.Offset >= end-1 {
				break
			}
		}
		_ = rd.Close()
	}
}

func (o *outcome) String() string {
	return fmt.Sprintf("acked writes %d, lost %d, applied twice %d, client errors %d, relay produce errors %.0f, messages %d (%d re-sent, absorbed)",
		o.acked, o.lost, o.dup, o.clientErrors, o.relayErrors, o.produced, o.resends)
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// TestKafkaPartitionLeaderKilled: the counter's relay (acks=all) and the
// consumer run on the three-broker cluster under a steady write load; the
// broker leading the most partitions of the topic is killed with SIGKILL.
// Leaders are re-elected among the in-sync replicas, the relay and the
// consumer go on, the broker is started again and rejoins; after drain
// MySQL equals the oracle of acknowledged writes: nothing lost, nothing
// applied twice.
func TestKafkaPartitionLeaderKilled(t *testing.T) {
	r := setupKafka(t)
	r.startConsumer(t, "consumer", true)
	counter, counterMetrics := r.startCounter(t)
	rn := r.run(t, r.load(counter.addr, 11))
	r.waitAcked(t, rn.l, 1500)

	ctx := context.Background()
	parts, err := r.partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	led := map[int][]int{}
	for _, p := range parts {
		led[p.Leader.ID] = append(led[p.Leader.ID], p.ID)
	}
	victim := 0
	for id, ps := range led {
		if victim == 0 || len(ps) > len(led[victim]) || len(ps) == len(led[victim]) && id < victim {
			victim = id
		}
	}
	var live []string
	for i, b := range r.c.brokers() {
		if i+1 != victim {
			live = append(live, b)
		}
	}
	before, err := events.EndOffsets(ctx, r.c.brokers(), r.e.Topic)
	if err != nil {
		t.Fatal(err)
	}
	ackedBefore := rn.l.Acked()
	killed := time.Now()
	r.c.kill9(t, strconv.Itoa(victim))
	t.Logf("killed broker %d (leader of partitions %v) with %d requests acknowledged; end offsets then %v", victim, led[victim], ackedBefore, before)

	// leaders re-elected, every partition takes writes again, the consumer
	// applied past the kill on every partition
	var elected, produced, applied time.Duration
	diagnosed := false
	poll(t, 120*time.Second, 100*time.Millisecond, "re-election, produce and apply past the kill", func() error {
		if elected == 0 {
			parts, err := r.partitions(ctx, live...)
			if err != nil {
				return err
			}
			for _, p := range parts {
				if p.Leader.ID == victim || p.Leader.ID < 0 {
					return fmt.Errorf("partition %d led by %d", p.ID, p.Leader.ID)
				}
			}
			elected = time.Since(killed)
		}
		if produced == 0 {
			ends, err := events.EndOffsets(ctx, live, r.e.Topic)
			if err != nil {
				return err
			}
			for p, end := range ends {
				if end <= before[p] {
					return fmt.Errorf("partition %d: nothing produced since the kill", p)
				}
			}
			produced = time.Since(killed)
		}
		if !diagnosed && time.Since(killed) > 45*time.Second {
			diagnosed = true
			r.diagnose(t, live)
		}
		marks, err := pipetest.PipelineOffsets(ctx, r.conn, r.e.Topic)
		if err != nil {
			return err
		}
		for p, end := range before {
			if marks[p] <= end {
				return fmt.Errorf("partition %d: applied below %d, the end at the kill was %d", p, marks[p], end)
			}
		}
		applied = time.Since(killed)
		return nil
	})
	t.Logf("after the kill: leaders re-elected in %s, every partition written again after %s, applied after %s",
		elected.Round(time.Millisecond), produced.Round(time.Millisecond), applied.Round(time.Millisecond))
	after := rn.l.Acked()
	poll(t, 60*time.Second, 100*time.Millisecond, "writes after recovery", func() error {
		if a := rn.l.Acked(); a < after+1000 {
			return fmt.Errorf("%d requests since recovery", a-after)
		}
		return nil
	})
	res := rn.finish(t)
	o := &outcome{acked: res.Acked, clientErrors: len(res.Errors)}
	if len(res.Errors) > 0 {
		t.Fatalf("%d requests to the counter failed (the broker's death must not reach its clients), first: %v", len(res.Errors), res.Errors[0])
	}

	restart := time.Now()
	r.c.start(t) // the dead broker rejoins and catches up
	poll(t, 120*time.Second, 200*time.Millisecond, "the restarted broker back in sync", func() error {
		parts, err := r.partitions(ctx)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if !slices.ContainsFunc(p.Isr, func(b kafka.Broker) bool { return b.ID == victim }) {
				return fmt.Errorf("partition %d: broker %d not in sync yet", p.ID, victim)
			}
		}
		return nil
	})
	t.Logf("broker %d restarted and in sync again after %s", victim, time.Since(restart).Round(time.Millisecond))

	took := r.drain(t, res.Want, o)
	r.topicCensus(t, o)
	o.relayErrors, _ = metric(counterMetrics, "hgp_relay_errors_total", "")
	t.Logf("drained in %s", took.Round(time.Millisecond))
	t.Logf("RESULT kafka partition leader killed: %s; re-election %s, produce recovery %s, apply recovery %s",
		o, elected.Round(time.Millisecond), produced.Round(time.Millisecond), applied.Round(time.Millisecond))
}

// TestKafkaConsumerGroupRebalance: three consumer replicas of one group;
// every 3 s one of them is stopped (SIGTERM, or SIGKILL every other time:
// a batch written to MySQL whose offsets were never committed is delivered
// again to another member) and started again, for 24 s of write load. The
// group rebalances each time; after drain MySQL equals the oracle.
func TestKafkaConsumerGroupRebalance(t *testing.T) {
	r := setupKafka(t)
	consumers := []*proc{r.startConsumer(t, "consumer-1", true), r.startConsumer(t, "consumer-2", false), r.startConsumer(t, "consumer-3", false)}
	counter, counterMetrics := r.startCounter(t)
	rn := r.run(t, r.load(counter.addr, 12))
	r.waitAcked(t, rn.l, 1000)

	churn := time.Now()
	var kills, terms int
	for k := 0; time.Since(churn) < 24*time.Second; k++ {
		i := k % len(consumers)
		if k%2 == 1 {
			consumers[i].kill9()
			kills++
		} else {
			consumers[i].stop()
			terms++
		}
		consumers[i] = r.startConsumer(t, fmt.Sprintf("consumer-%d.%d", i+1, k), false)
		select { // the next change of membership in a few seconds
		case <-time.After(3 * time.Second):
		case <-t.Context().Done():
			return
		}
	}
	t.Logf("%d consumers stopped with SIGTERM and %d with SIGKILL, each started again, in %s", terms, kills, time.Since(churn).Round(time.Millisecond))
	res := rn.finish(t)
	o := &outcome{acked: res.Acked, clientErrors: len(res.Errors)}
	if len(res.Errors) > 0 {
		t.Fatalf("%d requests to the counter failed, first: %v", len(res.Errors), res.Errors[0])
	}
	took := r.drain(t, res.Want, o)
	r.topicCensus(t, o)
	o.relayErrors, _ = metric(counterMetrics, "hgp_relay_errors_total", "")
	t.Logf("RESULT kafka consumer group rebalance (%d restarts): %s; drained %s after the load stopped", terms+kills, o, took.Round(time.Millisecond))
}

// diagnose logs the group's coordinator and the leaders of the internal
// offsets topic (a consumer that does not recover).
func (r *kafkaRun) diagnose(t testing.TB, live []string) {
	client := &kafka.Client{Addr: kafka.TCP(live...), Timeout: 3 * time.Second}
	ctx := context.Background()
	fc, err := client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: r.e.Group, KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err != nil {
		t.Logf("diagnose: FindCoordinator: %v", err)
	} else {
		t.Logf("diagnose: coordinator of %s: %+v (error %v)", r.e.Group, fc.Coordinator, fc.Error)
	}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"__consumer_offsets", r.e.Topic}})
	if err != nil {
		t.Logf("diagnose: metadata: %v", err)
		return
	}
	for _, tp := range meta.Topics {
		for _, p := range tp.Partitions {
			var isr []int
			for _, b := range p.Isr {
				isr = append(isr, b.ID)
			}
			t.Logf("diagnose: %s/%d leader %d isr %v", tp.Name, p.ID, p.Leader.ID, isr)
		}
	}
}
