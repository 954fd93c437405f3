package consumer_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/durabledb"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/consumer"
)

func TestBuildRejectsBadConfiguration(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want []string
	}{
		"nothing set": {map[string]string{}, []string{"HGP_KAFKA_BROKERS", "HGP_MYSQL_DSN"}},
		"bad values": {map[string]string{
			"HGP_KAFKA_BROKERS": "127.0.0.1:1", "HGP_MYSQL_DSN": "not a dsn",
			"HGP_CONSUMER_BATCH_MAX": "0", "HGP_CONSUMER_BATCH_WAIT": "soon", "HGP_CONSUMER_WORKERS": "x",
		}, []string{"HGP_MYSQL_DSN", "HGP_CONSUMER_BATCH_MAX", "HGP_CONSUMER_BATCH_WAIT", "HGP_CONSUMER_WORKERS"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := consumer.Build(context.Background(), logging.Discard(), config.FromMap(tc.env))
			if err == nil {
				t.Fatal("Build accepted the configuration")
			}
			for _, v := range tc.want {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("error does not name %s: %v", v, err)
				}
			}
		})
	}
}

// TestBuildRunsTheService: the component Build returns migrates, consumes
// and stops cleanly under bootstrap.Run.
func TestBuildRunsTheService(t *testing.T) {
	e := setup(t)
	cfg := config.FromMap(map[string]string{
		"HGP_CONSUMER_ADDR": "127.0.0.1:0",
		"HGP_KAFKA_BROKERS": strings.Join(e.Brokers, ","),
		"HGP_KAFKA_TOPIC":   e.Topic,
		"HGP_KAFKA_GROUP":   e.Group,
		"HGP_MYSQL_DSN":     e.DSN,
	})
	comp, err := consumer.Build(context.Background(), logging.Discard(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc := testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logging.Discard(), comp) })
	e.Produce(t, []*eventsv1.Event{likeEv(eventsv1.Kind_KIND_LIKE, "alice", 1), likeEv(eventsv1.Kind_KIND_LIKE, "bob", 2)})
	e.WaitDrained(t)
	conn, err := consumer.OpenDB(e.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	likers, err := durabledb.New(conn).ListLikers(context.Background(), durabledb.ListLikersParams{Namespace: "article", ItemID: "1"})
	if err != nil || len(likers) != 2 {
		t.Fatalf("likers %v: %v", likers, err)
	}
	if err := svc.Stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestCommandsCheckTheLogLevel: the one-shot command (migrate) starts
// like the service: a bad HGP_LOG_LEVEL is an error naming it, not
// silently "info".
func TestCommandsCheckTheLogLevel(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "consumer")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/consumer").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "migrate")
	cmd.Env = []string{"HGP_LOG_LEVEL=loud"}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("migrate succeeded:\n%s", out)
	}
	for _, v := range []string{"HGP_LOG_LEVEL", "HGP_MYSQL_DSN"} {
		if !strings.Contains(string(out), v) {
			t.Errorf("migrate's error does not name %s:\n%s", v, out)
		}
	}
}
