package consumer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/consumer"
)

// TestKill9ConsumerProcess runs the real consumer binary and kills it with
// SIGKILL three times while it works through 40,000 events (small batches,
// so kills land before, during and after MySQL commits); a fourth process
// finishes. MySQL must equal the oracle: nothing lost, nothing twice.
func TestKill9ConsumerProcess(t *testing.T) {
	e := setup(t)
	bin := filepath.Join(t.TempDir(), "consumer")
	build := exec.Command("go", "build", "-o", bin, "./cmd/consumer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := pipetest.NewOracle(21)
	var ops []pipetest.Op
	for len(ops) < 40000 {
		ops = append(ops, o.Generate(10000, 500, 100)...)
	}
	e.Produce(t, pipetest.Events(ops, 1))
	total := int64(len(ops))

	env := append(os.Environ(),
		"HGP_CONSUMER_ADDR=127.0.0.1:0",
		"HGP_KAFKA_BROKERS="+strings.Join(e.Brokers, ","),
		"HGP_KAFKA_TOPIC="+e.Topic,
		"HGP_KAFKA_DLQ_TOPIC="+e.DLQ,
		"HGP_KAFKA_GROUP="+e.Group,
		"HGP_KAFKA_SESSION_TIMEOUT=6s",
		"HGP_MYSQL_DSN="+e.DSN,
		"HGP_CONSUMER_BATCH_MAX=100",
		"HGP_CONSUMER_WORKERS=2",
		"HGP_LOG_LEVEL=error",
	)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = env
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	lag := func() int64 {
		n, err := events.GroupLag(context.Background(), e.Brokers, e.Group, e.Topic)
		if err != nil {
			return total
		}
		return n
	}
	for i := 1; i <= 3; i++ {
		cmd := start()
		target := total - total*int64(i)/5 // kill after 20%, 40%, 60% committed
		pipetest.Eventually(t, 120*time.Second, func() error {
			if l := lag(); l > target {
				return fmt.Errorf("lag %d > %d", l, target)
			}
			return nil
		})
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		t.Logf("killed consumer %d at lag %d of %d", i, lag(), total)
	}
	cmd := start()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	e.WaitDrained(t)
	conn, err := consumer.OpenDB(e.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.conn = conn
	assertState(t, e, o.Want())
}
