// Package validate checks every client-supplied value before it reaches the
// application's storage. It is the only place the rules live: names become
// parts of Redis keys, so nothing outside the allowed alphabets (in
// particular no braces, glob characters or whitespace) gets through.
package validate

import (
	"fmt"

	"github.com/highgopress/highgopress/platform/ids"
	"github.com/highgopress/highgopress/services/counter/domain"
)

// Rules, as documented in counter.proto.
const (
	maxItemID  = 128
	maxMetric  = 32
	minIdemKey = 8
	maxIdemKey = 128
)

func invalid(field, format string, args ...any) error {
	return &domain.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// lowerAlnum reports characters of [a-z0-9].
func lowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// idChar reports characters of [A-Za-z0-9_.:-].
// idChar is the id alphabet shared with the gateway (platform/ids).
func idChar(c byte) bool { return ids.IsIDChar(c) }

func metricChar(c byte) bool { return lowerAlnum(c) || c == '_' }

// check applies the rule of one name (ids.Check): a non-ASCII character is
// named as the whole rune at its byte offset, quoted with escapes for
// anything unprintable; invalid UTF-8 is named as a byte.
func check(field, v string, min, max int, ok func(byte) bool, alphabet string) error {
	if err := ids.Check(v, min, max, ok, alphabet); err != nil {
		return invalid(field, "%s", err.Error())
	}
	return nil
}

// Namespace checks an item namespace: 1-32 characters of [a-z0-9_-].
func Namespace(field, v string) error {
	if err := ids.CheckNamespace(v); err != nil {
		return invalid(field, "%s", err.Error())
	}
	return nil
}

// ItemID checks an item id: 1-128 characters of [A-Za-z0-9_.:-].
func ItemID(field, v string) error {
	return check(field, v, 1, maxItemID, idChar, "[A-Za-z0-9_.:-]")
}

// UserID checks a user id: 1-64 characters of [A-Za-z0-9_.:-].
func UserID(field, v string) error {
	return check(field, v, 1, ids.MaxUserIDLen, idChar, ids.UserIDAlphabet)
}

// Item checks an item reference; field prefixes the names of its parts.
func Item(field string, it domain.ItemRef) error {
	if err := Namespace(field+".namespace", it.Namespace); err != nil {
		return err
	}
	return ItemID(field+".id", it.ID)
}

// Metric checks a generic metric name: 1-32 characters of [a-z0-9_], not
// the reserved "likes", not starting with '_' (reserved for the store's own
// fields, such as the loaded mark "_l").
func Metric(field, v string) error {
	if err := check(field, v, 1, maxMetric, metricChar, "[a-z0-9_]"); err != nil {
		return err
	}
	if v == domain.LikesMetric {
		return invalid(field, "%q is reserved; use Like and Unlike", v)
	}
	if v[0] == '_' {
		return invalid(field, "%q is reserved: metric names must not start with '_'", v)
	}
	return nil
}

// Delta checks an increment: non-zero, within ±domain.MaxDelta.
func Delta(field string, v int64) error {
	if v == 0 {
		return invalid(field, "must not be zero")
	}
	if v > domain.MaxDelta || v < -domain.MaxDelta {
		return invalid(field, "must be between %d and %d, got %d", -domain.MaxDelta, domain.MaxDelta, v)
	}
	return nil
}

// IdempotencyKey checks a required idempotency key: 8-128 characters of
// [A-Za-z0-9_.:-].
func IdempotencyKey(field, v string) error {
	return check(field, v, minIdemKey, maxIdemKey, idChar, "[A-Za-z0-9_.:-]")
}

func count(field string, n int, what string) error {
	if n == 0 {
		return invalid(field, "at least one %s is required", what)
	}
	if n > domain.MaxBatchItems {
		return invalid(field, "at most %d %ss per request, got %d", domain.MaxBatchItems, what, n)
	}
	return nil
}

// Actor checks the acting user of a write: it must be present and valid.
func Actor(actor string) error {
	if actor == "" {
		return domain.ErrUnauthenticated
	}
	return UserID("actor", actor)
}

// Viewer checks the optional acting user of a read ("" is anonymous).
func Viewer(viewer string) error {
	if viewer == "" {
		return nil
	}
	return UserID("actor", viewer)
}

// Like checks a Like or Unlike.
func Like(actor string, item domain.ItemRef) error {
	if err := Actor(actor); err != nil {
		return err
	}
	return Item("item", item)
}

// Increment checks an Increment.
func Increment(actor string, in domain.Increment) error {
	if err := Actor(actor); err != nil {
		return err
	}
	if err := Item("item", in.Item); err != nil {
		return err
	}
	if err := Metric("metric", in.Metric); err != nil {
		return err
	}
	if err := Delta("delta", in.Delta); err != nil {
		return err
	}
	return IdempotencyKey("idempotency_key", in.IdempotencyKey)
}

// Follow checks a Follow or Unfollow of target by actor.
func Follow(actor, target string) error {
	if err := Actor(actor); err != nil {
		return err
	}
	if err := UserID("user_id", target); err != nil {
		return err
	}
	if actor == target {
		return domain.ErrSelfFollow
	}
	return nil
}

// GetCounts checks a read of items' counts.
func GetCounts(viewer string, items []domain.ItemRef) error {
	if err := Viewer(viewer); err != nil {
		return err
	}
	if err := count("items", len(items), "item"); err != nil {
		return err
	}
	for i, it := range items {
		if err := Item(fmt.Sprintf("items[%d]", i), it); err != nil {
			return err
		}
	}
	return nil
}

// GetUserStats checks a read of users' follow counts.
func GetUserStats(viewer string, users []string) error {
	if err := Viewer(viewer); err != nil {
		return err
	}
	if err := count("user_ids", len(users), "user id"); err != nil {
		return err
	}
	for i, u := range users {
		if err := UserID(fmt.Sprintf("user_ids[%d]", i), u); err != nil {
			return err
		}
	}
	return nil
}

// Watch checks a WatchCounts request: 1 to max distinct valid items.
func Watch(items []domain.ItemRef, max int) error {
	if len(items) == 0 {
		return invalid("items", "at least one item is required")
	}
	if len(items) > max {
		return invalid("items", "at most %d items per watch, got %d", max, len(items))
	}
	seen := make(map[domain.ItemRef]int, len(items))
	for i, it := range items {
		if err := Item(fmt.Sprintf("items[%d]", i), it); err != nil {
			return err
		}
		if j, dup := seen[it]; dup {
			return invalid(fmt.Sprintf("items[%d]", i), "duplicate of items[%d] (%s/%s)", j, it.Namespace, it.ID)
		}
		seen[it] = i
	}
	return nil
}
