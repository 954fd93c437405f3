package analytics_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/analytics"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

const ns = "article"

type env struct {
	a       *analytics.Analytics
	rdb     *redis.Client
	prefix  string
	brokers []string
	topic   string
	dlq     string
	group   string
	url     string
	client  *http.Client
}

// start runs an analytics service on the test Redis (own key prefix) that
// consumes a fresh topic in a fresh group, served on loopback.
func start(t *testing.T, opts ...analytics.Option) *env {
	t.Helper()
	return startWith(t, true, opts...)
}

// startWith is start, consuming Kafka only when ingest is true.
func startWith(t *testing.T, ingest bool, opts ...analytics.Option) *env {
	t.Helper()
	rdb, prefix := antest.Redis(t)
	e := &env{prefix: prefix, rdb: rdb}
	if ingest {
		e.brokers = []string{testenv.KafkaBrokers(t)}
		e.topic, e.dlq, e.group = pipetest.Topic(t, e.brokers, 3), pipetest.Topic(t, e.brokers, 1), "hgp-t-an-"+antest.Suffix()
	}
	opts = append([]analytics.Option{
		analytics.WithRegisterer(nil),
		analytics.WithStoreOptions(redisstore.WithPrefix(prefix), redisstore.WithFreshness(0)),
		analytics.WithWatchOptions(watch.WithInterval(20 * time.Millisecond)),
	}, opts...)
	a, err := analytics.New(logging.Discard(), rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.a = a
	testenv.Background(t, a.Listen)
	if ingest {
		testenv.Background(t, a.Ingest(analytics.IngestConfig{
			Kafka: config.Kafka{Brokers: e.brokers, Topic: e.topic, DLQTopic: e.dlq}, Group: e.group,
			SessionTimeout: 6 * time.Second, BatchMax: 500, BatchWait: 10 * time.Millisecond,
		}))
	}
	t.Cleanup(func() { _ = a.Close() })
	e.url, e.client = rpctest.Serve(t, a.Handler())
	return e
}

// model is the like state of every (user, item) pair by version.
type model struct {
	on  map[[2]string]bool
	ver map[[2]string]uint64
}

func (m *model) apply(ev *eventsv1.Event) {
	k := [2]string{ev.GetUserId(), ev.GetItemId()}
	if ev.GetVersion() > m.ver[k] {
		m.ver[k] = ev.GetVersion()
		m.on[k] = ev.GetKind() == eventsv1.Kind_KIND_LIKE
	}
}

// want is the all-time ranking of the model: "item=count", by count
// descending then item ascending.
func (m *model) want() []string {
	counts := map[string]int{}
	for k, on := range m.on {
		if on {
			counts[k[1]]++
		}
	}
	items := make([]string, 0, len(counts))
	for it := range counts {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b string) int { return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b)) })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprintf("%s=%d", it, counts[it])
	}
	return out
}

// randomLikes returns n likes and unlikes by users over items, as the
// counter emits them (each one a state change of its pair, versions
// growing), plus the model of their final state.
func randomLikes(seed uint64, n, users, items int, at time.Time) ([]*eventsv1.Event, *model) {
	r := rand.New(rand.NewPCG(seed, 1))
	m := &model{on: map[[2]string]bool{}, ver: map[[2]string]uint64{}}
	evs := make([]*eventsv1.Event, 0, n)
	for i := range n {
		u, it := fmt.Sprintf("u%d", r.IntN(users)), fmt.Sprintf("i%03d", r.IntN(items))
		like := !m.on[[2]string{u, it}]
		ev := antest.Like(like, ns, it, u, antest.Version(at, uint64(i)), at)
		ev.EventId = fmt.Sprintf("%d-%d", at.UnixMilli(), i)
		m.apply(ev)
		evs = append(evs, ev)
	}
	return evs, m
}

func allTime(t *testing.T, c analyticsv1connect.AnalyticsServiceClient, w analyticsv1.Window) ([]string, error) {
	t.Helper()
	var out []string
	token := ""
	for {
		resp, err := c.TopItems(context.Background(), connectRequest(&analyticsv1.TopItemsRequest{Namespace: ns, Window: w, Limit: 100, PageToken: token}))
		if err != nil {
			return nil, err
		}
		for _, it := range resp.Msg.GetItems() {
			if it.GetRank() != int64(len(out)+1) {
				return nil, fmt.Errorf("rank %d at position %d", it.GetRank(), len(out)+1)
			}
			out = append(out, fmt.Sprintf("%s=%d", it.GetItemId(), it.GetScore()))
		}
		token = resp.Msg.GetNextPageToken()
		if token == "" {
			return out, nil
		}
	}
}

// TestOracleThroughKafka: 10,000 random likes and unlikes by 200 users over
// 500 items go through Kafka, a fifth of them a second time (redelivered,
// out of order), with malformed messages among them: the all-time and
// hour rankings equal the model exactly, the malformed messages are in the
// dead-letter topic, and a rebuild from Kafka gives the same rankings.
func TestOracleThroughKafka(t *testing.T) {
	e := start(t)
	now := time.Now()
	evs, m := randomLikes(7, 10000, 200, 500, now)
	pipetest.Produce(t, e.brokers, e.topic, evs)
	again := slices.Clone(evs)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(again), func(i, j int) { again[i], again[j] = again[j], again[i] })
	pipetest.Produce(t, e.brokers, e.topic, again[:2000])
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.topic, RequiredAcks: kafka.RequireAll}
	if err := w.WriteMessages(context.Background(),
		kafka.Message{Key: []byte("x"), Value: []byte("\xff\xfe not protobuf")},
		kafka.Message{Key: []byte("y"), Value: mustMarshal(t, &eventsv1.Event{Kind: eventsv1.Kind_KIND_LIKE, Namespace: ns, ItemId: "i", UserId: "u"})}, // no version
	); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	client := analyticsv1connect.NewAnalyticsServiceClient(e.client, e.url)
	want := m.want()
	var got []string
	testenv.EventuallyNoError(t, 90*time.Second, "all-time ranking equals the model", func() error {
		var err error
		got, err = allTime(t, client, analyticsv1.Window_WINDOW_ALL_TIME)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%d items, want %d (first %v, want %v)", len(got), len(want), head(got), head(want))
		}
		return nil
	})
	if hour, err := allTime(t, client, analyticsv1.Window_WINDOW_HOUR); err != nil || !slices.Equal(hour, want) {
		t.Fatalf("hour ranking differs from the model (%v): %v", err, head(hour))
	}
	testenv.EventuallyNoError(t, 30*time.Second, "two dead letters", func() error {
		ends, err := events.EndOffsets(context.Background(), e.brokers, e.dlq)
		if err != nil {
			return err
		}
		var n int64
		for _, o := range ends {
			n += o
		}
		if n != 2 {
			return fmt.Errorf("%d dead letters, want 2", n)
		}
		return nil
	})

	st, err := analytics.RebuildFromKafka(context.Background(), logging.Discard(), e.a.Store(), e.brokers, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 12002 || st.Undecodable != 2 || st.Deleted == 0 {
		t.Fatalf("rebuild %+v: want 12002 events, 2 undecodable, keys deleted", st)
	}
	for _, w := range []analyticsv1.Window{analyticsv1.Window_WINDOW_ALL_TIME, analyticsv1.Window_WINDOW_DAY} {
		if got, err := allTime(t, client, w); err != nil || !slices.Equal(got, want) {
			t.Fatalf("after the rebuild %s differs from the model (%v): %v", w, err, head(got))
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }
