package events

import (
	"errors"
	"fmt"
	"unicode/utf8"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
)

// Limits of an event's fields (characters), the column sizes of the durable
// schema.
const (
	MaxNamespace = 64
	MaxID        = 128
	MaxMetric    = 64
	MaxEventID   = 64
	MaxProcedure = 255
	MaxCode      = 32
)

// LikesMetric is the metric that holds an item's like count; an INCREMENT
// may not use it.
const LikesMetric = "likes"

// ErrInvalid marks an event that can never be applied.
var ErrInvalid = errors.New("invalid event")

func text(name, v string, max int) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, name)
	case utf8.RuneCountInString(v) > max:
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, name, max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, name)
	}
	return nil
}

// Validate reports why an event cannot be applied, or nil. Producers call it
// (through Message) before sending; the consumer calls it (through Decode)
// before applying.
func Validate(ev *eventsv1.Event) error {
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch ev.GetKind() {
	case eventsv1.Kind_KIND_LIKE, eventsv1.Kind_KIND_UNLIKE:
		check(text("user_id", ev.GetUserId(), MaxID))
		check(text("namespace", ev.GetNamespace(), MaxNamespace))
		check(text("item_id", ev.GetItemId(), MaxID))
		if ev.GetVersion() == 0 {
			check(fmt.Errorf("%w: version is zero", ErrInvalid))
		}
	case eventsv1.Kind_KIND_FOLLOW, eventsv1.Kind_KIND_UNFOLLOW:
		check(text("user_id", ev.GetUserId(), MaxID))
		check(text("target_user_id", ev.GetTargetUserId(), MaxID))
		if ev.GetUserId() == ev.GetTargetUserId() {
			check(fmt.Errorf("%w: a user cannot follow themselves", ErrInvalid))
		}
		if ev.GetVersion() == 0 {
			check(fmt.Errorf("%w: version is zero", ErrInvalid))
		}
	case eventsv1.Kind_KIND_INCREMENT:
		check(text("event_id", ev.GetEventId(), MaxEventID))
		check(text("namespace", ev.GetNamespace(), MaxNamespace))
		check(text("item_id", ev.GetItemId(), MaxID))
		check(text("metric", ev.GetMetric(), MaxMetric))
		if ev.GetMetric() == LikesMetric {
			check(fmt.Errorf("%w: metric %q is reserved", ErrInvalid, LikesMetric))
		}
	case eventsv1.Kind_KIND_API_CALL:
		check(text("event_id", ev.GetEventId(), MaxEventID))
		check(text("procedure", ev.GetProcedure(), MaxProcedure))
		check(text("code", ev.GetCode(), MaxCode))
		if ev.GetDelta() < 0 {
			check(fmt.Errorf("%w: delta of an API call is negative", ErrInvalid))
		}
	default:
		check(fmt.Errorf("%w: unknown kind %d", ErrInvalid, ev.GetKind()))
	}
	return errors.Join(errs...)
}
