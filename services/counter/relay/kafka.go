package relay

import (
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
)

// FromConfig builds a Relay for the counter service from the environment:
//
//	HGP_KAFKA_BROKERS      comma list of brokers; empty disables the relay (nil, nil, nil)
//	HGP_KAFKA_TOPIC        topic (default user-actions)
//	HGP_RELAY_BATCH        entries per read and Kafka write (default 500)
//	HGP_RELAY_LINGER       wait for more entries after a short read (default 5ms; 0 off)
//	HGP_RELAY_CLAIM_IDLE   take over another instance's unacknowledged entries after (default 30s)
//	HGP_RELAY_CONSUMER     consumer name in the stream group (default: Identity of the instance)
//	HGP_RELAY_HEARTBEAT_TTL lifetime of the relay's liveness key (default 5s): a dead relay's
//	                       pending entries are claimed once it expired
//
// The returned close function closes the Kafka writer; call it after Run
// returned (bootstrap.Component.Close).
func FromConfig(logger *slog.Logger, rdb Redis, cfg *config.Reader, opts ...Option) (*Relay, func() error, error) {
	brokers := cfg.List("HGP_KAFKA_BROKERS", nil)
	topic := cfg.String("HGP_KAFKA_TOPIC", events.DefaultTopic)
	batch := cfg.Int("HGP_RELAY_BATCH", 500, 1, 10000)
	linger := cfg.Duration("HGP_RELAY_LINGER", DefaultLinger, 0, time.Second)
	idle := cfg.Duration("HGP_RELAY_CLAIM_IDLE", 30*time.Second, 100*time.Millisecond, time.Hour)
	name := cfg.String("HGP_RELAY_CONSUMER", "")
	heartbeat := cfg.Duration("HGP_RELAY_HEARTBEAT_TTL", DefaultHeartbeatTTL, 300*time.Millisecond, 10*time.Minute)
	if name == "" {
		name = Identity(cfg.String("HGP_ADVERTISE_HOST", ""), cfg.String("HGP_COUNTER_ADDR", "127.0.0.1:8081"))
	}
	if err := cfg.Err(); err != nil {
		return nil, nil, err
	}
	if len(brokers) == 0 {
		return nil, nil, nil
	}
	w := events.NewWriter(brokers, topic)
	base := []Option{WithBatch(batch), WithLinger(linger), WithClaimIdle(idle, min(idle/2, 5*time.Second)), WithHeartbeat(heartbeat)}
	if name != "" {
		base = append(base, WithConsumerName(name))
	}
	return New(logger, rdb, w, append(base, opts...)...), w.Close, nil
}

// Identity returns a relay name that is stable across restarts of one
// instance and unique among live ones: "<host>:<port>" of the counter's
// listen address, host being advertise (HGP_ADVERTISE_HOST) or else the
// machine's host name (the pod name in Kubernetes; never a loopback or
// wildcard address, which many instances share). A restarted instance
// takes its own name again and resumes its pending outbox entries at once.
// Without a fixed port (":0") there is no stable identity: "" (New then
// picks the host name and a random suffix, and a restart relies on the
// others claiming the dead name's entries once its liveness key expired).
func Identity(advertise, listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return ""
	}
	host := advertise
	if host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return ""
		}
		host = h
	}
	return net.JoinHostPort(host, port)
}
