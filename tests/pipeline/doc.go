// Package pipeline holds the tests of the whole write path across services:
// the counter service (Lua writes, outbox, relay, rebuilds and settling,
// reconciliation) with the consumer and real Redis, Kafka and MariaDB.
// It is its own module so that no service imports another: the services
// are tested here together, as they run in production. It has no code
// besides its tests.
package pipeline
