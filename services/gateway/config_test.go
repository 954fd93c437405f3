package gateway_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/services/gateway"
)

func TestReadConfigDefaults(t *testing.T) {
	r := config.FromMap(map[string]string{
		"HGP_GATEWAY_COUNTER_URLS": "http://127.0.0.1:8081, http://127.0.0.1:8082",
		"HGP_IDENTITY_SECRET":      identitySecret,
		"HGP_JWT_HS256_SECRET":     hsSecret,
	})
	c := gateway.ReadConfig(r, true)
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

func TestReadConfigRS256AndOverrides(t *testing.T) {
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
	c := gateway.ReadConfig(r, true)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "0.0.0.0:9090" || len(c.Auth.RS256Keys) != 2 || c.Auth.HS256Secret != nil ||
		c.Auth.Issuer != "idp" || c.Auth.Audience != "api" || c.Auth.Leeway != 5*time.Second ||
		c.MaxBodyBytes != 65536 || c.MaxTimeout != 10*time.Second {
		t.Fatalf("config %+v", c)
	}
}

func TestReadConfigErrorsNameTheVariable(t *testing.T) {
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
	}
	for _, tc := range cases {
		r := config.FromMap(tc.vars)
		gateway.ReadConfig(r, true)
		err := r.Err()
		if err == nil || !strings.Contains(err.Error(), tc.name+":") {
			t.Errorf("%v: error %v does not name %s", tc.vars, err, tc.name)
		}
	}
	// With a balancer supplied in code, the static URLs are optional.
	r := config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": identitySecret, "HGP_JWT_HS256_SECRET": hsSecret})
	gateway.ReadConfig(r, false)
	if err := r.Err(); err != nil {
		t.Fatalf("without static URLs: %v", err)
	}
}
