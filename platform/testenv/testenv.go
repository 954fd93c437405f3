// Package testenv gives tests the addresses of the real middleware servers
// started by scripts/mw.sh (see scripts/test.sh).
//
// When HGP_INTEGRATION=require (as the test command sets it) a missing server
// fails the test; otherwise the test is skipped, so `go test ./...` works on a
// machine without the servers.
package testenv

import (
	"os"
	"testing"
)

func lookup(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("HGP_INTEGRATION") == "require" {
		t.Fatalf("%s is not set: %s is required (start it with scripts/mw.sh start)", name, what)
	}
	t.Skipf("%s not set: skipping test that needs a real %s (run bash scripts/test.sh)", name, what)
	return ""
}

// RedisAddr returns the address of a real Redis server.
func RedisAddr(t testing.TB) string { return lookup(t, "HGP_TEST_REDIS_ADDR", "Redis") }

// MySQLDSN returns the DSN of a real MariaDB server.
func MySQLDSN(t testing.TB) string { return lookup(t, "HGP_TEST_MYSQL_DSN", "MariaDB") }

// KafkaBrokers returns the address of a real Kafka broker.
func KafkaBrokers(t testing.TB) string { return lookup(t, "HGP_TEST_KAFKA_BROKERS", "Kafka") }

// ConsulAddr returns the HTTP address of a real Consul agent.
func ConsulAddr(t testing.TB) string { return lookup(t, "HGP_TEST_CONSUL_ADDR", "Consul") }
