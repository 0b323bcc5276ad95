package web

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/human"
)

// inboxData is the approvals inbox: one queue of statement approvals, elevation requests
// and break-glass sessions waiting for approvers, newest first.
type inboxData struct {
	Items                            []*elevation.View
	Type, Resource, State, Requester string
	Resources, Requesters            []string
}

func (s *Server) inbox(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	q := r.URL.Query()
	d := &inboxData{Type: q.Get("type"), Resource: q.Get("resource"), State: q.Get("state"), Requester: q.Get("requester")}
	if d.State == "" {
		d.State = elevation.StatePending
	}
	views, err := s.svc.List(r.Context(), c.subject(), d.State)
	if err != nil {
		return err
	}
	for _, v := range views { // newest first
		if !slices.Contains(d.Requesters, v.Requester.User) {
			d.Requesters = append(d.Requesters, v.Requester.User)
		}
		if (d.Type == "" || v.Type == d.Type) && (d.Resource == "" || v.Artifact.Resource == d.Resource) &&
			(d.Requester == "" || v.Requester.User == d.Requester) {
			d.Items = append(d.Items, v)
		}
	}
	for _, res := range s.Config.Resources {
		d.Resources = append(d.Resources, res.Name)
	}
	slices.Sort(d.Requesters)
	return s.render(w, "inbox", s.newPage(c, "Approvals", "inbox", d))
}

// requestData is one request's page.
type requestData struct {
	V       *elevation.View
	Labels  map[string]string
	History []*elevation.Request
	// BreakGlass90d counts the requester's break-glass sessions in the last 90 days.
	BreakGlass90d int
	Mine          bool
	Comment       string
}

func (s *Server) requestData(r *http.Request, c *consoleCtx) (*requestData, error) {
	v, err := s.svc.Get(r.Context(), c.subject(), mux.Vars(r)["id"])
	if err != nil {
		return nil, err
	}
	d := &requestData{V: v, Mine: v.Requester.User == c.me.User}
	for _, res := range s.Config.Resources {
		if res.Name == v.Artifact.Resource {
			d.Labels = res.Labels
		}
	}
	all, err := s.Approvals.List(r.Context())
	if err != nil {
		return nil, err
	}
	since := s.Now().Add(-90 * 24 * time.Hour)
	for _, o := range all { // newest first
		if o.Requester.User != v.Requester.User || o.ID == v.ID || !s.svc.Visible(o, c.subject()) {
			continue
		}
		if o.Type == elevation.TypeBreakGlass && o.CreatedAt.After(since) {
			d.BreakGlass90d++
		}
		if len(d.History) < 10 {
			d.History = append(d.History, o)
		}
	}
	return d, nil
}

func (s *Server) requestPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	d, err := s.requestData(r, c)
	if err != nil {
		return err
	}
	return s.render(w, "request", s.newPage(c, "Request "+d.V.ID, "inbox", d))
}

// decideForm records an approval or a denial, then shows the request again; a refused
// vote shows the request with the reason.
func (s *Server) decideForm(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	id, f := mux.Vars(r)["id"], r.PostForm
	var approve bool
	switch f.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		return errStatus(http.StatusBadRequest, "decision must be approve or deny")
	}
	if _, err := s.svc.Decide(r.Context(), c.subject(), id, approve, f.Get("comment")); err != nil {
		return s.requestWithError(w, r, c, err, f.Get("comment"))
	}
	http.Redirect(w, r, "/requests/"+id, http.StatusSeeOther)
	return nil
}

func (s *Server) requestWithError(w http.ResponseWriter, r *http.Request, c *consoleCtx, cause error, comment string) error {
	d, err := s.requestData(r, c)
	if err != nil {
		return err
	}
	d.Comment = comment
	p := s.newPage(c, "Request "+d.V.ID, "inbox", d)
	p.Status, p.Error = consoleStatus(cause)
	return s.render(w, "request", p)
}

func (s *Server) cancelForm(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	id := mux.Vars(r)["id"]
	if _, err := s.svc.Cancel(r.Context(), c.subject(), id); err != nil {
		return s.requestWithError(w, r, c, err, "")
	}
	http.Redirect(w, r, "/requests/"+id, http.StatusSeeOther)
	return nil
}

// elevateData is the elevation request form.
type elevateData struct {
	Roles []configs.Role
	Form  elevation.ElevationRequest
}

func (s *Server) elevatePage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	d := &elevateData{Roles: s.Config.Roles}
	p := s.newPage(c, "Request elevation", "elevate", d)
	if r.Method == http.MethodPost {
		f := r.PostForm
		d.Form = elevation.ElevationRequest{Role: f.Get("role"), Duration: f.Get("duration"), Reason: f.Get("reason"), Ticket: f.Get("ticket")}
		v, err := s.svc.RequestElevation(r.Context(), c.subject(), d.Form)
		if err == nil {
			http.Redirect(w, r, "/requests/"+v.ID, http.StatusSeeOther)
			return nil
		}
		p.Status, p.Error = consoleStatus(err)
	}
	return s.render(w, "elevate", p)
}

