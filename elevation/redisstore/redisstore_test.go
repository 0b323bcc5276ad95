package redisstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/storetest"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/policy"
)

var lastName string

func TestStore(t *testing.T) {
	r := testenv.Redis(t)
	n := 0
	storetest.Run(t, func(t *testing.T) elevation.Store {
		if t.Name() != lastName {
			n++
			lastName = t.Name()
		}
		s, err := Open(context.Background(), r.URL(), fmt.Sprintf("test%d:", n))
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
	s, err := Open(ctx, r.URL(), "ttl:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, _ := configs.Load("../../configs/demo.yaml")
	cfg.Roles[0].Durations = append(cfg.Roles[0].Durations, configs.Duration(time.Second))
	a := elevation.NewApprovals(s, nil)
	defer a.Close()
	alice, _ := cfg.StaticSubject("alice")
	bob, _ := cfg.StaticSubject("bob")
	req, err := a.RequestElevation(ctx, cfg, alice, elevation.ElevationRequest{Role: "orders-writer", Duration: "1s", Reason: "ttl"})
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
	open := func() *elevation.Approvals {
		s, err := Open(ctx, r.URL(), "replicas:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return elevation.NewApprovals(s, nil)
	}
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	q := &policy.Quorum{MinApprovals: 1, AnyApprover: true, Timeout: time.Minute}
	var lat []time.Duration
	for range 20 {
		req, _ := a.Create(ctx, &policy.Subject{User: "alice"}, "s", elevation.Artifact{Statement: "x", Quorum: q})
		done := make(chan *elevation.Request, 1)
		go func() { w, _ := a.Wait(ctx, req.ID); done <- w }()
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		if _, err := b.Approve(ctx, req.ID, &policy.Subject{User: "bob"}, ""); err != nil {
			t.Fatal(err)
		}
		select {
		case w := <-done:
			if w.State != elevation.StateApproved {
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
	checkWatch(t, func() (*Store, error) { return Open(context.Background(), r.URL(), "watch:") })
}

// TestCluster: the store over a real Redis Cluster of three primaries passes the store
// contract (atomic updates, grants that expire in Redis, console revocations), and two
// replicas hear each other's changes through the cluster's pub/sub.
func TestCluster(t *testing.T) {
	c := testenv.RedisCluster(t)
	cfg := &configs.RedisCluster{Addrs: c.Addrs()[:1]} // one node named: the client finds the rest
	n, last := 0, ""
	storetest.Run(t, func(t *testing.T) elevation.Store {
		if t.Name() != last { // a subtest's second store is the same replica set reopened
			n, last = n+1, t.Name()
		}
		s, err := OpenCluster(context.Background(), cfg, fmt.Sprintf("cluster%d:", n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
	checkWatch(t, func() (*Store, error) { return OpenCluster(context.Background(), cfg, "watch:") })
}

// checkWatch: replica A's watcher hears of requests created and decided on replica B,
// and of its own.
func checkWatch(t *testing.T, openStore func() (*Store, error)) {
	ctx := context.Background()
	open := func() *elevation.Approvals {
		s, err := openStore()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		a := elevation.NewApprovals(s, nil)
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
	req, err := b.Create(ctx, &policy.Subject{User: "alice"}, "s", elevation.Artifact{Statement: "x", Quorum: q})
	if err != nil {
		t.Fatal(err)
	}
	expect(req.ID, "created on B")
	if _, err := b.Approve(ctx, req.ID, &policy.Subject{User: "bob"}, ""); err != nil {
		t.Fatal(err)
	}
	expect(req.ID, "approved on B")
	own, _ := a.Create(ctx, &policy.Subject{User: "alice"}, "s", elevation.Artifact{Statement: "y", Quorum: q})
	expect(own.ID, "created on A")
	stop()
	if _, err := a.Cancel(ctx, own.ID, &policy.Subject{User: "alice"}); err != nil {
		t.Fatal(err)
	}
}

// TestSentinelFailover: through Redis Sentinel, a store follows the primary when it dies.
// A request waits for two approvals; the first is given, the primary is killed (SIGKILL),
// the sentinel promotes the replica; the second approval goes through once the store
// reaches the new primary, the waiter on the other replica resumes and sees the request
// approved, and the request holds each approval exactly once.
func TestSentinelFailover(t *testing.T) {
	primary, _, sentinel := testenv.RedisSentinel(t)
	ctx := context.Background()
	sn := &configs.RedisSentinel{Master: devserver.SentinelMaster, Addrs: []string{sentinel.Addr()}}
	open := func() (*Store, *elevation.Approvals) {
		s, err := OpenSentinel(ctx, sn, "failover:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		a := elevation.NewApprovals(s, nil)
		t.Cleanup(a.Close)
		return s, a
	}
	s, a := open()
	_, b := open()
	q := &policy.Quorum{MinApprovals: 2, AnyApprover: true, Timeout: 5 * time.Minute}
	req, err := a.Create(ctx, &policy.Subject{User: "alice"}, "s", elevation.Artifact{Statement: "UPDATE t SET x = 1", Quorum: q})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan *elevation.Request, 1)
	go func() {
		w, err := a.Wait(ctx, req.ID)
		if err != nil {
			t.Errorf("the waiter: %v", err)
		}
		waited <- w
	}()
	if _, err := b.Approve(ctx, req.ID, &policy.Subject{User: "bob"}, ""); err != nil {
		t.Fatal(err)
	}
	// The first approval is on the replica before the primary dies (replication is
	// asynchronous: Redis itself may lose what it acknowledged and had not yet sent).
	if n, err := s.rdb.(*redis.Client).Wait(ctx, 1, 5*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1: %d %v", n, err)
	}
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var approved *elevation.Request
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if approved, err = b.Approve(ctx, req.ID, &policy.Subject{User: "carol"}, ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no approval 60 s after the primary died: %v", err)
		}
	}
	t.Logf("the second approval went through %v after the primary died", time.Since(killed).Round(time.Millisecond))
	if approved.State != elevation.StateApproved {
		t.Fatalf("after two approvals the request is %s", approved.State)
	}
	select {
	case w := <-waited:
		if w == nil || w.State != elevation.StateApproved {
			t.Fatalf("the waiter resumed with %+v", w)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not resume after the failover")
	}
	got, err := a.Get(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	var voters []string
	for _, v := range got.Votes {
		voters = append(voters, v.Approver.User)
	}
	if fmt.Sprint(voters) != "[bob carol]" {
		t.Errorf("votes after the failover: %v, want bob and carol once each", voters)
	}
}

// TestTwoSweepersEndEachGrantOnce: every replica runs the grant sweeper; two sweeping the
// same Redis at once end each expired grant exactly once between them (each end is an
// audit event and a cut session: the loser of a race must see it was already done).
func TestTwoSweepersEndEachGrantOnce(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	var stores []*Store
	var replicas []*elevation.Approvals
	for range 2 {
		s, err := Open(ctx, r.URL(), "sweep:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		a := elevation.NewApprovals(s, nil)
		t.Cleanup(a.Close)
		stores, replicas = append(stores, s), append(replicas, a)
	}
	const grants = 40
	past := time.Now().Add(-time.Minute)
	for i := range grants {
		g := &elevation.Request{ID: fmt.Sprintf("grant-%02d", i), Type: elevation.TypeElevation, State: elevation.StateApproved,
			Requester: policy.Subject{User: fmt.Sprintf("user%d", i)}, Artifact: elevation.Artifact{Role: "orders-writer"},
			CreatedAt: past.Add(-time.Hour), ExpiresAt: past, DecidedAt: past.Add(-time.Hour), NotAfter: past}
		if err := stores[0].Create(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	ended := make([][]*elevation.Request, 2)
	var wg sync.WaitGroup
	for i, a := range replicas {
		wg.Go(func() {
			for range 5 { // sweeping again and again, as the ticker does
				got, err := a.EndExpired(ctx)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
				ended[i] = append(ended[i], got...)
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for _, e := range ended {
		for _, g := range e {
			seen[g.ID]++
		}
	}
	for i := range grants {
		if n := seen[fmt.Sprintf("grant-%02d", i)]; n != 1 {
			t.Errorf("grant-%02d ended %d times", i, n)
		}
	}
	t.Logf("replica A ended %d, replica B %d", len(ended[0]), len(ended[1]))
}
