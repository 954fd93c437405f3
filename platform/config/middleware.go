package config

import "github.com/highgopress/highgopress/platform/events"

// Redis locates a Redis server, read by RedisFrom from:
//
//	HGP_REDIS_ADDR      host:port (default: the service's, "" where Redis is optional)
//	HGP_REDIS_PASSWORD  password (default none)
//	HGP_REDIS_DB        database number, 0-65536 (default 0)
//
// Client settings (timeouts, retries, pool) are each service's own.
type Redis struct {
	Addr     string
	Password string
	DB       int
}

// RedisFrom reads Redis; defaultAddr is used when HGP_REDIS_ADDR is unset
// ("" for a service where Redis is optional: see Redis.Enabled). Problems
// are recorded on r, naming the variable.
func RedisFrom(r *Reader, defaultAddr string) Redis {
	return Redis{
		Addr:     r.String("HGP_REDIS_ADDR", defaultAddr),
		Password: r.String("HGP_REDIS_PASSWORD", ""),
		DB:       r.Int("HGP_REDIS_DB", 0, 0, 1<<16),
	}
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
