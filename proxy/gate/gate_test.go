package gate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
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

// setup parses the test configuration and opens an embedded store.
func setup(t *testing.T) (*configs.Config, *elevation.FileStore) {
	t.Helper()
	cfg, err := configs.Parse("gate.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	store, err := elevation.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return cfg, store
}

// TestDecide: the policies alone; with a grant's role; with break-glass, which allows
// what the policies hold and says so; and without an approvals service.
func TestDecide(t *testing.T) {
	cfg, store := setup(t)
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

// TestHoldAndAwait: a held action's request is made and its event written "waiting";
// approved, it is consumed once and the close audited; denied, ErrNotApproved; a wait
// the front end ends is Withdrawn and abandons the request; a closed audit log refuses.
func TestHoldAndAwait(t *testing.T) {
	cfg, store := setup(t)
	dir := t.TempDir()
	log, err := audit.Open(audit.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	g := &Gate{Config: cfg, Approvals: elevation.NewApprovals(store, nil), Audit: log}
	ctx := context.Background()
	who := func(name string) *policy.Subject { s, _ := cfg.StaticSubject(name); return s }
	q, _ := policy.CompileQuorum(&policy.QuorumSpec{RequiredTeams: []string{"sre"}})
	hold := func(what string) *elevation.Request {
		t.Helper()
		ev := &audit.Event{Type: "test.held", Actor: "alice", Action: what}
		req, err := g.Hold(ctx, who("alice"), "s1", elevation.Artifact{Resource: "orders", Statement: what, Quorum: q, Snapshot: cfg.Engine.Snapshot()}, ev)
		if err != nil || ev.Result != "waiting" || ev.Details["approval"] != req.ID {
			t.Fatalf("hold: %v %+v", err, ev)
		}
		return req
	}
	closed := func() *Closed { return &Closed{Type: "test.closed", Actor: "alice", Resource: "orders"} }

	req := hold("approve me")
	go g.Approvals.Approve(ctx, req.ID, who("bob"), "")
	c := closed()
	r, err := g.Await(ctx, req, c)
	if err != nil || r.ID != req.ID || c.Result != "approved" {
		t.Fatalf("approved: %v, closed %+v", err, c)
	}
	if got, _ := g.Approvals.Get(ctx, req.ID); got.State != elevation.StateExecuted {
		t.Errorf("an approved, awaited request is %s, want executed (consumed)", got.State)
	}

	req = hold("deny me")
	go g.Approvals.Deny(ctx, req.ID, who("bob"), "no")
	if r, err := g.Await(ctx, req, closed()); !errors.Is(err, ErrNotApproved) || r.State != elevation.StateDenied {
		t.Errorf("denied: %v", err)
	}

	req = hold("withdraw me")
	wctx, cancel := context.WithCancelCause(ctx)
	cause := errors.New("the client went away")
	cancel(cause)
	var w *Withdrawn
	if _, err := g.Await(wctx, req, closed()); !errors.As(err, &w) || !errors.Is(err, cause) {
		t.Errorf("withdrawn: %v", err)
	}
	if got, _ := g.Approvals.Get(ctx, req.ID); got.State != elevation.StateAbandoned {
		t.Errorf("a withdrawn request is %s, want abandoned", got.State)
	}

	log.Close()
	if _, err := g.Hold(ctx, who("alice"), "s1", elevation.Artifact{Resource: "orders", Statement: "unaudited", Quorum: q}, &audit.Event{Type: "test.held"}); !errors.Is(err, ErrAudit) {
		t.Errorf("hold with the audit log closed: %v", err)
	}
	all, _ := g.Approvals.List(ctx)
	if all[0].Artifact.Statement != "unaudited" || all[0].State != elevation.StateAbandoned {
		t.Errorf("the unaudited request is %s, want abandoned", all[0].State)
	}
}
