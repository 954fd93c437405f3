package relay

import (
	"net"
	"os"
	"time"
)

// Config is the relay's tuning, part of the counter's configuration
// (counter.ConfigFrom reads it; the relay itself reads no variable):
//
//	HGP_RELAY_BATCH         entries per read and Kafka write (default 500)
//	HGP_RELAY_LINGER        wait for more entries after a short read (default 5ms; 0 off)
//	HGP_RELAY_CLAIM_IDLE    take over another instance's unacknowledged entries after (default 30s)
//	HGP_RELAY_CONSUMER      consumer name in the stream group (default: Identity of the instance)
//	HGP_RELAY_HEARTBEAT_TTL lifetime of the relay's liveness key (default 5s): a dead relay's
//	                        pending entries are claimed once it expired
//
// Where the events go (HGP_KAFKA_BROKERS, HGP_KAFKA_TOPIC) is the writer
// given to New (events.NewWriter).
type Config struct {
	Batch        int
	Linger       time.Duration
	ClaimIdle    time.Duration
	Consumer     string // "": New picks the host name and a random suffix
	HeartbeatTTL time.Duration
}

// DefaultConfig returns the defaults listed on Config, Consumer left empty.
func DefaultConfig() Config {
	return Config{Batch: DefaultBatch, Linger: DefaultLinger, ClaimIdle: DefaultClaimIdle, HeartbeatTTL: DefaultHeartbeatTTL}
}

// Options returns the options that apply c: its batch, linger, heartbeat
// and consumer name, and claims after ClaimIdle looked for every half of
// it (at most every 5s). Zero values keep New's defaults.
func (c Config) Options() []Option {
	opts := []Option{WithBatch(c.Batch), WithLinger(c.Linger), WithClaimIdle(c.ClaimIdle, min(c.ClaimIdle/2, 5*time.Second)), WithHeartbeat(c.HeartbeatTTL)}
	if c.Consumer != "" {
		opts = append(opts, WithConsumerName(c.Consumer))
	}
	return opts
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
