package elevation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/policy"
)

// storeContract is the one test suite both stores pass.
func storeContract(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	q := &policy.Quorum{MinApprovals: 2, Approvers: policy.Principals{Teams: []string{"sre", "security"}}, Timeout: time.Minute}
	alice := &policy.Subject{User: "alice", Teams: []string{"engineering"}}
	approvers := []*policy.Subject{
		{User: "bob", Teams: []string{"sre"}}, {User: "erin", Teams: []string{"sre"}},
		{User: "carol", Teams: []string{"security"}}, {User: "frank", Teams: []string{"security"}},
	}

	t.Run("a revoked console session is revoked for every replica", func(t *testing.T) {
		a, b := NewApprovals(open(t), nil), NewApprovals(open(t), nil)
		if err := a.RevokeSession(ctx, "sid-1", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, x := range []*Approvals{a, b} {
			if ok, err := x.SessionRevoked(ctx, "sid-1"); err != nil || !ok {
				t.Errorf("revoked session: %v %v", ok, err)
			}
			if ok, err := x.SessionRevoked(ctx, "sid-2"); err != nil || ok {
				t.Errorf("another session: %v %v", ok, err)
			}
		}
		if c, ok := open(t).(SessionRevoker); !ok {
			t.Error("the store cannot revoke sessions")
		} else if ok, _ := c.SessionRevoked(ctx, "sid-1"); ok {
			t.Error("the store keeps raw session ids")
		}
	})

	t.Run("create, get, list, not found", func(t *testing.T) {
		a := NewApprovals(open(t), nil)
		r1, err := a.Create(ctx, alice, "s1", Artifact{Resource: "orders", Statement: "DELETE FROM orders", Quorum: q})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		r2, _ := a.Create(ctx, alice, "s1", Artifact{Resource: "orders", Statement: "UPDATE orders SET x = 1", Quorum: q})
		got, err := a.Get(ctx, r1.ID)
		if err != nil || got.ArtifactHash != r1.ArtifactHash || got.Artifact.Statement != "DELETE FROM orders" || got.State != StatePending {
			t.Fatalf("Get: %+v %v", got, err)
		}
		all, _ := a.List(ctx)
		if len(all) != 2 || all[0].ID != r2.ID {
			t.Errorf("List (newest first): %d requests", len(all))
		}
		if _, err := a.Get(ctx, "apr_nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
	})

	t.Run("quorum, self approval, repeat, decided", func(t *testing.T) {
		a := NewApprovals(open(t), nil)
		r, _ := a.Create(ctx, alice, "s1", Artifact{Resource: "orders", Statement: "DELETE", Quorum: q})
		if _, err := a.Approve(ctx, r.ID, alice, ""); !errors.Is(err, ErrNotEligible) {
			t.Errorf("self approval: %v", err)
		}
		if _, err := a.Approve(ctx, r.ID, approvers[0], ""); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Approve(ctx, r.ID, approvers[0], ""); !errors.Is(err, ErrAlreadyReviewed) {
			t.Errorf("second approval by the same person: %v", err)
		}
		got, _ := a.Approve(ctx, r.ID, approvers[2], "")
		if got.State != StateApproved {
			t.Fatalf("state after quorum: %s", got.State)
		}
		if _, err := a.Deny(ctx, r.ID, approvers[1], ""); !errors.Is(err, ErrAlreadyDecided) {
			t.Errorf("deciding a decided request: %v", err)
		}
		if _, err := a.Consume(ctx, r.ID, "other-hash", got.Artifact.Snapshot); !errors.Is(err, ErrNotApproved) {
			t.Errorf("consuming with another artifact: %v", err)
		}
		if _, err := a.Consume(ctx, r.ID, got.ArtifactHash, got.Artifact.Snapshot); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Consume(ctx, r.ID, got.ArtifactHash, got.Artifact.Snapshot); !errors.Is(err, ErrNotApproved) {
			t.Errorf("an approval ran twice: %v", err)
		}
	})

	t.Run("concurrent approvals count once each and issue once", func(t *testing.T) {
		s := open(t)
		a := NewApprovals(s, nil)
		b := NewApprovals(s, nil) // a second replica over the same store
		r, _ := a.Create(ctx, alice, "s1", Artifact{Resource: "orders", Statement: "DELETE", Quorum: q})
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
			case errors.Is(err, ErrAlreadyDecided):
				decided++
			default:
				t.Errorf("concurrent approval: %v", err)
			}
		}
		got, _ := a.Get(ctx, r.ID)
		if got.State != StateApproved || len(got.Votes) != ok || ok < 2 || ok+decided != len(approvers) {
			t.Errorf("state %s with %d votes (%d ok, %d too late)", got.State, len(got.Votes), ok, decided)
		}
	})

	t.Run("deny, cancel, expire, wait", func(t *testing.T) {
		now := time.Now()
		clock := func() time.Time { return now }
		a := NewApprovals(open(t), clock)
		r, _ := a.Create(ctx, alice, "s1", Artifact{Statement: "x", Quorum: q})
		done := make(chan *Request, 1)
		go func() { w, _ := a.Wait(ctx, r.ID); done <- w }()
		time.Sleep(20 * time.Millisecond)
		a.Deny(ctx, r.ID, approvers[3], "no")
		if w := <-done; w.State != StateDenied {
			t.Errorf("waiter saw %s, want denied", w.State)
		}
		r2, _ := a.Create(ctx, alice, "s1", Artifact{Statement: "y", Quorum: q})
		if _, err := a.Cancel(ctx, r2.ID, approvers[0]); !refusedInOwnWords(err) {
			t.Errorf("cancel by someone else: %v", err)
		}
		if got, _ := a.Cancel(ctx, r2.ID, alice); got.State != StateCancelled {
			t.Errorf("cancel: %s", got.State)
		}
		r3, _ := a.Create(ctx, alice, "s1", Artifact{Statement: "z", Quorum: q})
		now = now.Add(2 * time.Minute)
		if got, _ := a.Get(ctx, r3.ID); got.State != StateExpired {
			t.Errorf("after the timeout: %s", got.State)
		}
		if _, err := a.Approve(ctx, r3.ID, approvers[0], ""); !errors.Is(err, ErrAlreadyDecided) {
			t.Errorf("approving an expired request: %v", err)
		}
	})

	t.Run("grants hold until not_after and count once", func(t *testing.T) {
		cfg, err := configs.Load("../configs/demo.yaml")
		if err != nil {
			t.Fatal(err)
		}
		s := open(t)
		a, b := NewApprovals(s, nil), NewApprovals(s, nil)
		defer a.Close()
		defer b.Close()
		alice, _ := cfg.StaticSubject("alice")
		bob, _ := cfg.StaticSubject("bob")
		req, err := a.RequestElevation(ctx, cfg, alice, ElevationRequest{Role: "orders-writer", Duration: "15m", Reason: "contract"})
		if err != nil {
			t.Fatal(err)
		}
		g, err := a.Approve(ctx, req.ID, bob, "")
		if err != nil || g.State != StateApproved {
			t.Fatalf("grant: %+v %v", g, err)
		}
		for _, svc := range []*Approvals{a, b} { // the replica that approved, and another
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
		r, _ := NewApprovals(s, nil).Create(ctx, alice, "s1", Artifact{Statement: "kept", Quorum: q})
		reopened := open(t) // the same backing storage
		if got, err := reopened.Get(ctx, r.ID); err != nil || got.Artifact.Statement != "kept" {
			t.Errorf("after reopening: %+v %v", got, err)
		}
	})
}

func TestFileStore(t *testing.T) {
	dir := ""
	storeContract(t, func(t *testing.T) Store {
		if dir == "" || t.Name() != lastName {
			dir, lastName = t.TempDir(), t.Name()
		}
		s, err := OpenFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

var lastName string

func TestRedisStore(t *testing.T) {
	r := testenv.Redis(t)
	n := 0
	storeContract(t, func(t *testing.T) Store {
		if t.Name() != lastName {
			n++
			lastName = t.Name()
		}
		s, err := OpenRedisStore(context.Background(), r.URL(), fmt.Sprintf("test%d:", n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestWaitSeesAnotherReplicasDecision: two services over one Redis, as two replicas.
// TestRedisForgetsGrantsAtNotAfter: the grant key expires in Redis itself.
func TestRedisForgetsGrantsAtNotAfter(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	s, err := OpenRedisStore(ctx, r.URL(), "ttl:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, _ := configs.Load("../configs/demo.yaml")
	cfg.Roles[0].Durations = append(cfg.Roles[0].Durations, configs.Duration(time.Second))
	a := NewApprovals(s, nil)
	defer a.Close()
	alice, _ := cfg.StaticSubject("alice")
	bob, _ := cfg.StaticSubject("bob")
	req, err := a.RequestElevation(ctx, cfg, alice, ElevationRequest{Role: "orders-writer", Duration: "1s", Reason: "ttl"})
	if err != nil {
		t.Fatal(err)
	}
	a.Approve(ctx, req.ID, bob, "")
	ttl := s.rdb.PTTL(ctx, s.grantKey(req.ID)).Val()
	if ttl <= 0 || ttl > time.Second {
		t.Fatalf("grant key TTL %v, want the grant's remaining life", ttl)
	}
	time.Sleep(1100 * time.Millisecond)
	if n := s.rdb.Exists(ctx, s.grantKey(req.ID)).Val(); n != 0 {
		t.Error("Redis still holds the grant after its not_after")
	}
}

func TestWaitSeesAnotherReplicasDecision(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	open := func() *Approvals {
		s, err := OpenRedisStore(ctx, r.URL(), "replicas:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return NewApprovals(s, nil)
	}
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	q := &policy.Quorum{MinApprovals: 1, AnyApprover: true, Timeout: time.Minute}
	var lat []time.Duration
	for range 20 {
		req, _ := a.Create(ctx, &policy.Subject{User: "alice"}, "s", Artifact{Statement: "x", Quorum: q})
		done := make(chan *Request, 1)
		go func() { w, _ := a.Wait(ctx, req.ID); done <- w }()
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		if _, err := b.Approve(ctx, req.ID, &policy.Subject{User: "bob"}, ""); err != nil {
			t.Fatal(err)
		}
		select {
		case w := <-done:
			if w.State != StateApproved {
				t.Fatalf("waiter on replica A saw %s", w.State)
			}
			lat = append(lat, time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatal("the waiter on replica A never saw replica B's approval")
		}
	}
	slices.Sort(lat)
	t.Logf("cross-replica approval to waiter: p50 %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)-1] > 500*time.Millisecond {
		t.Errorf("cross-replica wake-up took %v: pub/sub is not waking waiters", lat[len(lat)-1])
	}
}

// TestWatchSeesEveryReplicasChanges: a console page on replica A hears of requests created
// and decided on replica B (and on A itself).
func TestWatchSeesEveryReplicasChanges(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	open := func() *Approvals {
		s, err := OpenRedisStore(ctx, r.URL(), "watch:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		a := NewApprovals(s, nil)
		t.Cleanup(a.Close)
		return a
	}
	a, b := open(), open()
	changes, stop := a.Watch()
	defer stop()
	time.Sleep(100 * time.Millisecond) // the subscription is in place
	expect := func(id, what string) {
		t.Helper()
		deadline := time.After(2 * time.Second)
		for {
			select {
			case got := <-changes:
				if got == id {
					return
				}
			case <-deadline:
				t.Fatalf("replica A's watcher did not hear of %s (%s)", id, what)
			}
		}
	}
	q := &policy.Quorum{MinApprovals: 1, AnyApprover: true, Timeout: time.Minute}
	req, err := b.Create(ctx, &policy.Subject{User: "alice"}, "s", Artifact{Statement: "x", Quorum: q})
	if err != nil {
		t.Fatal(err)
	}
	expect(req.ID, "created on B")
	if _, err := b.Approve(ctx, req.ID, &policy.Subject{User: "bob"}, ""); err != nil {
		t.Fatal(err)
	}
	expect(req.ID, "approved on B")
	own, _ := a.Create(ctx, &policy.Subject{User: "alice"}, "s", Artifact{Statement: "y", Quorum: q})
	expect(own.ID, "created on A")
	stop()
	if _, err := a.Cancel(ctx, own.ID, &policy.Subject{User: "alice"}); err != nil {
		t.Fatal(err)
	}
}
