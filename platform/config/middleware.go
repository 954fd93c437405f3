package config

import (
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/events"
)

// Redis locates a Redis server or a Redis Cluster, read by RedisFrom from:
//
//	HGP_REDIS_ADDR      host:port, or a comma list of cluster nodes (default:
//	                    the service's, "" where Redis is optional)
//	HGP_REDIS_CLUSTER   true: Redis Cluster, also with one address (a
//	                    managed cluster's configuration endpoint); more than
//	                    one address implies it (default false)
//	HGP_REDIS_PASSWORD  password (default none)
//	HGP_REDIS_DB        database number, 0-65536 (default 0; a cluster has
//	                    only database 0)
//
// Client settings (timeouts, retries, pool) are each service's own (see
// Redis.Client).
type Redis struct {
	Addr     string // as given: one address or a comma list
	Password string
	DB       int
	Cluster  bool
}

// Addrs are the addresses of Addr.
func (c Redis) Addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Client opens a client for c with the service's settings in base (its
// Addrs, Password, DB and IsClusterMode are replaced by c's): a
// *redis.ClusterClient for a cluster, else a *redis.Client.
func (c Redis) Client(base redis.UniversalOptions) redis.UniversalClient {
	base.Addrs, base.Password, base.DB, base.IsClusterMode = c.Addrs(), c.Password, c.DB, c.Cluster
	if c.Cluster {
		return redis.NewClusterClient(base.Cluster())
	}
	return redis.NewClient(base.Simple())
}

// RedisFrom reads Redis; defaultAddr is used when HGP_REDIS_ADDR is unset
// ("" for a service where Redis is optional: see Redis.Enabled). Problems
// are recorded on r, naming the variable.
func RedisFrom(r *Reader, defaultAddr string) Redis {
	c := Redis{
		Addr:     strings.Join(r.List("HGP_REDIS_ADDR", []string{defaultAddr}), ","),
		Password: r.String("HGP_REDIS_PASSWORD", ""),
		DB:       r.Int("HGP_REDIS_DB", 0, 0, 1<<16),
		Cluster:  r.Bool("HGP_REDIS_CLUSTER", false),
	}
	if len(c.Addrs()) > 1 {
		c.Cluster = true
	}
	if c.Cluster && c.DB != 0 {
		r.fail("HGP_REDIS_DB", "%d: a Redis Cluster has only database 0 (HGP_REDIS_ADDR %q is a cluster)", c.DB, c.Addr)
		c.DB = 0
	}
	return c
}

// Enabled reports whether a Redis address is configured.
func (c Redis) Enabled() bool { return c.Addr != "" }

// Kafka locates the event topics (see package events), read by KafkaFrom
// from:
//
//	HGP_KAFKA_BROKERS    comma list of host:port (default none)
//	HGP_KAFKA_TOPIC      event topic (default events.DefaultTopic, user-actions)
//	HGP_KAFKA_DLQ_TOPIC  dead-letter topic (default events.DLQTopic of the topic)
//
// Whether brokers are required, and what the other HGP_KAFKA_* settings
// (consumer group, partitions) are, is each service's own.
type Kafka struct {
	Brokers  []string
	Topic    string
	DLQTopic string
}

// KafkaFrom reads Kafka. Problems are recorded on r, naming the variable.
func KafkaFrom(r *Reader) Kafka {
	c := Kafka{
		Brokers: r.List("HGP_KAFKA_BROKERS", nil),
		Topic:   r.String("HGP_KAFKA_TOPIC", events.DefaultTopic),
	}
	c.DLQTopic = r.String("HGP_KAFKA_DLQ_TOPIC", events.DLQTopic(c.Topic))
	return c
}

// Enabled reports whether Kafka brokers are configured.
func (c Kafka) Enabled() bool { return len(c.Brokers) > 0 }
