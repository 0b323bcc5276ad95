package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
)

// TestKilledReplica: two replicas over one Redis; replica a is killed with SIGKILL.
//
// While a write waits for approval: the request stays in Redis; bob approves it on
// replica b; alice reconnects to b and runs the same statement again, which takes the
// request up (no second request, no second approval) and runs once.
//
// Right after the quorum (the kill races the approved statement's run): the statement ran
// once or not at all — never twice — and if it ran, replica a's audit log holds its
// approval, written before it ran; a re-run on b takes the request up only if a had not
// released it to run, and otherwise needs a new approval (which bob denies here).
func TestKilledReplica(t *testing.T) {
	ctx := context.Background()
	cl := startCluster(t, 2)
	a, b := cl.replicas[0], cl.replicas[1]
	quantity := func(id int) int {
		t.Helper()
		c, err := pgx.Connect(ctx, cl.pg.DSN("orders"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var q int
		if err := c.QueryRow(ctx, "SELECT quantity FROM orders WHERE id = $1", id).Scan(&q); err != nil {
			t.Fatal(err)
		}
		return q
	}
	hold := func(r *replica, stmt string) chan error {
		done := make(chan error, 1)
		go func() {
			c, err := pgx.Connect(ctx, r.dsn())
			if err != nil {
				done <- err
				return
			}
			defer c.Close(ctx)
			_, err = c.Exec(ctx, stmt)
			done <- err
		}()
		return done
	}
	wait := func(done chan error) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("the statement did not finish")
			return nil
		}
	}

	// Killed while the write waits.
	const waitStmt = "UPDATE orders SET quantity = quantity + 1 WHERE id = 2"
	before := quantity(2)
	first := hold(a, waitStmt)
	id := pendingApproval(t, a.api)
	a.kill()
	if err := wait(first); err == nil {
		t.Fatal("the session on the killed replica went on")
	}
	if code := apiCall(t, b.api, "bob", "POST", "/api/v1/approvals/"+id+"/approve"); code != 200 {
		t.Fatalf("approving on replica b: %d", code)
	}
	if err := wait(hold(b, waitStmt)); err != nil {
		t.Fatalf("the re-run on replica b: %v", err)
	}
	if got := quantity(2); got != before+1 {
		t.Fatalf("quantity %d → %d: want the statement run once", before, got)
	}
	r := request(t, b.api, id)
	if r.State != elevation.StateExecuted || r.Outcome == nil || r.Outcome.Result != elevation.OutcomeRan {
		t.Fatalf("request %s after the re-run: %s, outcome %+v; want executed, ran", id, r.State, r.Outcome)
	}
	if n := len(requestsFor(t, b.api, waitStmt)); n != 1 {
		t.Errorf("%d requests for the statement, want the one taken up", n)
	}

	// Killed right after the quorum.
	cl.start(a)
	waitReady(t, a.api, a.log)
	const raceStmt = "UPDATE orders SET quantity = quantity + 1 WHERE id = 4"
	before = quantity(4)
	raced := hold(a, raceStmt)
	id = pendingApproval(t, a.api)
	if code := apiCall(t, b.api, "bob", "POST", "/api/v1/approvals/"+id+"/approve"); code != 200 {
		t.Fatalf("approving on replica b: %d", code)
	}
	time.Sleep(2 * time.Millisecond) // a's waiter hears of the vote through Redis now
	a.kill()
	err := wait(raced)
	ran := quantity(4) - before
	if ran != 0 && ran != 1 {
		t.Fatalf("the approved statement ran %d times", ran)
	}
	if err == nil && ran != 1 {
		t.Fatal("the client was told the statement ran, and it did not")
	}
	approved := false
	audit.Scan(a.audit, audit.Filter{}, func(ev *audit.Event) error {
		if ev.Type == audit.TypePGApprovalClosed && ev.Result == "approved" && ev.Details["approval"] == id {
			approved = true
		}
		return nil
	})
	if ran == 1 && !approved {
		t.Fatal("the statement ran without its approval in the killed replica's audit log")
	}
	t.Logf("killed after the quorum: ran %d time(s); approval in a's log: %v; request %s", ran, approved, request(t, b.api, id).State)

	// The re-run: it takes the request up if a had not released it to run; else it asks
	// anew, and bob denies.
	rerun := hold(b, raceStmt)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-rerun:
			if ran == 1 {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "42501" {
					t.Fatalf("the re-run of a statement that ran: %v, want a new approval, denied", err)
				}
			} else if err != nil {
				t.Fatalf("the re-run of a statement that did not run: %v", err)
			}
			if got := quantity(4) - before; got != 1 {
				t.Fatalf("after the re-run the statement has run %d times, want once", got)
			}
			return
		default:
		}
		for _, other := range pendingIDs(t, b.api) {
			if other != id {
				apiCall(t, b.api, "bob", "POST", "/api/v1/approvals/"+other+"/deny")
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the re-run did not finish")
		}
	}
}

// request reads an approval request through the API, as bob.
func request(t *testing.T, api, id string) *elevation.Request {
	t.Helper()
	var r elevation.Request
	getJSON(t, api, "/api/v1/approvals/"+id, &r)
	return &r
}

// requestsFor lists the statement requests for stmt.
func requestsFor(t *testing.T, api, stmt string) []*elevation.Request {
	t.Helper()
	var body struct{ Approvals []*elevation.Request }
	getJSON(t, api, "/api/v1/approvals?state=all", &body)
	var out []*elevation.Request
	for _, r := range body.Approvals {
		if r.Artifact.Statement == stmt {
			out = append(out, r)
		}
	}
	return out
}

func getJSON(t *testing.T, api, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+api+path, nil)
	req.Header.Set("Authorization", "Bearer bob-demo-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
