package elevation

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
)

// BreakGlassScope is what a break-glass session covers.
type BreakGlassScope struct {
	Resources []string `json:"resources"`
	Actions   []string `json:"actions"`
}

// BreakGlassRequest is an emergency request.
type BreakGlassRequest struct {
	Scope    BreakGlassScope `json:"scope"`
	Duration string          `json:"duration"`
	Reason   string          `json:"reason"`
	Incident string          `json:"incident"`
	// EmergencyCredential, when it matches the configured one, grants at any tier without
	// approvers; the session is marked emergency, escalated and announced.
	EmergencyCredential string `json:"emergency_credential,omitempty"`
}

// Break-glass paths by tier.
const (
	PathImmediate   = "immediate"       // granted at once, reviewed afterwards
	PathOneApprover = "one-approver"    // one other human approves first
	PathTwoTeams    = "two-other-teams" // two approvers from teams other than the requester's
)

// PathFor returns the break-glass path for the highest tier a scope bypasses.
func PathFor(t policy.Tier) string {
	switch t {
	case policy.TierHigh:
		return PathOneApprover
	case policy.TierCritical:
		return PathTwoTeams
	}
	return PathImmediate
}

// BreakGlass opens an emergency session for requester, or queues it for the approval its
// tier needs. Scope and duration must be within what the configuration allows; the reason
// must be long enough and the incident given. A team over its quarterly budget still gets
// it, escalated: its review needs two reviewers.
func (a *Approvals) BreakGlass(ctx context.Context, cfg *configs.Config, requester *policy.Subject, in BreakGlassRequest) (*Request, error) {
	bg := cfg.BreakGlass
	if !bg.Who.Names(requester) {
		return nil, refuse("you may not break glass: breakglass.who does not name you, your groups or your teams")
	}
	if len(in.Scope.Resources) == 0 || len(in.Scope.Actions) == 0 {
		return nil, fmt.Errorf("%w: scope needs resources and actions", ErrInvalid)
	}
	for _, res := range in.Scope.Resources {
		for _, act := range in.Scope.Actions {
			if _, err := policy.ParseClass(act); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			if !slices.ContainsFunc(bg.Scopes, func(g configs.Grant) bool {
				return slices.Contains(g.Resources, res) && slices.Contains(g.Actions, act)
			}) {
				return nil, refuse("break-glass into %s on %s is not allowed: no breakglass.scopes entry covers it", act, res)
			}
		}
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil || !slices.ContainsFunc(bg.Durations, func(x configs.Duration) bool { return x.D() == d }) {
		var allowed []string
		for _, x := range bg.Durations {
			allowed = append(allowed, x.String())
		}
		return nil, fmt.Errorf("%w: duration must be one of %s", ErrInvalid, strings.Join(allowed, ", "))
	}
	in.Reason, in.Incident = strings.TrimSpace(in.Reason), strings.TrimSpace(in.Incident)
	if len(in.Reason) < bg.MinReason {
		return nil, fmt.Errorf("%w: the reason must be at least %d characters", ErrInvalid, bg.MinReason)
	}
	if in.Incident == "" {
		return nil, fmt.Errorf("%w: an incident reference is required", ErrInvalid)
	}

	// The policies the scope would bypass, and the highest tier among them.
	now := a.now().UTC()
	art := Artifact{Class: "breakglass", Duration: d, Reason: in.Reason, Ticket: in.Incident, Requester: requester.User,
		Snapshot: cfg.Engine.Snapshot(), Resource: strings.Join(in.Scope.Resources, ","),
		Grants: []GrantScope{{Resources: in.Scope.Resources, Actions: in.Scope.Actions}}}
	tier := policy.TierLow
	var dec policy.Decision
	for _, res := range in.Scope.Resources {
		for _, act := range in.Scope.Actions {
			c, _ := policy.ParseClass(act)
			cfg.Engine.Evaluate(&policy.Request{Subject: requester, Resource: res, Action: &policy.Action{Class: c, EstimatedRows: -1}, Time: now}, &dec)
			if dec.Effect == policy.Allow {
				continue
			}
			tier = max(tier, dec.Tier)
			for _, r := range dec.Deciding() {
				if !slices.ContainsFunc(art.Rules, func(x RuleRef) bool { return x.Name == r.Name }) {
					art.Rules = append(art.Rules, RuleRef{Name: r.Name, Effect: r.Effect.String(), Tier: r.Tier.String(), Description: r.Description})
				}
			}
		}
	}
	art.Tier = tier.String()
	path := PathFor(tier)
	emergency := false
	if in.EmergencyCredential != "" {
		if !emergencyOK(cfg.BreakGlass.EmergencyCredentialSHA256, in.EmergencyCredential) {
			return nil, refuse("the emergency credential is not valid")
		}
		emergency, path = true, PathImmediate
	}
	switch path {
	case PathOneApprover:
		art.Quorum = &policy.Quorum{MinApprovals: 1, AnyApprover: true, Timeout: 15 * time.Minute}
	case PathTwoTeams:
		var others []string
		for _, t := range cfg.Teams {
			if !requester.InTeam(t.Name) {
				others = append(others, t.Name)
			}
		}
		art.Quorum = &policy.Quorum{MinApprovals: 2, MinDistinctTeams: 2, Approvers: policy.Principals{Teams: others}, Timeout: 15 * time.Minute}
	default:
		art.Quorum = &policy.Quorum{MinApprovals: 0, AnyApprover: true}
	}

	// Budgets: break-glass sessions per team this quarter.
	reviews := 1
	if over, err := a.overBudget(ctx, cfg, requester, now); err != nil {
		return nil, err
	} else if over || emergency {
		art.Escalated, reviews = true, 2
	}
	art.Emergency = emergency

	r := &Request{ID: "bg_" + randomID(), Type: TypeBreakGlass, State: StatePending, Requester: *requester, Artifact: art,
		ArtifactHash: art.Hash(), CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute), ReviewsNeeded: reviews,
		Timeline: []TimelineEntry{{At: now, What: "requested", Who: requester.User, Note: fmt.Sprintf("tier %s: %s", art.Tier, path)}}}
	if path == PathImmediate {
		r.State, r.DecidedAt, r.NotAfter = StateApproved, now, now.Add(d)
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "granted", Note: "at once; reviewed afterwards; until " + r.NotAfter.Format(time.RFC3339)})
	}
	switch {
	case emergency:
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "escalated", Note: "emergency credential used: no approvers, two reviewers needed"})
	case art.Escalated:
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "escalated", Note: "over the team's quarterly budget: two reviewers needed"})
	}
	if err := a.store.Create(ctx, r); err != nil {
		return nil, err
	}
	a.grants.invalidate()
	return r, nil
}

