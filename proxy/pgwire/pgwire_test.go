package pgwire_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/elevation"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestSimpleAndExtendedQueries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.connect(t, "alice")
	var n int
	// Simple protocol, as psql speaks it.
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orders", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 5000 {
		t.Fatalf("simple query: %d %v", n, err)
	}
	// Extended protocol with parameters, prepared and cached by pgx, run twice.
	for range 2 {
		var status string
		if err := c.QueryRow(ctx, "SELECT status FROM orders WHERE id = $1", 42).Scan(&status); err != nil || status != "new" {
			t.Fatalf("extended query: %q %v", status, err)
		}
	}
	rows, _ := c.Query(ctx, "SELECT id FROM orders ORDER BY id")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(ids) != 5000 {
		t.Fatalf("streamed %d rows: %v", len(ids), err)
	}
	// A transaction block of reads.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDenyKeepsTheSessionUsable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.connect(t, "bob")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		_, err := c.Exec(ctx, "ALTER TABLE orders ADD COLUMN note text", mode)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "orders-ddl") || !strings.Contains(pe.Message, "no DDL on orders") || pe.Hint == "" {
			t.Fatalf("%v: DDL gave %v", mode, err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders", mode).Scan(&n); err != nil || n != 5000 {
			t.Fatalf("%v: session not usable after a deny: %v", mode, err)
		}
	}
}

// runAsync runs sql as user in the background and returns a channel with its outcome.
func runAsync(t *testing.T, e *env, user, sql string, args ...any) (<-chan error, *pgx.Conn) {
	c := e.connect(t, user)
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), sql, args...)
		done <- err
	}()
	return done, c
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the statement did not finish")
		return nil
	}
}

func TestApprovalFromAnotherIdentityRunsTheStatement(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	type result struct {
		status string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = c.QueryRow(context.Background(), "UPDATE orders SET status = 'paid' WHERE id = $1 RETURNING status", 7).Scan(&r.status)
		done <- r
	}()
	req := e.pending(t)
	if req.Artifact.Statement != "UPDATE orders SET status = 'paid' WHERE id = $1 RETURNING status" || req.Artifact.Params[0] != "7" && !strings.HasPrefix(req.Artifact.Params[0], `\x`) || req.Artifact.Class != "write" {
		t.Errorf("artifact %+v", req.Artifact)
	}
	if e.count(t, "status = 'paid'") != 0 {
		t.Fatal("the statement ran before approval")
	}
	// The wait holds up alice's session only.
	other := e.connect(t, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	var n int
	if err := other.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatalf("another session while one waits for approval: %v", err)
	}
	cancel()
	if got := e.call(t, "alice", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 403 {
		t.Errorf("self-approval: %d, want 403", got)
	}
	if got := e.call(t, "carol", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 403 {
		t.Errorf("approval by a non-SRE: %d, want 403", got)
	}
	start := time.Now()
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", `{"comment": "looks right"}`); got != 200 {
		t.Fatalf("bob's approval: %d", got)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the approved statement did not complete")
	}
	t.Logf("approval to result: %v", time.Since(start))
	if r.err != nil || r.status != "paid" || e.count(t, "status = 'paid'") != 1 {
		t.Fatalf("approved statement: %q %v", r.status, r.err)
	}
	if got := e.call(t, "erin", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 409 {
		t.Errorf("approval of a decided request: %d, want 409", got)
	}
	if final, _ := e.approvals.Get(context.Background(), req.ID); final.State != elevation.StateExecuted {
		t.Errorf("request state %s, want executed", final.State)
	}
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/apr_nope/approve", ""); got != 404 {
		t.Errorf("unknown request: %d, want 404", got)
	}
	// One decoder for the whole API: a malformed body is 400, an oversized one 413.
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", `{"comment": `); got != 400 {
		t.Errorf("malformed body: %d, want 400", got)
	}
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", `{"comment": "`+strings.Repeat("x", 2<<20)+`"}`); got != 413 {
		t.Errorf("oversized body: %d, want 413", got)
	}
}

