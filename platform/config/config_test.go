package config

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestReaderCollectsErrorsNamingVariables(t *testing.T) {
	r := FromMap(map[string]string{
		"A_INT":  "x",
		"A_DUR":  "5",
		"A_BOOL": "maybe",
		"A_ENUM": "loud",
		"A_OK":   " 42 ",
	})
	if got := r.Int("A_OK", 1, 0, 100); got != 42 {
		t.Fatalf("A_OK = %d, want 42", got)
	}
	r.Int("A_INT", 1, 0, 10)
	r.Duration("A_DUR", time.Second, 0, time.Hour)
	r.Bool("A_BOOL", false)
	r.Enum("A_ENUM", "open", "open", "closed")
	r.Required("A_MISSING")
	err := r.Err()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"A_INT", "A_DUR", "A_BOOL", "A_ENUM", "A_MISSING"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "A_OK") {
		t.Errorf("error %q names a valid variable", err)
	}
}

func TestReaderDefaultsAndRanges(t *testing.T) {
	r := FromMap(map[string]string{"N": "11", "L": "a, ,b,"})
	if got := r.Int("N", 3, 0, 10); got != 3 {
		t.Fatalf("out-of-range value should fall back to default, got %d", got)
	}
	if got := r.List("L", nil); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("List = %q", got)
	}
	if got := r.String("UNSET", "def"); got != "def" {
		t.Fatalf("String default = %q", got)
	}
	if r.Err() == nil || !strings.Contains(r.Err().Error(), "N:") {
		t.Fatalf("want range error naming N, got %v", r.Err())
	}
}

func TestWithDefaultsPrefersEnvironment(t *testing.T) {
	t.Setenv("HGP_CONFIG_TEST_X", "from-env")
	r := WithDefaults(map[string]string{"HGP_CONFIG_TEST_X": "from-map", "HGP_CONFIG_TEST_Y": "y"})
	if got := r.String("HGP_CONFIG_TEST_X", ""); got != "from-env" {
		t.Fatalf("X = %q", got)
	}
	if got := r.String("HGP_CONFIG_TEST_Y", ""); got != "y" {
		t.Fatalf("Y = %q", got)
	}
}

func TestRedisFrom(t *testing.T) {
	r := FromMap(map[string]string{"HGP_REDIS_PASSWORD": "pw", "HGP_REDIS_DB": "3"})
	if got := RedisFrom(r, "127.0.0.1:6379"); got != (Redis{Addr: "127.0.0.1:6379", Password: "pw", DB: 3}) || !got.Enabled() {
		t.Fatalf("RedisFrom = %+v", got)
	}
	if got := RedisFrom(FromMap(nil), ""); got.Enabled() {
		t.Fatalf("no default address: %+v is enabled", got)
	}
	r = FromMap(map[string]string{"HGP_REDIS_ADDR": "redis:6380", "HGP_REDIS_DB": "-1"})
	if got := RedisFrom(r, ""); got.Addr != "redis:6380" || got.DB != 0 {
		t.Fatalf("RedisFrom = %+v", got)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "HGP_REDIS_DB: -1 is outside [0, 65536]") {
		t.Fatalf("want HGP_REDIS_DB range error, got %v", err)
	}
	// a list is a cluster; one address with the flag too
	r = FromMap(map[string]string{"HGP_REDIS_ADDR": " a:1, b:2 ,c:3"})
	if got := RedisFrom(r, ""); !got.Cluster || got.Addr != "a:1,b:2,c:3" || len(got.Addrs()) != 3 || r.Err() != nil {
		t.Fatalf("RedisFrom = %+v, %v", got, r.Err())
	}
	r = FromMap(map[string]string{"HGP_REDIS_ADDR": "cfg:6379", "HGP_REDIS_CLUSTER": "true"})
	if got := RedisFrom(r, ""); !got.Cluster || got.Addr != "cfg:6379" {
		t.Fatalf("RedisFrom = %+v", got)
	}
	r = FromMap(map[string]string{"HGP_REDIS_ADDR": "a:1,b:2", "HGP_REDIS_DB": "3"})
	if _ = RedisFrom(r, ""); r.Err() == nil || !strings.Contains(r.Err().Error(), "HGP_REDIS_DB") || !strings.Contains(r.Err().Error(), "only database 0") {
		t.Fatalf("want a cluster DB error, got %v", r.Err())
	}
	if _, ok := (Redis{Addr: "a:1,b:2", Cluster: true}).Client(redis.UniversalOptions{}).(*redis.ClusterClient); !ok {
		t.Fatal("a cluster's client is not a *redis.ClusterClient")
	}
	if _, ok := (Redis{Addr: "a:1"}).Client(redis.UniversalOptions{}).(*redis.Client); !ok {
		t.Fatal("a single Redis's client is not a *redis.Client")
	}
}

func TestKafkaFrom(t *testing.T) {
	got := KafkaFrom(FromMap(nil))
	if got.Enabled() || got.Topic != "user-actions" || got.DLQTopic != "user-actions.dlq" {
		t.Fatalf("defaults: %+v", got)
	}
	got = KafkaFrom(FromMap(map[string]string{"HGP_KAFKA_BROKERS": "a:9092, b:9092", "HGP_KAFKA_TOPIC": "t"}))
	if !got.Enabled() || len(got.Brokers) != 2 || got.Brokers[1] != "b:9092" || got.Topic != "t" || got.DLQTopic != "t.dlq" {
		t.Fatalf("KafkaFrom = %+v", got)
	}
	if got = KafkaFrom(FromMap(map[string]string{"HGP_KAFKA_DLQ_TOPIC": "dead"})); got.DLQTopic != "dead" {
		t.Fatalf("DLQ override: %+v", got)
	}
}

func TestOverlayConsultsMapFirstWithFreshErrors(t *testing.T) {
	base := FromMap(map[string]string{"A": "1", "B": "x"})
	base.Int("B", 0, 0, 10)
	if base.Err() == nil {
		t.Fatal("base should have recorded an error for B")
	}
	o := base.Overlay(map[string]string{"B": "7"})
	if got := o.Int("A", 0, 0, 10); got != 1 {
		t.Fatalf("A through the overlay = %d, want the base's 1", got)
	}
	if got := o.Int("B", 0, 0, 10); got != 7 {
		t.Fatalf("B through the overlay = %d, want the override 7", got)
	}
	if err := o.Err(); err != nil {
		t.Fatalf("overlay inherited errors: %v", err)
	}
	o.Int("C", 0, 0, 10)
	if bad := base.Overlay(map[string]string{"A": "99"}); bad.Int("A", 0, 0, 10) != 0 || bad.Err() == nil {
		t.Fatal("an out-of-range override must be reported")
	}
}
