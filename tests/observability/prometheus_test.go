package observability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
)

type promResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

// query evaluates expr now; it returns the number of series or an error
// naming why Prometheus refused it.
func query(ctx context.Context, prom, expr string) (int, error) {
	var r promResult
	if err := getJSON(ctx, prom, "/api/v1/query", url.Values{"query": {expr}}, &r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return len(r.Data.Result), nil
}

// TestPrometheusEvaluatesEveryPanelAndRule: a real Prometheus (scripts/mw.sh
// prometheus, with this checkout's rules) scrapes a running gateway,
// counter and consumer under a mixed load; every dashboard panel query and
// every recording rule (its expression and its recorded series) must parse
// and return at least one series.
func TestPrometheusEvaluatesEveryPanelAndRule(t *testing.T) {
	prom := require(t, "HGP_TEST_PROMETHEUS_URL", "prometheus")
	targets := require(t, "HGP_TEST_PROMETHEUS_TARGETS", "prometheus")
	ctx := context.Background()
	var cfg struct {
		Data struct {
			YAML string `json:"yaml"`
		} `json:"data"`
	}
	if err := getJSON(ctx, prom, "/api/v1/status/config", nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Data.YAML, targets) || !strings.Contains(cfg.Data.YAML, "highgopress.rules.yml") && !strings.Contains(cfg.Data.YAML, "*.rules.yml") {
		t.Fatalf("Prometheus runs another configuration (restart it: scripts/mw.sh restart prometheus):\n%s", cfg.Data.YAML)
	}

	// A dead counter instance next to the live one drives upstream
	// retries and ejections; an open WatchCounts stream the stream gauges.
	s := startStack(t, nil, withDeadCounter())
	s.watch(t)
	// This run's targets: one file, removed at the end.
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	run := suffix()
	var groups []group
	for job, addr := range s.metrics {
		groups = append(groups, group{Targets: []string{addr}, Labels: map[string]string{"job": job, "hgp_run": run}})
	}
	b, _ := json.Marshal(groups)
	file := filepath.Join(targets, "observability-"+run+".json")
	if err := os.WriteFile(file+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(file) })

	testenv.Eventually(t, 60*time.Second, "Prometheus scraping gateway, counter and consumer", func() bool {
		n, err := query(ctx, prom, fmt.Sprintf(`sum(up{hgp_run=%q})`, run))
		if err != nil || n == 0 {
			return false
		}
		var r promResult
		_ = getJSON(ctx, prom, "/api/v1/query", url.Values{"query": {fmt.Sprintf(`count(up{hgp_run=%q} == 1) == 3`, run)}}, &r)
		return len(r.Data.Result) == 1
	})

	// The rules this checkout ships are the ones loaded.
	var loaded struct {
		Data struct {
			Groups []struct {
				Name string `json:"name"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(ctx, prom, "/api/v1/rules", nil, &loaded); err != nil {
		t.Fatal(err)
	}
	if len(loaded.Data.Groups) < 3 {
		t.Fatalf("Prometheus loaded %d rule groups, want the 3 of observability/prometheus", len(loaded.Data.Groups))
	}

	exprs := map[string]string{} // expression -> where it comes from
	for file, d := range dashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				exprs[tg.Expr] = fmt.Sprintf("%s panel %q target %s", file, p.Title, tg.RefID)
			}
		}
	}
	for _, r := range rules(t) {
		if r.Record != "" {
			exprs[r.Expr] = "recording rule " + r.Record + " (expression)"
			exprs[r.Record] = "recording rule " + r.Record + " (recorded series)"
		}
	}

	// What the load drives must show in this run's series, not only as
	// zeros: the retries and ejection of the dead counter instance, the
	// open stream at the gateway and the counter, the cache's lookups and
	// the consumer group's lag per partition.
	for _, e := range []string{
		`sum(hgp_gateway_upstream_retries_total{service="counter",hgp_run="%s"}) > 0`,
		`sum(hgp_gateway_upstream_ejections_total{service="counter",hgp_run="%s"}) > 0`,
		`sum(hgp_gateway_upstream_attempts_total{service="counter",result="instance_failure",hgp_run="%s"}) > 0`,
		`sum(hgp_gateway_upstream_streams{service="counter",hgp_run="%s"}) >= 1`,
		`sum(hgp_counter_watch_subscriptions{hgp_run="%s"}) >= 1`,
		`sum(hgp_counter_cache_lookups_total{hgp_run="%s"}) > 0`,
		`count(hgp_kafka_consumer_group_lag{hgp_run="%s"}) >= 2`,
	} {
		exprs[fmt.Sprintf(e, run)] = "this run's load"
	}

	// Load in rounds until everything has data (rates need two scrapes,
	// recording rules an evaluation after that), within a deadline.
	deadline := time.Now().Add(90 * time.Second)
	var empty []string
	for round := 0; ; round++ {
		if ok := s.drive(t, 3); ok == 0 {
			t.Fatalf("no call through the gateway succeeded")
		}
		empty = empty[:0]
		for expr, where := range exprs {
			n, err := query(ctx, prom, expr)
			if err != nil {
				t.Fatalf("%s does not evaluate: %v\n%s", where, err, expr)
			}
			if n == 0 {
				empty = append(empty, where+": "+expr)
			}
		}
		if len(empty) == 0 {
			t.Logf("%d queries all returned series after %d load rounds", len(exprs), round+1)
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second) // pacing of the load rounds (the scrape interval is 5 s), not synchronisation
	}
	sort.Strings(empty)
	t.Errorf("%d of %d queries returned no series:\n%s", len(empty), len(exprs), strings.Join(empty, "\n"))
}
