package pgwire_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/elevation"
)

// TestShutdownDrains: on shutdown Portcullis stops accepting, ends each session as soon as
// it is idle with a FATAL 57P01 that says why, lets a transaction in progress — and a
// statement running in it — finish first, and withdraws a statement waiting for approval
// with an error saying Portcullis is shutting down, its request left pending for a
// re-run. Nothing is cut.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// An idle session, read raw: the FATAL comes without a statement sent.
	_, idle := rawSessionAs(t, e, "alice", "orders", time.Minute)
	// A transaction block in progress.
	tx := e.connect(t, "alice")
	if _, err := tx.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM orders"); err != nil {
		t.Fatal(err)
	}
	// A write waiting for approval.
	held := e.connect(t, "alice")
	heldErr := make(chan error, 1)
	go func() { _, err := held.Exec(ctx, "UPDATE orders SET status = 'shutdown' WHERE id = 1"); heldErr <- err }()
	req := e.pending(t)

	stopped := make(chan error, 1)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() { stopped <- e.srv.Shutdown(sctx) }()

	m, err := idle.Receive()
	if er, ok := m.(*pgproto3.ErrorResponse); err != nil || !ok || er.Severity != "FATAL" || er.Code != "57P01" || !strings.Contains(er.Message, "shutting down") {
		t.Fatalf("the idle session got %#v, %v; want FATAL 57P01 shutting down", m, err)
	}
	if err := wait(t, heldErr); pgCode(err) != "57P01" || !strings.Contains(err.Error(), "stays pending") {
		t.Fatalf("the statement waiting for approval: %v", err)
	}
	// Its request stays pending, released for a re-run on another replica (which takes it
	// up at once: TestKilledReplica's re-run).
	if r, err := e.approvals.Get(ctx, req.ID); err != nil || r.State != elevation.StatePending || !r.WaiterUntil.IsZero() {
		t.Errorf("its request: %+v, %v; want pending and released", r, err)
	}
	if e.count(t, "status = 'shutdown'") != 0 {
		t.Error("the withdrawn write ran")
	}

	// The transaction finishes: a statement that takes a while, then the COMMIT.
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM generate_series(1, 3000000)"); err != nil {
		t.Fatalf("a statement in the open transaction during shutdown: %v", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with a transaction open", err)
	default:
	}
	if _, err := tx.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("COMMIT during shutdown: %v", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Shutdown: %v, want every session drained", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the transaction ended")
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the session went on after the drain")
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if c, err := pgx.Connect(cctx, e.dsn("alice", "orders")); err == nil {
		c.Close(ctx)
		t.Error("a new connection was accepted after shutdown began")
	}
}

// TestShutdownCutsAtTheDeadline: a session that stays busy (a transaction left open) past
// the shutdown's deadline is cut, and Shutdown says so.
func TestShutdownCutsAtTheDeadline(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tx := e.connect(t, "alice")
	if _, err := tx.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(sctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown with a transaction left open: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v past a 300 ms deadline", d)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the session survived the deadline")
	}
}