// breakGlassData is the break-glass form: only the resources and actions the
// configuration lets anyone break into, and only the listed durations.
type breakGlassData struct {
	Resources, Actions []string
	Durations          []string
	MinReason          int
	Form               elevation.BreakGlassRequest
}

func (s *Server) breakGlassPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	bg := &s.Config.BreakGlass
	if !bg.Who.Names(c.subject()) {
		return errStatus(http.StatusForbidden, "you may not break glass: breakglass.who does not name you or your teams")
	}
	d := &breakGlassData{MinReason: bg.MinReason}
	for _, sc := range bg.Scopes {
		for _, res := range sc.Resources {
			if !slices.Contains(d.Resources, res) {
				d.Resources = append(d.Resources, res)
			}
		}
		for _, a := range sc.Actions {
			if !slices.Contains(d.Actions, a) {
				d.Actions = append(d.Actions, a)
			}
		}
	}
	for _, du := range bg.Durations {
		d.Durations = append(d.Durations, human.Duration(du.D()))
	}
	p := s.newPage(c, "Break glass", "breakglass", d)
	if r.Method == http.MethodPost {
		f := r.PostForm
		d.Form = elevation.BreakGlassRequest{Scope: elevation.BreakGlassScope{Resources: f["resource"], Actions: f["action"]},
			Duration: f.Get("duration"), Reason: f.Get("reason"), Incident: f.Get("incident"), EmergencyCredential: f.Get("emergency_credential")}
		v, err := s.svc.BreakGlass(r.Context(), c.subject(), d.Form)
		if err == nil {
			to := "/active"
			if v.State == elevation.StatePending {
				to = "/requests/" + v.ID
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return nil
		}
		d.Form.EmergencyCredential = "" // never echoed back
		p.Status, p.Error = consoleStatus(err)
	}
	return s.render(w, "breakglass", p)
}

// activeData lists the elevations and break-glass sessions in force.
type activeData struct {
	Grants []*elevation.View
}

func (s *Server) activePage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	els, err := s.svc.Elevations(r.Context(), c.subject())
	if err != nil {
		return err
	}
	bgs, err := s.svc.BreakGlassSessions(r.Context(), c.subject())
	if err != nil {
		return err
	}
	d := &activeData{}
	now := s.Now()
	for _, v := range append(bgs, els...) {
		if v.ActiveGrant(now) {
			d.Grants = append(d.Grants, v)
		}
	}
	slices.SortFunc(d.Grants, func(a, b *elevation.View) int { return a.NotAfter.Compare(b.NotAfter) })
	return s.render(w, "active", s.newPage(c, "Active access", "active", d))
}

func (s *Server) endForm(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	id := mux.Vars(r)["id"]
	req, err := s.Approvals.Get(r.Context(), id) // who may end it is the service's to say
	if err != nil {
		return err
	}
	if req.Type == elevation.TypeBreakGlass {
		_, err = s.svc.EndBreakGlass(r.Context(), c.subject(), id)
	} else {
		_, err = s.svc.Revoke(r.Context(), c.subject(), id)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/active", http.StatusSeeOther)
	return nil
}

// reviewsData is the break-glass review queue.
type reviewsData struct {
	Open, Done []elevation.ReviewView
}

func (s *Server) reviewsPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	all, err := s.svc.Reviews(r.Context(), c.subject())
	if err != nil {
		return err
	}
	d := &reviewsData{}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Complete {
			d.Done = append(d.Done, all[i])
		} else {
			d.Open = append(d.Open, all[i])
		}
	}
	return s.render(w, "reviews", s.newPage(c, "Break-glass reviews", "reviews", d))
}

func (s *Server) reviewForm(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	if _, err := s.svc.Review(r.Context(), c.subject(), mux.Vars(r)["id"], r.PostForm.Get("outcome"), strings.TrimSpace(r.PostForm.Get("notes"))); err != nil {
		return err
	}
	http.Redirect(w, r, "/reviews", http.StatusSeeOther)
	return nil
}

func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	list, err := s.listSessions(s.isAdmin(c.subject()), c.me.User)
	if err != nil {
		return err
	}
	return s.render(w, "sessions", s.newPage(c, "Sessions", "sessions", list))
}

// replayData is a session recording, step by step.
type replayData struct {
	ID, User string
	Steps    []recordingEntry
	Duration int64
	// Terminal is set when the session has a terminal recording (an exec or attach),
	// played by the console's terminal player.
	Terminal bool
}

func (s *Server) replayPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	id := mux.Vars(r)["id"]
	owner, steps, err := s.readRecording(id, s.isAdmin(c.subject()), c.me.User)
	if err != nil {
		return err
	}
	d := &replayData{ID: id, User: owner, Steps: steps, Terminal: slices.ContainsFunc(steps, func(e recordingEntry) bool { return e.Type == audit.TypeKubeStream })}
	if len(steps) > 0 {
		d.Duration = steps[len(steps)-1].OffsetMS
	}
	if d.Terminal {
		w.Header().Set("Content-Security-Policy", terminalCSP)
	}
	return s.render(w, "replay", s.newPage(c, "Session "+id, "sessions", d))
}
