// Package domain holds the analytics service's types and errors, shared by
// the store, the watch hub and the Connect handler (which alone turns the
// errors into Connect codes).
package domain

import (
	"errors"
	"fmt"
	"time"
)

// FieldError is bad input: the request names something that can never be
// served. The handler answers invalid_argument.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Invalid returns a FieldError.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

var (
	// ErrTooManySubscriptions: a client or the replica holds the most
	// streams allowed (resource_exhausted).
	ErrTooManySubscriptions = errors.New("too many watch streams")
	// ErrSlowSubscriber: a stream fell too far behind and was dropped
	// (resource_exhausted).
	ErrSlowSubscriber = errors.New("watch stream dropped: the client reads too slowly")
	// ErrUnavailable wraps failures of Redis (unavailable).
	ErrUnavailable = errors.New("analytics store unavailable")
)

// RankedItem is one entry of a ranking.
type RankedItem struct {
	Item  string
	Score int64
	Rank  int64
}

// Page is a page of a ranking snapshot.
type Page struct {
	Items []RankedItem
	Next  string // page token of the next page, empty on the last
	AsOf  time.Time
}

// Latency percentiles, in microseconds.
type Latency struct {
	P50, P90, P99, Max float64
}

// ProcedureStats are one procedure's calls in a window.
type ProcedureStats struct {
	Procedure string
	Calls     int64
	Codes     map[string]int64
	Latency   *Latency // nil when no call reported a latency
}
