package analytics_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/analytics/internal/antest"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
)

// TestKill9MidRun: the analytics binary, killed with SIGKILL while it
// applies 10,000 likes and unlikes and started again, ends with the
// all-time and hour rankings equal to the model: nothing counted twice
// (batches applied but not committed are redelivered), nothing lost.
func TestKill9MidRun(t *testing.T) {
	rdb, prefix := antest.Redis(t)
	brokers := []string{testenv.KafkaBrokers(t)}
	topic, dlq := pipetest.Topic(t, brokers, 3), pipetest.Topic(t, brokers, 1)
	bin := filepath.Join(t.TempDir(), "analytics")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/analytics").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := append(os.Environ(),
		"HGP_ANALYTICS_ADDR=127.0.0.1:0",
		"HGP_REDIS_ADDR="+testenv.RedisAddr(t), "HGP_REDIS_DB="+strconv.Itoa(antest.RedisDB),
		"HGP_ANALYTICS_KEY_PREFIX="+prefix,
		"HGP_KAFKA_BROKERS="+brokers[0], "HGP_KAFKA_TOPIC="+topic, "HGP_KAFKA_DLQ_TOPIC="+dlq,
		"HGP_ANALYTICS_GROUP=hgp-t-an-"+antest.Suffix(), "HGP_KAFKA_SESSION_TIMEOUT=6s",
		"HGP_ANALYTICS_BATCH_MAX=50", "HGP_CONSUL_ADDR=", "HGP_LOG_LEVEL=warn",
	)
	logs := &testenv.SyncBuffer{}
	run := func() *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	now := time.Now()
	evs, m := randomLikes(11, 10000, 200, 500, now)
	pipetest.Produce(t, brokers, topic, evs[:6000])

	store := redisstore.New(logging.Discard(), rdb, redisstore.WithPrefix(prefix), redisstore.WithFreshness(0))
	ctx := context.Background()
	first := run()
	testenv.Eventually(t, 60*time.Second, "analytics applying", func() bool {
		p, err := store.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 100, "")
		return err == nil && len(p.Items) > 50
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	applied, _ := store.Top(ctx, ns, analyticsv1.Window_WINDOW_ALL_TIME, 100, "")
	t.Logf("killed with %d items ranked", len(applied.Items))

	pipetest.Produce(t, brokers, topic, evs[6000:])
	second := run()
	t.Cleanup(func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
		if t.Failed() {
			t.Logf("analytics logs:\n%s", logs.String())
		}
	})
	want := m.want()
	for _, w := range []analyticsv1.Window{analyticsv1.Window_WINDOW_ALL_TIME, analyticsv1.Window_WINDOW_HOUR} {
		testenv.EventuallyNoError(t, 90*time.Second, w.String()+" equals the model", func() error {
			got, err := rankingOf(ctx, store, w)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("%d items, want %d (first %v, want %v)", len(got), len(want), head(got), head(want))
			}
			return nil
		})
	}
}

func rankingOf(ctx context.Context, s *redisstore.Store, w analyticsv1.Window) ([]string, error) {
	var out []string
	token := ""
	for {
		p, err := s.Top(ctx, ns, w, 100, token)
		if err != nil {
			return nil, err
		}
		for _, it := range p.Items {
			out = append(out, fmt.Sprintf("%s=%d", it.Item, it.Score))
		}
		if token = p.Next; token == "" {
			return out, nil
		}
	}
}
