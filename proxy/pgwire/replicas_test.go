package pgwire_test

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/redisstore"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/proxy/pgwire"
	"github.com/portcullis/portcullis/web"
)

// TestReplicasShareRedis runs two Portcullis replicas over one Redis: a statement paused on
// replica A runs when its approval is posted to replica B. It measures the time from the
// approving API call to the statement's result, approving on the same and the other
// replica.
func TestReplicasShareRedis(t *testing.T) {
	r := testenv.Redis(t)
	redisApprovals := func(t testing.TB) *elevation.Approvals {
		s, err := redisstore.Open(context.Background(), r.URL(), "portcullis:")
		if err != nil {
			t.Fatal(err)
		}
		a := elevation.NewApprovals(s, nil)
		t.Cleanup(func() { a.Close(); s.Close() })
		return a
	}
	e := newEnv(t, func(s *pgwire.Server) { s.Approvals = redisApprovals(t) })

	// Replica B: its own front end, API and approvals service, the same Redis.
	auth, _ := identity.New(e.cfg)
	bApprovals := redisApprovals(t)
	bAPI := httptest.NewServer((&web.Server{Config: e.cfg, Auth: auth, Approvals: bApprovals, Audit: e.log, Log: slog.New(slog.DiscardHandler)}).Handler())
	defer bAPI.Close()
	b := &pgwire.Server{Config: e.cfg, Auth: auth, Broker: elevation.NewStaticBroker(e.cfg), Approvals: bApprovals, Audit: e.log}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go b.Serve(ln)
	defer b.Close()

	c := e.connect(t, "alice") // on replica A
	ctx := context.Background()
	measure := func(api string) []time.Duration {
		var lat []time.Duration
		for i := range 15 {
			done := make(chan error, 1)
			go func() {
				_, err := c.Exec(ctx, "UPDATE orders SET status = 'replica' WHERE id = $1", 100+i)
				done <- err
			}()
			req := e.pending(t)
			start := time.Now()
			if code := callAt(t, api, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
				t.Fatalf("approve at %s: %d", api, code)
			}
			if err := wait(t, done); err != nil {
				t.Fatalf("the approved statement: %v", err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat
	}
	same, cross := measure(e.api.URL), measure(bAPI.URL)
	p := func(l []time.Duration, q float64) time.Duration { return l[min(len(l)-1, int(float64(len(l))*q))] }
	t.Logf("approval to result, same replica: p50 %v p99 %v; other replica: p50 %v p99 %v", p(same, .5), p(same, .99), p(cross, .5), p(cross, .99))
	if p(cross, .99) > 500*time.Millisecond {
		t.Errorf("cross-replica approvals take %v: waiters are not woken through Redis", p(cross, .99))
	}

	// Replica B's front end sees the same queue: a request made there is approved on A.
	cb, err := pgx.Connect(ctx, "postgres://alice:alice-token@"+ln.Addr().String()+"/orders?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	done := make(chan error, 1)
	go func() { _, err := cb.Exec(ctx, "UPDATE orders SET status = 'from-b' WHERE id = 200"); done <- err }()
	req := e.pending(t)
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
		t.Fatalf("approve on A: %d", code)
	}
	if err := wait(t, done); err != nil || e.count(t, "status = 'from-b'") != 1 {
		t.Fatalf("statement on B approved on A: %v", err)
	}
}

// TestRedisOutageFailsClosed: with Redis down nothing is approved or granted by accident —
// statements needing approval are refused with a clear error, the API answers 503 — and
// everything works again when Redis returns.
func TestRedisOutageFailsClosed(t *testing.T) {
	r := testenv.Redis(t)
	e := newEnv(t, func(s *pgwire.Server) {
		st, err := redisstore.Open(context.Background(), r.URL(), "portcullis:")
		if err != nil {
			t.Fatal(err)
		}
		s.Approvals = elevation.NewApprovals(st, nil)
		t.Cleanup(func() { s.Approvals.Close(); st.Close() })
	})
	c := e.connect(t, "alice")
	ctx := context.Background()
	r.Stop()

	_, err := c.Exec(ctx, "UPDATE orders SET status = 'outage' WHERE id = 300")
	if pgCode(err) != "XX000" || !strings.Contains(err.Error(), "approval request") {
		t.Errorf("a write needing approval during the outage: %v", err)
	}
	if code := e.call(t, "bob", "GET", "/api/v1/approvals", ""); code != 503 {
		t.Errorf("approvals API during the outage: %d, want 503", code)
	}
	if code := e.call(t, "alice", "POST", "/api/v1/elevations", `{"role": "orders-writer", "duration": "1h", "reason": "x"}`); code != 503 {
		t.Errorf("elevation request during the outage: %d, want 503", code)
	}
	var n int
	start := time.Now()
	for range 20 {
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
			t.Errorf("a read during the outage: %v", err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 reads took %v during the outage: statements wait on the dead store", d)
	}

	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, "UPDATE orders SET status = 'after' WHERE id = 300"); done <- err }()
	req := e.pending(t)
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
		t.Fatalf("approval after Redis returned: %d", code)
	}
	if err := wait(t, done); err != nil || e.count(t, "status = 'after'") != 1 {
		t.Fatalf("after Redis returned: %v", err)
	}
	if e.count(t, "status = 'outage'") != 0 {
		t.Error("the write refused during the outage ran")
	}
}
