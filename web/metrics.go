package web

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
)

// auditCounts counts, from the audit log, the statements policy denied or held for
// approval (break-glass bypasses are allows and do not count), and the alerts by kind.
func (s *Server) auditCounts() (blocks int, alerts map[string]int, err error) {
	alerts = map[string]int{}
	err = audit.Scan(s.Config.Audit.Dir, audit.Filter{}, func(ev *audit.Event) error {
		if ev.Type == audit.TypePGStatement && (ev.Decision == "deny" || ev.Decision == "require_approval") {
			blocks++
		}
		if ev.Alert != "" {
			alerts[ev.Alert]++
		}
		return nil
	})
	return blocks, alerts, err
}

func (s *Server) stats(ctx context.Context) (*elevation.Stats, map[string]int, error) {
	blocks, alerts, err := s.auditCounts()
	if err != nil {
		return nil, nil, err
	}
	st, err := s.Approvals.Stats(ctx, s.Config, blocks, s.Now())
	return st, alerts, err
}

// breakGlassStats serves GET /api/v1/breakglass/stats to reviewers and audit readers.
func (s *Server) breakGlassStats(w http.ResponseWriter, r *http.Request) error {
	who := &caller(r).Subject
	if !s.isAdmin(who) && !s.Config.BreakGlass.Reviewers.Names(who) {
		return errStatus(http.StatusForbidden, "the break-glass numbers are for security reviewers")
	}
	st, _, err := s.stats(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// collector exposes Stats to Prometheus, computed once per scrape.
type collector struct {
	s     *Server
	descs map[string]*prometheus.Desc
}

func newCollector(s *Server) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("portcullis_"+name, help, labels, nil)
	}
	return &collector{s: s, descs: map[string]*prometheus.Desc{
		"bg":       d("breakglass_sessions", "Break-glass sessions, by the requester's team.", "team"),
		"bgpolicy": d("breakglass_bypassed_policy", "Break-glass sessions, by policy bypassed.", "policy"),
		"blocks":   d("policy_blocks", "Statements denied or held for approval by policy."),
		"ratio":    d("breakglass_to_blocks_ratio", "Break-glass sessions per policy block."),
		"decided":  d("approvals_decided", "Approval requests decided by humans.", "decision"),
		"latency":  d("approval_decision_seconds", "Time from request to decision.", "quantile"),
		"insla":    d("breakglass_reviewed_within_sla_ratio", "Share of ended break-glass sessions reviewed within the SLA."),
		"overdue":  d("breakglass_reviews_overdue", "Ended break-glass sessions past the review SLA without a complete review."),
		"alerts":   d("alerts", "Audit events flagged for security, by kind (mismatch: PostgreSQL ran something other than what was decided).", "alert"),
	}}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, alerts, err := c.s.stats(ctx)
	if err != nil {
		c.s.Log.Error("metrics", "err", err)
		return
	}
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	for team, n := range st.ByTeam {
		g("bg", float64(n), team)
	}
	for p, n := range st.ByPolicy {
		g("bgpolicy", float64(n), p)
	}
	g("blocks", float64(st.PolicyBlocks))
	g("ratio", st.BreakGlassPerBlock)
	g("decided", float64(st.Approved), "approved")
	g("decided", float64(st.Denied), "denied")
	g("latency", st.DecisionP50, "0.5")
	g("latency", st.DecisionP90, "0.9")
	g("insla", st.ReviewedInSLAShare)
	g("overdue", float64(st.Overdue))
	g("alerts", float64(alerts["mismatch"]), "mismatch")
	for kind, n := range alerts {
		if kind != "mismatch" {
			g("alerts", float64(n), kind)
		}
	}
}

func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	// The process's own health: goroutines, heap, CPU, open files, resident memory.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(newCollector(s))
	if s.Metrics != nil {
		reg.MustRegister(s.Metrics)
	}
	if s.Audit != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portcullis_audit_log_failed",
			Help: "1 when the audit log refuses writes after a failed write or fsync (every audited action is refused), else 0."},
			func() float64 {
				if s.Audit.Err() != nil {
					return 1
				}
				return 0
			}))
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
