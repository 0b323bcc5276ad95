package elevation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
)

// Service is what people do with requests, whatever they do it through (the HTTP API in
// web/, the console): it applies who may see and decide what, and audits each change.
type Service struct {
	Approvals *Approvals
	Config    *configs.Config
	Audit     *audit.Log
	// Admin reports whether a subject sees and may revoke every elevation.
	Admin func(*policy.Subject) bool
	Log   *slog.Logger
}

// View is a request as the API shows it to one caller.
type View struct {
	*Request
	// Status is State as people read it: an approved statement's real outcome (executed,
	// failed, never ran, outcome unknown); StatusNote says more (the tag, the error).
	Status     string          `json:"status"`
	StatusNote string          `json:"status_note,omitempty"`
	Progress   policy.Progress `json:"progress"`
	CanApprove bool            `json:"can_approve"`
	WhyNot     string          `json:"why_not,omitempty"`
	// Eligible names who may satisfy each quorum term; Waiting says what a pending
	// request still needs, in words.
	Eligible []EligibleTerm `json:"eligible,omitempty"`
	Waiting  string         `json:"waiting,omitempty"`
}

func (a *Service) view(r *Request, who *policy.Subject) *View {
	v := &View{Request: r, Status: r.Status(), StatusNote: r.StatusNote(), Progress: r.Progress()}
	if err := CanApprove(r, who); err != nil {
		v.WhyNot = err.Error()
	} else {
		v.CanApprove = true
	}
	if q := r.Artifact.Quorum; q != nil && a.Config != nil {
		for _, t := range v.Progress.Terms {
			v.Eligible = append(v.Eligible, a.eligible(r, q, t))
		}
		if r.Pending() {
			v.Waiting = waiting(v.Eligible)
		}
	}
	return v
}

// EligibleTerm names who may satisfy one term of a request's quorum.
type EligibleTerm struct {
	Term policy.Term `json:"term"`
	// Users are the eligible users the configuration knows; Groups the identity-provider
	// groups whose members are eligible too; Anyone is set when anyone (but the requester,
	// unless the policy allows) is.
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Anyone bool     `json:"anyone,omitempty"`
	// Who says it in words: "team sre (bob, erin)".
	Who string `json:"who"`
}

func (a *Service) eligible(r *Request, q *policy.Quorum, t policy.Term) EligibleTerm {
	p, anyone := q.TermApprovers(t)
	e := EligibleTerm{Term: t, Anyone: anyone}
	if anyone {
		e.Who = "anyone but " + r.Requester.User
		if q.RequesterCanApprove {
			e.Who = "anyone"
		}
		return e
	}
	users, groups := a.Config.Members(p)
	for _, u := range users {
		if u != r.Requester.User || q.RequesterCanApprove {
			e.Users = append(e.Users, u)
		}
	}
	e.Groups = groups
	who := describePrincipals(p)
	var names []string
	names = append(names, e.Users...)
	for _, g := range groups {
		names = append(names, "anyone in group "+g)
	}
	if len(names) > 0 {
		who += " (" + strings.Join(names, ", ") + ")"
	} else {
		who += " (nobody the configuration names)"
	}
	e.Who = who
	return e
}

// waiting says what a pending request waits for: "1 approval from team sre (bob, erin)".
// Terms that name the same approvers (a quorum's count and its required team) say it once.
func waiting(terms []EligibleTerm) string {
	var whos []string
	need := map[string]int{}
	for _, e := range terms {
		n := e.Term.Need - e.Term.Have
		if n <= 0 || e.Term.Name == "distinct teams" {
			continue
		}
		who := e.Who
		if e.Term.Policy != "" {
			who += " for " + e.Term.Policy
		}
		if _, ok := need[who]; !ok {
			whos = append(whos, who)
		}
		need[who] = max(need[who], n)
	}
	var parts []string
	for _, who := range whos {
		s := "approvals"
		if need[who] == 1 {
			s = "approval"
		}
		parts = append(parts, fmt.Sprintf("%d %s from %s", need[who], s, who))
	}
	for _, e := range terms {
		if e.Term.Name == "distinct teams" && e.Term.Have < e.Term.Need {
			parts = append(parts, fmt.Sprintf("approvers from %d distinct teams", e.Term.Need))
		}
	}
	return strings.Join(parts, " and ")
}

// Visible reports whether who may see r: its requester, whoever voted on it, admins
// (audit.readers), and those who may decide on it. A break-glass session's quorum can be
// anyone, so it shows its eligible approvers only while it is pending, and otherwise its
// reviewers; other requests show their eligible approvers always.
func (a *Service) Visible(r *Request, who *policy.Subject) bool {
	if r.Requester.User == who.User || a.IsAdmin(who) {
		return true
	}
	for _, v := range r.Votes {
		if v.Approver.User == who.User {
			return true
		}
	}
	eligible := r.Artifact.Quorum != nil && r.Artifact.Quorum.Eligible(&r.Requester, who) == nil
	if r.Type == TypeBreakGlass {
		return eligible && r.Pending() || a.Config != nil && a.Config.BreakGlass.Reviewers.Names(who)
	}
	return eligible
}

// List returns the requests in state (pending when empty, "all" for every state) that who
// may see, newest first.
func (a *Service) List(ctx context.Context, who *policy.Subject, state string) ([]*View, error) {
	if state == "" {
		state = StatePending
	}
	switch state {
	case StatePending, StateApproved, StateDenied, StateExpired, StateCancelled, StateAbandoned, StateExecuted, "all":
	default:
		return nil, errors.Join(ErrInvalid, errors.New("state must be pending, approved, denied, expired or all"))
	}
	all, err := a.Approvals.List(ctx)
	if err != nil {
		return nil, err
	}
	out := []*View{}
	for _, req := range all {
		match := state == "all" || req.State == state || (state == StateApproved && req.State == StateExecuted)
		if match && a.Visible(req, who) {
			out = append(out, a.view(req, who))
		}
	}
	return out, nil
}

