package counter_test

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/relay"
)

func TestConfigFrom(t *testing.T) {
	r := config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": secret})
	c := counter.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if c.Addr != counter.DefaultAddr || c.Redis.Addr != counter.DefaultRedisAddr || c.Redis.DB != 0 ||
		c.Kafka.Enabled() || c.Kafka.Topic != "user-actions" || c.MySQLDSN != "" ||
		c.RedisTimeout != counter.DefaultRedisTimeout || c.MySQLTimeout != counter.DefaultMySQLTimeout ||
		c.RebuildWait != counter.DefaultRebuildWait || c.ReconcileInterval != 0 || !c.ReconcileRepair || !c.Batching || c.MaxMessageBytes != counter.DefaultMaxMessageBytes ||
		c.Relay.Batch != relay.DefaultBatch || c.Relay.Linger != relay.DefaultLinger || c.Relay.ClaimIdle != relay.DefaultClaimIdle ||
		c.Relay.HeartbeatTTL != relay.DefaultHeartbeatTTL || (host != "" && c.Relay.Consumer != net.JoinHostPort(host, "8081")) ||
		string(c.IdentitySecret) != secret {
		t.Fatalf("defaults: %+v", c)
	}

	r = config.FromMap(map[string]string{
		"HGP_IDENTITY_SECRET": secret, "HGP_COUNTER_ADDR": "0.0.0.0:9001", "HGP_ADVERTISE_HOST": "counter-0",
		"HGP_REDIS_ADDR": "redis:6380", "HGP_REDIS_DB": "2", "HGP_KAFKA_BROKERS": "k1:9092,k2:9092", "HGP_KAFKA_TOPIC": "t",
		"HGP_MYSQL_DSN": "u:p@tcp(db:3306)/hgp?readTimeout=7s", "HGP_COUNTER_MYSQL_TIMEOUT": "3s",
		"HGP_RELAY_BATCH": "50", "HGP_RELAY_LINGER": "0s", "HGP_RELAY_CLAIM_IDLE": "2s", "HGP_RELAY_HEARTBEAT_TTL": "1s",
		"HGP_RECONCILE_INTERVAL": "5m", "HGP_RECONCILE_REPAIR": "false",
	})
	c = counter.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Relay != (relay.Config{Batch: 50, Linger: 0, ClaimIdle: 2 * time.Second, Consumer: "counter-0:9001", HeartbeatTTL: time.Second}) ||
		c.Redis.Addr != "redis:6380" || c.Redis.DB != 2 || len(c.Kafka.Brokers) != 2 || c.Kafka.Topic != "t" ||
		c.ReconcileInterval != 5*time.Minute || c.ReconcileRepair {
		t.Fatalf("overrides: %+v", c)
	}
	dsn, err := mysql.ParseDSN(c.MySQLDSN)
	if err != nil || dsn.Timeout != 3*time.Second || dsn.ReadTimeout != 7*time.Second || dsn.WriteTimeout != 3*time.Second {
		t.Fatalf("MySQL DSN %q (%v): want the DSN's own read timeout and HGP_COUNTER_MYSQL_TIMEOUT for the others", c.MySQLDSN, err)
	}

	r = config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": secret, "HGP_RELAY_CONSUMER": "fixed"})
	if c = counter.ConfigFrom(r); c.Relay.Consumer != "fixed" {
		t.Fatalf("HGP_RELAY_CONSUMER: %q", c.Relay.Consumer)
	}
}

// TestBuildChecksRelaySettingsFirst: bad HGP_RELAY_* values are reported
// with the rest of the configuration, before any server is dialled (here
// an unreachable Redis would otherwise be the only complaint).
func TestBuildChecksRelaySettingsFirst(t *testing.T) {
	r := config.FromMap(map[string]string{
		"HGP_IDENTITY_SECRET": secret, "HGP_REDIS_ADDR": "127.0.0.1:1",
		"HGP_RELAY_BATCH": "0", "HGP_RELAY_LINGER": "2s", "HGP_RELAY_CLAIM_IDLE": "soon", "HGP_RELAY_HEARTBEAT_TTL": "1ms",
		"HGP_COUNTER_WORKERS": "0", "HGP_RECONCILE_INTERVAL": "1m",
	})
	comp, err := counter.Build(bg, logging.Discard(), r)
	if err == nil {
		_ = comp.Close()
		t.Fatal("Build succeeded")
	}
	for _, v := range []string{"HGP_RELAY_BATCH:", "HGP_RELAY_LINGER:", "HGP_RELAY_CLAIM_IDLE:", "HGP_RELAY_HEARTBEAT_TTL:", "HGP_COUNTER_WORKERS:",
		"HGP_RECONCILE_INTERVAL: needs HGP_MYSQL_DSN"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
	if strings.Contains(err.Error(), "PING") {
		t.Errorf("Build dialled Redis before reporting the configuration: %v", err)
	}
}
