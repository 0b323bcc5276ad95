package pgwire_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/audit"
)

// lyingUpstream is a PostgreSQL server that answers every statement with tag: what a
// server that ran something else than what was decided looks like from the proxy.
func lyingUpstream(t *testing.T, tag string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				be := pgproto3.NewBackend(c, c)
				for {
					m, err := be.ReceiveStartupMessage()
					if err != nil {
						return
					}
					if _, ok := m.(*pgproto3.SSLRequest); ok {
						c.Write([]byte{'N'})
						continue
					}
					break
				}
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				be.Flush()
				for {
					m, err := be.Receive()
					if err != nil {
						return
					}
					switch m.(type) {
					case *pgproto3.Query:
						be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
						be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
					case *pgproto3.Parse:
						be.Send(&pgproto3.ParseComplete{})
					case *pgproto3.Bind:
						be.Send(&pgproto3.BindComplete{})
					case *pgproto3.Describe:
						be.Send(&pgproto3.NoData{})
					case *pgproto3.Execute:
						be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
					case *pgproto3.Sync:
						be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
					case *pgproto3.Terminate:
						return
					}
					be.Flush()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTagMismatchEndsTheSession: a statement decided as a read whose answer says it
// deleted rows ends the session, the client never sees the answer, and a flagged
// pg.mismatch event says what was decided and what ran.
func TestTagMismatchEndsTheSession(t *testing.T) {
	liar := lyingUpstream(t, "DELETE 5")
	e := newEnvYAML(t, func(y string) string {
		return strings.Replace(y, "  - name: down\n", `  - name: liar
    kind: postgres
    upstream: `+liar+`
    labels: {env: production}
    credentials: {static: {username: portcullis, password: x}}
  - name: down
`, 1) + `  - name: liar-read
    match: {resources: {names: [liar]}, actions: [read]}
    effect: allow
`
	})
	for _, simple := range []bool{true, false} {
		mode := pgx.QueryExecModeSimpleProtocol
		if !simple {
			mode = pgx.QueryExecModeExec
		}
		c, err := pgx.Connect(context.Background(), e.dsn("carol", "liar"))
		if err != nil {
			t.Fatal(err)
		}
		tag, err := c.Exec(context.Background(), "SELECT 1", mode)
		if err == nil || !strings.Contains(err.Error(), "did not allow") {
			t.Errorf("simple=%v: the lying answer reached the client: %q, %v", simple, tag, err)
		}
		if !c.IsClosed() && c.Ping(context.Background()) == nil {
			t.Errorf("simple=%v: the session outlived the mismatch", simple)
		}
		c.Close(context.Background())
	}
	var got []*audit.Event
	audit.Scan(e.auditDir, audit.Filter{Type: audit.TypePGMismatch}, func(ev *audit.Event) error { got = append(got, ev); return nil })
	if len(got) != 2 {
		t.Fatalf("%d pg.mismatch events, want 2", len(got))
	}
	ev := got[0]
	if ev.Alert != "mismatch" || ev.Actor != "carol" || ev.Action != "SELECT 1" || ev.Details["tag"] != "DELETE 5" || ev.Details["decided_class"] != "read" {
		t.Errorf("event: %+v", ev)
	}
	// An export filtered to something else still carries it.
	n := 0
	audit.Scan(e.auditDir, audit.Filter{Actor: "nobody"}, func(ev *audit.Event) error {
		if ev.Type == audit.TypePGMismatch {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Errorf("a filtered export dropped mismatches: %d of 2", n)
	}
	if metrics := e.metrics(t); !strings.Contains(metrics, `portcullis_alerts{alert="mismatch"} 2`) {
		t.Errorf("/metrics does not count the mismatches:\n%s", metrics)
	}
}
