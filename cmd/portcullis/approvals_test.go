package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/web"
)

// apiServer serves the API for the demo configuration with an embedded store.
func apiServer(t *testing.T) (*configs.Config, *elevation.Approvals, *httptest.Server) {
	t.Helper()
	cfg, err := configs.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	store, _ := elevation.OpenFileStore(t.TempDir())
	approvals := elevation.NewApprovals(store, nil)
	auth, _ := identity.New(cfg)
	srv := httptest.NewServer((&web.Server{Config: cfg, Auth: auth, Approvals: approvals, Log: slog.New(slog.DiscardHandler)}).Handler())
	t.Cleanup(srv.Close)
	return cfg, approvals, srv
}

func TestApprovalCommands(t *testing.T) {
	cfg, approvals, srv := apiServer(t)

	alice, _ := cfg.StaticSubject("alice")
	q := &policy.Quorum{MinApprovals: 1, RequiredTeams: []string{"sre"}, Approvers: policy.Principals{Teams: []string{"sre"}}, Timeout: policy.DefaultApprovalTimeout}
	mk := func(stmt string) string {
		r, err := approvals.Create(context.Background(), alice, "s1", elevation.Artifact{Resource: "orders", Statement: stmt, Class: "write", Quorum: q})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	first, second := mk("UPDATE orders SET status = 'paid' WHERE id = 2"), mk("DELETE FROM orders WHERE id = 3")

	code, out := runCLI(t, "approvals", "list", "--server", srv.URL, "--token", "bob-demo-token")
	if code != 0 || !strings.Contains(out, first) || !strings.Contains(out, "can approve") || !strings.Contains(out, "team sre 0/1") {
		t.Fatalf("approvals list: %d\n%s", code, out)
	}
	if code, out := runCLI(t, "approve", first, "--server", srv.URL, "--token", "alice-demo-token"); code == 0 || !strings.Contains(out, "HTTP 403") {
		t.Errorf("self-approval through the CLI: %d %s", code, out)
	}
	if code, out := runCLI(t, "approve", first, "-m", "ok", "--server", srv.URL, "--token", "bob-demo-token"); code != 0 || !strings.Contains(out, first+": approved") {
		t.Errorf("approve: %d %s", code, out)
	}
	t.Setenv("PORTCULLIS_TOKEN", "bob-demo-token")
	t.Setenv("PORTCULLIS_URL", srv.URL)
	if code, out := runCLI(t, "deny", second, "-m", "no"); code != 0 || !strings.Contains(out, second+": denied") {
		t.Errorf("deny: %d %s", code, out)
	}
	if code, out := runCLI(t, "deny", second); code == 0 || !strings.Contains(out, "HTTP 409") {
		t.Errorf("deny again: %d %s", code, out)
	}
}

func TestElevationCommands(t *testing.T) {
	_, _, srv := apiServer(t)
	t.Setenv("PORTCULLIS_URL", srv.URL)

	code, out := runCLI(t, "request", "orders-writer", "--for", "1h", "--reason", "backfill", "--token", "alice-demo-token")
	if code != 0 || !strings.Contains(out, "orders-writer for 1h, pending") { // as configured, not 1h0m0s
		t.Fatalf("request: %d %s", code, out)
	}
	id := strings.SplitN(out, ":", 2)[0]
	if !strings.Contains(out, "approvers: "+srv.URL+"/requests/"+id) {
		t.Errorf("request does not print the request page: %s", out)
	}
	if resp, err := http.Get(srv.URL + "/requests/" + id); err != nil || resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the printed link: %v %v", resp, err) // signed out: the sign-in page, then the request
	}
	if code, out := runCLI(t, "request", "orders-writer", "--for", "2h", "--reason", "x", "--token", "alice-demo-token"); code == 0 || !strings.Contains(out, "HTTP 422") || !strings.Contains(out, "15m, 1h, 4h, not 2h") {
		t.Errorf("a duration the role does not offer: %d %s", code, out)
	}
	if code, out := runCLI(t, "approve", id, "--token", "bob-demo-token"); code != 0 || !strings.Contains(out, "approved") {
		t.Fatalf("approve the elevation: %d %s", code, out)
	}
	if code, out := runCLI(t, "elevations", "--token", "alice-demo-token"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "active") || !strings.Contains(out, "write on orders") {
		t.Errorf("elevations: %d %s", code, out)
	}
	if code, out := runCLI(t, "revoke", id, "--token", "dave-demo-token"); code == 0 || !strings.Contains(out, "HTTP 403") {
		t.Errorf("revoke by a stranger: %d %s", code, out)
	}
	if code, out := runCLI(t, "revoke", id, "--token", "alice-demo-token"); code != 0 || !strings.Contains(out, id+": revoked") {
		t.Errorf("revoke: %d %s", code, out)
	}
}

func TestBreakGlassCommand(t *testing.T) {
	_, _, srv := apiServer(t)
	t.Setenv("PORTCULLIS_URL", srv.URL)
	code, out := runCLI(t, "breakglass", "--scope", "orders:ddl", "--for", "30m", "--incident", "INC-1", "--reason", "orders schema hotfix during INC-1", "--token", "dave-demo-token")
	if code != 0 || !strings.Contains(out, ": approved until ") {
		t.Fatalf("breakglass as dave: %d %s", code, out)
	}
	if code, out := runCLI(t, "breakglass", "--scope", "orders:ddl", "--incident", "INC-1", "--reason", "orders schema hotfix during INC-1", "--token", "alice-demo-token"); code == 0 || !strings.Contains(out, "HTTP 403") ||
		!strings.Contains(out, "you may not break glass") || strings.Contains(out, "approver") {
		t.Errorf("breakglass outside oncall: %d %s", code, out)
	}
	if code, out := runCLI(t, "breakglass", "--scope", "orders:admin", "--incident", "INC-1", "--reason", "orders schema hotfix during INC-1", "--token", "dave-demo-token"); code == 0 || !strings.Contains(out, "HTTP 403") {
		t.Errorf("breakglass beyond the allowed scope: %d %s", code, out)
	}
	// The responder's elevations list shows the session, marked, with its scope.
	code, out = runCLI(t, "elevations", "--token", "dave-demo-token")
	if code != 0 || !strings.Contains(out, "BREAK-GLASS") || !strings.Contains(out, "active") || !strings.Contains(out, "ddl on orders") {
		t.Errorf("elevations during break-glass: %d\n%s", code, out)
	}
}

func TestUnknownApprovalID(t *testing.T) {
	_, _, srv := apiServer(t)
	code, out := runCLI(t, "approve", "apr_NOSUCHTHING", "--server", srv.URL, "--token", "bob-demo-token")
	if code == 0 || !strings.Contains(out, "HTTP 404") || !strings.Contains(out, `"apr_NOSUCHTHING"`) || !strings.Contains(out, "portcullis approvals list") {
		t.Errorf("an unknown id: %d %s", code, out)
	}
}
