// Package backoff is the exponential retry delay shared by the services'
// background loops (relay, consumer, discovery).
package backoff

import (
	"context"
	"time"
)

// Backoff doubles its delay after every wait, up to a maximum.
type Backoff struct{ min, max, cur time.Duration }

// New returns a Backoff starting at min and capped at max.
func New(min, max time.Duration) *Backoff { return &Backoff{min: min, max: max, cur: min} }

// Reset starts again from the minimum delay (after a success).
func (b *Backoff) Reset() { b.cur = b.min }

// Wait sleeps for the current delay and doubles it; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	b.cur = min(b.cur*2, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
