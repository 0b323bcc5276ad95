package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestDemo runs the demo end to end on free ports: PostgreSQL seeded with orders, the API
// answering the demo users, and everything stopped and the audit log intact afterwards.
func TestDemo(t *testing.T) {
	dir, err := os.MkdirTemp("", "portcullis-demo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir); os.RemoveAll(demoPGDir(filepath.Join(dir, "state"))) })
	// The demo configuration, moved to a free API port.
	cfgDir := filepath.Join(dir, "config")
	os.MkdirAll(filepath.Join(cfgDir, "policies"), 0o755)
	demo, _ := os.ReadFile("../../configs/demo.yaml")
	demo = bytes.Replace(demo, []byte("listen: 127.0.0.1:8080"), []byte("listen: 127.0.0.1:0"), 1)
	demo = bytes.Replace(demo, []byte("postgres_listen: 127.0.0.1:6432"), []byte("postgres_listen: 127.0.0.1:0"), 1)
	demo = bytes.Replace(demo, []byte("http_listen: 127.0.0.1:8081"), []byte("http_listen: 127.0.0.1:0"), 1)
	os.WriteFile(filepath.Join(cfgDir, "demo.yaml"), demo, 0o644)
	copyPolicies(t, filepath.Join(cfgDir, "policies"))

	port, _ := devserver.FreePort()
	t.Setenv("DEMO_DIR", filepath.Join(dir, "state"))
	t.Setenv("DEMO_PG_PORT", fmt.Sprint(port))
	t.Setenv("DEMO_PG_PASSWORD", "")
	t.Setenv("DEMO_KUBE_PORT", "0")

	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		done <- runDemo(ctx, out, filepath.Join(cfgDir, "demo.yaml"))
		close(stopped)
	}()
	// Whatever happens, the demo stops before the test ends: its node's containers too.
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(60 * time.Second):
		}
	})

	addrRe := regexp.MustCompile(`API\s+http://(\S+)`)
	pgRe := regexp.MustCompile(`PostgreSQL proxy\s+(\S+)`)
	var api, proxy string
	for deadline := time.Now().Add(60 * time.Second); api == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			api = m[1]
			proxy = pgRe.FindStringSubmatch(out.String())[1]
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out)
		default:
		}
	}
	if api == "" {
		t.Fatalf("demo did not come up:\n%s", out)
	}
	// The banner's audit path is the one DEMO_DIR put it in, with a command that works.
	if want := "bin/portcullis audit verify --dir " + filepath.Join(dir, "state", "audit"); !strings.Contains(out.String(), want) {
		t.Errorf("the banner does not say %q:\n%s", want, out)
	}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if !strings.Contains(out.String(), u+"-demo-token") {
			t.Errorf("the demo does not print %s's token", u)
		}
		req, _ := http.NewRequest("GET", "http://"+api+"/api/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+u+"-demo-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("whoami as %s: %v %v", u, resp, err)
		} else {
			resp.Body.Close()
		}
	}
	// The console, with the demo's dev-only token sign-in.
	if !regexp.MustCompile(`Console\s+http://` + regexp.QuoteMeta(api) + `\s`).MatchString(out.String()) {
		t.Errorf("the demo does not print the console's address:\n%s", out)
	}
	if resp, err := http.Get("http://" + api + "/login"); err != nil {
		t.Error(err)
	} else {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(page), "Development only") {
			t.Errorf("the demo console's sign-in page: %d\n%s", resp.StatusCode, page)
		}
	}
	// Through the proxy, as the demo users.
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s-demo-token@%s/orders?sslmode=require", u, u, proxy))
		if err != nil {
			t.Fatalf("%s through the proxy: %v", u, err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 5 {
			t.Errorf("%s reads %d orders (%v), want 5", u, n, err)
		}
		if _, err := c.Exec(ctx, "ALTER TABLE orders ADD COLUMN note text"); err == nil || !strings.Contains(err.Error(), "orders-ddl-deny") {
			t.Errorf("%s's DDL: %v", u, err)
		}
		c.Close(ctx)
	}
	// The elevation walkthrough, with the Redis store and Vault credentials make tools provides.
	if !strings.Contains(out.String(), "Redis (") || !strings.Contains(out.String(), "Vault (") || !strings.Contains(out.String(), "Kubernetes (") || strings.Contains(out.String(), "Not started") {
		t.Fatalf("the demo did not start Redis, Vault and Kubernetes:\n%s", out)
	}
	post := func(token, path, body string) map[string]any {
		req, _ := http.NewRequest("POST", "http://"+api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %v", path, resp.StatusCode, v)
		}
		return v
	}
	// The orders admin API through the HTTP front end: a read, a refund held for bob's
	// approval and then run once when alice sends it again, a delete denied.
	hp := regexp.MustCompile(`orders-admin\.localhost:(\d+)`).FindStringSubmatch(out.String())
	if hp == nil {
		t.Fatalf("the demo does not print the admin API's address:\n%s", out)
	}
	send := func(host, user, method, path, body, approval string) (int, map[string]any) {
		req, _ := http.NewRequest(method, "http://127.0.0.1:"+hp[1]+path, strings.NewReader(body))
		req.Host = host // what curl sends for http://HOST:PORT
		req.Header.Set("Authorization", "Bearer "+user+"-demo-token")
		if approval != "" {
			req.Header.Set("Portcullis-Approval", approval)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	admin := func(user, method, path, approval string) (int, map[string]any) {
		return send("orders-admin.localhost", user, method, path, "", approval)
	}
	if code, o := admin("alice", "GET", "/orders/1", ""); code != 200 || o["customer"] != "acme" {
		t.Errorf("admin API read: %d %v", code, o)
	}
	code, held := admin("alice", "POST", "/orders/3/refund", "")
	if code != http.StatusAccepted || held["approval"] == nil {
		t.Fatalf("admin API refund: %d %v", code, held)
	}
	post("bob-demo-token", "/api/v1/approvals/"+held["approval"].(string)+"/approve", `{"comment": "refund ok"}`)
	if code, o := admin("alice", "POST", "/orders/3/refund", held["approval"].(string)); code != 200 || o["status"] != "refunded" {
		t.Errorf("the approved refund, sent again: %d %v", code, o)
	}
	if code, _ := admin("alice", "POST", "/orders/3/refund", held["approval"].(string)); code != http.StatusConflict {
		t.Errorf("the approved refund, sent a third time: %d, want 409", code)
	}
	if code, o := admin("alice", "DELETE", "/orders/3", ""); code != http.StatusForbidden || !strings.Contains(fmt.Sprint(o["detail"]), "orders-admin-delete") {
		t.Errorf("admin API delete: %d %v", code, o)
	}
	// Vault's own API behind vault.localhost, with a token Portcullis makes for alice: a
	// read of sys/ runs; a policy write waits for security (carol), then runs once.
	if !strings.Contains(out.String(), "vault.localhost") {
		t.Fatalf("the demo does not print the vault resource:\n%s", out)
	}
	if code, o := send("vault.localhost", "alice", "GET", "/v1/sys/mounts", "", ""); code != 200 || o["secret/"] == nil {
		t.Errorf("vault read through Portcullis: %d %v", code, o)
	}
	const vaultPolicy = `{"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}`
	code, held = send("vault.localhost", "alice", "PUT", "/v1/sys/policies/acl/app", vaultPolicy, "")
	if code != http.StatusAccepted || held["approval"] == nil {
		t.Fatalf("vault write: %d %v", code, held)
	}
	post("carol-demo-token", "/api/v1/approvals/"+held["approval"].(string)+"/approve", `{"comment": "ok"}`)
	if code, o := send("vault.localhost", "alice", "PUT", "/v1/sys/policies/acl/app", vaultPolicy, held["approval"].(string)); code != http.StatusNoContent {
		t.Errorf("the approved vault write, sent again: %d %v", code, o)
	}
	if code, o := send("vault.localhost", "alice", "GET", "/v1/sys/policies/acl/app", "", ""); code != 200 || !strings.Contains(fmt.Sprint(o["data"]), "secret/data/app") {
		t.Errorf("the written policy, read back: %d %v", code, o)
	}

	// Kubernetes, as the banner says: a kubeconfig from portcullis kubeconfig, kubectl with
	// portcullis kube-credential as its credential plugin; a read, a prod delete held for
	// bob and run once when alice runs it again, a kube-system write denied.
	kc := regexp.MustCompile(`bin/portcullis kubeconfig --resource cluster --server (\S+) --token alice-demo-token --kubeconfig (\S+)`).FindStringSubmatch(out.String())
	if kc == nil {
		t.Fatalf("the demo does not say how to reach the cluster:\n%s", out)
	}
	if code, o := runCLI(t, "kubeconfig", "--resource", "cluster", "--server", kc[1], "--token", "alice-demo-token", "--kubeconfig", kc[2]); code != 0 {
		t.Fatalf("portcullis kubeconfig: %d %s", code, o)
	}
	kubectlBin, err := devserver.KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(user string, args ...string) (string, error) {
		kctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(kctx, kubectlBin, args...)
		// The credential plugin is this test binary acting as the CLI (see TestMain).
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kc[2], "PORTCULLIS_TOKEN="+user+"-demo-token", "PORTCULLIS_TEST_RUN_CLI=1")
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	if o, err := kubectl("alice", "get", "configmaps", "-n", "prod"); err != nil || !strings.Contains(o, "orders-config") {
		t.Errorf("kubectl get through Portcullis: %v\n%s", err, o)
	}
	o, err := kubectl("alice", "delete", "configmap", "orders-config", "-n", "prod")
	m := regexp.MustCompile(`request (apr_\w+),`).FindStringSubmatch(o)
	if err == nil || m == nil {
		t.Fatalf("a prod delete should be held: %v\n%s", err, o)
	}
	post("bob-demo-token", "/api/v1/approvals/"+m[1]+"/approve", `{"comment": "ok"}`)
	if o, err := kubectl("alice", "delete", "configmap", "orders-config", "-n", "prod"); err != nil || !strings.Contains(o, "deleted") {
		t.Errorf("the approved delete, run again: %v\n%s", err, o)
	}
	if o, err := kubectl("alice", "create", "configmap", "x", "-n", "kube-system"); err == nil || !strings.Contains(o, "cluster-system-writes") {
		t.Errorf("a kube-system write: %v\n%s", err, o)
	}
	// The banner's exec into the demo node's pods: free in demo, held in prod.
	if o, err := kubectl("alice", "exec", "-n", "demo", "shell", "--", "sh", "-c", "echo hello; id"); err != nil || !strings.Contains(o, "hello") || !strings.Contains(o, "uid=0") {
		t.Errorf("exec into demo/shell: %v\n%s", err, o)
	}
	o, err = kubectl("alice", "exec", "-n", "prod", "orders-0", "--", "true")
	if m = regexp.MustCompile(`request (apr_\w+),`).FindStringSubmatch(o); err == nil || m == nil || !strings.Contains(o, "cluster-prod-changes") {
		t.Fatalf("exec into prod/orders-0 should be held: %v\n%s", err, o)
	}
	post("alice-demo-token", "/api/v1/approvals/"+m[1]+"/cancel", "") // not wanted after all

	// Per-statement approval with Vault: alice's session runs as the reader, which cannot
	// write; her UPDATE waits, bob approves, and it runs (psql's simple protocol and pgx's
	// extended one).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		ac, err := pgx.Connect(ctx, fmt.Sprintf("postgres://alice:alice-demo-token@%s/orders?sslmode=require", proxy))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := ac.Exec(ctx, "UPDATE orders SET status = 'approved' WHERE id = $1", mode, 3)
			done <- err
		}()
		var id string
		for deadline := time.Now().Add(10 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			req, _ := http.NewRequest("GET", "http://"+api+"/api/v1/approvals", nil)
			req.Header.Set("Authorization", "Bearer bob-demo-token")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				var v struct{ Approvals []struct{ ID string } }
				json.NewDecoder(resp.Body).Decode(&v)
				resp.Body.Close()
				if len(v.Approvals) > 0 {
					id = v.Approvals[0].ID
				}
			}
		}
		if id == "" {
			t.Fatalf("%v: alice's UPDATE did not wait for approval", mode)
		}
		post("bob-demo-token", "/api/v1/approvals/"+id+"/approve", "")
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: the approved UPDATE with Vault credentials: %v", mode, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%v: the approved UPDATE did not finish", mode)
		}
		ac.Close(ctx)
	}
	elev := post("alice-demo-token", "/api/v1/elevations", `{"role": "orders-writer", "duration": "15m", "reason": "fix order 2"}`)
	post("bob-demo-token", "/api/v1/approvals/"+elev["id"].(string)+"/approve", "")
	ec, err := pgx.Connect(ctx, fmt.Sprintf("postgres://alice:alice-demo-token@%s/orders?sslmode=require", proxy))
	if err != nil {
		t.Fatal(err)
	}
	var user string
	ec.QueryRow(ctx, "SELECT current_user").Scan(&user)
	if !strings.HasPrefix(user, "v-") {
		t.Errorf("the elevated session runs as %q, want a Vault-minted user", user)
	}
	if _, err := ec.Exec(ctx, "UPDATE orders SET status = 'paid' WHERE id = 2"); err != nil {
		t.Errorf("a write under the grant: %v", err)
	}
	ec.Close(ctx)

	// The break-glass walkthrough: dave changes the schema under break-glass.
	post("dave-demo-token", "/api/v1/breakglass", `{"scope": {"resources": ["orders"], "actions": ["ddl"]}, "duration": "30m", "reason": "orders needs an index now, INC-1", "incident": "INC-1"}`)
	bc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://dave:dave-demo-token@%s/orders?sslmode=require", proxy))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.Exec(ctx, "ALTER TABLE orders ADD COLUMN note text", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Errorf("DDL under break-glass in the demo: %v", err)
	}
	bc.Close(ctx)

	db, err := pgx.Connect(ctx, fmt.Sprintf("postgres://portcullis:%s@127.0.0.1:%d/orders?sslmode=disable", demoPGPassword, port))
	if err != nil {
		t.Fatalf("the seeded orders database: %v", err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 5 {
		t.Errorf("orders holds %d rows (%v), want 5", n, err)
	}
	db.Close(ctx)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
	if !strings.Contains(out.String(), "Stopped PostgreSQL.") {
		t.Errorf("demo did not stop PostgreSQL:\n%s", out)
	}
	s, err := audit.Verify(filepath.Join(dir, "state", "audit"))
	if err != nil || s.Events < 2 {
		t.Errorf("demo audit log: %+v %v", s, err)
	}
}
