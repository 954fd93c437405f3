package consumer_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/consumer/sink"
)

// FuzzDecode: no input panics the decoder, whatever it accepts passes
// validation again after a round trip, and whatever it refuses the sink
// treats as permanent (dead-lettered, never retried).
func FuzzDecode(f *testing.F) {
	valid, _ := proto.Marshal(&eventsv1.Event{EventId: "1-1", Kind: eventsv1.Kind_KIND_LIKE, UserId: "u", Namespace: "n", ItemId: "i", Version: 1})
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte("\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := events.Decode(b)
		if err != nil {
			if !sink.Permanent(err) {
				t.Fatalf("refused message not permanent: %v", err)
			}
			return
		}
		if err := events.Validate(ev); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
	})
}
