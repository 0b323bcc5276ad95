package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestReloadPolicies: SIGHUP puts an edited policy set in force without dropping a
// session — the same connection is decided by the new set — and an approval given under
// the old set is refused at use, saying why. A reload that changes more than policies is
// refused and the set in force kept. Both are audited.
func TestReloadPolicies(t *testing.T) {
	ctx := context.Background()
	cfgPath, dir, demo := demoFiles(t)
	cfg, err := configs.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	before := cfg.Engine.Snapshot()
	a := startServe(t, ctx, cfg, slog.New(slog.DiscardHandler))
	dsn := "postgres://alice:alice-demo-token@" + a.postgres + "/orders?sslmode=disable"
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatalf("a read before the reload: %v", err)
	}
	// A write waits for approval under the old set.
	w, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	held := make(chan error, 1)
	go func() { _, err := w.Exec(ctx, "UPDATE orders SET status = 'reloaded' WHERE id = 1"); held <- err }()
	id := pendingApproval(t, a.api)

	// Reads on orders are denied from now on.
	policies := filepath.Join(dir, "policies", "orders.yaml")
	p, _ := os.ReadFile(policies)
	os.WriteFile(policies, bytes.Replace(p, []byte("actions: [read]\neffect: allow"), []byte("actions: [read]\neffect: deny"), 1), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n)
		var pe *pgconn.PgError
		if err != nil {
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Fatalf("a read on the same session after the reload: %v, want denied (the session must stay)", err)
			}
			break
		}
		if time.Now().After(deadline) {
			audit.Scan(cfg.Audit.Dir, audit.Filter{Type: audit.TypePoliciesReloaded}, func(ev *audit.Event) error {
				t.Logf("reload: %s %s", ev.Result, ev.Reason)
				return nil
			})
			t.Fatal("reads still allowed 10 s after SIGHUP")
		}
	}
	after := cfg.Engine.Snapshot()
	if after == before {
		t.Fatal("the snapshot did not change")
	}

	// The approval given now is for the old set: refused at use, saying so.
	if code := apiCall(t, a.api, "bob", "POST", "/api/v1/approvals/"+id+"/approve"); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	select {
	case err := <-held:
		if err == nil || !strings.Contains(err.Error(), "policies changed") {
			t.Errorf("the write approved under the old policies: %v, want refused because the policies changed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held write did not finish after its approval")
	}

	// A change to more than policies is refused; the set in force stays.
	os.WriteFile(cfgPath, bytes.Replace(demo, []byte("teams:\n"), []byte("teams:\n  - name: newteam\n    groups: [newteam]\n"), 1), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	var refused *audit.Event
	for deadline := time.Now().Add(10 * time.Second); refused == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		audit.Scan(cfg.Audit.Dir, audit.Filter{Type: audit.TypePoliciesReloaded}, func(ev *audit.Event) error {
			if ev.Result == "refused" {
				refused = ev
			}
			return nil
		})
	}
	if refused == nil || !strings.Contains(refused.Reason, "teams") {
		t.Fatalf("refused reload event: %+v", refused)
	}
	if cfg.Engine.Snapshot() != after {
		t.Error("a refused reload changed the policies in force")
	}
	var ok int
	audit.Scan(cfg.Audit.Dir, audit.Filter{Type: audit.TypePoliciesReloaded}, func(ev *audit.Event) error {
		if ev.Result == "ok" && ev.Details["before"] == before && ev.Details["after"] == after {
			ok++
		}
		return nil
	})
	if ok != 1 {
		t.Errorf("%d audited reloads from %s to %s, want 1", ok, before, after)
	}
}

// demoFiles writes the demo configuration and policies into a new directory, listening
// on free loopback ports, against a new seeded PostgreSQL, and returns the configuration's
// path, the directory and the configuration's text.
func demoFiles(t *testing.T) (cfgPath, dir string, demo []byte) {
	t.Helper()
	cfgPath, dir, demo, _ = demoFilesOn(t)
	return cfgPath, dir, demo
}

// demoFilesOn is demoFiles that also returns the PostgreSQL it started.
func demoFilesOn(t *testing.T) (cfgPath, dir string, demo []byte, pg *devserver.Postgres) {
	t.Helper()
	pg = testenv.Postgres(t)
	if err := seedOrders(context.Background(), pg, "upstream-pw"); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	demo, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for old, repl := range map[string]string{
		"listen: 127.0.0.1:8080":          "listen: 127.0.0.1:0",
		"postgres_listen: 127.0.0.1:6432": "postgres_listen: 127.0.0.1:0",
		"http_listen: 127.0.0.1:8081":     "http_listen: 127.0.0.1:0",
	} {
		demo = bytes.Replace(demo, []byte(old), []byte(repl), 1)
	}
	cfgPath = filepath.Join(dir, "demo.yaml")
	os.WriteFile(cfgPath, demo, 0o644)
	copyPolicies(t, filepath.Join(dir, "policies"))
	t.Setenv("DEMO_DIR", dir)
	t.Setenv("DEMO_PG_PORT", fmt.Sprint(pg.Port))
	t.Setenv("DEMO_PG_PASSWORD", "upstream-pw")
	t.Setenv("DEMO_KUBE_PORT", "0")
	return cfgPath, dir, demo, pg
}

// pendingApproval waits for a pending approval request, as bob sees it, and returns its
// id.
func pendingApproval(t *testing.T, api string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ids := pendingIDs(t, api); len(ids) > 0 {
			return ids[0]
		}
	}
	t.Fatal("no pending approval request")
	return ""
}

// pendingIDs lists the pending approval requests bob sees.
func pendingIDs(t *testing.T, api string) []string {
	req, _ := http.NewRequest("GET", "http://"+api+"/api/v1/approvals", nil)
	req.Header.Set("Authorization", "Bearer bob-demo-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Approvals []struct{ ID, State string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	var ids []string
	for _, r := range body.Approvals {
		if r.State == "pending" {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func apiCall(t *testing.T, api, user, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+api+path, nil)
	req.Header.Set("Authorization", "Bearer "+user+"-demo-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
