package events_test

import (
	"errors"
	"strings"
	"testing"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
)

func TestKeyRules(t *testing.T) {
	for _, c := range []struct {
		ev   *eventsv1.Event
		want string
	}{
		{&eventsv1.Event{Kind: eventsv1.Kind_KIND_LIKE, Namespace: "article", ItemId: "a1", UserId: "u"}, "article/a1"},
		{&eventsv1.Event{Kind: eventsv1.Kind_KIND_UNLIKE, Namespace: "article", ItemId: "a1", UserId: "v"}, "article/a1"},
		{&eventsv1.Event{Kind: eventsv1.Kind_KIND_INCREMENT, Namespace: "article", ItemId: "a1"}, "article/a1"},
		{&eventsv1.Event{Kind: eventsv1.Kind_KIND_FOLLOW, UserId: "alice", TargetUserId: "bob"}, "user/bob"},
		{&eventsv1.Event{Kind: eventsv1.Kind_KIND_UNFOLLOW, UserId: "carol", TargetUserId: "bob"}, "user/bob"},
		{&eventsv1.Event{Kind: eventsv1.Kind_KIND_API_CALL, Procedure: "/a.v1.S/M"}, "api//a.v1.S/M"},
	} {
		if got := events.Key(c.ev); got != c.want {
			t.Errorf("Key(%v) = %q, want %q", c.ev, got, c.want)
		}
	}
}

// TestMessageRoundTrip: what Message produces, Decode accepts unchanged;
// what Validate refuses, Message refuses before anything is sent.
func TestMessageRoundTrip(t *testing.T) {
	ev := &eventsv1.Event{EventId: "1700000000000-0", Kind: eventsv1.Kind_KIND_LIKE, UserId: "u", Namespace: "n", ItemId: "i", Version: 7}
	m, err := events.Message(ev, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Key) != "n/i" || len(m.Headers) != 2 || m.Headers[0].Key != events.HeaderEventType ||
		string(m.Headers[0].Value) != "KIND_LIKE" || m.Headers[1].Key != events.HeaderTraceparent {
		t.Fatalf("message key %q headers %v", m.Key, m.Headers)
	}
	got, err := events.Decode(m.Value)
	if err != nil || got.GetVersion() != 7 || got.GetUserId() != "u" {
		t.Fatalf("Decode: %v %v", got, err)
	}
	if m, _ := events.Message(ev, ""); len(m.Headers) != 1 {
		t.Fatalf("no trace context: headers %v", m.Headers)
	}

	for name, bad := range map[string]*eventsv1.Event{
		"long api event id":    {EventId: strings.Repeat("x", events.MaxEventID+1), Kind: eventsv1.Kind_KIND_API_CALL, Procedure: "/p", Code: "ok", Delta: 1},
		"like without version": {Kind: eventsv1.Kind_KIND_LIKE, UserId: "u", Namespace: "n", ItemId: "i"},
		"self follow":          {Kind: eventsv1.Kind_KIND_FOLLOW, UserId: "u", TargetUserId: "u", Version: 1},
		"reserved metric":      {EventId: "e", Kind: eventsv1.Kind_KIND_INCREMENT, Namespace: "n", ItemId: "i", Metric: events.LikesMetric, Delta: 1},
		"unknown kind":         {EventId: "e"},
	} {
		if _, err := events.Message(bad, ""); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: Message error %v, want ErrInvalid", name, err)
		}
	}
	if _, err := events.Decode([]byte("\xff\xff\xff")); !errors.Is(err, events.ErrUndecodable) {
		t.Errorf("garbage: %v, want ErrUndecodable", err)
	}
}
