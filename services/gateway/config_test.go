package gateway_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

func TestConfigFromDefaults(t *testing.T) {
	r := config.FromMap(map[string]string{
		"HGP_GATEWAY_COUNTER_URLS": "http://127.0.0.1:8081, http://127.0.0.1:8082",
		"HGP_IDENTITY_SECRET":      identitySecret,
		"HGP_JWT_HS256_SECRET":     hsSecret,
	})
	c := gateway.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || len(c.CounterURLs) != 2 || c.CounterURLs[1].Host != "127.0.0.1:8082" ||
		c.MaxBodyBytes != 1<<20 || c.MaxTimeout != 30*time.Second ||
		c.Auth.Issuer != "highgopress" || c.Auth.Audience != "highgopress-api" || c.Auth.Leeway != 30*time.Second ||
		string(c.Auth.HS256Secret) != hsSecret || len(c.Auth.RS256Keys) != 0 || string(c.IdentitySecret) != identitySecret {
		t.Fatalf("config %+v", c)
	}
}

func TestConfigFromRS256AndOverrides(t *testing.T) {
	der, err := x509.MarshalPKIXPublicKey(&rsaKeys(t).trusted.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := config.FromMap(map[string]string{
		"HGP_GATEWAY_ADDR":           "0.0.0.0:9090",
		"HGP_GATEWAY_COUNTER_URLS":   "http://counter:8081",
		"HGP_IDENTITY_SECRET":        identitySecret,
		"HGP_JWT_RS256_PUBLIC_KEYS":  path + "," + path,
		"HGP_JWT_ISSUER":             "idp",
		"HGP_JWT_AUDIENCE":           "api",
		"HGP_JWT_LEEWAY":             "5s",
		"HGP_GATEWAY_MAX_BODY_BYTES": "65536",
		"HGP_GATEWAY_MAX_TIMEOUT":    "10s",
	})
	c := gateway.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "0.0.0.0:9090" || len(c.Auth.RS256Keys) != 2 || c.Auth.HS256Secret != nil ||
		c.Auth.Issuer != "idp" || c.Auth.Audience != "api" || c.Auth.Leeway != 5*time.Second ||
		c.MaxBodyBytes != 65536 || c.MaxTimeout != 10*time.Second {
		t.Fatalf("config %+v", c)
	}
}

func TestConfigFromErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		vars map[string]string
		name string
	}{
		{map[string]string{}, "HGP_GATEWAY_COUNTER_URLS"},
		{map[string]string{}, "HGP_IDENTITY_SECRET"},
		{map[string]string{}, "HGP_JWT_HS256_SECRET"},
		{map[string]string{"HGP_GATEWAY_COUNTER_URLS": "ftp://x:1"}, "HGP_GATEWAY_COUNTER_URLS"},
		{map[string]string{"HGP_GATEWAY_COUNTER_URLS": "http://x"}, "HGP_GATEWAY_COUNTER_URLS"},
		{map[string]string{"HGP_IDENTITY_SECRET": "short"}, "HGP_IDENTITY_SECRET"},
		{map[string]string{"HGP_JWT_HS256_SECRET": "short"}, "HGP_JWT_HS256_SECRET"},
		{map[string]string{"HGP_JWT_RS256_PUBLIC_KEYS": "/nonexistent.pem"}, "HGP_JWT_RS256_PUBLIC_KEYS"},
		{map[string]string{"HGP_JWT_LEEWAY": "1h"}, "HGP_JWT_LEEWAY"},
		{map[string]string{"HGP_GATEWAY_MAX_BODY_BYTES": "10"}, "HGP_GATEWAY_MAX_BODY_BYTES"},
		{map[string]string{"HGP_GATEWAY_MAX_BODY_BYTES": "lots"}, "HGP_GATEWAY_MAX_BODY_BYTES"},
		{map[string]string{"HGP_GATEWAY_MAX_TIMEOUT": "1ms"}, "HGP_GATEWAY_MAX_TIMEOUT"},
		{map[string]string{"HGP_GATEWAY_READ_HEADER_TIMEOUT": "1ms"}, "HGP_GATEWAY_READ_HEADER_TIMEOUT"},
		{map[string]string{"HGP_MAX_MESSAGE_BYTES": "1"}, "HGP_MAX_MESSAGE_BYTES"},
		{map[string]string{"HGP_CONSUL_CHECK_INTERVAL": "1ns"}, "HGP_CONSUL_CHECK_INTERVAL"},
		{map[string]string{"HGP_REDIS_DB": "-1"}, "HGP_REDIS_DB"},
		{map[string]string{"HGP_RATE_ENABLED": "maybe"}, "HGP_RATE_ENABLED"},
		{map[string]string{"HGP_REDIS_ADDR": "127.0.0.1:6379", "HGP_RATE_WRITE_USER": "lots"}, "HGP_RATE_WRITE_USER"},
		{map[string]string{"HGP_RATE_ENABLED": "true", "HGP_RATE_REDIS_DOWN": "sideways"}, "HGP_RATE_REDIS_DOWN"},
		{map[string]string{"HGP_RATE_ENABLED": "true", "HGP_RATE_TRUSTED_PROXIES": "not-an-ip"}, "HGP_RATE_TRUSTED_PROXIES"},
		{map[string]string{"HGP_APISTATS_FLUSH_INTERVAL": "1ms"}, "HGP_APISTATS_FLUSH_INTERVAL"},
	}
	for _, tc := range cases {
		r := config.FromMap(tc.vars)
		gateway.ConfigFrom(r)
		err := r.Err()
		if err == nil || !strings.Contains(err.Error(), tc.name+":") {
			t.Errorf("%v: error %v does not name %s", tc.vars, err, tc.name)
		}
	}
	// With a balancer supplied in code, the static URLs are optional.
	r := config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": identitySecret, "HGP_JWT_HS256_SECRET": hsSecret, "HGP_GATEWAY_ADDR": "127.0.0.1:0"})
	comp, err := gateway.BuildWith(gateway.WithBalancer(noBackends{}))(context.Background(), logging.Discard(), r)
	if err != nil {
		t.Fatalf("without static URLs: %v", err)
	}
	if err := comp.Close(); err != nil {
		t.Fatal(err)
	}
}