func TestSecondApprovalBySamePersonIsAConflict(t *testing.T) {
	e := newEnv(t)
	done, _ := runAsync(t, e, "alice", "INSERT INTO pairs VALUES (1)")
	req := e.pending(t)
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 200 {
		t.Fatalf("first approval: %d", got)
	}
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 409 {
		t.Errorf("second approval by bob: %d, want 409", got)
	}
	if got := e.call(t, "carol", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 200 {
		t.Fatalf("carol's approval: %d", got)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("statement after two approvals: %v", err)
	}
}

func TestDeniedApprovalErrorsAndSessionStaysUsable(t *testing.T) {
	e := newEnv(t)
	done, c := runAsync(t, e, "alice", "DELETE FROM orders WHERE id = 3")
	req := e.pending(t)
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/deny", `{"comment": "not during the freeze"}`); got != 200 {
		t.Fatalf("deny: %d", got)
	}
	err := wait(t, done)
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), "denied by bob: not during the freeze") {
		t.Fatalf("denied statement gave %v", err)
	}
	if e.count(t, "id = 3") != 1 {
		t.Error("the denied delete ran")
	}
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 5000 {
		t.Errorf("session after a denied approval: %v", err)
	}
}

func TestMultiStatementSmuggledWriteWaits(t *testing.T) {
	e := newEnv(t)
	done, _ := runAsync(t, e, "alice", "SELECT 1; DELETE FROM orders WHERE id = 9", pgx.QueryExecModeSimpleProtocol)
	req := e.pending(t)
	if req.Artifact.Class != "delete" || !strings.Contains(req.Artifact.Statement, "DELETE") {
		t.Errorf("smuggled write classified as %s", req.Artifact.Class)
	}
	e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/deny", "")
	if err := wait(t, done); pgCode(err) != "42501" {
		t.Fatalf("smuggled write: %v", err)
	}
	if e.count(t, "id = 9") != 1 {
		t.Error("the smuggled delete ran")
	}
	// Behind DDL it is denied outright.
	c := e.connect(t, "alice")
	if _, err := c.Exec(context.Background(), "SELECT 1; DROP TABLE orders", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" {
		t.Errorf("smuggled DDL: %v", err)
	}
}

func TestCopyFromIsNotARead(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	done := make(chan error, 1)
	go func() {
		_, err := c.CopyFrom(context.Background(), pgx.Identifier{"orders"}, []string{"id", "status"}, pgx.CopyFromRows([][]any{{90001, "copied"}}))
		done <- err
	}()
	req := e.pending(t)
	if req.Artifact.Class != "write" || req.Artifact.Kind != "COPY FROM" {
		t.Errorf("COPY FROM classified as %s %s", req.Artifact.Class, req.Artifact.Kind)
	}
	e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", "")
	if err := wait(t, done); err != nil {
		t.Fatalf("approved COPY: %v", err)
	}
	if e.count(t, "status = 'copied'") != 1 {
		t.Error("the approved COPY did not load its row")
	}
}

func TestCancelWhileWaitingClosesTheRequest(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "UPDATE orders SET status = 'x' WHERE id = 1")
		done <- err
	}()
	req := e.pending(t)
	cancel()
	if err := wait(t, done); err == nil {
		t.Fatal("cancelled statement succeeded")
	}
	e.waitState(t, req.ID, elevation.StateAbandoned)
	if e.count(t, "status = 'x'") != 0 {
		t.Error("the cancelled statement ran")
	}
	if got := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); got != 409 {
		t.Errorf("approving a withdrawn request: %d, want 409", got)
	}
}

func TestClientGoneAbandonsTheRequest(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	nc := c.PgConn().Conn() // taken before the statement's goroutine touches the connection
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "UPDATE orders SET status = 'gone' WHERE id = 2")
		done <- err
	}()
	req := e.pending(t)
	nc.Close() // the client disappears without a word
	e.waitState(t, req.ID, elevation.StateAbandoned)
	wait(t, done) // pgx is done with the connection before the test closes it
}

func TestApprovalTimeout(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	done, c := runAsync(t, e, "alice", "INSERT INTO timeouts VALUES (1)")
	req := e.pending(t)
	err := wait(t, done)
	if pgCode(err) != "57014" || !strings.Contains(err.Error(), "expired") || time.Since(start) < time.Second {
		t.Fatalf("timed-out statement: %v after %v", err, time.Since(start))
	}
	if r, _ := e.approvals.Get(context.Background(), req.ID); r.State != elevation.StateExpired {
		t.Errorf("request state %s, want expired", r.State)
	}
	if _, err := c.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Errorf("session after timeout: %v", err)
	}
}

