package counter_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
)

// TestBuildRunsReconciliation: with HGP_MYSQL_DSN and
// HGP_RECONCILE_INTERVAL the component checks Redis against MySQL
// periodically; a check that fails (here every one: the database has no
// counter tables) is logged and does not stop the service, which stops
// cleanly when cancelled.
func TestBuildRunsReconciliation(t *testing.T) {
	realRedis(t)
	dsn, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	dsn.DBName = "information_schema" // answers PING, holds no item_counts
	cfg := configFor(t, "HGP_MYSQL_DSN", dsn.FormatDSN(), "HGP_KAFKA_BROKERS", testenv.KafkaBrokers(t),
		"HGP_KAFKA_TOPIC", "hgp-t-reconcile-unused", "HGP_RECONCILE_INTERVAL", "50ms")
	logs := &testenv.SyncBuffer{}
	logger := logging.NewWriter(logs, "counter", "warn")
	comp, err := counter.Build(bg, logger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- bootstrap.Run(ctx, logger, comp) }()
	testenv.Eventually(t, 60*time.Second, "two failed reconciliations logged", func() bool {
		return strings.Count(logs.String(), "reconciliation failed") >= 2
	})
	select {
	case err := <-done:
		t.Fatalf("the service stopped after a failed reconciliation: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testenv.StopBudget):
		t.Fatal("component did not stop")
	}
}

// TestReconcileCommandChecksItsConfiguration: `counter reconcile` starts
// like the service (a bad HGP_LOG_LEVEL is an error naming it) and needs
// HGP_MYSQL_DSN.
func TestReconcileCommandChecksItsConfiguration(t *testing.T) {
	err := counter.Reconcile(bg, logging.Discard(), config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": secret}))
	if err == nil || !strings.Contains(err.Error(), "HGP_MYSQL_DSN") {
		t.Fatalf("Reconcile without HGP_MYSQL_DSN: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "counter")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/counter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "reconcile")
	cmd.Env = []string{"HGP_LOG_LEVEL=loud", "HGP_IDENTITY_SECRET=" + secret}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("reconcile succeeded:\n%s", out)
	}
	for _, v := range []string{"reconcile failed", "HGP_LOG_LEVEL", "HGP_MYSQL_DSN"} {
		if !strings.Contains(string(out), v) {
			t.Errorf("reconcile's output does not name %s:\n%s", v, out)
		}
	}
}