// emergencyOK compares a presented emergency credential with the configured hash in
// constant time.
func emergencyOK(wantHex, got string) bool {
	want, err := hex.DecodeString(wantHex)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(want, sum[:]) == 1
}

// overBudget reports whether one of requester's teams has used its quarterly budget.
func (a *Approvals) overBudget(ctx context.Context, cfg *configs.Config, requester *policy.Subject, now time.Time) (bool, error) {
	if len(cfg.BreakGlass.Budgets) == 0 {
		return false, nil
	}
	all, err := a.store.List(ctx)
	if err != nil {
		return false, err
	}
	q := quarterStart(now)
	for team, budget := range cfg.BreakGlass.Budgets {
		if !requester.InTeam(team) {
			continue
		}
		used := 0
		for _, r := range all {
			if r.Type == TypeBreakGlass && !r.CreatedAt.Before(q) && r.Requester.InTeam(team) {
				used++
			}
		}
		if used >= budget {
			return true, nil
		}
	}
	return false, nil
}

func quarterStart(t time.Time) time.Time {
	m := time.Month((int(t.Month())-1)/3*3 + 1)
	return time.Date(t.Year(), m, 1, 0, 0, 0, 0, time.UTC)
}

// BreakGlassFor returns user's active break-glass session covering class on resource, or
// nil.
func (a *Approvals) BreakGlassFor(ctx context.Context, user, resource, class string, now time.Time) *Request {
	grants, _ := a.Grants(ctx, user, now)
	for _, g := range grants {
		if g.Type == TypeBreakGlass && g.Covers(resource, class) {
			return g
		}
	}
	return nil
}

// Review outcomes.
var reviewOutcomes = []string{"justified", "unjustified", "needs-policy-change"}

// ReviewBreakGlass records a reviewer's verdict on an ended break-glass session. The
// responder may never review it; reviewers are those the configuration names.
func (a *Approvals) ReviewBreakGlass(ctx context.Context, cfg *configs.Config, id string, reviewer *policy.Subject, outcome, notes string) (*Request, error) {
	if !cfg.BreakGlass.Reviewers.Names(reviewer) {
		return nil, refuse("you are not a break-glass reviewer (breakglass.reviewers)")
	}
	if !slices.Contains(reviewOutcomes, outcome) {
		return nil, fmt.Errorf("%w: outcome must be one of %s", ErrInvalid, strings.Join(reviewOutcomes, ", "))
	}
	return a.store.Update(ctx, id, func(r *Request) error {
		switch {
		case r.Type != TypeBreakGlass:
			return ErrNotFound
		case r.Requester.User == reviewer.User:
			return refuse("the responder may not review their own break-glass session")
		case r.State != StateEnded && r.State != StateRevoked:
			return fmt.Errorf("%w: the session has not ended", ErrAlreadyDecided)
		case slices.ContainsFunc(r.Reviews, func(x Review) bool { return x.Reviewer == reviewer.User }):
			return ErrAlreadyReviewed
		case len(r.Reviews) >= max(1, r.ReviewsNeeded):
			return fmt.Errorf("%w: the review is complete", ErrAlreadyDecided)
		}
		now := a.now().UTC()
		r.Reviews = append(r.Reviews, Review{Reviewer: reviewer.User, Outcome: outcome, Notes: notes, At: now})
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "reviewed: " + outcome, Who: reviewer.User, Note: notes})
		return nil
	})
}