func TestEstimatedRowsDecide(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	// The planner expects about 5000 rows: the big-deletes policy denies it at once.
	_, err := c.Exec(context.Background(), "DELETE FROM orders WHERE id > $1", 0)
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), "big-deletes") {
		t.Fatalf("large delete: %v", err)
	}
	// A one-row delete only needs the usual approval.
	done, _ := runAsync(t, e, "alice", "DELETE FROM orders WHERE id = 4")
	req := e.pending(t)
	if req.Artifact.EstimatedRows != 1 {
		t.Errorf("estimate %d, want 1", req.Artifact.EstimatedRows)
	}
	e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/deny", "")
	wait(t, done)
}

// TestParseAllowedExecuteDifferent speaks the extended protocol by hand: a client may not
// get a statement run other than the one decided on.
func TestParseAllowedExecuteDifferent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pc, err := pgconn.Connect(ctx, e.dsn("alice", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	fe := hc.Frontend
	hc.Conn.SetDeadline(time.Now().Add(20 * time.Second))
	recvUntilReady := func() (msgs []pgproto3.BackendMessage) {
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := m.(type) {
			case *pgproto3.ReadyForQuery:
				return msgs
			case *pgproto3.ErrorResponse:
				cp := *m
				msgs = append(msgs, &cp)
			case *pgproto3.NoticeResponse:
				cp := *m
				msgs = append(msgs, &cp)
			default:
				msgs = append(msgs, m)
			}
		}
	}
	// An allowed SELECT parsed as the unnamed statement and a DELETE as "evil".
	fe.Send(&pgproto3.Parse{Query: "SELECT count(*) FROM orders"})
	fe.Send(&pgproto3.Parse{Name: "evil", Query: "DELETE FROM orders WHERE id = 11"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "evil"})
	fe.Send(&pgproto3.Execute{Portal: "p"})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	go func() {
		req := e.pending(t)
		if req.Artifact.Statement != "DELETE FROM orders WHERE id = 11" {
			t.Errorf("approval asked for %q", req.Artifact.Statement)
		}
		e.approvals.Deny(ctx, req.ID, &subjectBob, "no")
	}()
	msgs := recvUntilReady()
	var sawRows, sawNotice bool
	var last *pgproto3.ErrorResponse
	for _, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.DataRow:
			sawRows = true
		case *pgproto3.NoticeResponse:
			sawNotice = true
		case *pgproto3.ErrorResponse:
			last = m
		}
	}
	if !sawRows || !sawNotice || last == nil || last.Code != "42501" {
		t.Fatalf("extended batch gave rows=%v notice=%v error=%+v", sawRows, sawNotice, last)
	}
	if e.count(t, "true") != 5000 {
		t.Fatal("the DELETE ran")
	}

	// A statement prepared in SQL is decided on what was prepared, through Bind too.
	fe.Send(&pgproto3.Query{String: "PREPARE sneaky AS SELECT 42"})
	fe.Flush()
	recvUntilReady()
	fe.Send(&pgproto3.Bind{PreparedStatement: "sneaky"})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Sync{})
	fe.Flush()
	if msgs := recvUntilReady(); !hasRow(msgs) {
		t.Errorf("executing a SELECT prepared in SQL: %v", msgs)
	}
	// A portal bound to a statement nobody prepared through Portcullis is refused.
	fe.Send(&pgproto3.Execute{Portal: "never-bound"})
	fe.Send(&pgproto3.Sync{})
	fe.Flush()
	msgs = recvUntilReady()
	if len(msgs) == 0 {
		t.Fatal("no answer to an unknown portal")
	}
	if er, ok := msgs[0].(*pgproto3.ErrorResponse); !ok || er.Code != "42501" {
		t.Errorf("unknown portal: %+v", msgs[0])
	}
	// And the session still works.
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	fe.Flush()
	if !hasRow(recvUntilReady()) {
		t.Error("session unusable after refusals")
	}
}

func hasRow(msgs []pgproto3.BackendMessage) bool {
	for _, m := range msgs {
		if _, ok := m.(*pgproto3.DataRow); ok {
			return true
		}
	}
	return false
}
