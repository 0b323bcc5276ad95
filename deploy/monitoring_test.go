package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestMonitoringNamesRealMetrics: every metric the alert rules and the Grafana dashboard
// query is one Portcullis exports (declared in the web package, where /metrics is served),
// the rules file is a Prometheus rule file with an expression, a severity and a summary on
// each rule, and the dashboard is JSON with a query on each panel.
func TestMonitoringNamesRealMetrics(t *testing.T) {
	var declared strings.Builder
	files, _ := filepath.Glob("../web/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		declared.Write(b)
	}
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(portcullis_[a-z0-9_]+)"|d\("([a-z0-9_]+)"`).FindAllStringSubmatch(declared.String(), -1) {
		if m[1] != "" {
			exported[m[1]] = true
		} else {
			exported["portcullis_"+m[2]] = true
		}
	}
	used := regexp.MustCompile(`portcullis_[a-z0-9_]+`)
	check := func(where, expr string) {
		t.Helper()
		if strings.TrimSpace(expr) == "" {
			t.Errorf("%s: no expression", where)
		}
		for _, name := range used.FindAllString(expr, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !exported[base] {
				t.Errorf("%s queries %s, which Portcullis does not export", where, name)
			}
		}
	}

	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	b, err := os.ReadFile("monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil || len(rules.Groups) == 0 {
		t.Fatalf("alerts.yaml: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			check("alert "+r.Alert, r.Expr)
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: an alert needs a name, a severity and a summary", r)
			}
		}
	}

	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err = os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil || len(dash.Panels) == 0 {
		t.Fatalf("dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			check("panel "+p.Title, q.Expr)
		}
	}
	t.Logf("%d alert rules and %d panels checked against %d exported metrics", n, len(dash.Panels), len(exported))
}
