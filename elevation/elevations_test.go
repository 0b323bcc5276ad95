package elevation

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
)

func TestElevationLifecycle(t *testing.T) {
	cfg, err := configs.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	store, _ := OpenFileStore(t.TempDir())
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a := NewApprovals(store, func() time.Time { return now })
	ctx := context.Background()
	alice, _ := cfg.StaticSubject("alice")
	bob, _ := cfg.StaticSubject("bob")
	carol, _ := cfg.StaticSubject("carol")

	for _, bad := range []ElevationRequest{
		{Role: "root", Duration: "1h", Reason: "x"},
		{Role: "orders-writer", Duration: "forever", Reason: "x"},
		{Role: "orders-writer", Duration: "2h", Reason: "x"}, // not one of 15m, 1h, 4h
		{Role: "orders-writer", Duration: "5h", Reason: "x"}, // over the maximum
		{Role: "orders-writer", Duration: "1h"},              // reason required
	} {
		if _, err := a.RequestElevation(ctx, cfg, alice, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	r, err := a.RequestElevation(ctx, cfg, alice, ElevationRequest{Role: "orders-writer", Duration: "1h", Reason: "backfill INC-7", Ticket: "INC-7"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != TypeElevation || r.Artifact.Resource != "orders" || r.Artifact.Duration != time.Hour || r.State != StatePending {
		t.Fatalf("request %+v", r)
	}
	if roles, _ := a.Roles(ctx, "alice", now); len(roles) != 0 {
		t.Errorf("roles before approval: %v", roles)
	}
	if _, err := a.Approve(ctx, r.ID, alice, ""); !errors.Is(err, ErrNotEligible) {
		t.Errorf("self-approval of an elevation: %v", err)
	}
	if _, err := a.Approve(ctx, r.ID, carol, ""); !errors.Is(err, ErrNotEligible) {
		t.Errorf("approval by a non-SRE: %v", err)
	}
	g, err := a.Approve(ctx, r.ID, bob, "ok")
	if err != nil || g.State != StateApproved || !g.NotAfter.Equal(now.Add(time.Hour)) {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if roles, _ := a.Roles(ctx, "alice", now.Add(time.Minute)); !slices.Equal(roles, []string{"orders-writer"}) {
		t.Errorf("roles during the grant: %v", roles)
	}
	if roles, _ := a.Roles(ctx, "alice", now.Add(time.Hour)); len(roles) != 0 {
		t.Errorf("roles at not_after: %v", roles)
	}
	now = now.Add(time.Hour + time.Second)
	ended, err := a.EndExpired(ctx)
	if err != nil || len(ended) != 1 || ended[0].State != StateEnded {
		t.Errorf("EndExpired: %v %v", ended, err)
	}

	// Revocation: the requester, an approver or an admin; nobody else.
	r2, _ := a.RequestElevation(ctx, cfg, alice, ElevationRequest{Role: "orders-writer", Duration: "15m", Reason: "again"})
	a.Approve(ctx, r2.ID, bob, "")
	dave, _ := cfg.StaticSubject("dave")
	if _, err := a.Revoke(ctx, r2.ID, dave, false); !refusedInOwnWords(err) {
		t.Errorf("revocation by a stranger: %v", err)
	}
	if out, err := a.Revoke(ctx, r2.ID, bob, false); err != nil || out.State != StateRevoked {
		t.Errorf("revocation by the approver: %+v %v", out, err)
	}
	if roles, _ := a.Roles(ctx, "alice", now); len(roles) != 0 {
		t.Errorf("roles after revocation: %v", roles)
	}
	if _, err := a.Revoke(ctx, r2.ID, &policy.Subject{User: "x"}, true); !errors.Is(err, ErrAlreadyDecided) {
		t.Errorf("revoking twice: %v", err)
	}
}
