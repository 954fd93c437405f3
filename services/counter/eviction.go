package counter

import (
	"context"
	"errors"
	"fmt"

	"github.com/highgopress/highgopress/services/counter/domain"
)

// evictionRisk says what an evicting Redis can do to the counter.
const evictionRisk = "Redis may evict the counter's keys: an evicted likers set lets a user's like count twice, " +
	"an evicted idempotency record lets an Increment apply twice, an evicted outbox loses events; " +
	"set maxmemory-policy noeviction (writes then fail with Unavailable when memory is full)"

// checkEviction reads Redis's maxmemory-policy. Anything but noeviction is
// logged as a warning, or refused when WithRequireNoEviction is set. When
// Redis refuses CONFIG (managed services disable or rename it) the policy
// cannot be checked: that is a warning in both modes.
func (c *Counter) checkEviction(ctx context.Context) error {
	policy, err := c.store.MaxMemoryPolicy(ctx)
	switch {
	case errors.Is(err, domain.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("read maxmemory-policy: %w", err)
	case err != nil:
		c.logger.WarnContext(ctx, "cannot read Redis maxmemory-policy (CONFIG disabled?); make sure it is noeviction",
			"err", err, "risk", evictionRisk)
		return nil
	case policy == "noeviction":
		return nil
	case c.requireNoEviction:
		return fmt.Errorf("maxmemory-policy of Redis is %q, not noeviction, and HGP_COUNTER_REQUIRE_NOEVICTION is set: %s",
			policy, evictionRisk)
	}
	c.logger.WarnContext(ctx, "Redis maxmemory-policy is not noeviction",
		"maxmemory_policy", policy, "risk", evictionRisk)
	return nil
}
