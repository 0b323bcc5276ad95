// Package storetest is the contract every approvals store (elevation.Store) passes: the
// embedded file store and the Redis store run the same suite, as pgx runs one suite over
// each of its connection kinds.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/policy"
)

// Run runs the contract on the store open returns. open is called for each part of the
// suite, and again within a part for "the same backing storage" (another replica, or a
// reopened file): it must return a store over the same data within one test.
func Run(t *testing.T, open func(t *testing.T) elevation.Store) {
	ctx := context.Background()
	q := &policy.Quorum{MinApprovals: 2, Approvers: policy.Principals{Teams: []string{"sre", "security"}}, Timeout: time.Minute}
	alice := &policy.Subject{User: "alice", Teams: []string{"engineering"}}
	approvers := []*policy.Subject{
		{User: "bob", Teams: []string{"sre"}}, {User: "erin", Teams: []string{"sre"}},
		{User: "carol", Teams: []string{"security"}}, {User: "frank", Teams: []string{"security"}},
	}

	t.Run("a revoked console session is revoked for every replica", func(t *testing.T) {
		a, b := elevation.NewApprovals(open(t), nil), elevation.NewApprovals(open(t), nil)
		if err := a.RevokeSession(ctx, "sid-1", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, x := range []*elevation.Approvals{a, b} {
			if ok, err := x.SessionRevoked(ctx, "sid-1"); err != nil || !ok {
				t.Errorf("revoked session: %v %v", ok, err)
			}
			if ok, err := x.SessionRevoked(ctx, "sid-2"); err != nil || ok {
				t.Errorf("another session: %v %v", ok, err)
			}
		}
		if c, ok := open(t).(elevation.SessionRevoker); !ok {
			t.Error("the store cannot revoke sessions")
		} else if ok, _ := c.SessionRevoked(ctx, "sid-1"); ok {
			t.Error("the store keeps raw session ids")
		}
	})

	t.Run("create, get, list, not found", func(t *testing.T) {
		a := elevation.NewApprovals(open(t), nil)
		r1, err := a.Create(ctx, alice, "s1", elevation.Artifact{Resource: "orders", Statement: "DELETE FROM orders", Quorum: q})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		r2, _ := a.Create(ctx, alice, "s1", elevation.Artifact{Resource: "orders", Statement: "UPDATE orders SET x = 1", Quorum: q})
		got, err := a.Get(ctx, r1.ID)
		if err != nil || got.ArtifactHash != r1.ArtifactHash || got.Artifact.Statement != "DELETE FROM orders" || got.State != elevation.StatePending {
			t.Fatalf("Get: %+v %v", got, err)
		}
		all, _ := a.List(ctx)
		if len(all) != 2 || all[0].ID != r2.ID {
			t.Errorf("List (newest first): %d requests", len(all))
		}
		if _, err := a.Get(ctx, "apr_nope"); !errors.Is(err, elevation.ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
	})

	t.Run("quorum, self approval, repeat, decided", func(t *testing.T) {
		a := elevation.NewApprovals(open(t), nil)
		r, _ := a.Create(ctx, alice, "s1", elevation.Artifact{Resource: "orders", Statement: "DELETE", Quorum: q})
		if _, err := a.Approve(ctx, r.ID, alice, ""); !errors.Is(err, elevation.ErrNotEligible) {
			t.Errorf("self approval: %v", err)
		}
		if _, err := a.Approve(ctx, r.ID, approvers[0], ""); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Approve(ctx, r.ID, approvers[0], ""); !errors.Is(err, elevation.ErrAlreadyReviewed) {
			t.Errorf("second approval by the same person: %v", err)
		}
		got, _ := a.Approve(ctx, r.ID, approvers[2], "")
		if got.State != elevation.StateApproved {
			t.Fatalf("state after quorum: %s", got.State)
		}
		if _, err := a.Deny(ctx, r.ID, approvers[1], ""); !errors.Is(err, elevation.ErrAlreadyDecided) {
			t.Errorf("deciding a decided request: %v", err)
		}
		if _, err := a.Consume(ctx, r.ID, "other-hash", got.Artifact.Snapshot); !errors.Is(err, elevation.ErrNotApproved) {
			t.Errorf("consuming with another artifact: %v", err)
		}
		if _, err := a.Consume(ctx, r.ID, got.ArtifactHash, got.Artifact.Snapshot); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Consume(ctx, r.ID, got.ArtifactHash, got.Artifact.Snapshot); !errors.Is(err, elevation.ErrNotApproved) {
			t.Errorf("an approval ran twice: %v", err)
		}
	})

	t.Run("concurrent approvals count once each and issue once", func(t *testing.T) {
		s := open(t)
		a := elevation.NewApprovals(s, nil)
		b := elevation.NewApprovals(s, nil) // a second replica over the same store
		r, _ := a.Create(ctx, alice, "s1", elevation.Artifact{Resource: "orders", Statement: "DELETE", Quorum: q})
		var wg sync.WaitGroup
		errs := make([]error, len(approvers))
		for i, who := range approvers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc := a
				if i%2 == 1 {
					svc = b
				}
				_, errs[i] = svc.Approve(ctx, r.ID, who, fmt.Sprint(i))
			}()
		}
		wg.Wait()
		ok, decided := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, elevation.ErrAlreadyDecided):
				decided++
			default:
				t.Errorf("concurrent approval: %v", err)
			}
		}
		got, _ := a.Get(ctx, r.ID)
		if got.State != elevation.StateApproved || len(got.Votes) != ok || ok < 2 || ok+decided != len(approvers) {
			t.Errorf("state %s with %d votes (%d ok, %d too late)", got.State, len(got.Votes), ok, decided)
		}
	})

	t.Run("deny, cancel, expire, wait", func(t *testing.T) {
		now := time.Now()
		clock := func() time.Time { return now }
		a := elevation.NewApprovals(open(t), clock)
		r, _ := a.Create(ctx, alice, "s1", elevation.Artifact{Statement: "x", Quorum: q})
		done := make(chan *elevation.Request, 1)
		go func() { w, _ := a.Wait(ctx, r.ID); done <- w }()
		time.Sleep(20 * time.Millisecond)
		a.Deny(ctx, r.ID, approvers[3], "no")
		if w := <-done; w.State != elevation.StateDenied {
			t.Errorf("waiter saw %s, want denied", w.State)
		}
		r2, _ := a.Create(ctx, alice, "s1", elevation.Artifact{Statement: "y", Quorum: q})
		if _, err := a.Cancel(ctx, r2.ID, approvers[0]); !errors.Is(err, elevation.ErrForbidden) {
			t.Errorf("cancel by someone else: %v", err)
		}
		if got, _ := a.Cancel(ctx, r2.ID, alice); got.State != elevation.StateCancelled {
			t.Errorf("cancel: %s", got.State)
		}
		r3, _ := a.Create(ctx, alice, "s1", elevation.Artifact{Statement: "z", Quorum: q})
		now = now.Add(2 * time.Minute)
		if got, _ := a.Get(ctx, r3.ID); got.State != elevation.StateExpired {
			t.Errorf("after the timeout: %s", got.State)
		}
		if _, err := a.Approve(ctx, r3.ID, approvers[0], ""); !errors.Is(err, elevation.ErrAlreadyDecided) {
			t.Errorf("approving an expired request: %v", err)
		}
	})

	t.Run("grants hold until not_after and count once", func(t *testing.T) {
		cfg, err := configs.Load(filepath.Join(testenv.ModuleRoot(t), "configs", "demo.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		s := open(t)
		a, b := elevation.NewApprovals(s, nil), elevation.NewApprovals(s, nil)
		defer a.Close()
		defer b.Close()
		alice, _ := cfg.StaticSubject("alice")
		bob, _ := cfg.StaticSubject("bob")
		req, err := a.RequestElevation(ctx, cfg, alice, elevation.ElevationRequest{Role: "orders-writer", Duration: "15m", Reason: "contract"})
		if err != nil {
			t.Fatal(err)
		}
		g, err := a.Approve(ctx, req.ID, bob, "")
		if err != nil || g.State != elevation.StateApproved {
			t.Fatalf("grant: %+v %v", g, err)
		}
		for _, svc := range []*elevation.Approvals{a, b} { // the replica that approved, and another
			if roles, err := svc.Roles(ctx, "alice", time.Now()); err != nil || !slices.Equal(roles, []string{"orders-writer"}) {
				t.Errorf("roles now: %v %v", roles, err)
			}
			if roles, _ := svc.Roles(ctx, "alice", g.NotAfter); len(roles) != 0 {
				t.Errorf("roles at not_after: %v", roles)
			}
		}
		if _, err := b.Revoke(ctx, req.ID, alice, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if roles, _ := a.Roles(ctx, "alice", time.Now()); len(roles) != 0 {
			t.Errorf("roles after revocation on the other replica: %v", roles)
		}
	})

	t.Run("survives reopening", func(t *testing.T) {
		s := open(t)
		r, _ := elevation.NewApprovals(s, nil).Create(ctx, alice, "s1", elevation.Artifact{Statement: "kept", Quorum: q})
		reopened := open(t) // the same backing storage
		if got, err := reopened.Get(ctx, r.ID); err != nil || got.Artifact.Statement != "kept" {
			t.Errorf("after reopening: %+v %v", got, err)
		}
	})
}
