package audit

import (
	"path/filepath"
	"time"
)

// Filter selects events for export. Zero fields select everything.
type Filter struct {
	Since, Until time.Time
	Actor        string
	Resource     string
	Type         string
	Decision     string
	Session      string
	// BreakGlassOnly selects only break-glass events.
	BreakGlassOnly bool
}

// Match reports whether ev passes the filter. Actor matches the event's actor or subject.
// Break-glass and alert events cannot be filtered out: they always pass (within the time
// range, when one is given, so that exports by period stay complete and disjoint).
func (f *Filter) Match(ev *Event) bool {
	if ev.Flagged() && !f.BreakGlassOnly {
		return (f.Since.IsZero() || !ev.Time.Before(f.Since)) && (f.Until.IsZero() || ev.Time.Before(f.Until)) && (f.Session == "" || ev.Session == f.Session)
	}
	return f.Selects(ev)
}

// Flagged reports whether ev is a break-glass or alert event, which no filter hides.
func (ev *Event) Flagged() bool { return ev.BreakGlass != "" || ev.Alert != "" }

// Selects reports whether ev passes the filter's own terms, flagged or not. Match is
// Selects with flagged events always let through.
func (f *Filter) Selects(ev *Event) bool {
	switch {
	case f.BreakGlassOnly && ev.BreakGlass == "":
	case !f.Since.IsZero() && ev.Time.Before(f.Since):
	case !f.Until.IsZero() && !ev.Time.Before(f.Until):
	case f.Actor != "" && ev.Actor != f.Actor && ev.Subject != f.Actor:
	case f.Resource != "" && ev.Resource != f.Resource:
	case f.Type != "" && ev.Type != f.Type:
	case f.Decision != "" && ev.Decision != f.Decision:
	case f.Session != "" && ev.Session != f.Session:
	default:
		return true
	}
	return false
}

// Scan calls fn with every event in dir that passes f, in order, stopping at fn's first
// error or an event that fails its own hash check.
func Scan(dir string, f Filter, fn func(*Event) error) error {
	segs, err := segments(dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		err := readSegment(filepath.Join(dir, segmentName(s)), func(line int, ev *Event, err error) error {
			if err != nil {
				return &ChainError{Segment: segmentName(s), Line: line, Reason: err.Error()}
			}
			if f.Match(ev) {
				return fn(ev)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
