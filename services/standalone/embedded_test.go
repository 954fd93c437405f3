package main

import (
	"context"
	"maps"
	"strings"
	"testing"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/consumer/migrations"
	"github.com/highgopress/highgopress/services/consumer/sink"
	"github.com/highgopress/highgopress/services/counter/durable"
)

// TestConsumerSchemaOnEmbeddedMySQL: every migration applies to the
// embedded go-mysql-server, and the sink's writes work there: increments
// recorded with item, metric, delta and version (0002), offset marks written
// with the batch, never lowered, written alone.
func TestConsumerSchemaOnEmbeddedMySQL(t *testing.T) {
	ctx := context.Background()
	e, err := startEmbedded(logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	v, err := migrations.Up(ctx, logging.Discard(), e.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	if v < 2 {
		t.Fatalf("schema version %d, want at least 2", v)
	}
	conn, err := consumer.OpenDB(e.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s := sink.New(logging.Discard(), conn)
	q := durabledb.New(conn)
	applied := durable.New(conn)
	offsets := func(topic string) map[int]int64 {
		t.Helper()
		out, err := applied.AppliedOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantOffsets := func(topic string, want map[int]int64) {
		t.Helper()
		if got := offsets(topic); !maps.Equal(got, want) {
			t.Fatalf("pipeline_offsets of %s = %v, want %v", topic, got, want)
		}
	}

	like := &eventsv1.Event{EventId: "1-0", Kind: eventsv1.Kind_KIND_LIKE, UserId: "alice", Namespace: "article", ItemId: "a", Version: 1}
	inc := &eventsv1.Event{EventId: "2-0", Kind: eventsv1.Kind_KIND_INCREMENT, UserId: "alice", Namespace: "article", ItemId: "a", Metric: "views", Delta: 5, Version: 2}
	res, err := s.Apply(ctx, []*eventsv1.Event{like, inc, inc}, []sink.Mark{{Topic: "t", Partition: 1, Next: 10}, {Topic: "t", Partition: 0, Next: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transitions != 1 || res.Increments != 1 || res.Ignored != 1 {
		t.Fatalf("result %+v", res)
	}
	wantOffsets("t", map[int]int64{0: 5, 1: 10})
	var ns, item, metric string
	var delta int64
	var version uint64
	if err := conn.QueryRowContext(ctx, `SELECT namespace, item_id, metric, delta, version FROM processed_events WHERE event_id = '2-0'`).
		Scan(&ns, &item, &metric, &delta, &version); err != nil {
		t.Fatal(err)
	}
	if ns != "article" || item != "a" || metric != "views" || delta != 5 || version != 2 {
		t.Fatalf("processed_events row %q %q %q %d %d", ns, item, metric, delta, version)
	}
	var indexed int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'processed_events' AND index_name = 'processed_events_item'`).Scan(&indexed); err != nil {
		t.Fatal(err)
	}
	if indexed != 3 {
		t.Fatalf("index processed_events_item has %d columns, want 3", indexed)
	}

	// A replayed batch with lower marks, then marks alone.
	if _, err := s.Apply(ctx, []*eventsv1.Event{like, inc}, []sink.Mark{{Topic: "t", Partition: 0, Next: 2}, {Topic: "t", Partition: 1, Next: 12}}); err != nil {
		t.Fatal(err)
	}
	wantOffsets("t", map[int]int64{0: 5, 1: 12})
	if _, err := s.Apply(ctx, nil, []sink.Mark{{Topic: "t", Partition: 0, Next: 9}, {Topic: "t", Partition: 2, Next: 1}}); err != nil {
		t.Fatal(err)
	}
	wantOffsets("t", map[int]int64{0: 9, 1: 12, 2: 1})

	// A batch that fails writes no mark.
	tooLong := &eventsv1.Event{EventId: "3-0", Kind: eventsv1.Kind_KIND_LIKE, UserId: "bob", Namespace: "article", ItemId: strings.Repeat("x", 300), Version: 3}
	if _, err := s.Apply(ctx, []*eventsv1.Event{tooLong}, []sink.Mark{{Topic: "t", Partition: 0, Next: 20}}); err == nil {
		t.Fatal("an item id longer than the column was accepted")
	}
	wantOffsets("t", map[int]int64{0: 9, 1: 12, 2: 1})

	// A mark that cannot be stored, written after the batch's events, rolls
	// them back: carol's like is not counted.
	carol := &eventsv1.Event{EventId: "4-0", Kind: eventsv1.Kind_KIND_LIKE, UserId: "carol", Namespace: "article", ItemId: "a", Version: 4}
	if _, err := s.Apply(ctx, []*eventsv1.Event{carol}, []sink.Mark{{Topic: strings.Repeat("t", 300), Partition: 0, Next: 20}}); err == nil {
		t.Fatal("a topic name longer than the column was accepted")
	}
	wantOffsets("t", map[int]int64{0: 9, 1: 12, 2: 1})
	// (Read through primary keys only: in go-mysql-server v0.20.0 a rolled
	// back insert leaves the table's secondary indexes pointing at the
	// wrong rows, so a lookup by (namespace, item_id) would miss alice.)
	var rows int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM item_likes`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d like rows, want alice's only", rows)
	}

	counts, err := q.ListItemCounts(ctx, durabledb.ListItemCountsParams{Namespace: "article", ItemID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 2 || counts[0].Metric != "likes" || counts[0].Value != 1 || counts[1].Metric != "views" || counts[1].Value != 5 {
		t.Fatalf("counts %+v, want likes=1 views=5", counts)
	}
}