// Get returns one request as who sees it; ErrNotFound when who may not see it.
func (a *Service) Get(ctx context.Context, who *policy.Subject, id string) (*View, error) {
	req, err := a.Approvals.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !a.Visible(req, who) {
		return nil, ErrNotFound
	}
	return a.view(req, who), nil
}

// Decide records who's approval (approve) or denial of request id, with a comment, and
// audits the vote once it is stored.
func (a *Service) Decide(ctx context.Context, who *policy.Subject, id string, approve bool, comment string) (*View, error) {
	comment = strings.TrimSpace(comment)
	var req *Request
	var err error
	if approve {
		req, err = a.Approvals.Approve(ctx, id, who, comment)
	} else {
		req, err = a.Approvals.Deny(ctx, id, who, comment)
	}
	if err != nil {
		return nil, err
	}
	what := "approve"
	if !approve {
		what = "deny"
	}
	a.record(ctx, &audit.Event{Type: audit.TypeApprovalVote, Actor: who.User, Subject: req.Requester.User, Resource: req.Artifact.Resource,
		Action: what, Decision: what, Result: req.State, Reason: comment, PolicyHash: req.Artifact.Snapshot,
		Details: map[string]any{"approval": req.ID, "type": req.Type}})
	return a.view(req, who), nil
}

// ErrAudit (503): the change was stored, but its audit event could not be written.
var ErrAudit = errors.New("audit log unavailable")

// record writes an audit event for a change made through the API. The change is stored
// already; a failed write is logged loudly, and the caller told.
func (a *Service) record(ctx context.Context, ev *audit.Event) error {
	if a.Audit == nil {
		return nil
	}
	if err := a.Audit.Append(ctx, ev); err != nil {
		if a.Log != nil {
			a.Log.Error("audit write failed for an API change", "type", ev.Type, "err", err)
		}
		return ErrAudit
	}
	return nil
}

// abandon closes a request whose creation could not be audited; a failure is logged.
func (a *Service) abandon(ctx context.Context, id string) {
	if _, err := a.Approvals.Abandon(ctx, id, "the audit log cannot be written"); err != nil && a.Log != nil {
		a.Log.Error("could not close a request whose creation was not audited; it stays pending until it expires", "approval", id, "err", err)
	}
}

// RequestElevation asks for a time-bound role for who; the request is audited once stored,
// and abandoned if the audit log cannot take it.
func (a *Service) RequestElevation(ctx context.Context, who *policy.Subject, in ElevationRequest) (*View, error) {
	ev := &audit.Event{Type: audit.TypeElevationRequested, Actor: who.User, Action: in.Role, Reason: in.Reason,
		Details: map[string]any{"duration": in.Duration, "ticket": in.Ticket}}
	req, err := a.Approvals.RequestElevation(ctx, a.Config, who, in)
	if err != nil {
		return nil, err
	}
	ev.Resource, ev.Details["approval"] = req.Artifact.Resource, req.ID
	if err := a.record(ctx, ev); err != nil {
		a.abandon(ctx, req.ID)
		return nil, err
	}
	return a.view(req, who), nil
}

// Elevations lists the elevation requests who may see: their own, or all for admins.
func (a *Service) Elevations(ctx context.Context, who *policy.Subject) ([]*View, error) {
	return a.listType(ctx, who, TypeElevation, nil)
}

// listType lists the requests of one type the caller may see: their own, or all for admins
// and for whom also says yes.
func (a *Service) listType(ctx context.Context, who *policy.Subject, typ string, also func(*policy.Subject) bool) ([]*View, error) {
	all, err := a.Approvals.List(ctx)
	if err != nil {
		return nil, err
	}
	seeAll := a.IsAdmin(who) || (also != nil && also(who))
	out := []*View{}
	for _, req := range all {
		if req.Type == typ && (seeAll || req.Requester.User == who.User) {
			out = append(out, a.view(req, who))
		}
	}
	return out, nil
}

// IsAdmin reports whether who sees and may revoke every elevation.
func (a *Service) IsAdmin(who *policy.Subject) bool { return a.Admin != nil && a.Admin(who) }

// Revoke ends an elevation early: its requester, an approver or an admin.
// A break-glass session is ended only through EndBreakGlass, which says who may end it
// and flags the end.
func (a *Service) Revoke(ctx context.Context, who *policy.Subject, id string) (*View, error) {
	cur, err := a.Approvals.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if cur.Type == TypeBreakGlass {
		return nil, fmt.Errorf("%w: %s is a break-glass session; its responder or security ends it with POST /api/v1/breakglass/%s/end", ErrInvalid, id, id)
	}
	req, err := a.Approvals.Revoke(ctx, id, who, a.IsAdmin(who))
	if err != nil {
		return nil, err
	}
	a.record(ctx, &audit.Event{Type: audit.TypeElevationRevoked, Actor: who.User, Subject: req.Requester.User, Resource: req.Artifact.Resource,
		Action: req.Artifact.Role, Result: req.State, Details: map[string]any{"approval": req.ID}})
	return a.view(req, who), nil
}

// Cancel withdraws who's own pending request.
func (a *Service) Cancel(ctx context.Context, who *policy.Subject, id string) (*View, error) {
	req, err := a.Approvals.Cancel(ctx, id, who)
	if err != nil {
		return nil, err
	}
	return a.view(req, who), nil
}
