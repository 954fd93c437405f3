package sink_test

import (
	"context"
	"database/sql"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/consumer/migrations"
	"github.com/highgopress/highgopress/services/consumer/sink"
)

func openSink(t *testing.T) (*sink.Sink, *sql.DB) {
	t.Helper()
	dsn := pipetest.Database(t, testenv.MySQLDSN(t))
	if _, err := migrations.Up(context.Background(), logging.Discard(), dsn); err != nil {
		t.Fatal(err)
	}
	conn, err := consumer.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return sink.New(logging.Discard(), conn), conn
}

func like(kind string, v uint64) *eventsv1.Event {
	k := eventsv1.Kind_KIND_LIKE
	if kind == "unlike" {
		k = eventsv1.Kind_KIND_UNLIKE
	}
	return &eventsv1.Event{EventId: strconv.FormatUint(v, 10), Kind: k, UserId: "alice", Namespace: "article", ItemId: "1", Version: v}
}

func likeState(t *testing.T, conn *sql.DB) (liked bool, count int64) {
	t.Helper()
	q := durabledb.New(conn)
	row, err := q.GetLike(context.Background(), durabledb.GetLikeParams{Namespace: "article", ItemID: "1", UserID: "alice"})
	if err != nil && err != sql.ErrNoRows {
		t.Fatal(err)
	}
	counts, err := q.ListItemCounts(context.Background(), durabledb.ListItemCountsParams{Namespace: "article", ItemID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if c.Metric == events.LikesMetric {
			count = c.Value
		}
	}
	return row.Liked, count
}

func TestLikeVersions(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		batches [][]*eventsv1.Event
		liked   bool
		count   int64
	}{
		{"like", [][]*eventsv1.Event{{like("like", 1)}}, true, 1},
		{"like then unlike", [][]*eventsv1.Event{{like("like", 1)}, {like("unlike", 2)}}, false, 0},
		{"unlike arrives before the like it undoes", [][]*eventsv1.Event{{like("unlike", 2)}, {like("like", 1)}}, false, 0},
		{"same batch reordered", [][]*eventsv1.Event{{like("unlike", 2), like("like", 1)}}, false, 0},
		{"replayed like", [][]*eventsv1.Event{{like("like", 1)}, {like("like", 1)}, {like("like", 1), like("like", 1)}}, true, 1},
		{"stale like after unlike and relike", [][]*eventsv1.Event{{like("like", 3)}, {like("unlike", 2)}, {like("like", 1)}}, true, 1},
		{"full replay", [][]*eventsv1.Event{{like("like", 1), like("unlike", 2), like("like", 3)}, {like("like", 1), like("unlike", 2), like("like", 3)}}, true, 1},
		{"stale unlike", [][]*eventsv1.Event{{like("like", 1)}, {like("unlike", 2)}, {like("like", 3)}, {like("unlike", 2)}}, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, conn := openSink(t)
			for _, b := range tc.batches {
				if _, err := s.Apply(ctx, b, nil); err != nil {
					t.Fatal(err)
				}
			}
			liked, count := likeState(t, conn)
			if liked != tc.liked || count != tc.count {
				t.Fatalf("liked=%v count=%d, want liked=%v count=%d", liked, count, tc.liked, tc.count)
			}
		})
	}
}

