package observability

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// dashboard is the part of Grafana's dashboard JSON the checks read.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *datasource `json:"datasource"`
	GridPos     *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
}

func dashboards(t testing.TB) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "observability", "grafana", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in observability/grafana (%v)", err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// TestDashboardsSchema checks what Grafana and the provisioning need: a
// title and a unique uid per dashboard, a Prometheus datasource variable,
// and per panel a unique id, a type, a title, a description (what the
// panel answers), a grid position, a Prometheus datasource and at least
// one target with a refId (unique in the panel) and an expression.
func TestDashboardsSchema(t *testing.T) {
	uids := map[string]string{}
	want := []string{"overview.json", "write-path.json", "pipeline.json", "rate-limiting.json", "runtime.json", "streams.json"}
	ds := dashboards(t)
	for _, w := range want {
		if _, ok := ds[w]; !ok {
			t.Errorf("dashboard %s is missing", w)
		}
	}
	for file, d := range ds {
		if d.Title == "" || d.UID == "" || len(d.UID) > 40 || d.SchemaVersion < 30 {
			t.Errorf("%s: title %q uid %q schemaVersion %d", file, d.Title, d.UID, d.SchemaVersion)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q also used by %s", file, d.UID, other)
		}
		uids[d.UID] = file
		hasDS := false
		for _, v := range d.Templating.List {
			hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
		}
		if !hasDS {
			t.Errorf("%s: no datasource variable of type prometheus", file)
		}
		if len(d.Panels) == 0 {
			t.Errorf("%s: no panels", file)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			where := file + ": panel " + p.Title
			if p.ID <= 0 || ids[p.ID] {
				t.Errorf("%s: id %d missing or repeated", where, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "" || p.Title == "" || p.Description == "" || p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
				t.Errorf("%s: type %q, description %q, gridPos %v", where, p.Type, p.Description, p.GridPos)
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID == "" {
				t.Errorf("%s: datasource %v", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" || tg.Datasource == nil || tg.Datasource.Type != "prometheus" {
					t.Errorf("%s: target %q: refId missing or repeated, empty expr or no datasource", where, tg.RefID)
				}
				refs[tg.RefID] = true
			}
		}
	}
}

// rule is one rule of the rules file.
type rule struct {
	Record string `yaml:"record"`
	Alert  string `yaml:"alert"`
	Expr   string `yaml:"expr"`
}

func rules(t testing.TB) []rule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "observability", "prometheus", "highgopress.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("rules: %v", err)
	}
	var out []rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

func promtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		require(t, "HGP_TEST_PROMTOOL", "prometheus") // fails under HGP_INTEGRATION=require
		return "promtool"
	}
	return p
}

// TestRulesPromtool runs `promtool check rules` and `promtool test rules`
// (a synthetic-series unit test for every alert); every alert of the file
// must appear in the unit tests.
func TestRulesPromtool(t *testing.T) {
	bin := promtool(t)
	dir := filepath.Join(root(t), "observability", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "highgopress.rules.yml"},
		{"test", "rules", "tests/highgopress.test.yml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tests, err := os.ReadFile(filepath.Join(dir, "tests", "highgopress.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules(t) {
		if r.Alert != "" && !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
			t.Errorf("alert %s has no promtool unit test", r.Alert)
		}
	}
}

// TestChartShipsTheDashboards: the Helm chart's copies
// (charts/highgopress/dashboards, one ConfigMap each) are exactly the
// dashboards of observability/grafana.
func TestChartShipsTheDashboards(t *testing.T) {
	src, err := filepath.Glob(filepath.Join(root(t), "observability", "grafana", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range src {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root(t), "charts", "highgopress", "dashboards", filepath.Base(f)))
		if err != nil || string(got) != string(want) {
			t.Errorf("charts/highgopress/dashboards/%s differs from observability/grafana (copy it): %v", filepath.Base(f), err)
		}
	}
	copies, _ := filepath.Glob(filepath.Join(root(t), "charts", "highgopress", "dashboards", "*.json"))
	if len(copies) != len(src) {
		t.Errorf("the chart ships %d dashboards, observability/grafana has %d", len(copies), len(src))
	}
}
