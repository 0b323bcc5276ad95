package pgwire_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/pgwire"
)

// fuzzSession opens a raw session as carol on the fuzz resource, where reads are allowed
// and writes are denied outright, with an upstream credential that could write: a write
// that reaches PostgreSQL there is a bypass.
func fuzzSession(t testing.TB, e *env) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	return rawSessionAs(t, e, "carol", "fuzz", 15*time.Second)
}

// exchange sends msgs and reads until as many ReadyForQuery as msgs has Syncs and Queries.
// It returns what came back, and false if the session ended first.
func exchange(t testing.TB, fe *pgproto3.Frontend, msgs ...pgproto3.FrontendMessage) (out []pgproto3.BackendMessage, open bool) {
	t.Helper()
	ready := 0
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			ready++
		}
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		return nil, false
	}
	for ready > 0 {
		m, err := fe.Receive()
		if err != nil {
			return out, false
		}
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			ready--
		case *pgproto3.ErrorResponse:
			cp := *m
			out = append(out, &cp)
			if m.Severity == "FATAL" {
				return out, false
			}
		case *pgproto3.CommandComplete:
			out = append(out, &pgproto3.CommandComplete{CommandTag: append([]byte(nil), m.CommandTag...)})
		case *pgproto3.NoticeResponse:
			cp := *m
			out = append(out, &cp)
		default:
			out = append(out, m)
		}
	}
	return out, true
}

// tags returns the command tags among msgs.
func tags(msgs []pgproto3.BackendMessage) []string {
	var out []string
	for _, m := range msgs {
		if cc, ok := m.(*pgproto3.CommandComplete); ok {
			out = append(out, string(cc.CommandTag))
		}
	}
	return out
}

func errorCodes(msgs []pgproto3.BackendMessage) []string {
	var out []string
	for _, m := range msgs {
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			out = append(out, er.Code)
		}
	}
	return out
}

// ordersIntact checks that no write reached the orders table.
func ordersIntact(t testing.TB, e *env) {
	t.Helper()
	var n, changed int
	err := e.upstream(t).QueryRow(context.Background(), "SELECT count(*), count(*) FILTER (WHERE status <> 'new') FROM orders").Scan(&n, &changed)
	if err != nil {
		t.Fatal(err)
	}
	if n != 5000 || changed != 0 {
		t.Fatalf("a write reached PostgreSQL: %d rows, %d changed (want 5000, 0)", n, changed)
	}
}

const (
	del = "DELETE FROM orders WHERE id = 5"
	upd = "UPDATE orders SET status = 'evil' WHERE id = 6"
)

