// Package events is the contract of the user-actions topic, written once for
// every producer (the counter's outbox relay, the gateway's API statistics)
// and every reader (the consumer, analytics): the topic names, the headers,
// the partition key rule, the encoding, and the rules an event must satisfy
// to be applied. A producer checks an event with the same Validate the
// consumer applies, so nothing it sends can be refused downstream for a rule
// it did not know.
package events

import (
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
)

// DefaultTopic is the topic every event goes to (HGP_KAFKA_TOPIC).
const DefaultTopic = "user-actions"

// DLQTopic is the dead-letter topic of topic (HGP_KAFKA_DLQ_TOPIC's default).
func DLQTopic(topic string) string { return topic + ".dlq" }

const (
	// HeaderEventType carries the event kind, e.g. "KIND_LIKE".
	HeaderEventType = "hgp-event-type"
	// HeaderTraceparent carries the W3C trace context of the request that
	// caused the event.
	HeaderTraceparent = "traceparent"
)

// Key returns the Kafka key of an event, which decides its partition:
//   - likes and increments: "<namespace>/<item_id>", so every (user, item)
//     pair and every item's counts stay in one partition;
//   - follows: "user/<target_user_id>" (the followee), so every
//     (follower, followee) pair stays in one partition;
//   - API calls: "api/<procedure>", so one procedure's counts stay together.
func Key(ev *eventsv1.Event) string {
	switch ev.GetKind() {
	case eventsv1.Kind_KIND_FOLLOW, eventsv1.Kind_KIND_UNFOLLOW:
		return "user/" + ev.GetTargetUserId()
	case eventsv1.Kind_KIND_API_CALL:
		return "api/" + ev.GetProcedure()
	default:
		return ev.GetNamespace() + "/" + ev.GetItemId()
	}
}

// Message validates an event and encodes it as a Kafka message: binary
// protobuf value, key from Key, the event-type header and, when given, the
// trace context. An event the consumer would refuse is refused here with an
// error wrapping ErrInvalid.
func Message(ev *eventsv1.Event, traceparent string) (kafka.Message, error) {
	if err := Validate(ev); err != nil {
		return kafka.Message{}, fmt.Errorf("event %q: %w", ev.GetEventId(), err)
	}
	value, err := proto.Marshal(ev)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode event %q: %w", ev.GetEventId(), err)
	}
	msg := kafka.Message{
		Key:     []byte(Key(ev)),
		Value:   value,
		Headers: []kafka.Header{{Key: HeaderEventType, Value: []byte(ev.GetKind().String())}},
	}
	if traceparent != "" {
		msg.Headers = append(msg.Headers, kafka.Header{Key: HeaderTraceparent, Value: []byte(traceparent)})
	}
	return msg, nil
}

// ErrUndecodable marks a message value that is not an encoded event.
var ErrUndecodable = errors.New("cannot decode event")

// Decode decodes and validates one Kafka message value. Both ErrUndecodable
// and ErrInvalid are permanent: the message can never be applied.
func Decode(value []byte) (*eventsv1.Event, error) {
	ev := &eventsv1.Event{}
	if err := proto.Unmarshal(value, ev); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if err := Validate(ev); err != nil {
		return nil, err
	}
	return ev, nil
}