func TestIncrementAppliedOncePerEvent(t *testing.T) {
	ctx := context.Background()
	s, conn := openSink(t)
	inc := func(id string, d int64) *eventsv1.Event {
		return &eventsv1.Event{EventId: id, Kind: eventsv1.Kind_KIND_INCREMENT, UserId: "u", Namespace: "article", ItemId: "1", Metric: "views", Delta: d, Version: 1}
	}
	res, err := s.Apply(ctx, []*eventsv1.Event{inc("1-0", 5), inc("1-0", 5), inc("2-0", 7)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Increments != 2 || res.Ignored != 1 {
		t.Fatalf("result %+v, want 2 increments and 1 ignored", res)
	}
	if _, err := s.Apply(ctx, []*eventsv1.Event{inc("2-0", 7), inc("3-0", 1)}, nil); err != nil {
		t.Fatal(err)
	}
	counts, err := durabledb.New(conn).ListItemCounts(ctx, durabledb.ListItemCountsParams{Namespace: "article", ItemID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[0].Value != 13 {
		t.Fatalf("counts %+v, want views=13", counts)
	}
}

func TestFollowCounts(t *testing.T) {
	ctx := context.Background()
	s, conn := openSink(t)
	f := func(kind eventsv1.Kind, from, to string, v uint64) *eventsv1.Event {
		return &eventsv1.Event{EventId: strconv.FormatUint(v, 10), Kind: kind, UserId: from, TargetUserId: to, Version: v}
	}
	batches := [][]*eventsv1.Event{
		{f(eventsv1.Kind_KIND_FOLLOW, "a", "b", 1), f(eventsv1.Kind_KIND_FOLLOW, "c", "b", 2)},
		{f(eventsv1.Kind_KIND_UNFOLLOW, "a", "b", 3), f(eventsv1.Kind_KIND_FOLLOW, "a", "b", 1)}, // replayed stale follow
	}
	for _, b := range batches {
		if _, err := s.Apply(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	q := durabledb.New(conn)
	b, err := q.GetUserCounts(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	a, err := q.GetUserCounts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if b.Followers != 1 || b.Following != 0 || a.Following != 0 {
		t.Fatalf("b=%+v a=%+v, want b followers=1, a following=0", b, a)
	}
	following, err := q.ListFollowers(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(following) != 1 || following[0] != "c" {
		t.Fatalf("followers of b = %v, want [c]", following)
	}
}

// TestShuffledBatchesMatchOracle applies a random history in a random order
// with random batch boundaries and every event delivered twice: the result
// must equal the history applied in order once.
func TestShuffledBatchesMatchOracle(t *testing.T) {
	ctx := context.Background()
	s, conn := openSink(t)
	o := pipetest.NewOracle(42)
	evs := pipetest.Events(o.Generate(4000, 40, 15), 1)
	all := append(append([]*eventsv1.Event{}, evs...), evs...)
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for len(all) > 0 {
		n := min(len(all), 1+rng.IntN(300))
		if _, err := s.Apply(ctx, all[:n], nil); err != nil {
			t.Fatal(err)
		}
		all = all[n:]
	}
	got, err := pipetest.Snapshot(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if d := pipetest.Diff(got, o.Want()); d != "" {
		t.Fatalf("MySQL differs from the oracle: %s", d)
	}
	if len(o.Want().Likes) == 0 || len(o.Want().Follows) == 0 {
		t.Fatal("history too small to mean anything")
	}
}

func TestPermanentErrors(t *testing.T) {
	if !sink.Permanent(events.Validate(&eventsv1.Event{Kind: eventsv1.Kind_KIND_LIKE})) {
		t.Fatal("an invalid event must be a permanent error")
	}
	if sink.Permanent(context.Canceled) {
		t.Fatal("cancellation is not permanent")
	}
}

func offsets(t *testing.T, conn *sql.DB, topic string) map[int]int64 {
	t.Helper()
	out, err := pipetest.PipelineOffsets(context.Background(), conn, topic)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantOffsets(t *testing.T, conn *sql.DB, topic string, want map[int]int64) {
	t.Helper()
	if got := offsets(t, conn, topic); !maps.Equal(got, want) {
		t.Fatalf("pipeline_offsets of %s = %v, want %v", topic, got, want)
	}
}

// TestOffsetMarks: a batch's marks are written with its events, per topic
// partition, never lowered; a call with marks only writes them alone.
func TestOffsetMarks(t *testing.T) {
	ctx := context.Background()
	s, conn := openSink(t)
	res, err := s.Apply(ctx, []*eventsv1.Event{like("like", 1)}, []sink.Mark{
		{Topic: "t", Partition: 1, Next: 10}, {Topic: "t", Partition: 0, Next: 5}, {Topic: "u", Partition: 0, Next: 3},
		{Topic: "t", Partition: 1, Next: 7}, // the same partition twice: the higher mark counts
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transitions != 1 {
		t.Fatalf("result %+v, want 1 transition", res)
	}
	wantOffsets(t, conn, "t", map[int]int64{0: 5, 1: 10})
	wantOffsets(t, conn, "u", map[int]int64{0: 3})

	// A stale batch (redelivered after a rebalance) never lowers a mark.
	if _, err := s.Apply(ctx, []*eventsv1.Event{like("like", 1)}, []sink.Mark{{Topic: "t", Partition: 0, Next: 2}, {Topic: "t", Partition: 1, Next: 11}}); err != nil {
		t.Fatal(err)
	}
	wantOffsets(t, conn, "t", map[int]int64{0: 5, 1: 11})

	// Marks alone (a batch of poison, or applied event by event).
	res, err = s.Apply(ctx, nil, []sink.Mark{{Topic: "t", Partition: 0, Next: 8}, {Topic: "t", Partition: 2, Next: 1}, {Topic: "u", Partition: 0, Next: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res != (sink.Result{}) {
		t.Fatalf("marks-only result %+v", res)
	}
	wantOffsets(t, conn, "t", map[int]int64{0: 8, 1: 11, 2: 1})
	wantOffsets(t, conn, "u", map[int]int64{0: 3})
	if _, err := s.Apply(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if liked, count := likeState(t, conn); !liked || count != 1 {
		t.Fatalf("liked=%v count=%d, want one like", liked, count)
	}
}

// TestOffsetMarksShareTheBatchTransaction: when the batch fails nothing of
// it is written, marks included, and the other way round.
func TestOffsetMarksShareTheBatchTransaction(t *testing.T) {
	ctx := context.Background()
	s, conn := openSink(t)
	if _, err := s.Apply(ctx, nil, []sink.Mark{{Topic: "t", Partition: 0, Next: 3}}); err != nil {
		t.Fatal(err)
	}

	// An event that does not fit the schema fails the batch permanently:
	// the valid event with it and the marks are not written.
	tooLong := &eventsv1.Event{EventId: "9", Kind: eventsv1.Kind_KIND_LIKE, UserId: "bob", Namespace: "article", ItemId: strings.Repeat("x", 300), Version: 9}
	_, err := s.Apply(ctx, []*eventsv1.Event{like("like", 1), tooLong}, []sink.Mark{{Topic: "t", Partition: 0, Next: 10}, {Topic: "t", Partition: 1, Next: 4}})
	if err == nil || !sink.Permanent(err) {
		t.Fatalf("batch with a value too long: %v, want a permanent error", err)
	}
	wantOffsets(t, conn, "t", map[int]int64{0: 3})
	if liked, count := likeState(t, conn); liked || count != 0 {
		t.Fatalf("failed batch applied its like: liked=%v count=%d", liked, count)
	}

	// A mark that cannot be stored (topic name longer than the column,
	// written after every event of the batch) rolls the events back.
	_, err = s.Apply(ctx, []*eventsv1.Event{like("like", 1)}, []sink.Mark{{Topic: "t", Partition: 0, Next: 10}, {Topic: strings.Repeat("t", 300), Partition: 0, Next: 4}})
	if err == nil {
		t.Fatal("a mark that does not fit was accepted")
	}
	wantOffsets(t, conn, "t", map[int]int64{0: 3})
	if liked, count := likeState(t, conn); liked || count != 0 {
		t.Fatalf("batch whose mark failed applied its like: liked=%v count=%d", liked, count)
	}

	if _, err := s.Apply(ctx, []*eventsv1.Event{like("like", 1)}, []sink.Mark{{Topic: "t", Partition: 0, Next: 10}}); err != nil {
		t.Fatal(err)
	}
	wantOffsets(t, conn, "t", map[int]int64{0: 10})
	if liked, count := likeState(t, conn); !liked || count != 1 {
		t.Fatalf("liked=%v count=%d, want one like", liked, count)
	}
}
