package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
)

// auditPage is how many events one page of the audit search shows, newest first; the
// export has them all.
const auditPageSize = 50

type auditData struct {
	Q         url.Values
	Rows      []auditRow
	ExportURL string
	// Older is the query of the next page (events before the last shown), "" on the last.
	Older string
	// Added counts the flagged events on this page that the filter's own terms would not
	// select: break-glass and alert events are never filtered out.
	Added    int
	PageSize int
}

// auditRow is one event as the page shows it: Added marks a flagged event shown although
// the filter's terms do not select it.
type auditRow struct {
	*audit.Event
	Added bool
}

// Detail is what the event's row says beside its action: the reason (a denial, an
// error), and a result's command tag.
func (r auditRow) Detail() string {
	d := r.Reason
	if tag, _ := r.Details["tag"].(string); tag != "" {
		if d != "" {
			d += " · "
		}
		d += tag
	}
	return d
}

// auditFilter reads the search form: since/until (RFC 3339, or a date), actor, resource,
// type, decision, and breakglass=1 for break-glass events only.
func auditFilter(q url.Values) (audit.Filter, error) {
	f := audit.Filter{Actor: q.Get("actor"), Resource: q.Get("resource"), Type: q.Get("type"), Decision: q.Get("decision"),
		BreakGlassOnly: q.Get("breakglass") == "1"}
	for _, t := range []struct {
		key string
		to  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(t.key)
		if v == "" {
			continue
		}
		var err error
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
			var tm time.Time
			if tm, err = time.Parse(layout, v); err == nil {
				*t.to = tm
				break
			}
		}
		if err != nil {
			return f, errStatus(http.StatusBadRequest, "%s: want a time such as 2026-11-21T09:00 or 2026-11-21", t.key)
		}
	}
	return f, nil
}

func (s *Server) requireAdmin(c *consoleCtx) error {
	if !s.isAdmin(c.subject()) {
		return errStatus(http.StatusForbidden, "the audit log is for audit.readers")
	}
	return nil
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	if err := s.requireAdmin(c); err != nil {
		return err
	}
	q := r.URL.Query()
	f, err := auditFilter(q)
	if err != nil {
		return err
	}
	before := uint64(0) // the cursor: events older than this sequence number
	if v := q.Get("before"); v != "" {
		if before, err = strconv.ParseUint(v, 10, 64); err != nil {
			return errStatus(http.StatusBadRequest, "before: want an event number")
		}
	}
	export := url.Values{}
	for k, v := range q {
		if k != "before" {
			export[k] = v
		}
	}
	d := &auditData{Q: q, ExportURL: "/audit/export?" + export.Encode(), PageSize: auditPageSize}
	// Newest first: keep the last page of matches before the cursor in a ring.
	ring := make([]*audit.Event, 0, auditPageSize)
	n := 0
	err = audit.Scan(s.Config.Audit.Dir, f, func(ev *audit.Event) error {
		if before != 0 && ev.Seq >= before {
			return nil
		}
		if len(ring) < auditPageSize {
			ring = append(ring, ev)
		} else {
			ring[n%auditPageSize] = ev
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	for i := range ring {
		ev := ring[(n-1-i)%len(ring)] // the i-th newest
		added := ev.Flagged() && !f.BreakGlassOnly && !f.Selects(ev)
		if added {
			d.Added++
		}
		d.Rows = append(d.Rows, auditRow{Event: ev, Added: added})
	}
	if n > auditPageSize {
		older := url.Values{}
		for k, v := range export {
			older[k] = v
		}
		older.Set("before", strconv.FormatUint(d.Rows[len(d.Rows)-1].Seq, 10))
		d.Older = "/audit?" + older.Encode()
	}
	return s.render(w, "audit", s.newPage(c, "Audit log", "audit", d))
}

// auditExport streams the matching events as JSON lines, exactly as written.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	if err := s.requireAdmin(c); err != nil {
		return err
	}
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="portcullis-audit-%s.jsonl"`, s.Now().UTC().Format("20060102T150405Z")))
	w.Header().Set("Cache-Control", "no-store")
	if _, err := audit.Export(s.Config.Audit.Dir, f, w); err != nil {
		// Headers are gone; end the stream short so the download is visibly incomplete.
		s.Log.Error("console audit export failed", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// healthData is the chain verification and the break-glass health numbers.
type healthData struct {
	Chain      *audit.Summary
	ChainError string
	Stats      *elevation.Stats
	Verified   time.Time
}

func (s *Server) healthPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	subj := c.subject()
	if !s.isAdmin(subj) && !s.Config.BreakGlass.Reviewers.Names(subj) {
		return errStatus(http.StatusForbidden, "the health numbers are for security reviewers and audit readers")
	}
	d := &healthData{Verified: s.Now()}
	if sum, err := audit.Verify(s.Config.Audit.Dir); err != nil {
		d.ChainError = err.Error()
	} else {
		d.Chain = sum
	}
	st, _, err := s.stats(r.Context())
	if err != nil {
		return err
	}
	d.Stats = st
	return s.render(w, "health", s.newPage(c, "Health", "health", d))
}

// events streams "change" events (the id of each request changed on this replica or, with
// Redis, any replica) to open console pages, which refresh their live parts.
func (s *Server) events(w http.ResponseWriter, r *http.Request, _ *consoleCtx) error {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	if err := rc.Flush(); err != nil {
		return nil
	}
	changes, stop := s.Approvals.Watch()
	defer stop()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case id := <-changes:
			fmt.Fprintf(w, "event: change\ndata: %s\n\n", id)
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
