package discovery

import (
	"slices"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/config"
)

func TestConfigFromAndRegistration(t *testing.T) {
	r := config.FromMap(map[string]string{
		"HGP_CONSUL_ADDR":           "127.0.0.1:8500",
		"HGP_CONSUL_CHECK_INTERVAL": "250ms",
		"HGP_CONSUL_TAGS":           "run-42, canary",
	})
	c := ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if !c.Enabled() || c.CheckInterval != 250*time.Millisecond || !slices.Equal(c.Tags, []string{"run-42", "canary"}) {
		t.Fatalf("config %+v", c)
	}
	reg, err := c.Registration("counter", "0.0.0.0:8081", "extra")
	if err != nil {
		t.Fatal(err)
	}
	if reg.Address != "127.0.0.1" || reg.Port != 8081 || !slices.Equal(reg.Tags, []string{"run-42", "canary", "extra"}) ||
		reg.HealthCheck.GRPC != "127.0.0.1:8081" || reg.Interval != 250*time.Millisecond {
		t.Fatalf("registration %+v", reg)
	}
	// The config's tags are not aliased by registrations.
	reg.Tags[0] = "changed"
	if c.Tags[0] != "run-42" {
		t.Fatal("registration shares the config's tag slice")
	}

	none := ConfigFrom(config.FromMap(nil))
	if none.Enabled() || len(none.Tags) != 0 {
		t.Fatalf("empty config %+v", none)
	}
	if reg, _ := none.Registration("counter", "127.0.0.1:1"); len(reg.Tags) != 0 {
		t.Fatalf("tags %v", reg.Tags)
	}
}
