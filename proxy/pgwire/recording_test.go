package pgwire_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit"
)

func TestAuditAndRecording(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.connect(t, "alice")
	c.Exec(ctx, "SELECT count(*) FROM orders WHERE id < $1", 10)
	c.Exec(ctx, "DROP TABLE orders", pgx.QueryExecModeSimpleProtocol)
	c.Close(ctx)

	// Every statement is in the audit log, allowed and denied, with its decision.
	var stmts, results []*audit.Event
	var session string
	ended := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !ended; time.Sleep(50 * time.Millisecond) {
		stmts, results = nil, nil
		audit.Scan(e.auditDir, audit.Filter{Actor: "alice"}, func(ev *audit.Event) error {
			switch ev.Type {
			case "pg.statement":
				stmts = append(stmts, ev)
				session = ev.Session
			case "pg.result":
				results = append(results, ev)
			case "pg.session.end":
				ended = true
			}
			return nil
		})
	}
	if len(stmts) != 2 || len(results) != 1 {
		t.Fatalf("audit: %d statement events, %d results", len(stmts), len(results))
	}
	if s := stmts[0]; s.Decision != "allow" || s.Rules[0] != "orders-read" || s.PolicyHash != e.cfg.Engine.Snapshot() || s.Details["class"] != "read" || s.Details["params_digest"] == nil {
		t.Errorf("allowed statement event: %+v", s)
	}
	if s := stmts[1]; s.Decision != "deny" || s.Result != "denied" || s.Action != "DROP TABLE orders" {
		t.Errorf("denied statement event: %+v", s)
	}
	if r := results[0]; r.Result != "ok" || r.Details["tag"] != "SELECT 1" {
		t.Errorf("result event: %+v", r)
	}

	// The recording API: alice sees her session; bob does not; carol (a reader) does.
	code, body := e.get(t, "alice", "GET", "/api/v1/sessions", "")
	if code != 200 || !strings.Contains(toJSON(body), session) {
		t.Fatalf("alice's sessions: %d %v", code, body)
	}
	code, body = e.get(t, "alice", "GET", "/api/v1/sessions/"+session+"/recording", "")
	rec := toJSON(body)
	if code != 200 || !strings.Contains(rec, "DROP TABLE orders") || !strings.Contains(rec, `"pg.session.end"`) || !strings.Contains(rec, `"offset_ms"`) {
		t.Errorf("recording: %d %s", code, rec)
	}
	if code, _ := e.get(t, "bob", "GET", "/api/v1/sessions/"+session+"/recording", ""); code != 404 {
		t.Errorf("bob reading alice's recording: %d, want 404", code)
	}
	if code, body := e.get(t, "carol", "GET", "/api/v1/sessions/"+session+"/recording", ""); code != 200 || !strings.Contains(toJSON(body), "DROP TABLE") {
		t.Errorf("carol (audit reader): %d", code)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestWritesInATransactionBlockAreDurableByCommit checks the audit durability rule: a write
// inside BEGIN ... COMMIT is written before it runs, and everything is durable before the
// COMMIT runs.
func TestWritesInATransactionBlockAreDurableByCommit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, e.dsn("bob", "bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE orders SET status = 'tx' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var update, commit *audit.Event
	audit.Scan(e.auditDir, audit.Filter{Type: "pg.statement", Actor: "bob"}, func(ev *audit.Event) error {
		switch ev.Details["kind"] {
		case "UPDATE":
			update = ev
		case "COMMIT":
			commit = ev
		}
		return nil
	})
	if update == nil || commit == nil || update.Details["in_transaction"] != true || commit.Seq < update.Seq {
		t.Fatalf("audit events: update %+v commit %+v", update, commit)
	}
	if e.count(t, "status = 'tx'") != 1 {
		t.Error("the committed update is missing")
	}
}

// TestPipelineSkipsAreAudited checks that statements PostgreSQL skipped after an error in
// the same pipeline are audited as skipped, not as run.
func TestPipelineSkipsAreAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.connect(t, "alice")
	b := &pgx.Batch{}
	b.Queue("SELECT 1/(id-id) FROM orders WHERE id = 1") // fails when it runs
	b.Queue("SELECT 2")
	if err := c.SendBatch(ctx, b).Close(); err == nil {
		t.Fatal("the batch did not fail")
	}
	var results []string
	for deadline := time.Now().Add(5 * time.Second); len(results) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		results = nil
		audit.Scan(e.auditDir, audit.Filter{Type: "pg.result", Actor: "alice"}, func(ev *audit.Event) error {
			results = append(results, ev.Result)
			return nil
		})
	}
	if strings.Join(results, ",") != "error,skipped" {
		t.Errorf("pipeline results audited as %v, want [error skipped]", results)
	}
}
