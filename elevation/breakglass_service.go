package elevation

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/internal/human"
	"github.com/portcullis/portcullis/policy"
)

// BreakGlass opens (or, at high tiers, asks for) a break-glass session for who and audits
// it; if the audit log cannot take it, the session is revoked at once.
func (a *Service) BreakGlass(ctx context.Context, who *policy.Subject, in BreakGlassRequest) (*View, error) {
	req, err := a.Approvals.BreakGlass(ctx, a.Config, who, in)
	if err != nil {
		return nil, err
	}
	ev := &audit.Event{Type: audit.TypeBreakGlassRequested, Actor: who.User, Resource: req.Artifact.Resource, Action: "breakglass", BreakGlass: req.ID,
		Reason: req.Artifact.Reason, Result: req.State, PolicyHash: req.Artifact.Snapshot,
		Details: map[string]any{"incident": req.Artifact.Ticket, "tier": req.Artifact.Tier, "duration": human.Duration(req.Artifact.Duration),
			"scope": in.Scope.Resources, "actions": in.Scope.Actions, "bypasses": ruleNames(req.Artifact.Rules), "escalated": req.Artifact.Escalated}}
	switch {
	case req.Artifact.Emergency:
		ev.Type = audit.TypeBreakGlassEmergency // its own event type: every alarm
	case req.State == StateApproved:
		ev.Type = audit.TypeBreakGlassStarted
	}
	if err := a.record(ctx, ev); err != nil {
		if _, rerr := a.Approvals.Revoke(ctx, req.ID, who, true); rerr != nil && a.Log != nil {
			a.Log.Error("BREAK-GLASS SESSION NOT AUDITED AND NOT ENDED: end it by hand", "breakglass", req.ID, "user", who.User, "err", rerr)
		}
		return nil, err
	}
	return a.view(req, who), nil
}

func ruleNames(rules []RuleRef) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Name
	}
	return out
}

// BreakGlassSessions lists the break-glass requests who may see: their own, or all for
// admins and reviewers.
func (a *Service) BreakGlassSessions(ctx context.Context, who *policy.Subject) ([]*View, error) {
	return a.listType(ctx, who, TypeBreakGlass, a.Config.BreakGlass.Reviewers.Names)
}

// EndBreakGlass ends a break-glass session early: its responder or security.
func (a *Service) EndBreakGlass(ctx context.Context, who *policy.Subject, id string) (*View, error) {
	req, err := a.Approvals.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if req.Type != TypeBreakGlass {
		return nil, ErrNotFound
	}
	if req.Requester.User != who.User && !a.IsAdmin(who) {
		return nil, refuse("only the responder or security may end a break-glass session")
	}
	out, err := a.Approvals.Revoke(ctx, req.ID, who, true)
	if err != nil {
		return nil, err
	}
	// A failure to write it is logged by record; the session is ended either way.
	a.record(ctx, &audit.Event{Type: audit.TypeBreakGlassEnded, Actor: who.User, Subject: out.Requester.User, Resource: out.Artifact.Resource,
		BreakGlass: out.ID, Result: out.State, Reason: "ended early"})
	return a.view(out, who), nil
}

// ReviewView is a break-glass session in the review queue, with everything done under it.
type ReviewView struct {
	*View
	Overdue  bool          `json:"overdue"`
	Complete bool          `json:"complete"`
	Actions  []AuditAction `json:"actions"`
}

// AuditAction is one audit event of a break-glass session, as a reviewer reads it.
type AuditAction struct {
	Seq      uint64    `json:"seq"`
	At       time.Time `json:"at"`
	Type     string    `json:"type"`
	Actor    string    `json:"actor"`
	Resource string    `json:"resource,omitempty"`
	Action   string    `json:"action,omitempty"`
	Decision string    `json:"decision,omitempty"`
	Original any       `json:"original_decision,omitempty"`
	Result   string    `json:"result,omitempty"`
	Session  string    `json:"session,omitempty"`
}

// breakGlassActions reads the audit log's flagged events, by break-glass session.
func (a *Service) breakGlassActions() (map[string][]AuditAction, error) {
	out := map[string][]AuditAction{}
	if a.Config.Audit.Dir == "" {
		return out, nil
	}
	err := audit.Scan(a.Config.Audit.Dir, audit.Filter{BreakGlassOnly: true}, func(ev *audit.Event) error {
		out[ev.BreakGlass] = append(out[ev.BreakGlass], AuditAction{Seq: ev.Seq, At: ev.Time, Type: ev.Type, Actor: ev.Actor, Resource: ev.Resource,
			Action: ev.Action, Decision: ev.Decision, Original: ev.Details["original_decision"], Result: ev.Result, Session: ev.Session})
		return nil
	})
	return out, err
}

// Reviews is the review queue of ended break-glass sessions, for reviewers only.
func (a *Service) Reviews(ctx context.Context, who *policy.Subject) ([]ReviewView, error) {
	if !a.Config.BreakGlass.Reviewers.Names(who) {
		return nil, refuse("you are not a break-glass reviewer (breakglass.reviewers)")
	}
	all, err := a.Approvals.List(ctx)
	if err != nil {
		return nil, err
	}
	actions, err := a.breakGlassActions()
	if err != nil {
		return nil, err
	}
	sla := a.Config.BreakGlass.ReviewSLA.D()
	out := []ReviewView{}
	for _, req := range all {
		if req.Type != TypeBreakGlass || (req.State != StateEnded && req.State != StateRevoked) {
			continue
		}
		complete := len(req.Reviews) >= max(1, req.ReviewsNeeded)
		out = append(out, ReviewView{View: a.view(req, who), Complete: complete, Overdue: !complete && time.Since(req.NotAfter) > sla, Actions: actions[req.ID]})
	}
	return out, nil
}

// Review records who's review of an ended break-glass session and audits it.
func (a *Service) Review(ctx context.Context, who *policy.Subject, id, outcome, notes string) (*View, error) {
	req, err := a.Approvals.ReviewBreakGlass(ctx, a.Config, id, who, outcome, notes)
	if err != nil {
		return nil, err
	}
	a.record(ctx, &audit.Event{Type: audit.TypeBreakGlassReviewed, Actor: who.User, Subject: req.Requester.User, Resource: req.Artifact.Resource,
		BreakGlass: req.ID, Result: outcome, Reason: notes})
	return a.view(req, who), nil
}
