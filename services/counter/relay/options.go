package relay

import (
	"time"

	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Relay.
type Option func(*options)

type options struct {
	stream        string
	group         string
	consumer      string
	deadLetter    string
	batch         int
	block         time.Duration
	linger        time.Duration
	claimIdle     time.Duration
	claimInterval time.Duration
	heartbeatTTL  time.Duration
	depthInterval time.Duration
	backoffMin    time.Duration
	backoffMax    time.Duration
	registerer    prometheus.Registerer
}

func defaultOptions() options {
	return options{
		stream:        outbox.Stream,
		group:         outbox.Group,
		deadLetter:    outbox.Stream + ":dead",
		batch:         DefaultBatch,
		block:         time.Second,
		linger:        DefaultLinger,
		claimIdle:     DefaultClaimIdle,
		claimInterval: 5 * time.Second,
		heartbeatTTL:  DefaultHeartbeatTTL,
		depthInterval: time.Second,
		backoffMin:    50 * time.Millisecond,
		backoffMax:    5 * time.Second,
		registerer:    prometheus.DefaultRegisterer,
	}
}

// WithStream sets the outbox stream key (default "hgp:outbox"); the dead
// letter stream becomes "<stream>:dead" unless WithDeadLetterStream is given
// after it.
func WithStream(key string) Option {
	return func(o *options) { o.stream, o.deadLetter = key, key+":dead" }
}

// WithGroup sets the stream consumer group (default "relay").
func WithGroup(name string) Option { return func(o *options) { o.group = name } }

// WithConsumerName sets this instance's consumer name in the group (default:
// host name plus a random suffix; the counter derives a stable one, see
// Identity). Reusing a crashed instance's name makes it resume that
// instance's pending entries at once. Two live relays must not share a name.
func WithConsumerName(name string) Option { return func(o *options) { o.consumer = name } }

// WithDeadLetterStream sets the stream that receives entries that cannot be
// converted (default "<stream>:dead").
func WithDeadLetterStream(key string) Option { return func(o *options) { o.deadLetter = key } }

// DefaultBatch is how many entries one read takes and one Kafka write
// carries (HGP_RELAY_BATCH).
const DefaultBatch = 500

// WithBatch sets how many entries one read takes (default 500).
func WithBatch(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.batch = n
		}
	}
}

// WithBlock sets how long one read waits for new entries (default 1s). It
// bounds how long Run takes to notice cancellation.
func WithBlock(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.block = d
		}
	}
}

// DefaultLinger is how long a read that found fewer entries than a batch
// waits for more before they go to Kafka.
const DefaultLinger = 5 * time.Millisecond

// WithLinger sets how long a read that found fewer entries than a batch
// waits for more (default 5ms; 0: never waits). Longer lingers mean fewer,
// larger Kafka requests and a later arrival in MySQL; the client's latency
// never includes it.
func WithLinger(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.linger = d
		}
	}
}

// DefaultClaimIdle is after how long another instance's unacknowledged
// entries are taken over (HGP_RELAY_CLAIM_IDLE), unless its liveness key
// expired first.
const DefaultClaimIdle = 30 * time.Second

// WithClaimIdle sets after how long another instance's unacknowledged
// entries are taken over (default 30s), and how often to look for them.
func WithClaimIdle(idle, every time.Duration) Option {
	return func(o *options) {
		if idle > 0 {
			o.claimIdle = idle
		}
		if every > 0 {
			o.claimInterval = every
		}
	}
}

// DefaultHeartbeatTTL is how long a relay's liveness key outlives its last
// refresh (HGP_RELAY_HEARTBEAT_TTL).
const DefaultHeartbeatTTL = 5 * time.Second

// WithHeartbeat sets the lifetime of this relay's liveness key (default
// 5s; refreshed every third of it). The pending entries of a relay whose
// key expired and that has not touched the group for as long are claimed
// by the others, checked every half of it; a live relay's are not.
func WithHeartbeat(ttl time.Duration) Option {
	return func(o *options) {
		if ttl > 0 {
			// refreshed every third of it: a ticker needs a positive period
			o.heartbeatTTL = max(ttl, 3*time.Millisecond)
		}
	}
}

// WithBackoff sets the retry delays after a failed Kafka or Redis call.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min > 0 && max >= min {
			o.backoffMin, o.backoffMax = min, max
		}
	}
}

// WithRegisterer sets where the relay's metrics are registered (default
// prometheus.DefaultRegisterer; nil disables registration).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }
