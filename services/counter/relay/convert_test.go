package relay

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
)

func TestVersion(t *testing.T) {
	v, at, err := Version("1700000000123-5")
	if err != nil {
		t.Fatal(err)
	}
	if v != 1700000000123<<20|5 || at.UnixMilli() != 1700000000123 {
		t.Fatalf("version %d at %v", v, at)
	}
	a, _, _ := Version("1700000000123-6")
	b, _, _ := Version("1700000000124-0")
	if !(v < a && a < b) {
		t.Fatal("versions must follow stream order")
	}
	for _, bad := range []string{"", "1", "x-1", "1-x", "1-1048576", "0-0", "-1", "18446744073709551615-0"} {
		if _, _, err := Version(bad); err == nil {
			t.Errorf("Version(%q) accepted", bad)
		}
	}
}

func TestConvert(t *testing.T) {
	cases := []struct {
		name   string
		fields map[string]any
		kind   eventsv1.Kind
		key    string
		delta  int64
	}{
		{"like", map[string]any{"k": "like", "u": "alice", "ns": "article", "id": "42", "d": "1"}, eventsv1.Kind_KIND_LIKE, "article/42", 1},
		{"unlike", map[string]any{"k": "unlike", "u": "alice", "ns": "article", "id": "42", "d": "-1"}, eventsv1.Kind_KIND_UNLIKE, "article/42", -1},
		{"follow", map[string]any{"k": "follow", "u": "alice", "t": "bob", "d": "1"}, eventsv1.Kind_KIND_FOLLOW, "user/bob", 1},
		{"unfollow", map[string]any{"k": "unfollow", "u": "alice", "t": "bob"}, eventsv1.Kind_KIND_UNFOLLOW, "user/bob", -1},
		{"incr", map[string]any{"k": "incr", "u": "alice", "ns": "article", "id": "42", "m": "views", "d": "7", "ik": "k1"}, eventsv1.Kind_KIND_INCREMENT, "article/42", 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Convert("1700000000000-1", tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetKind() != tc.kind || events.Key(ev) != tc.key || ev.GetDelta() != tc.delta || ev.GetEventId() != "1700000000000-1" ||
				ev.GetVersion() != 1700000000000<<20|1 || ev.GetUserId() != "alice" {
				t.Fatalf("unexpected event %v (key %q)", ev, events.Key(ev))
			}
			msg, err := events.Message(ev, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
			if err != nil {
				t.Fatal(err)
			}
			back := &eventsv1.Event{}
			if err := proto.Unmarshal(msg.Value, back); err != nil || !proto.Equal(back, ev) {
				t.Fatalf("value does not round-trip: %v", err)
			}
			if string(msg.Key) != tc.key || len(msg.Headers) != 2 || string(msg.Headers[0].Value) != tc.kind.String() || msg.Headers[1].Key != events.HeaderTraceparent {
				t.Fatalf("key %q headers %v", msg.Key, msg.Headers)
			}
		})
	}
}

func TestConvertRejects(t *testing.T) {
	bad := []map[string]any{
		{},
		{"k": "like", "ns": "a", "id": "1"},    // no user
		{"k": "like", "u": "alice", "id": "1"}, // no namespace
		{"k": "follow", "u": "alice"},          // no target
		{"k": "incr", "u": "alice", "ns": "a", "id": "1", "m": "views"}, // no delta
		{"k": "incr", "u": "alice", "ns": "a", "id": "1", "m": "views", "d": "x"},
		{"k": "explode", "u": "alice"},
	}
	for i, f := range bad {
		if _, err := Convert("1-1", f); err == nil {
			t.Errorf("case %d: %v accepted", i, f)
		}
	}
}

func FuzzConvert(f *testing.F) {
	f.Add("1700000000000-1", "like", "alice", "article", "1", "", "1", "", "")
	f.Add("1-0", "incr", "u", "n", "i", "", "-9223372036854775808", "m", "k")
	f.Add("5-5", "follow", "a", "", "", "b", "1", "", "")
	f.Fuzz(func(t *testing.T, id, k, u, ns, item, target, d, m, ik string) {
		ev, err := Convert(id, map[string]any{"k": k, "u": u, "ns": ns, "id": item, "t": target, "d": d, "m": m, "ik": ik})
		if err != nil {
			return
		}
		if ev.GetVersion() == 0 || ev.GetUserId() == "" || events.Key(ev) == "" {
			t.Fatalf("accepted incomplete event %v", ev)
		}
		// Invalid UTF-8 in a string field fails encoding (the entry is then
		// dead-lettered); it must never panic.
		_, _ = events.Message(ev, "")
	})
}

// TestEntryRefusedByTheContractIsInvalid: an entry that converts but breaks
// the events contract (a namespace longer than the schema holds) is an
// invalid entry — dead-lettered in the outbox, never sent for the consumer
// to dead-letter again.
func TestEntryRefusedByTheContractIsInvalid(t *testing.T) {
	_, err := entryMessage("1700000000000-1", map[string]any{
		"k": "like", "u": "u1", "ns": strings.Repeat("n", events.MaxNamespace+1), "id": "a1",
	})
	if !errors.Is(err, errInvalidEntry) || !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("entryMessage: %v, want an invalid entry refused by the contract", err)
	}
	if _, err := entryMessage("1700000000000-2", map[string]any{"k": "like", "u": "u1", "ns": "n", "id": "a1"}); err != nil {
		t.Fatalf("valid entry: %v", err)
	}
}
