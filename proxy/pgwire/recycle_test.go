package pgwire_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/audit"
)

// TestRecycledRecordsKeepPipelinesApart: a session reuses a statement's result record,
// a Bind's record (with its parameter values) and a Query's once the server has settled
// them. Long pipelines — one portal rebound again and again, named portals, a failure
// that makes the server skip the rest, simple queries sent together, the same text and
// different ones — must still give every statement its own parameters, text and outcome
// in the audit log, in order.
func TestRecycledRecordsKeepPipelinesApart(t *testing.T) {
	e := newEnvYAML(t, func(y string) string {
		return strings.Replace(y, "  - name: fuzz\n    kind: postgres\n", "  - name: fuzz\n    kind: postgres\n    audit_params: true\n", 1)
	})
	_, fe := fuzzSession(t, e)
	if _, ok := exchange(t, fe, &pgproto3.Parse{Name: "n", Query: "SELECT $1::int + 0 AS v"}, &pgproto3.Parse{Name: "t", Query: "SELECT $1::text AS w"},
		&pgproto3.Parse{Name: "d", Query: "SELECT 1 / ($1::int + x) AS v FROM generate_series(0, 0) x"}, &pgproto3.Sync{}); !ok {
		t.Fatal("parse failed")
	}
	type stmt struct{ text, param, result string }
	var want []stmt
	var msgs []pgproto3.FrontendMessage
	bindRun := func(portal, name, param, result string) {
		text := map[string]string{"n": "SELECT $1::int + 0 AS v", "t": "SELECT $1::text AS w", "d": "SELECT 1 / ($1::int + x) AS v FROM generate_series(0, 0) x"}[name]
		msgs = append(msgs, &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name, Parameters: [][]byte{[]byte(param)}}, &pgproto3.Execute{Portal: portal})
		want = append(want, stmt{text, param, result})
	}
	// One pipeline: the unnamed portal rebound 60 times, named portals among them.
	for i := range 60 {
		name := []string{"n", "t"}[i%2]
		portal := ""
		if i%7 == 0 {
			portal = fmt.Sprintf("p%d", i)
		}
		bindRun(portal, name, fmt.Sprint(i), "ok")
	}
	msgs = append(msgs, &pgproto3.Sync{})
	// Two more: the third statement fails, at its Execute (division by zero) or at its
	// Bind (not a number); the server skips the rest until Sync.
	for _, bad := range []struct{ name, param, result string }{{"d", "0", "error"}, {"n", "three", "skipped"}} {
		bindRun("", "n", "1", "ok")
		bindRun("", "t", "two", "ok")
		bindRun("", bad.name, bad.param, bad.result)
		bindRun("", "t", "four", "skipped")
		bindRun("p5", "n", "5", "skipped")
		msgs = append(msgs, &pgproto3.Sync{})
	}
	// Simple queries sent together: the same text twice, then different ones.
	for _, q := range []string{"SELECT 1", "SELECT 1", "SELECT 2", "SELECT 'x'", "SELECT 1"} {
		msgs = append(msgs, &pgproto3.Query{String: q})
		want = append(want, stmt{q, "", "ok"})
	}
	bindRun("", "n", "77", "ok") // the extended protocol again, after simple queries
	msgs = append(msgs, &pgproto3.Sync{})

	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for ready := 0; ready < 9; { // 4 Syncs, 5 Queries
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("session ended: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			ready++
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		}
	}
	var wantRows []string
	for _, s := range want {
		if s.result == "ok" {
			if s.param != "" {
				wantRows = append(wantRows, s.param)
			} else {
				wantRows = append(wantRows, strings.Trim(strings.TrimPrefix(s.text, "SELECT "), "'"))
			}
		}
	}
	if fmt.Sprint(rows) != fmt.Sprint(wantRows) {
		t.Fatalf("rows:\n got %v\nwant %v", rows, wantRows)
	}

	// Result events are queued, not waited for: read until the last one is there.
	var stmts, results []*audit.Event
	deadline := time.Now().Add(10 * time.Second)
	for {
		stmts, results = nil, nil
		if err := audit.Scan(e.auditDir, audit.Filter{Resource: "fuzz"}, func(ev *audit.Event) error {
			switch ev.Type {
			case audit.TypePGStatement:
				stmts = append(stmts, ev)
			case audit.TypePGResult:
				results = append(results, ev)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(results) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(stmts) < len(want) || len(results) < len(want) {
		t.Fatalf("%d statement events, %d result events; want %d of each", len(stmts), len(results), len(want))
	}
	stmts, results = stmts[len(stmts)-len(want):], results[len(results)-len(want):]
	for i, w := range want {
		s, r := stmts[i], results[i]
		var params []any
		if p, ok := s.Details["params"].([]any); ok {
			params = p
		}
		gotParam := ""
		if len(params) == 1 {
			gotParam = fmt.Sprint(params[0])
		}
		if s.Action != w.text || gotParam != w.param || s.Decision != "allow" {
			t.Errorf("statement %d: event %q params %v (%s), want %q [%s]", i, s.Action, params, s.Decision, w.text, w.param)
		}
		if r.Action != w.text || r.Result != w.result {
			t.Errorf("statement %d: result event %q %s (%s), want %q %s", i, r.Action, r.Result, r.Reason, w.text, w.result)
		}
		if w.result == "ok" && r.Details["tag"] != "SELECT 1" {
			t.Errorf("statement %d: tag %v", i, r.Details["tag"])
		}
	}

	// Portals bound in one pipeline of a transaction and run in a later one, after the
	// unnamed portal was rebound many times in between: each runs with its own values,
	// and its event says so.
	var ms []pgproto3.FrontendMessage
	ms = append(ms, &pgproto3.Query{String: "BEGIN"})
	for i := range 10 {
		ms = append(ms, &pgproto3.Bind{DestinationPortal: fmt.Sprintf("q%d", i), PreparedStatement: "n", Parameters: [][]byte{[]byte(fmt.Sprint(100 + i))}})
	}
	ms = append(ms, &pgproto3.Sync{})
	if out, ok := exchange(t, fe, ms...); !ok || len(errorCodes(out)) > 0 {
		t.Fatalf("binding: %v", out)
	}
	ms = ms[:0]
	for i := range 30 {
		ms = append(ms, &pgproto3.Bind{PreparedStatement: "t", Parameters: [][]byte{[]byte(fmt.Sprint("other", i))}}, &pgproto3.Execute{})
	}
	ms = append(ms, &pgproto3.Sync{})
	if out, ok := exchange(t, fe, ms...); !ok || len(errorCodes(out)) > 0 {
		t.Fatalf("rebinding: %v", out)
	}
	ms = ms[:0]
	for i := range 10 {
		ms = append(ms, &pgproto3.Execute{Portal: fmt.Sprintf("q%d", i)})
	}
	ms = append(ms, &pgproto3.Sync{}, &pgproto3.Query{String: "COMMIT"})
	out, ok := exchange(t, fe, ms...)
	if !ok || len(errorCodes(out)) > 0 {
		for _, m := range out {
			t.Logf("%T %+v", m, m)
		}
		t.Fatal("running failed")
	}
	stmts = nil
	if err := audit.Scan(e.auditDir, audit.Filter{Resource: "fuzz", Type: audit.TypePGStatement}, func(ev *audit.Event) error {
		stmts = append(stmts, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stmts = stmts[len(stmts)-11 : len(stmts)-1] // the ten Executes, before the COMMIT
	for i, s := range stmts {
		if want := fmt.Sprintf("[%d]", 100+i); s.Action != "SELECT $1::int + 0 AS v" || fmt.Sprint(s.Details["params"]) != want {
			t.Errorf("portal q%d ran as %q with %v, want %s", i, s.Action, s.Details["params"], want)
		}
	}
}
