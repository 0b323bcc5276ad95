package pgwire_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestApprovedStatementOutcome checks that an approved statement's request says what
// became of it upstream — ran with its tag, failed with its SQLSTATE, never ran — in the
// API, for the simple and the extended protocol.
func TestApprovedStatementOutcome(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, sql string
		args      []any
		mode      pgx.QueryExecMode
		status    string
		note      string
	}{
		{"ran, simple", "UPDATE orders SET status = 'ok' WHERE id = 11", nil, pgx.QueryExecModeSimpleProtocol, "executed", "UPDATE 1"},
		{"ran, extended", "UPDATE orders SET status = 'ok' WHERE id = $1", []any{12}, pgx.QueryExecModeCacheStatement, "executed", "UPDATE 1"},
		{"failed, simple", "UPDATE orders SET status = NULL WHERE id = 13", nil, pgx.QueryExecModeSimpleProtocol, "failed", "23502: null value in column \"status\""},
		{"failed, extended", "UPDATE orders SET id = $1 WHERE id = 14", []any{15}, pgx.QueryExecModeCacheStatement, "failed", "23505: duplicate key value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.connect(t, "alice")
			done := make(chan error, 1)
			go func() {
				_, err := c.Exec(context.Background(), tc.sql, append([]any{tc.mode}, tc.args...)...)
				done <- err
			}()
			req := e.pending(t)
			// No policy reads the estimate of an UPDATE here; the approver gets it anyway.
			if req.Artifact.EstimatedRows != 1 {
				t.Errorf("a held UPDATE of one row is estimated at %d rows", req.Artifact.EstimatedRows)
			}
			if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
				t.Fatalf("approve: %d", code)
			}
			err := wait(t, done)
			if (err != nil) != (tc.status == "failed") {
				t.Fatalf("the statement ended with %v", err)
			}
			var got map[string]any
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				_, got = e.get(t, "alice", "GET", "/api/v1/approvals/"+req.ID, "")
				if got["outcome"] != nil { // recorded a moment after the client has its answer
					break
				}
			}
			note, _ := got["status_note"].(string)
			if got["status"] != tc.status || !strings.HasPrefix(note, tc.note) {
				t.Errorf("status %v (%q), want %s (%s…)", got["status"], note, tc.status, tc.note)
			}
			// The console's inbox and history show the same.
			_, list := e.get(t, "bob", "GET", "/api/v1/approvals?state=all", "")
			for _, v := range list["approvals"].([]any) {
				if v := v.(map[string]any); v["id"] == req.ID && v["status"] != tc.status {
					t.Errorf("listed as %v", v["status"])
				}
			}
		})
	}

	// Approved, but an earlier message of its pipeline failed: the server skipped it.
	t.Run("never ran", func(t *testing.T) {
		_, fe := rawSessionAs(t, e, "alice", "orders", 20*time.Second)
		fe.Send(&pgproto3.Parse{Query: "SELECT 1/0"})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Parse{Name: "w", Query: "UPDATE orders SET status = 'skipped' WHERE id = 17"})
		fe.Send(&pgproto3.Bind{PreparedStatement: "w"})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		req := e.pending(t)
		if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/approve", ""); code != 200 {
			t.Fatalf("approve: %d", code)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		var got map[string]any
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && got["outcome"] == nil; time.Sleep(20 * time.Millisecond) {
			_, got = e.get(t, "alice", "GET", "/api/v1/approvals/"+req.ID, "")
		}
		if got["status"] != "never ran" || !strings.Contains(got["status_note"].(string), "earlier message") {
			t.Errorf("status %v (%v), want never ran", got["status"], got["status_note"])
		}
		if e.count(t, "status = 'skipped'") != 0 {
			t.Error("the skipped statement ran")
		}
	})
}

// TestEachExecutionIsEstimated: a prepared UPDATE executed twice with other parameters is
// estimated for each execution, not shown the first one's estimate.
func TestEachExecutionIsEstimated(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	const sql = "UPDATE orders SET status = 'bulk' WHERE id <= $1"
	var estimates []int64
	for _, upTo := range []int{10, 3000} {
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(context.Background(), sql, pgx.QueryExecModeCacheStatement, upTo)
			done <- err
		}()
		req := e.pending(t)
		estimates = append(estimates, req.Artifact.EstimatedRows)
		if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/deny", `{"comment": "no"}`); code != 200 {
			t.Fatalf("deny: %d", code)
		}
		if err := wait(t, done); err == nil {
			t.Fatal("a denied statement ran")
		}
	}
	if estimates[0] < 5 || estimates[0] > 50 || estimates[1] < 1000 {
		t.Errorf("estimates %v, want about 10 then about 3000", estimates)
	}
}