// TestServerConfirmedNames runs each known way to make the proxy's idea of a prepared
// statement or portal differ from PostgreSQL's: in every one, the write must not run.
func TestServerConfirmedNames(t *testing.T) {
	e := newEnv(t)
	type batch []pgproto3.FrontendMessage
	sync := &pgproto3.Sync{}
	exec := func(stmt string) batch {
		return batch{&pgproto3.Bind{PreparedStatement: stmt}, &pgproto3.Execute{}, sync}
	}
	q := func(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }
	for _, tc := range []struct {
		name      string
		batches   []batch
		pipelined bool // send every batch before reading any answer
	}{
		{name: "failed Parse keeps the first statement (the reported case)", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, sync},
			{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, sync},
			exec("s1"),
		}},
		{name: "the same, pipelined", pipelined: true, batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, sync},
			{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, sync},
			exec("s1"),
		}},
		{name: "the same, in one pipeline with Flush", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, &pgproto3.Flush{}, &pgproto3.Parse{Name: "s1", Query: "SELECT 1"},
				&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, sync},
			exec("s1"),
		}},
		{name: "SQL PREPARE shares the namespace and fails", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, sync},
			{q("PREPARE s1 AS SELECT 1")},
			exec("s1"),
			{q("EXECUTE s1")},
		}},
		{name: "Close and Parse skipped after an error", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: upd}, sync},
			{&pgproto3.Parse{Name: "x", Query: "SELEC nonsense"}, &pgproto3.Close{ObjectType: 'S', Name: "s1"},
				&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, sync},
			exec("s1"),
		}},
		{name: "DEALLOCATE in an aborted transaction", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, sync},
			{q("BEGIN")}, {q("SELECT 1/0")}, {q("DEALLOCATE s1")},
			{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, sync},
			{q("ROLLBACK")},
			exec("s1"),
		}},
		{name: "DISCARD ALL refused inside a transaction block", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, sync},
			{q("BEGIN")}, {q("DISCARD ALL")}, {q("ROLLBACK")},
			{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, sync},
			exec("s1"),
		}},
		{name: "DEALLOCATE of another name", batches: []batch{
			{&pgproto3.Parse{Name: "s1", Query: del}, sync},
			{q("DEALLOCATE s2")},
			{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, sync},
			exec("s1"),
		}},
		{name: "a portal rebound under a savepoint", batches: []batch{
			{&pgproto3.Parse{Name: "w", Query: del}, &pgproto3.Parse{Name: "r", Query: "SELECT 1"}, sync},
			{q("BEGIN")},
			{&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "w"}, sync},
			{q("SAVEPOINT a")},
			{&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "r"}, sync},
			{q("ROLLBACK TO a")},
			{&pgproto3.Execute{Portal: "p"}, sync},
			{q("COMMIT")},
		}},
		{name: "a portal closed in a skipped message", batches: []batch{
			{&pgproto3.Parse{Name: "w", Query: upd}, &pgproto3.Parse{Name: "r", Query: "SELECT 1"}, sync},
			{q("BEGIN")},
			{&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "w"}, sync},
			{q("SAVEPOINT a")},
			{&pgproto3.Parse{Name: "x", Query: "SELEC nonsense"}, &pgproto3.Close{ObjectType: 'P', Name: "p"},
				&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "r"}, sync},
			{q("ROLLBACK TO a")},
			{&pgproto3.Execute{Portal: "p"}, sync},
			{q("COMMIT")},
		}},
		{name: "a statement Parsed over an unnamed one that failed", batches: []batch{
			{&pgproto3.Parse{Query: del}, sync},
			{&pgproto3.Parse{Query: "SELEC nonsense"}, sync},
			exec(""),
		}},
		{name: "DECLARE over a portal name in a failed statement", batches: []batch{
			{&pgproto3.Parse{Name: "w", Query: "SELECT * FROM orders WHERE id = 7 FOR UPDATE"}, sync},
			{q("BEGIN")},
			{&pgproto3.Bind{DestinationPortal: "c", PreparedStatement: "w"}, sync},
			{q("SAVEPOINT a")}, {q("DECLARE c CURSOR FOR SELECT 1")}, {q("ROLLBACK TO a")},
			{&pgproto3.Execute{Portal: "c"}, sync},
			{q("ROLLBACK")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fe := fuzzSession(t, e)
			var all []pgproto3.BackendMessage
			if tc.pipelined {
				var msgs []pgproto3.FrontendMessage
				for _, b := range tc.batches {
					msgs = append(msgs, b...)
				}
				all, _ = exchange(t, fe, msgs...)
			} else {
				for _, b := range tc.batches {
					out, open := exchange(t, fe, b...)
					all = append(all, out...)
					if !open {
						break
					}
				}
			}
			for _, tag := range tags(all) {
				if strings.HasPrefix(tag, "DELETE") || strings.HasPrefix(tag, "UPDATE") {
					t.Errorf("the client saw %q", tag)
				}
			}
			ordersIntact(t, e)
			if len(errorCodes(all)) == 0 {
				t.Errorf("no statement was refused: tags %v", tags(all))
			}
		})
	}
	if n := countEvents(t, e, audit.TypePGMismatch); n != 0 {
		t.Errorf("%d mismatches: a decision was deceived and only the tag check caught it", n)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// countEvents counts the audit events of a type written so far.
func countEvents(t testing.TB, e *env, typ string) int {
	t.Helper()
	n := 0
	if err := audit.Scan(e.auditDir, audit.Filter{Type: typ}, func(*audit.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConfirmedNamesStillWork: what clients legitimately do with names keeps working, and
// is decided on what the names really are.
func TestConfirmedNamesStillWork(t *testing.T) {
	e := newEnv(t)
	_, fe := fuzzSession(t, e)
	q := func(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }
	step := func(want string, msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		out, open := exchange(t, fe, msgs...)
		if !open {
			t.Fatalf("session ended: %v", out)
		}
		got := strings.Join(tags(out), ",") + "|" + strings.Join(errorCodes(out), ",")
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	// Re-preparing a name after DEALLOCATE, Close and DISCARD ALL: the new text counts.
	step("PREPARE|", q("PREPARE s1 AS SELECT 1"))
	step("SELECT 1|", q("EXECUTE s1"))
	step("DEALLOCATE|", q("DEALLOCATE s1"))
	step("|", &pgproto3.Parse{Name: "s1", Query: "SELECT 2"}, &pgproto3.Sync{})
	step("SELECT 1|", &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	step("|", &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Parse{Name: "s1", Query: del}, &pgproto3.Sync{})
	step("|42501", &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	step("DISCARD ALL|", q("DISCARD ALL"))
	step("|", &pgproto3.Parse{Name: "s1", Query: "SELECT 3"}, &pgproto3.Sync{})
	step("SELECT 1|", &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	// A pipeline over names it creates: decided without waiting, as the server will see them.
	step("SELECT 1,SELECT 1|", &pgproto3.Parse{Name: "a", Query: "SELECT 4"}, &pgproto3.Bind{DestinationPortal: "pa", PreparedStatement: "a"},
		&pgproto3.Execute{Portal: "pa"}, &pgproto3.Parse{Name: "b", Query: "SELECT 5"}, &pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	// Two pipelines sent at once; the second's names depend on the first's answers.
	step("DEALLOCATE,SELECT 1|", q("DEALLOCATE a"), &pgproto3.Parse{Name: "a", Query: "SELECT 6"}, &pgproto3.Bind{PreparedStatement: "a"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	// A cursor, fetched through the protocol.
	step("BEGIN|", q("BEGIN"))
	step("DECLARE CURSOR|", q("DECLARE c CURSOR FOR SELECT id FROM orders ORDER BY id"))
	step("SELECT 5000|", &pgproto3.Execute{Portal: "c", MaxRows: 0}, &pgproto3.Sync{})
	step("COMMIT|", q("COMMIT"))
	// After the transaction the cursor is gone, for the server and for Portcullis.
	step("|42501", &pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
	ordersIntact(t, e)

	// pgx's statement cache over many statements, and its batches.
	c, err := pgx.Connect(context.Background(), e.dsn("carol", "fuzz"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for i := range 20 {
		var n int
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM orders WHERE id > $1", i).Scan(&n); err != nil || n != 5000-i {
			t.Fatalf("pgx: %d %v", n, err)
		}
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT count(*) FROM orders WHERE id < $1", 10)
	b.Queue(del)
	err = c.SendBatch(context.Background(), b).Close()
	if pgCode(err) != "42501" {
		t.Errorf("batch with a DELETE: %v", err)
	}
	ordersIntact(t, e)
}

// TestExtendedProtocolClientIsToldItWaits: pgx (extended protocol, parameters) gets the
// approval notice while its statement waits, not after, with a link to the request page.
func TestExtendedProtocolClientIsToldItWaits(t *testing.T) {
	e := newEnv(t)
	notices := make(chan *pgconn.Notice, 4)
	cfg, err := pgx.ParseConfig(e.dsn("alice", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n }
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "UPDATE orders SET status = 'paid' WHERE id = $1", 9)
		done <- err
	}()
	req := e.pending(t)
	var n *pgconn.Notice
	select {
	case n = <-notices:
	case err := <-done:
		t.Fatalf("the statement ended before any notice: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no notice while the statement waits for approval")
	}
	if !strings.Contains(n.Message, req.ID) || !strings.Contains(n.Detail, "http://portcullis.test/requests/"+req.ID) {
		t.Errorf("notice: %q / %q", n.Message, n.Detail)
	}
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("approved statement: %v", err)
	}
	if e.count(t, "status = 'paid'") != 1 {
		t.Fatal("the approved UPDATE did not run")
	}
}

// TestAuditFailureOnARefusedPathIsLoud: when the audit log fails while a refused or
// abandoned statement is closed, the statement stays refused and the loss is logged.
func TestAuditFailureOnARefusedPathIsLoud(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	e := newEnv(t, func(s *pgwire.Server) { s.Log = slog.New(slog.NewTextHandler(logs, nil)) })
	done, _ := runAsync(t, e, "alice", "UPDATE orders SET status = 'x' WHERE id = 3")
	req := e.pending(t)
	// The request exists a moment before its held statement's event is durable (and a
	// log closed in between refuses the statement as unaudited, another path): wait for it.
	for deadline := time.Now().Add(5 * time.Second); !e.audited(t, req.ID, "waiting"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held statement's event was not written")
		}
	}
	e.log.Close()
	if _, err := e.approvals.Deny(context.Background(), req.ID, &subjectBob, "no"); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); pgCode(err) != "42501" {
		t.Fatalf("denied statement: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "AUDIT WRITE FAILED"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the lost audit event was not logged:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "pg.approval.closed") {
		t.Errorf("the log does not say which event was lost:\n%s", logs.String())
	}
}

// TestTagCheckKnowsLegitimateTraffic: statements whose answer's tag differs from their
// kind in a harmless way do not trip the tag check (a read COPY after another statement,
// SELECT INTO's and CREATE TABLE AS's SELECT tag, EXPLAIN ANALYZE, SET ROLE's SET).
func TestTagCheckKnowsLegitimateTraffic(t *testing.T) {
	e := newEnv(t)
	_, fe := rawSessionAs(t, e, "alice", "bench", 15*time.Second)
	for _, sql := range []string{
		"SELECT 1; COPY (SELECT id FROM orders WHERE id < 3) TO STDOUT",
		"COPY (SELECT 1) TO STDOUT; SELECT 2",
		"CREATE TEMP TABLE t1 AS SELECT 1 AS x",
		"SELECT 1 AS y INTO TEMP t2",
		"EXPLAIN ANALYZE UPDATE orders SET status = status WHERE id = 1",
		"SET ROLE NONE",
		"SELECT count(*) FROM pg_class WHERE pg_table_is_visible(oid)",
		"VALUES (1), (2)",
		"BEGIN; DECLARE c CURSOR FOR SELECT 1; FETCH ALL c; CLOSE c; COMMIT",
	} {
		out, open := exchange(t, fe, &pgproto3.Query{String: sql})
		if !open {
			t.Fatalf("%s ended the session: %v", sql, out)
		}
		if codes := errorCodes(out); len(codes) > 0 {
			t.Errorf("%s: errors %v", sql, codes)
		}
	}
	if n := countEvents(t, e, audit.TypePGMismatch); n != 0 {
		t.Errorf("%d mismatches on legitimate statements", n)
	}
}

// TestTerminateAfterAPipeline: a client that sends Terminate right behind its pipeline
// still gets every answer owed before it, as from PostgreSQL itself.
func TestTerminateAfterAPipeline(t *testing.T) {
	e := newEnv(t)
	conn, fe := fuzzSession(t, e)
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Query{String: "DELETE FROM orders"}, // refused by Portcullis
		&pgproto3.Query{String: "SELECT 3"}, &pgproto3.Terminate{},
	}
	if _, err := conn.Write(encodeAll(msgs...)); err != nil {
		t.Fatal(err)
	}
	ready, fatal, start := 0, false, time.Now()
	for {
		m, err := fe.Receive()
		if err != nil {
			break
		}
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			ready++
		case *pgproto3.ErrorResponse:
			fatal = fatal || m.Severity == "FATAL"
		}
	}
	t.Logf("session took %v", time.Since(start))
	if ready != 4 || fatal {
		t.Errorf("got %d ReadyForQuery (want 4) before the end; FATAL: %v", ready, fatal)
	}
}

// TestPipelineWaitIsBounded: a decision that depends on an earlier pipeline's answers waits
// for them, but only up to Server.PipelineWait; answers that do not come by then leave the
// names unknown (fail closed) instead of holding the session.
func TestPipelineWaitIsBounded(t *testing.T) {
	// The earlier pipeline's Parse comes after a read that takes a while, so its answer
	// cannot arrive before that read ends, however the messages are split into reads.
	slow := "SELECT count(*) FROM generate_series(1, 10000000)"
	pipeline := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: slow},
		&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{},
	}
	for _, tc := range []struct {
		wait     time.Duration
		decision string
	}{{30 * time.Second, "allowed"}, {50 * time.Millisecond, "unknown"}} {
		e := newEnv(t, func(s *pgwire.Server) { s.PipelineWait = tc.wait })
		_, fe := rawSessionAs(t, e, "alice", "orders", 60*time.Second)
		// The slow read must not meet the test role's 5 s statement_timeout on a busy machine.
		if out, _ := exchange(t, fe, &pgproto3.Query{String: "SET statement_timeout = 0"}); len(errorCodes(out)) > 0 {
			t.Fatalf("SET statement_timeout: %v", errorCodes(out))
		}
		out, open := exchange(t, fe, pipeline...)
		if !open {
			t.Fatalf("wait %v: session ended: %v", tc.wait, out)
		}
		rows := 0
		for _, m := range out {
			if _, ok := m.(*pgproto3.DataRow); ok {
				rows++
			}
		}
		got := "allowed"
		if slicesContain(errorCodes(out), "42501") {
			got = "unknown"
		}
		if got != tc.decision || (got == "allowed" && rows != 2) {
			t.Errorf("wait %v: the Execute was %s (%d rows, errors %v), want %s", tc.wait, got, rows, errorCodes(out), tc.decision)
		}
	}
}
