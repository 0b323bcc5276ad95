package pgwire_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// metricValue reads one sample from /metrics text: name{labels} value (labels in the
// exposition's order); 0 when absent.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMetricsFromTheRecord: /metrics counts what the audit log records, as it is
// committed — decisions by front end, resource and decision, results, the upstream time
// of allowed statements, how approval waits closed — and says the log is healthy.
func TestMetricsFromTheRecord(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before := e.metrics(t)
	c := e.connect(t, "alice")
	for range 3 {
		if _, err := c.Exec(ctx, "SELECT count(*) FROM orders"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, "DROP TABLE orders"); pgCode(err) != "42501" {
		t.Fatalf("DROP TABLE: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, "UPDATE orders SET status = 'metered' WHERE id = 2"); done <- err }()
	req := e.pending(t)
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	// Result events are queued: the next write carries them, or the 100 ms flush.
	var after string
	for range 50 {
		after = e.metrics(t)
		if metricValue(t, after, `portcullis_results_total{front_end="pg",resource="orders",result="ok"}`)-
			metricValue(t, before, `portcullis_results_total{front_end="pg",resource="orders",result="ok"}`) >= 4 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for series, want := range map[string]float64{
		`portcullis_decisions_total{decision="allow",front_end="pg",resource="orders"}`:            3,
		`portcullis_decisions_total{decision="deny",front_end="pg",resource="orders"}`:             1,
		`portcullis_decisions_total{decision="require_approval",front_end="pg",resource="orders"}`: 1,
		`portcullis_approval_waits_total{front_end="pg",result="approved"}`:                        1,
		`portcullis_results_total{front_end="pg",resource="orders",result="ok"}`:                   4,
		`portcullis_upstream_duration_seconds_count{front_end="pg"}`:                               4,
	} {
		if got := metricValue(t, after, series) - metricValue(t, before, series); got != want {
			t.Errorf("%s rose by %v, want %v", series, got, want)
		}
	}
	if metricValue(t, after, "portcullis_audit_log_failed") != 0 || !regexp.MustCompile(`(?m)^portcullis_audit_log_failed 0$`).MatchString(after) {
		t.Error("portcullis_audit_log_failed is not 0 on a healthy log")
	}
}
