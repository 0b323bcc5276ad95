package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestAuditDiskFull: the audit directory on a real file system that fills up (a small
// tmpfs). Portcullis fails closed — the statement whose event cannot be written does not
// run, nor does any after it — loudly (the log, /readyz and /healthz say so, so that the
// orchestrator restarts the replica), and recovers: once space is freed, a restart reopens
// the log from its last intact event, statements run again, and the chain verifies, with
// an event for every statement that ran.
func TestAuditDiskFull(t *testing.T) {
	cfgPath, dir, _ := demoFiles(t)
	auditDir := filepath.Join(dir, "audit")
	os.MkdirAll(auditDir, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", auditDir).CombinedOutput(); err != nil {
		t.Fatalf("could not mount a small tmpfs for the audit log (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", auditDir).Run() })
	filler := filepath.Join(auditDir, "filler")
	if err := os.WriteFile(filler, make([]byte, 384<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func() *configs.Config {
		cfg, err := configs.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Audit.Dir = auditDir
		return cfg
	}
	var logs testenv.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	run := func() (listening, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan listening, 1)
		exited := make(chan error, 1)
		go func() { exited <- serve(ctx, load(), logger, func(a listening) { ready <- a }) }()
		select {
		case a := <-ready:
			return a, func() { cancel(); <-exited }
		case err := <-exited:
			t.Fatalf("serve: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not come up")
		}
		return listening{}, nil
	}
	probe := func(a listening, path string) int {
		resp, err := http.Get("http://" + a.api + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	ctx := context.Background()
	a, stop := run()
	c, err := pgx.Connect(ctx, "postgres://alice:alice-demo-token@"+a.postgres+"/orders?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1500)
	ran := 0
	for ; ran < 1000; ran++ {
		_, err = c.Exec(ctx, fmt.Sprintf("SELECT count(*) FROM orders WHERE status <> '%s-%d'", pad, ran))
		if err != nil {
			break
		}
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "XX000" || !strings.Contains(pe.Message, "audit log") {
		t.Fatalf("after %d statements the disk should be full: %v", ran, err)
	}
	t.Logf("%d statements ran before the disk was full", ran)
	if _, err := c.Exec(ctx, "SELECT 1"); !errors.As(err, &pe) || pe.Code != "XX000" {
		t.Errorf("a statement after the failure: %v, want refused", err)
	}
	if code := probe(a, "/readyz"); code != 503 {
		t.Errorf("/readyz with the audit log failed: %d", code)
	}
	if code := probe(a, "/healthz"); code != 503 {
		t.Errorf("/healthz with the audit log failed: %d, want 503 so that the replica is restarted", code)
	}
	if !strings.Contains(logs.String(), "audit log failed") {
		t.Errorf("nothing loud in the log:\n%s", logs.String())
	}
	c.Close(ctx)
	stop()

	// Space freed; a restart recovers.
	os.Remove(filler)
	a, stop = run()
	defer stop()
	c, err = pgx.Connect(ctx, "postgres://alice:alice-demo-token@"+a.postgres+"/orders?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SELECT 'recovered'"); err != nil {
		t.Fatalf("a statement after the restart: %v", err)
	}
	if code := probe(a, "/healthz"); code != 200 {
		t.Errorf("/healthz after the restart: %d", code)
	}
	if _, err := audit.Verify(auditDir); err != nil {
		t.Fatalf("the chain after the failure and the restart: %v", err)
	}
	audited := map[string]bool{}
	audit.Scan(auditDir, audit.Filter{Type: audit.TypePGStatement}, func(ev *audit.Event) error {
		audited[ev.Action] = true
		return nil
	})
	for i := range ran {
		if !audited[fmt.Sprintf("SELECT count(*) FROM orders WHERE status <> '%s-%d'", pad, i)] {
			t.Fatalf("statement %d ran without its event in the log", i)
		}
	}
	if !audited["SELECT 'recovered'"] {
		t.Error("the statement after the restart is not in the log")
	}
}
