package watch

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Subscriber opens Redis pub/sub subscriptions (*redis.Client).
type Subscriber interface {
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// Listen relays the store's change notifications (namespaces published on
// channel) to h until ctx ends. go-redis re-subscribes after a lost
// connection; what was published meanwhile is caught by the poll.
func Listen(ctx context.Context, rdb Subscriber, channel string, h *Hub) error {
	ps := rdb.Subscribe(ctx, channel)
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			h.Notify(m.Payload)
		}
	}
}
