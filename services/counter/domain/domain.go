// Package domain holds the counter service's vocabulary: the things it counts,
// the results of its operations and the errors they fail with. It has no
// dependencies on transports or storage.
package domain

import (
	"errors"
	"fmt"
)

// Limits of requests, shared by validation and documentation.
const (
	// MaxBatchItems is the largest number of items (or users) one read may name.
	MaxBatchItems = 500
	// MaxDelta bounds the absolute value of an Increment's delta.
	MaxDelta = 1_000_000
	// LikesMetric is the hash field holding an item's like count; it cannot
	// be incremented as a generic metric.
	LikesMetric = "likes"
)

// ItemRef names one countable thing, e.g. an article or a comment.
type ItemRef struct {
	Namespace string
	ID        string
}

// ItemCounts are the counters of one item.
type ItemCounts struct {
	Likes int64
	// Metrics are the generic counters (views, shares...), never "likes".
	Metrics map[string]int64
}

// ItemView is an item's counters as seen by one viewer.
type ItemView struct {
	Item   ItemRef
	Counts ItemCounts
	// ViewerLiked is true when the viewer likes the item (false when anonymous).
	ViewerLiked bool
}

// UserCounts are the follow counters of one user.
type UserCounts struct {
	Followers int64
	Following int64
}

// UserView is a user's follow counters as seen by one viewer.
type UserView struct {
	UserID string
	Counts UserCounts
	// ViewerFollows is true when the viewer follows the user (false when anonymous).
	ViewerFollows bool
}

// LikeResult is the outcome of a Like or Unlike.
type LikeResult struct {
	// Changed is false when the like state already was what was asked.
	Changed bool
	// Count is the item's like count after the operation.
	Count int64
}

// FollowResult is the outcome of a Follow or Unfollow.
type FollowResult struct {
	Changed bool
	// Following is the acting user's following count.
	Following int64
	// Followers is the target's follower count.
	Followers int64
}

// Increment asks to add Delta to Metric of Item, once per IdempotencyKey.
type Increment struct {
	Item           ItemRef
	Metric         string
	Delta          int64
	IdempotencyKey string
}

// FieldError reports an invalid request field. It matches ErrInvalid with
// errors.Is; its message is "<field>: <reason>".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes a FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Errors returned by the application and storage layers. They are mapped to
// transport codes only at the handler boundary; wrap them with %w.
var (
	// ErrInvalid reports a malformed request; see FieldError.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthenticated reports a write without an acting user.
	ErrUnauthenticated = errors.New("an authenticated acting user is required")
	// ErrSelfFollow reports an attempt to follow or unfollow oneself.
	ErrSelfFollow = errors.New("users cannot follow themselves")
	// ErrIdempotencyConflict reports an idempotency key reused with
	// different parameters.
	ErrIdempotencyConflict = errors.New("idempotency key was already used with different parameters")
	// ErrTooManyMetrics reports an Increment that would add a metric to an
	// item that already has the most metrics allowed; nothing was changed.
	ErrTooManyMetrics = errors.New("too many metrics on one item")
	// ErrUnavailable reports that the store cannot be reached; retrying later
	// may succeed.
	ErrUnavailable = errors.New("counter storage is unavailable")
	// ErrUnsupported reports an operation this deployment cannot serve
	// (follows on a Redis Cluster, for now).
	ErrUnsupported = errors.New("not supported by this deployment")
)

// ItemSnapshot is an item's durable state, as the durable record (MySQL)
// holds it: the users who like it and its generic metrics.
type ItemSnapshot struct {
	Likers []string
	// Metrics are the generic counters; "likes" is not among them (the
	// count is len(Likers)).
	Metrics map[string]int64
	// ForRead says the state is rebuilt for a read: an empty snapshot is
	// then installed as an expiring "absent" entry, so reads of items
	// nobody wrote never leave permanent state.
	ForRead bool
}

// UserSnapshot is a user's durable follow state.
type UserSnapshot struct {
	// Following are the users the user follows.
	Following []string
	// Followers are the users following the user.
	Followers []string
	// ForRead: as ItemSnapshot.ForRead.
	ForRead bool
}

// PairState is the stored state of one like or follow pair, seen from
// one side: the other user, and whether the like or follow is on.
type PairState struct {
	User string
	On   bool
}

// ItemSettlement is what the durable record holds for an item once every
// event older than a rebuild's boundary has reached it, counting only those
// events: the like state of every user whose last stored event is older,
// and each metric's value without the increments from the boundary on.
type ItemSettlement struct {
	Likes   []PairState
	Metrics map[string]int64
}

// UserSettlement is the same for a user's follow pairs.
type UserSettlement struct {
	Following []PairState
	Followers []PairState
}

// NotLoadedError reports that the state of some items or users is missing
// from the real-time store and must be rebuilt from the durable record
// before the operation can run. It matches ErrNotLoaded.
type NotLoadedError struct {
	Items []ItemRef
	Users []string
}

func (e *NotLoadedError) Error() string {
	return fmt.Sprintf("state of %d items and %d users is not loaded", len(e.Items), len(e.Users))
}

// Is makes a NotLoadedError match ErrNotLoaded.
func (e *NotLoadedError) Is(target error) bool { return target == ErrNotLoaded }

// ErrNotLoaded reports state missing from the real-time store that a
// durable record could restore; see NotLoadedError.
var ErrNotLoaded = errors.New("state not loaded")
