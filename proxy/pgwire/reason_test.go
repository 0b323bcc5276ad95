package pgwire_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestStatementReason checks SET portcullis.reason and its connect-time forms: the
// approver sees the reason with the statement, the server never sees it, and a policy's
// require_reason holds statements without one.
func TestStatementReason(t *testing.T) {
	e := newEnvYAML(t, func(y string) string {
		return strings.Replace(y, "quorum: {required_teams: [sre], timeout: 30s}", "quorum: {required_teams: [sre], timeout: 30s, require_reason: true}", 1)
	})
	ctx := context.Background()
	held := func(t *testing.T, c *pgx.Conn, sql string) string {
		t.Helper()
		done := make(chan error, 1)
		go func() { _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); done <- err }()
		r := e.pending(t)
		_, got := e.get(t, "bob", "GET", "/api/v1/approvals/"+r.ID, "")
		if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+r.ID+"/deny", `{"comment": "not now"}`); code != 200 {
			t.Fatalf("deny: %d", code)
		}
		if err := wait(t, done); err == nil {
			t.Fatal("a denied statement ran")
		}
		if art, _ := got["artifact"].(map[string]any); art["reason"] != r.Artifact.Reason {
			t.Errorf("the API shows reason %v, the request has %q", art["reason"], r.Artifact.Reason)
		}
		return r.Artifact.Reason
	}

	t.Run("none given", func(t *testing.T) {
		c := e.connect(t, "alice")
		_, err := c.Exec(ctx, "UPDATE orders SET status = 'x' WHERE id = 1")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "needs a reason") || !strings.Contains(pe.Hint, "SET portcullis.reason") {
			t.Fatalf("a statement without a reason under require_reason: %v", err)
		}
		if all, _ := e.approvals.List(ctx); len(all) != 0 {
			t.Error("a request was made without a reason")
		}
	})
	t.Run("SET", func(t *testing.T) {
		c := e.connect(t, "alice")
		if _, err := c.Exec(ctx, "SET portcullis.reason = 'fix order 2, TICKET-12'"); err != nil {
			t.Fatal(err)
		}
		var shown string
		if err := c.QueryRow(ctx, "SHOW portcullis.reason", pgx.QueryExecModeSimpleProtocol).Scan(&shown); err != nil || shown != "fix order 2, TICKET-12" {
			t.Errorf("SHOW portcullis.reason: %q, %v", shown, err)
		}
		// The server never saw it.
		var upstream *string
		if err := c.QueryRow(ctx, "SELECT current_setting('portcullis.reason', true)").Scan(&upstream); err != nil || upstream != nil && *upstream != "" {
			t.Errorf("the upstream has portcullis.reason = %v (%v)", upstream, err)
		}
		if got := held(t, c, "UPDATE orders SET status = 'x' WHERE id = 2"); got != "fix order 2, TICKET-12" {
			t.Errorf("reason %q", got)
		}
		// Valid until changed, in a transaction too; RESET clears it.
		if _, err := c.Exec(ctx, "BEGIN; "); err != nil {
			t.Fatal(err)
		}
		if got := held(t, c, "UPDATE orders SET status = 'y' WHERE id = 3"); got != "fix order 2, TICKET-12" {
			t.Errorf("reason in a block %q", got)
		}
		c.Exec(ctx, "ROLLBACK")
		if _, err := c.Exec(ctx, "RESET portcullis.reason"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "UPDATE orders SET status = 'x' WHERE id = 1"); err == nil || !strings.Contains(err.Error(), "needs a reason") {
			t.Errorf("after RESET: %v", err)
		}
	})
	t.Run("connect time", func(t *testing.T) {
		for _, p := range []string{"portcullis.reason=restore%20backup%2C%20INC-7", `options=-c%20portcullis.reason%3Drestore%5C%20backup,%5C%20INC-7`} {
			c, err := pgx.Connect(ctx, e.dsn("alice", "orders", p))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			if got := held(t, c, "UPDATE orders SET status = 'z' WHERE id = 4"); got != "restore backup, INC-7" {
				t.Errorf("%s: reason %q", p, got)
			}
		}
	})
	t.Run("refused forms", func(t *testing.T) {
		c := e.connect(t, "alice")
		for sql, want := range map[string]string{
			"SET portcullis.reasons = 'x'":                               "unrecognized Portcullis setting",
			"SET portcullis.reason = 'x'; SELECT 1":                      "statement of its own",
			"SET portcullis.reason = '" + strings.Repeat("x", 501) + "'": "too long",
		} {
			if _, err := c.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%.40s: %v", sql, err)
			}
		}
		// As a prepared statement: refused with how to do it.
		_, err := c.PgConn().Prepare(ctx, "s", "SET portcullis.reason = 'x'", nil)
		if err == nil || !strings.Contains(err.Error(), "simple query") {
			t.Errorf("over the extended protocol: %v", err)
		}
		if err := c.Ping(ctx); err != nil {
			t.Errorf("the session after refusals: %v", err)
		}
	})
}

// TestConnectNotices checks what the client hears at connect time: a NOTICE when the user
// name and the token's identity differ, and the resources it may use when it names none.
func TestConnectNotices(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(strings.Replace(e.dsn("alice", "orders"), token("alice"), token("bob"), 1))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Message+" "+n.Hint)
		mu.Unlock()
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	mu.Lock()
	if len(notices) != 1 || !strings.Contains(notices[0], `connected as user "alice", but the token is bob's`) || !strings.Contains(notices[0], "-U bob") {
		t.Errorf("notices at connect: %q", notices)
	}
	mu.Unlock()
	// Her own name: no notice.
	notices = nil
	cfg2, _ := pgx.ParseConfig(e.dsn("alice", "orders"))
	cfg2.OnNotice = cfg.OnNotice
	c2, err := pgx.ConnectConfig(ctx, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close(ctx)
	if len(notices) != 0 {
		t.Errorf("notices for a matching user: %q", notices)
	}

	_, err = pgx.Connect(ctx, e.dsn("alice", "ordres"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "3D000" || !strings.Contains(pe.Hint, "Resources you may use") || !strings.Contains(pe.Hint, "orders") {
		t.Errorf("an unknown database: %v (hint %q)", err, hintOf(err))
	}
	// A stranger learns nothing about the resources.
	_, err = pgx.Connect(ctx, strings.Replace(e.dsn("alice", "ordres"), token("alice"), "not-a-token", 1))
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("an unknown database with a bad token: %v", err)
	}
}

func hintOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Hint
	}
	return ""
}
