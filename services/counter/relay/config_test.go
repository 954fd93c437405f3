package relay_test

import (
	"testing"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/counter/relay"
)

func TestConfigOptions(t *testing.T) {
	c := relay.DefaultConfig()
	c.Consumer = "counter-0:8081"
	r := relay.New(logging.Discard(), nil, nil, append(c.Options(), relay.WithRegisterer(nil))...)
	if got := r.ConsumerName(); got != "counter-0:8081" {
		t.Fatalf("ConsumerName = %q", got)
	}
	if r := relay.New(logging.Discard(), nil, nil, append(relay.DefaultConfig().Options(), relay.WithRegisterer(nil))...); r.ConsumerName() == "" {
		t.Fatal("without a consumer name New must pick one")
	}
}
