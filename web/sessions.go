package web

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policy"
)

// sessionView summarizes one proxied session, from the audit log.
type sessionView struct {
	ID string `json:"id"`
	// Kind is the front end: postgres (a session of statements) or http (one exchange).
	Kind       string    `json:"kind"`
	User       string    `json:"user"`
	Resource   string    `json:"resource"`
	ClientAddr any       `json:"client_addr,omitempty"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended,omitzero"`
	Result     string    `json:"result,omitempty"`
	Statements int       `json:"statements"`
}

// canReadAll reports whether the caller may read every session, not only their own.
func (s *Server) canReadAll(r *http.Request) bool { return s.isAdmin(&caller(r).Subject) }

// isAdmin reports whether a subject is one of audit.readers, who read every session and
// see and may revoke every elevation.
func (s *Server) isAdmin(subj *policy.Subject) bool { return s.Config.Audit.Readers.Names(subj) }

// sessions lists the sessions the caller may read, newest first.
func (s *Server) sessions(w http.ResponseWriter, r *http.Request) error {
	out, err := s.listSessions(s.canReadAll(r), caller(r).User)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// listSessions returns the sessions of me, or every session when all, newest first.
func (s *Server) listSessions(all bool, me string) ([]*sessionView, error) {
	byID := map[string]*sessionView{}
	var order []string
	err := audit.Scan(s.Config.Audit.Dir, audit.Filter{}, func(ev *audit.Event) error {
		if ev.Session == "" || (!all && ev.Actor != me) {
			return nil
		}
		v := byID[ev.Session]
		switch {
		case ev.Type == audit.TypePGSessionStart && ev.Result == "ok":
			v = &sessionView{ID: ev.Session, Kind: "postgres", User: ev.Actor, Resource: ev.Resource, ClientAddr: ev.Details["client_addr"], Started: ev.Time}
			byID[ev.Session] = v
			order = append(order, ev.Session)
		case (ev.Type == audit.TypeHTTPRequest || ev.Type == audit.TypeKubeRequest) && v == nil:
			// An HTTP exchange is a session of one request (and, once approved, its run);
			// so is a Kubernetes API request.
			kind := "http"
			if ev.Type == audit.TypeKubeRequest {
				kind = "kubernetes"
			}
			v = &sessionView{ID: ev.Session, Kind: kind, User: ev.Actor, Resource: ev.Resource, ClientAddr: ev.Details["client_addr"], Started: ev.Time, Statements: 1}
			byID[ev.Session] = v
			order = append(order, ev.Session)
		case v == nil:
		case ev.Type == audit.TypePGStatement:
			v.Statements++
		case ev.Type == audit.TypePGSessionEnd, ev.Type == audit.TypeHTTPResult, ev.Type == audit.TypeKubeResult:
			v.Ended, v.Result = ev.Time, ev.Result
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*sessionView, 0, len(order))
	for i := len(order) - 1; i >= 0; i-- {
		out = append(out, byID[order[i]])
	}
	return out, nil
}

// recordingEntry is one step of a session's recording.
type recordingEntry struct {
	At        time.Time      `json:"at"`
	OffsetMS  int64          `json:"offset_ms"`
	Type      string         `json:"type"`
	Statement string         `json:"statement,omitempty"`
	Decision  string         `json:"decision,omitempty"`
	Rules     []string       `json:"rules,omitempty"`
	Result    string         `json:"result,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
	Seq       uint64         `json:"seq"`
}

// recording returns a session's statements, decisions and outcomes in order, with timing.
func (s *Server) recording(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["id"]
	owner, entries, err := s.readRecording(id, s.canReadAll(r), caller(r).User)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"session": id, "user": owner, "recording": entries})
}

// readRecording returns the owner and steps of session id, if me owns it or all is set.
func (s *Server) readRecording(id string, all bool, me string) (string, []recordingEntry, error) {
	var entries []recordingEntry
	var start time.Time
	owner := ""
	err := audit.Scan(s.Config.Audit.Dir, audit.Filter{Session: id}, func(ev *audit.Event) error {
		if start.IsZero() {
			start, owner = ev.Time, ev.Actor
		}
		entries = append(entries, recordingEntry{At: ev.Time, OffsetMS: ev.Time.Sub(start).Milliseconds(), Type: ev.Type, Statement: ev.Action,
			Decision: ev.Decision, Rules: ev.Rules, Result: ev.Result, Reason: ev.Reason, Details: ev.Details, Seq: ev.Seq})
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	if len(entries) == 0 || (!all && owner != me) {
		return "", nil, errStatus(http.StatusNotFound, "no such session")
	}
	return owner, entries, nil
}
