package pgwire_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestDecisionsAPIAgreesWithTheProxy asks POST /api/v1/decisions and runs the same
// statement through the proxy, for a table of cases: each must come out the same.
func TestDecisionsAPIAgreesWithTheProxy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.upstream(t).Exec(ctx, "CREATE FUNCTION order_count() RETURNS bigint STABLE LANGUAGE sql AS 'SELECT count(*) FROM orders'"); err != nil {
		t.Fatal(err)
	}
	// erin holds the orders-writer grant; dave has broken glass for writes.
	code, body := e.get(t, "erin", "POST", "/api/v1/elevations", `{"role": "orders-writer", "duration": "1h", "reason": "hotfix INC-9"}`)
	if code != 200 {
		t.Fatalf("elevation request: %d %v", code, body)
	}
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+body["id"].(string)+"/approve", ""); code != 200 {
		t.Fatalf("approve the elevation: %d", code)
	}
	if code, body := e.get(t, "dave", "POST", "/api/v1/breakglass", `{"scope": {"resources": ["orders"], "actions": ["write"]}, "duration": "30m", "reason": "INC-5 stuck orders", "incident": "INC-5"}`); code != 200 || body["state"] != "approved" {
		t.Fatalf("break glass: %d %v", code, body)
	}

	cases := []struct {
		user, sql, want string
	}{
		{"alice", "SELECT count(*) FROM orders", "allow"},
		{"alice", "SELECT order_count()", "allow"}, // a STABLE function: the upstream says so
		{"alice", "UPDATE orders SET status = 'a' WHERE id = 21", "require_approval"},
		{"erin", "UPDATE orders SET status = 'e' WHERE id = 22", "allow"}, // the grant
		{"erin", "DELETE FROM orders WHERE id = 23", "deny"},              // the grant excepts her from orders-write, and grants writes only
		{"dave", "UPDATE orders SET status = 'd' WHERE id = 24", "allow"}, // break-glass
		{"dave", "ALTER TABLE orders ADD COLUMN x int", "deny"},           // outside the break-glass scope
		{"alice", "ALTER TABLE orders ADD COLUMN y int", "deny"},
		{"bob", "DELETE FROM orders", "deny"}, // 5000 rows estimated: big-deletes
	}
	for _, tc := range cases {
		t.Run(tc.user+" "+tc.sql, func(t *testing.T) {
			_, api := e.get(t, tc.user, "POST", "/api/v1/decisions", toJSON(map[string]string{"resource": "orders", "sql": tc.sql}))
			if api["effect"] != tc.want {
				t.Errorf("the decisions API says %v (%v), want %s", api["effect"], api["reason"], tc.want)
			}
			if got := e.proxyEffect(t, tc.user, tc.sql); got != tc.want {
				t.Errorf("the proxy did %s, want %s", got, tc.want)
			}
			if tc.user == "dave" && tc.want == "allow" && api["break_glass"] == nil {
				t.Errorf("the API does not name the break-glass session: %v", api)
			}
		})
	}
}

// proxyEffect runs sql through the proxy as user and says what Portcullis did with it:
// allow (it reached PostgreSQL), deny, or require_approval (a request appeared; it is
// denied again so the statement ends).
func (e *env) proxyEffect(t *testing.T, user, sql string) string {
	t.Helper()
	c := e.connect(t, user)
	before, _ := e.approvals.List(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Exec(context.Background(), sql); done <- err }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" && contains(pe.Message, "Portcullis") {
				return "deny"
			}
			return "allow"
		default:
		}
		all, _ := e.approvals.List(context.Background())
		if len(all) > len(before) && all[0].Pending() && all[0].Requester.User == user {
			approver := "bob"
			if user == "bob" {
				approver = "erin"
			}
			e.call(t, approver, "POST", "/api/v1/approvals/"+all[0].ID+"/deny", `{"comment": "test"}`)
			wait(t, done)
			return "require_approval"
		}
	}
	t.Fatal("the statement neither ended nor asked for approval")
	return ""
}