// noBackends is a balancer that knows no instance.
type noBackends struct{}

func (noBackends) Pick(context.Context, string) (proxy.Backend, error) {
	return proxy.Backend{}, errors.New("no instance")
}

// TestConfigFromDiscoveryRateStats: Consul makes the static URLs optional;
// rate limiting is on by default exactly when Redis is configured; API
// statistics go to Kafka when brokers are set.
func TestConfigFromDiscoveryRateStats(t *testing.T) {
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"HGP_IDENTITY_SECRET": identitySecret, "HGP_JWT_HS256_SECRET": hsSecret}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	r := config.FromMap(base(map[string]string{
		"HGP_CONSUL_ADDR":                 "127.0.0.1:8500",
		"HGP_GATEWAY_CONSUL_TAG":          "blue",
		"HGP_REDIS_ADDR":                  "127.0.0.1:6379",
		"HGP_REDIS_DB":                    "3",
		"HGP_RATE_WRITE_USER":             "5-M",
		"HGP_RATE_KEY_PREFIX":             "hgp:rl:staging",
		"HGP_GATEWAY_READ_HEADER_TIMEOUT": "2s",
		"HGP_MAX_MESSAGE_BYTES":           "65536",
		"HGP_KAFKA_BROKERS":               "127.0.0.1:9092, 127.0.0.1:9093",
		"HGP_APISTATS_FLUSH_INTERVAL":     "1s",
	}))
	c := gateway.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatalf("with consul and no static URLs: %v", err)
	}
	if !c.Consul.Enabled() || c.ConsulTag != "blue" || len(c.CounterURLs) != 0 ||
		!c.RateLimit || c.Rate.WriteUser != "5-M" || c.Rate.ReadUser != "200-S" || c.RateKeyPrefix != "hgp:rl:staging" ||
		c.Redis.Addr != "127.0.0.1:6379" || c.Redis.DB != 3 ||
		c.ReadHeaderTimeout != 2*time.Second || c.MaxMessageBytes != 65536 ||
		len(c.Kafka.Brokers) != 2 || c.Kafka.Topic != "user-actions" || c.APIStats.FlushInterval != time.Second {
		t.Fatalf("config %+v", c)
	}

	r = config.FromMap(base(map[string]string{"HGP_GATEWAY_COUNTER_URLS": "http://127.0.0.1:8081"}))
	c = gateway.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.RateLimit || c.Consul.Enabled() || c.ReadHeaderTimeout != gateway.DefaultReadHeaderTimeout ||
		c.MaxMessageBytes != gateway.DefaultMaxMessageBytes || c.APIStats.FlushInterval != 10*time.Second || len(c.Kafka.Brokers) != 0 {
		t.Fatalf("defaults without redis or consul: %+v", c)
	}

	r = config.FromMap(base(map[string]string{"HGP_GATEWAY_COUNTER_URLS": "http://127.0.0.1:8081",
		"HGP_REDIS_ADDR": "127.0.0.1:6379", "HGP_RATE_ENABLED": "false"}))
	if c = gateway.ConfigFrom(r); r.Err() != nil || c.RateLimit {
		t.Fatalf("HGP_RATE_ENABLED=false: %+v, %v", c, r.Err())
	}
	r = config.FromMap(base(map[string]string{"HGP_GATEWAY_COUNTER_URLS": "http://127.0.0.1:8081", "HGP_RATE_ENABLED": "true"}))
	if c = gateway.ConfigFrom(r); r.Err() != nil || !c.RateLimit || c.Redis.Addr != "" {
		t.Fatalf("HGP_RATE_ENABLED=true without redis (in-process budgets): %+v, %v", c, r.Err())
	}
}
