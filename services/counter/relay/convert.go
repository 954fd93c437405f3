package relay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// seqBits is the width of the sequence part of a version (ms<<20 | seq); a
// stream id with a larger sequence cannot be ordered and is rejected.
const seqBits = 20

// errInvalidEntry marks outbox entries that can never be converted.
var errInvalidEntry = errors.New("invalid outbox entry")

// Version returns the event version of an outbox stream id "<ms>-<seq>":
// ms<<20 | seq. Versions of one stream are strictly increasing.
func Version(streamID string) (uint64, time.Time, error) {
	msPart, seqPart, ok := strings.Cut(streamID, "-")
	if !ok {
		return 0, time.Time{}, fmt.Errorf("%w: stream id %q has no sequence", errInvalidEntry, streamID)
	}
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%w: stream id %q: bad milliseconds", errInvalidEntry, streamID)
	}
	seq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%w: stream id %q: bad sequence", errInvalidEntry, streamID)
	}
	if seq >= 1<<seqBits || ms >= 1<<(64-seqBits) || ms == 0 && seq == 0 {
		return 0, time.Time{}, fmt.Errorf("%w: stream id %q out of the version range", errInvalidEntry, streamID)
	}
	return ms<<seqBits | seq, time.UnixMilli(int64(ms)), nil
}

func field(values map[string]any, name string) string {
	v, ok := values[name]
	if !ok || v == nil {
		return ""
	}
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	default:
		return fmt.Sprint(s)
	}
}

// Convert turns one outbox entry into an event. An error means the entry
// can never be converted (it belongs in the dead-letter stream).
func Convert(streamID string, values map[string]any) (*eventsv1.Event, error) {
	version, at, err := Version(streamID)
	if err != nil {
		return nil, err
	}
	ev := &eventsv1.Event{
		EventId: streamID,
		Time:    timestamppb.New(at),
		UserId:  field(values, outbox.FieldUser),
		Version: version,
	}
	if ev.UserId == "" {
		return nil, fmt.Errorf("%w: %s: missing field %q", errInvalidEntry, streamID, outbox.FieldUser)
	}
	need := func(names ...string) error {
		for _, n := range names {
			if field(values, n) == "" {
				return fmt.Errorf("%w: %s: missing field %q", errInvalidEntry, streamID, n)
			}
		}
		return nil
	}
	kind := field(values, outbox.FieldKind)
	switch kind {
	case outbox.KindLike, outbox.KindUnlike:
		if err := need(outbox.FieldNamespace, outbox.FieldItem); err != nil {
			return nil, err
		}
		ev.Kind, ev.Delta = eventsv1.Kind_KIND_LIKE, 1
		if kind == outbox.KindUnlike {
			ev.Kind, ev.Delta = eventsv1.Kind_KIND_UNLIKE, -1
		}
		ev.Namespace, ev.ItemId = field(values, outbox.FieldNamespace), field(values, outbox.FieldItem)
	case outbox.KindFollow, outbox.KindUnfollow:
		if err := need(outbox.FieldTarget); err != nil {
			return nil, err
		}
		ev.Kind, ev.Delta = eventsv1.Kind_KIND_FOLLOW, 1
		if kind == outbox.KindUnfollow {
			ev.Kind, ev.Delta = eventsv1.Kind_KIND_UNFOLLOW, -1
		}
		ev.TargetUserId = field(values, outbox.FieldTarget)
	case outbox.KindIncr:
		if err := need(outbox.FieldNamespace, outbox.FieldItem, outbox.FieldMetric, outbox.FieldDelta); err != nil {
			return nil, err
		}
		d, err := strconv.ParseInt(field(values, outbox.FieldDelta), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: field %q is not an integer", errInvalidEntry, streamID, outbox.FieldDelta)
		}
		ev.Kind, ev.Delta = eventsv1.Kind_KIND_INCREMENT, d
		ev.Namespace, ev.ItemId = field(values, outbox.FieldNamespace), field(values, outbox.FieldItem)
		ev.Metric, ev.IdempotencyKey = field(values, outbox.FieldMetric), field(values, outbox.FieldIdemKey)
	default:
		return nil, fmt.Errorf("%w: %s: unknown kind %q", errInvalidEntry, streamID, kind)
	}
	return ev, nil
}

// entryMessage converts an outbox entry straight to a Kafka message under
// the events contract (platform/events: key, headers, validation).
func entryMessage(streamID string, values map[string]any) (kafka.Message, error) {
	ev, err := Convert(streamID, values)
	if err != nil {
		return kafka.Message{}, err
	}
	msg, err := events.Message(ev, field(values, outbox.FieldTraceparent))
	if err != nil {
		// The contract refuses it: it can never be applied downstream.
		return kafka.Message{}, fmt.Errorf("%w: %s: %w", errInvalidEntry, streamID, err)
	}
	return msg, nil
}
