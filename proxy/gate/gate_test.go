package gate

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
)

const config = `version: 1
identity:
  static_tokens:
    - {subject: alice, groups: [engineering], token_sha256: 0000000000000000000000000000000000000000000000000000000000000001}
    - {subject: bob, groups: [sre], token_sha256: 0000000000000000000000000000000000000000000000000000000000000002}
    - {subject: dave, groups: [oncall], token_sha256: 0000000000000000000000000000000000000000000000000000000000000003}
teams:
  - {name: engineering, groups: [engineering]}
  - {name: sre, groups: [sre]}
resources:
  - {name: orders, kind: postgres, upstream: 127.0.0.1:5432, credentials: {static: {username: u, password: p}}}
breakglass:
  who: {groups: [oncall]}
  scopes: [{resources: [orders], actions: [write]}]
  durations: [30m]
  min_reason: 5
  reviewers: {teams: [sre]}
roles:
  - name: orders-writer
    grants: [{resources: [orders], actions: [write]}]
    max_duration: 1h
    quorum: {required_teams: [sre]}
policies:
  - name: writes
    match: {resources: {names: [orders]}, actions: [write], except: {roles: [orders-writer]}}
    effect: require_approval
    quorum: {required_teams: [sre]}
  - name: writers
    match: {resources: {names: [orders]}, actions: [write], principals: {roles: [orders-writer]}}
    effect: allow
`

// TestDecide: the policies alone; with a grant's role; with break-glass, which allows
// what the policies hold and says so; and without an approvals service.
func TestDecide(t *testing.T) {
	cfg, err := configs.Parse("gate.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	store, err := elevation.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := elevation.NewApprovals(store, nil)
	g := &Gate{Config: cfg, Approvals: a}
	who := func(name string) *policy.Subject { s, _ := cfg.StaticSubject(name); return s }
	write := &policy.Action{Class: policy.ClassWrite, Kind: "UPDATE", EstimatedRows: -1}
	decide := func(user string) (Verdict, policy.Decision) {
		var d policy.Decision
		return g.Decide(ctx, who(user), "orders", write, time.Now(), &d), d
	}

	if v, d := decide("alice"); v.Effect != policy.RequireApproval || d.Effect != policy.RequireApproval || v.BreakGlass != nil {
		t.Errorf("alice without a grant: %v", v.Effect)
	}
	r, err := a.RequestElevation(ctx, cfg, who("alice"), elevation.ElevationRequest{Role: "orders-writer", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Approve(ctx, r.ID, who("bob"), ""); err != nil {
		t.Fatal(err)
	}
	if v, _ := decide("alice"); v.Effect != policy.Allow || !v.Subject.HasRole("orders-writer") {
		t.Errorf("alice with the orders-writer grant: %v, roles %v", v.Effect, v.Subject.Roles)
	}
	if who("alice").HasRole("orders-writer") {
		t.Error("Decide changed the caller's subject")
	}

	if _, err := a.BreakGlass(ctx, cfg, who("dave"), elevation.BreakGlassRequest{Scope: elevation.BreakGlassScope{Resources: []string{"orders"}, Actions: []string{"write"}},
		Duration: "30m", Reason: "orders stuck, INC-1", Incident: "INC-1"}); err != nil {
		t.Fatal(err)
	}
	v, d := decide("dave")
	if v.Effect != policy.Allow || d.Effect != policy.RequireApproval || v.BreakGlass == nil {
		t.Errorf("dave under break-glass: %v (policies %v), break-glass %v", v.Effect, d.Effect, v.BreakGlass)
	}

	g.Approvals = nil
	if v, _ := decide("alice"); v.Effect != policy.RequireApproval {
		t.Errorf("without an approvals service, alice's grant still counted: %v", v.Effect)
	}
}
