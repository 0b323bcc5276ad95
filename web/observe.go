package web

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/audit"
)

// EventMetrics counts the audit log's events for Prometheus as they are committed, so the
// numbers are those of the record: decisions and results by front end (pg, http, kube),
// resource and outcome, how long allowed statements and requests took, how approval waits
// closed, alerts and break-glass events. Register it with the log (audit.Log.AddObserver)
// and give it to the Server, whose /metrics serves it. One per process.
type EventMetrics struct {
	decisions  *prometheus.CounterVec
	results    *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	approvals  *prometheus.CounterVec
	alerts     *prometheus.CounterVec
	breakGlass *prometheus.CounterVec
}

// NewEventMetrics makes the metrics, all at zero.
func NewEventMetrics() *EventMetrics {
	return &EventMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_decisions_total",
			Help: "Statements and requests decided, by front end, resource and decision (allow, deny, require_approval; break-glass bypasses count as allow)."},
			[]string{"front_end", "resource", "decision"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_results_total",
			Help: "Forwarded statements and requests by how they ended upstream (ok, error, skipped)."},
			[]string{"front_end", "resource", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portcullis_upstream_duration_seconds",
			Help:    "From forwarding a statement or request to its answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"front_end"}),
		approvals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_approval_waits_total",
			Help: "Held statements and requests by how their wait closed (approved, denied, expired, abandoned, refused)."},
			[]string{"front_end", "result"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_alert_events_total",
			Help: "Audit events flagged for security, by kind (mismatch: the upstream ran something other than what was decided)."},
			[]string{"alert"}),
		breakGlass: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_breakglass_events_total",
			Help: "Break-glass events by type (breakglass.started, breakglass.emergency, ...)."},
			[]string{"type"}),
	}
}

// Observe implements audit.Observer.
func (m *EventMetrics) Observe(ev *audit.Event) {
	if ev.Alert != "" {
		m.alerts.WithLabelValues(ev.Alert).Inc()
	}
	front, what, ok := strings.Cut(ev.Type, ".")
	if !ok {
		return
	}
	switch {
	case front == "breakglass":
		m.breakGlass.WithLabelValues(ev.Type).Inc()
	case front != "pg" && front != "http" && front != "kube":
	case what == "statement" || what == "request":
		if ev.Decision != "" {
			m.decisions.WithLabelValues(front, ev.Resource, ev.Decision).Inc()
		}
	case what == "result":
		m.results.WithLabelValues(front, ev.Resource, ev.Result).Inc()
		if us, ok := ev.Int("duration_us"); ok && ev.Result == "ok" {
			m.duration.WithLabelValues(front).Observe(float64(us) / 1e6)
		}
	case what == "approval.closed":
		m.approvals.WithLabelValues(front, ev.Result).Inc()
	}
}

// Describe implements prometheus.Collector.
func (m *EventMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *EventMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *EventMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.decisions, m.results, m.duration, m.approvals, m.alerts, m.breakGlass}
}
