package pgwire_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/redisstore"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/pgwire"
)

func TestBreakGlass(t *testing.T) {
	t.Run("embedded store", func(t *testing.T) { testBreakGlass(t, newEnv(t)) })
	t.Run("redis store", func(t *testing.T) {
		r := testenv.Redis(t)
		testBreakGlass(t, newEnv(t, func(s *pgwire.Server) {
			st, err := redisstore.Open(context.Background(), r.URL(), "bg:")
			if err != nil {
				t.Fatal(err)
			}
			s.Approvals = elevation.NewApprovals(st, nil)
			t.Cleanup(func() { s.Approvals.Close(); st.Close() })
		}))
	})
}

func testBreakGlass(t *testing.T, e *env) {
	ctx := context.Background()

	// A real receiver for the loud events.
	var mu sync.Mutex
	var received []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte("hook-secret"))
		mac.Write(body)
		if r.Header.Get("X-Portcullis-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("unsigned webhook delivery")
		}
		var ev audit.Event
		json.Unmarshal(body, &ev)
		mu.Lock()
		received = append(received, ev.Type)
		mu.Unlock()
	}))
	defer hook.Close()
	e.log.AddSink(&audit.Webhook{URL: hook.URL, Secret: "hook-secret", Want: func(ev *audit.Event) bool {
		return ev.BreakGlass != "" || strings.HasPrefix(ev.Type, "breakglass.")
	}})

	dave := e.connect(t, "dave")
	if _, err := dave.Exec(ctx, "ALTER TABLE orders ADD COLUMN note text", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" {
		t.Fatalf("DDL before break-glass: %v", err)
	}
	if code := e.call(t, "alice", "POST", "/api/v1/breakglass", `{"scope": {"resources": ["orders"], "actions": ["ddl"]}, "duration": "2s", "reason": "INC-5 schema hotfix", "incident": "INC-5"}`); code != 403 {
		t.Errorf("break-glass by someone outside oncall: %d, want 403", code)
	}
	if code := e.call(t, "dave", "POST", "/api/v1/breakglass", `{"scope": {"resources": ["orders"], "actions": ["ddl"]}, "duration": "2s", "reason": "short", "incident": "INC-5"}`); code != 422 {
		t.Errorf("a reason under the minimum: %d, want 422", code)
	}
	code, bg := e.get(t, "dave", "POST", "/api/v1/breakglass", `{"scope": {"resources": ["orders"], "actions": ["ddl", "write"]}, "duration": "2s", "reason": "INC-5 schema hotfix", "incident": "INC-5"}`)
	if code != 200 || bg["state"] != "approved" || bg["artifact"].(map[string]any)["tier"] != "medium" {
		t.Fatalf("medium-tier break-glass: %d %v", code, bg)
	}
	id := bg["id"].(string)

	// Within the scope the denied DDL runs, flagged; outside it nothing changes.
	if _, err := dave.Exec(ctx, "ALTER TABLE orders ADD COLUMN note text", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("DDL under break-glass: %v", err)
	}
	if _, err := dave.Exec(ctx, "UPDATE orders SET status = 'bg' WHERE id = 400"); err != nil || e.count(t, "status = 'bg'") != 1 {
		t.Fatalf("a write that needs approval, under break-glass: %v", err)
	}
	if _, err := dave.Exec(ctx, "ALTER SYSTEM SET work_mem = '64MB'", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" || !strings.Contains(err.Error(), "orders-admin") {
		t.Errorf("admin outside the scope: %v", err)
	}
	var flagged []*audit.Event
	audit.Scan(e.auditDir, audit.Filter{Type: "pg.statement", Actor: "dave"}, func(ev *audit.Event) error {
		if ev.BreakGlass == id && ev.Type == "pg.statement" { // break-glass events pass every filter
			flagged = append(flagged, ev)
		}
		return nil
	})
	if len(flagged) != 2 || flagged[0].Decision != "allow" || flagged[0].Details["original_decision"] != "deny" || !strings.Contains(toJSON(flagged[0].Details["bypassed"]), "orders-ddl") ||
		flagged[1].Details["original_decision"] != "require_approval" || !strings.Contains(toJSON(flagged[1].Details["bypassed"]), "orders-write") {
		t.Fatalf("the bypassed statements' events: %v", toJSON(flagged))
	}
	var exported strings.Builder
	audit.Export(e.auditDir, audit.Filter{Actor: "somebody-else"}, &exported)
	if !strings.Contains(exported.String(), `"break_glass":"`+id+`"`) {
		t.Error("an export filtered by another actor dropped the break-glass events")
	}

	// At the end of the session: no action needed; the session is cut, DDL is denied again.
	time.Sleep(2200 * time.Millisecond)
	if _, err := dave.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the session that used break-glass was not cut when it ended")
	}
	dave2 := e.connect(t, "dave")
	if _, err := dave2.Exec(ctx, "ALTER TABLE orders ADD COLUMN note2 text", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" {
		t.Errorf("DDL after break-glass ended: %v", err)
	}
	if ended, err := e.approvals.EndExpired(ctx); err != nil || len(ended) != 1 {
		t.Fatalf("EndExpired: %v %v", ended, err)
	}

	// Review: security reviews, the responder may not; one review each.
	if code, body := e.get(t, "carol", "GET", "/api/v1/reviews", ""); code != 200 || !strings.Contains(toJSON(body), id) ||
		!strings.Contains(toJSON(body), "ALTER TABLE orders ADD COLUMN note text") || !strings.Contains(toJSON(body), `"original_decision":"deny"`) {
		t.Errorf("review queue (with what was done): %d %v", code, body)
	}
	if code := e.call(t, "dave", "POST", "/api/v1/reviews/"+id, `{"outcome": "justified"}`); code != 403 {
		t.Errorf("the responder reviewing: %d, want 403", code)
	}
	if code := e.call(t, "carol", "POST", "/api/v1/reviews/"+id, `{"outcome": "great"}`); code != 422 {
		t.Errorf("an unknown outcome: %d, want 422", code)
	}
	if code := e.call(t, "carol", "POST", "/api/v1/reviews/"+id, `{"outcome": "needs-policy-change", "notes": "DDL hotfixes recur"}`); code != 200 {
		t.Errorf("carol's review: %d", code)
	}
	if code := e.call(t, "carol", "POST", "/api/v1/reviews/"+id, `{"outcome": "justified"}`); code != 409 {
		t.Errorf("a second review by carol: %d, want 409", code)
	}

	// High tier: a second human first, never the requester. The team is now over its budget
	// of one, so it is escalated: two reviewers.
	code, hi := e.get(t, "dave", "POST", "/api/v1/breakglass", `{"scope": {"resources": ["orders"], "actions": ["admin"]}, "duration": "30m", "reason": "INC-6 config change", "incident": "INC-6"}`)
	art, _ := hi["artifact"].(map[string]any)
	if code != 200 || hi["state"] != "pending" || art["tier"] != "high" || art["escalated"] != true || hi["reviews_needed"] != float64(2) {
		t.Fatalf("high-tier, over-budget break-glass: %d %v", code, hi)
	}
	hid := hi["id"].(string)
	if code := e.call(t, "dave", "POST", "/api/v1/approvals/"+hid+"/approve", ""); code != 403 {
		t.Errorf("the responder approving their own break-glass: %d, want 403", code)
	}
	if code, body := e.get(t, "bob", "POST", "/api/v1/approvals/"+hid+"/approve", ""); code != 200 || body["state"] != "approved" {
		t.Errorf("bob's approval: %d %v", code, body)
	}
	// Nobody uninvolved sees break-glass sessions; only the break-glass end path ends one.
	for _, state := range []string{"approved", "all"} {
		if code, body := e.get(t, "alice", "GET", "/api/v1/approvals?state="+state, ""); code != 200 || strings.Contains(toJSON(body), hid) || strings.Contains(toJSON(body), id) {
			t.Errorf("alice lists someone else's break-glass (%s): %d %v", state, code, body)
		}
	}
	if code := e.call(t, "alice", "GET", "/api/v1/approvals/"+hid, ""); code != 404 {
		t.Errorf("alice GETs someone else's break-glass: %d, want 404", code)
	}
	for _, who := range []string{"carol", "bob", "dave"} { // a reviewer, its approver, its responder
		if code := e.call(t, who, "GET", "/api/v1/approvals/"+hid, ""); code != 200 {
			t.Errorf("%s GETs the break-glass session: %d, want 200", who, code)
		}
	}
	if code := e.call(t, "bob", "DELETE", "/api/v1/elevations/"+hid, ""); code != 422 {
		t.Errorf("its approver ending a break-glass session through the elevations API: %d, want 422", code)
	}
	if code, body := e.get(t, "dave", "GET", "/api/v1/approvals/"+hid, ""); body["state"] != "approved" {
		t.Errorf("the break-glass session after a refused end: %d %v", code, body)
	}
	if code := e.call(t, "dave", "POST", "/api/v1/breakglass/"+hid+"/end", ""); code != 200 {
		t.Errorf("ending it early: %d", code)
	}

	// The health numbers, for security only; and for Prometheus.
	code, st := e.get(t, "carol", "GET", "/api/v1/breakglass/stats", "")
	if code != 200 || st["breakglass_sessions"] != float64(2) || st["policy_blocks"].(float64) < 2 || toJSON(st["breakglass_by_policy"]) != `{"orders-admin":1,"orders-ddl":1,"orders-write":1}` || st["approvals_approved"].(float64) < 1 {
		t.Errorf("stats: %d %v", code, st)
	}
	if code := e.call(t, "alice", "GET", "/api/v1/breakglass/stats", ""); code != 403 {
		t.Errorf("stats for a non-reviewer: %d, want 403", code)
	}
	metrics := e.metrics(t)
	for _, m := range []string{`portcullis_breakglass_sessions{team="engineering"} 2`, "portcullis_policy_blocks", `portcullis_approvals_decided{decision="approved"}`, "portcullis_breakglass_reviewed_within_sla_ratio"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// The webhook received the loud events, in order.
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got = append(got[:0], received...)
		mu.Unlock()
		if strings.Contains(strings.Join(got, ","), "breakglass.ended") {
			break
		}
	}
	if joined := strings.Join(got, ","); !strings.HasPrefix(joined, "breakglass.started,pg.statement") || !strings.Contains(joined, "breakglass.reviewed") || !strings.HasSuffix(joined, "breakglass.ended") {
		t.Errorf("webhook received %v", got)
	}
	// The early end says who ended whose session, where.
	var ended []audit.Event
	audit.Scan(e.auditDir, audit.Filter{Type: "breakglass.ended"}, func(ev *audit.Event) error {
		if ev.BreakGlass == hid && ev.Reason == "ended early" {
			ended = append(ended, *ev)
		}
		return nil
	})
	if len(ended) != 1 || ended[0].Actor != "dave" || ended[0].Subject != "dave" || ended[0].Resource != "orders" {
		t.Errorf("the early end of %s: %+v", hid, ended)
	}
}
