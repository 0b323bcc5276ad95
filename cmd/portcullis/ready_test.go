package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestReadiness: /readyz says ready only while the replica can use what it needs — the
// shared Redis store and Vault, real servers here — and names what it cannot reach; it
// comes back when they do. /healthz (liveness) stays ok throughout: a replica waiting for
// Redis must not be restarted for it.
func TestReadiness(t *testing.T) {
	redis, vault := testenv.Redis(t), testenv.Vault(t)
	t.Setenv("DEMO_DIR", t.TempDir())
	t.Setenv("DEMO_VAULT_ADDR", vault.Address())
	t.Setenv("DEMO_VAULT_TOKEN", devserver.VaultRootToken)
	cfg, err := configs.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Listen, cfg.Server.PostgresListen, cfg.Server.HTTPListen = "127.0.0.1:0", "", ""
	cfg.Store.Redis = redis.URL()
	mirror := filepath.Join(t.TempDir(), "events.jsonl")
	cfg.Audit.Sinks = []configs.AuditSink{{Kind: "jsonl", Path: mirror, Events: "all"}}
	a := startServe(t, context.Background(), cfg, slog.New(slog.DiscardHandler))
	probe := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + a.api + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	// until polls /readyz for the wanted answer (a restarted server takes a moment).
	until := func(code int, body string) {
		t.Helper()
		var gotCode int
		var got string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if gotCode, got = probe("/readyz"); gotCode == code && got == body {
				return
			}
		}
		t.Fatalf("/readyz: %d %q, want %d %q", gotCode, got, code, body)
	}
	until(200, "ready")
	// The configured sink mirrors the log from the first event on.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(mirror); strings.Contains(string(b), `"type":"server.started"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the jsonl sink did not get server.started")
		}
	}

	redis.Stop()
	until(503, "not ready: redis unavailable")
	if code, _ := probe("/healthz"); code != 200 {
		t.Errorf("/healthz with Redis down: %d", code)
	}
	vault.Stop()
	until(503, "not ready: redis, vault unavailable")
	if err := redis.Restart(); err != nil {
		t.Fatal(err)
	}
	until(503, "not ready: vault unavailable")
}
