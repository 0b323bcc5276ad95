package pgwire_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
)

// TestElevationLetsWritesRunDirectly: alice asks for orders-writer, bob approves through
// the same approvals API, alice's open session writes without per-statement approval,
// and when the grant ends her writes need approval again.
func TestElevationLetsWritesRunDirectly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.connect(t, "alice") // opened before the grant
	code, body := e.get(t, "alice", "POST", "/api/v1/elevations", `{"role": "orders-writer", "duration": "2s", "reason": "hotfix INC-9"}`)
	if code != 200 || body["type"] != "elevation" || body["state"] != "pending" {
		t.Fatalf("elevation request: %d %v", code, body)
	}
	id := body["id"].(string)
	if code, body := e.get(t, "bob", "GET", "/api/v1/approvals", ""); code != 200 || !contains(toJSON(body), id) || !contains(toJSON(body), `"type":"elevation"`) {
		t.Fatalf("bob's approvals queue: %d %v", code, body)
	}
	if code, _ := e.get(t, "alice", "POST", "/api/v1/elevations", `{"role": "orders-writer", "duration": "3h", "reason": "x"}`); code != 422 {
		t.Errorf("a duration the role does not offer: %d, want 422", code)
	}
	if code := e.call(t, "alice", "POST", "/api/v1/approvals/"+id+"/approve", ""); code != 403 {
		t.Errorf("self-approval of an elevation: %d", code)
	}
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+id+"/approve", ""); code != 200 {
		t.Fatalf("bob's approval: %d", code)
	}
	if _, err := c.Exec(ctx, "UPDATE orders SET status = 'granted' WHERE id = 5"); err != nil {
		t.Fatalf("a write under the grant: %v", err)
	}
	if e.count(t, "status = 'granted'") != 1 {
		t.Fatal("the write under the grant did not happen")
	}
	if code, body := e.get(t, "alice", "GET", "/api/v1/elevations", ""); code != 200 || !contains(toJSON(body), `"state":"approved"`) {
		t.Errorf("alice's elevations: %d %v", code, body)
	}
	// After not_after the grant no longer counts, without anyone doing anything.
	time.Sleep(2100 * time.Millisecond)
	done, _ := runAsync(t, e, "alice", "UPDATE orders SET status = 'late' WHERE id = 6")
	req := e.pending(t)
	if req.Type != elevation.TypeStatement {
		t.Errorf("after expiry the write asked for %s", req.Type)
	}
	e.call(t, "bob", "POST", "/api/v1/approvals/"+req.ID+"/deny", "")
	wait(t, done)
	if ended, err := e.approvals.EndExpired(ctx); err != nil || len(ended) != 1 {
		t.Errorf("EndExpired: %v %v", ended, err)
	}
	// The vote and the request are in the audit log.
	var types []string
	audit.Scan(e.auditDir, audit.Filter{}, func(ev *audit.Event) error {
		if ev.Type == "elevation.requested" || ev.Type == "approval.vote" {
			types = append(types, ev.Type)
		}
		return nil
	})
	if len(types) < 3 {
		t.Errorf("audit has %v", types)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
