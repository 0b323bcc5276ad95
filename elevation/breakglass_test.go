package elevation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
)

const bgConfig = `version: 1
teams:
  - {name: engineering, groups: [engineering]}
  - {name: sre, groups: [sre]}
  - {name: dba, groups: [dba]}
  - {name: security, groups: [security]}
resources:
  - {name: orders, kind: postgres, upstream: "127.0.0.1:5432", labels: {env: production}}
breakglass:
  who: {groups: [oncall]}
  scopes: [{resources: [orders], actions: [write, ddl]}]
  min_reason: 10
  reviewers: {groups: [oncall, security]}
  emergency_credential_sha256: 474f4cced7c2f47ca4dcacfb83396e305657f16f72dff11e5c9bfc5d3436a189
policies:
  - {name: no-ddl, tier: critical, match: {actions: [ddl]}, effect: deny}
  - {name: writes, tier: low, match: {actions: [write]}, effect: require_approval, quorum: {required_teams: [sre]}}
`

func TestBreakGlassTiersAndReviews(t *testing.T) {
	cfg, err := configs.Parse("bg.yaml", []byte(bgConfig))
	if err != nil {
		t.Fatal(err)
	}
	store, _ := OpenFileStore(t.TempDir())
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a := NewApprovals(store, func() time.Time { return now })
	ctx := context.Background()
	dave := cfg.Subject("dave", "", []string{"engineering", "oncall"})
	erin := cfg.Subject("erin", "", []string{"engineering"})
	sre := cfg.Subject("bob", "", []string{"sre"})
	dba := cfg.Subject("dan", "", []string{"dba"})
	sec := cfg.Subject("carol", "", []string{"security"})

	req := func(actions ...string) BreakGlassRequest {
		return BreakGlassRequest{Scope: BreakGlassScope{Resources: []string{"orders"}, Actions: actions}, Duration: "30m", Reason: "orders down, INC-9", Incident: "INC-9"}
	}
	if _, err := a.BreakGlass(ctx, cfg, dave, BreakGlassRequest{Scope: BreakGlassScope{Resources: []string{"orders"}, Actions: []string{"admin"}}, Duration: "30m", Reason: "orders down, INC-9", Incident: "INC-9"}); !refusedInOwnWords(err) {
		t.Errorf("a scope beyond the configuration: %v", err)
	}
	if _, err := a.BreakGlass(ctx, cfg, erin, req("write")); !refusedInOwnWords(err) {
		t.Errorf("someone outside oncall: %v", err)
	}
	if _, err := a.BreakGlass(ctx, cfg, dave, BreakGlassRequest{Scope: req("write").Scope, Duration: "5h", Reason: "orders down, INC-9", Incident: "INC-9"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an unlisted duration: %v", err)
	}
	if _, err := a.BreakGlass(ctx, cfg, dave, BreakGlassRequest{Scope: req("write").Scope, Duration: "30m", Reason: "orders down"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no incident: %v", err)
	}

	// Low tier: at once.
	low, err := a.BreakGlass(ctx, cfg, dave, req("write"))
	if err != nil || low.State != StateApproved || low.Artifact.Tier != "low" || !low.NotAfter.Equal(now.Add(30*time.Minute)) {
		t.Fatalf("low tier: %+v %v", low, err)
	}
	// Critical: two approvers from two teams other than the requester's.
	crit, err := a.BreakGlass(ctx, cfg, dave, req("ddl"))
	if err != nil || crit.State != StatePending || crit.Artifact.Tier != "critical" {
		t.Fatalf("critical tier: %+v %v", crit, err)
	}
	if _, err := a.Approve(ctx, crit.ID, dave, ""); !errors.Is(err, ErrNotEligible) {
		t.Errorf("the requester approving: %v", err)
	}
	if _, err := a.Approve(ctx, crit.ID, erin, ""); !errors.Is(err, ErrNotEligible) {
		t.Errorf("an approver from the requester's own team: %v", err)
	}
	if r, _ := a.Approve(ctx, crit.ID, sre, ""); r.State != StatePending {
		t.Errorf("one approver granted a critical break-glass: %s", r.State)
	}
	if r, _ := a.Approve(ctx, crit.ID, dba, ""); r.State != StateApproved {
		t.Errorf("two approvers from two other teams: %s", r.State)
	}
	if bg := a.BreakGlassFor(ctx, "dave", "orders", "ddl", now.Add(time.Minute)); bg == nil || bg.ID != crit.ID {
		t.Errorf("BreakGlassFor ddl: %v", bg)
	}
	if bg := a.BreakGlassFor(ctx, "dave", "orders", "delete", now.Add(time.Minute)); bg != nil {
		t.Errorf("BreakGlassFor outside the scope: %v", bg)
	}

	// The emergency credential: any tier at once, escalated; a wrong one is refused.
	wrong := req("ddl")
	wrong.EmergencyCredential = "guess"
	if _, err := a.BreakGlass(ctx, cfg, dave, wrong); !refusedInOwnWords(err) {
		t.Errorf("a wrong emergency credential: %v", err)
	}
	em := req("ddl")
	em.EmergencyCredential = "sealed-envelope-42"
	e, err := a.BreakGlass(ctx, cfg, dave, em)
	if err != nil || e.State != StateApproved || !e.Artifact.Emergency || !e.Artifact.Escalated || e.ReviewsNeeded != 2 || e.Artifact.Tier != "critical" {
		t.Fatalf("emergency credential on a critical scope: %+v %v", e, err)
	}

	// Reviews: the responder is refused even though oncall may review.
	now = now.Add(time.Hour)
	a.EndExpired(ctx)
	if _, err := a.ReviewBreakGlass(ctx, cfg, low.ID, dave, "justified", ""); !refusedInOwnWords(err) {
		t.Errorf("the responder reviewing: %v", err)
	}
	if _, err := a.ReviewBreakGlass(ctx, cfg, low.ID, sre, "justified", ""); !refusedInOwnWords(err) {
		t.Errorf("a non-reviewer reviewing: %v", err)
	}
	if r, err := a.ReviewBreakGlass(ctx, cfg, low.ID, sec, "justified", "fine"); err != nil || len(r.Reviews) != 1 {
		t.Errorf("carol's review: %+v %v", r, err)
	}
	if _, err := a.ReviewBreakGlass(ctx, cfg, low.ID, cfg.Subject("frank", "", []string{"security"}), "justified", ""); !errors.Is(err, ErrAlreadyDecided) {
		t.Errorf("a review past the reviews needed: %v", err)
	}
	// With no reviewers configured, nobody may review (an empty list names nobody).
	cfg.BreakGlass.Reviewers = policy.Principals{}
	if _, err := a.ReviewBreakGlass(ctx, cfg, low.ID, sec, "justified", ""); !refusedInOwnWords(err) {
		t.Errorf("a review with no reviewers configured: %v", err)
	}
	st, err := a.Stats(ctx, cfg, 4, now)
	if err != nil || st.BreakGlass != 3 || st.ByPolicy["no-ddl"] != 2 || st.BreakGlassPerBlock != 0.75 || st.ReviewedInSLA != 1 {
		t.Errorf("stats: %+v %v", st, err)
	}
}

// refusedInOwnWords reports whether err is a refusal that says why, without calling the
// caller an ineligible approver.
func refusedInOwnWords(err error) bool {
	return errors.Is(err, ErrForbidden) && !errors.Is(err, ErrNotEligible) && !strings.Contains(err.Error(), "not an eligible approver")
}
