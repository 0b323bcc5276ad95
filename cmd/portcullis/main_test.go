package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
)

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(args, &out, &out)
	return code, out.String()
}

func TestPolicyCheckNamesTheLine(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"testdata/unknown-key.yaml", "testdata/unknown-key.yaml:10: field replicas not found"},
		{"testdata/bad-cel.yaml", "testdata/bad-cel.yaml:9: policy \"big-deletes\": when: "},
		{"testdata/unknown-team.yaml", "testdata/unknown-team.yaml:13: policy \"writes\": quorum.required_teams[1]: unknown team \"dba\""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			code, out := runCLI(t, "policy", "check", "--config", tt.file)
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output:\n%s\nwant non-zero and %q", code, out, tt.want)
			}
		})
	}
	for _, f := range []string{"../../configs/demo.yaml", "../../configs/example.yaml"} {
		if code, out := runCLI(t, "policy", "check", "--config", f); code != 0 {
			t.Errorf("%s: exit %d\n%s", f, code, out)
		}
	}
}

func TestPolicyTest(t *testing.T) {
	code, out := runCLI(t, "policy", "test", "../../configs/policies/tests")
	if code != 0 || !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("shipped policy tests: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "policy", "test", "testdata/wrong-case.yaml")
	for _, want := range []string{
		"--- FAIL: deliberately wrong - DDL is not allowed (testdata/wrong-case.yaml:3)",
		"effect:  got deny, want allow",
		"rules:   got [orders-ddl-deny], want [orders-read]",
		"decision: deny: denied by policy orders-ddl-deny",
		"1 passed, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

func TestPolicyExplain(t *testing.T) {
	code, out := runCLI(t, "policy", "explain", "--config", "../../configs/demo.yaml", "--as", "alice", "--resource", "orders",
		"--sql", "UPDATE orders SET status = 'paid' WHERE id = 2")
	for _, want := range []string{"decision:  require_approval", "orders-write-approval (require_approval, tier high)", "one from each of teams [sre]", "class write, UPDATE, tables [orders]"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d; output lacks %q:\n%s", code, want, out)
		}
	}
	code, out = runCLI(t, "policy", "explain", "--config", "../../configs/demo.yaml", "--as", "bob", "--resource", "orders", "--action", "ddl")
	if code != 0 || !strings.Contains(out, "decision:  deny") {
		t.Errorf("explain --action ddl: exit %d\n%s", code, out)
	}
	// An HTTP request, classified as the front end does (Vault's LIST is a read by the
	// resource's classes).
	for req, want := range map[string]string{
		"LIST /v1/sys/policies/acl":      "allowed by policy vault-sys-read",
		"PUT /v1/sys/policies/acl/app":   "approval required by policy vault-sys-change",
		"GET /v1/auth/token/lookup-self": "the default for resource vault is deny",
	} {
		code, out = runCLI(t, "policy", "explain", "--config", "../../configs/demo.yaml", "--as", "alice", "--resource", "vault", "--http", req)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain --http %q: exit %d\n%s", req, code, out)
		}
	}
	if code, _ := runCLI(t, "policy", "explain", "--config", "../../configs/demo.yaml", "--as", "alice", "--resource", "orders", "--http", "GET /"); code == 0 {
		t.Error("explain --http on a postgres resource succeeded")
	}
	if code, _ := runCLI(t, "policy", "explain", "--config", "../../configs/demo.yaml", "--as", "nobody", "--resource", "orders", "--action", "read"); code == 0 {
		t.Error("explain for an unknown identity succeeded")
	}
}

func TestAuditVerifyAndExport(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"alice", "bob", "alice"} {
		if err := l.Append(context.Background(), &audit.Event{Type: "pg.statement", Actor: a, Resource: "orders", Action: "SELECT 1"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if code, out := runCLI(t, "audit", "verify", "--dir", dir); code != 0 || !strings.Contains(out, "intact: 3 events") {
		t.Fatalf("verify intact log: exit %d\n%s", code, out)
	}
	code, out := runCLI(t, "audit", "export", "--dir", dir, "--actor", "alice")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("export --actor alice: exit %d\n%s", code, out)
	}

	seg := filepath.Join(dir, "segment-00000001.jsonl")
	b, _ := os.ReadFile(seg)
	i := bytes.Index(b, []byte(`"actor":"bob"`))
	orig := b[i+10]
	b[i+10] = 'x' // bob -> bxb, one byte
	os.WriteFile(seg, b, 0o600)
	code, out = runCLI(t, "audit", "verify", "--dir", dir)
	if code == 0 || !strings.Contains(out, "line 2 (event 2)") {
		t.Errorf("verify after a one-byte change: exit %d\n%s", code, out)
	}

	b[i+10] = orig
	lines := bytes.SplitAfter(b, []byte("\n"))
	os.WriteFile(seg, bytes.Join([][]byte{lines[0], lines[1]}, nil), 0o600) // delete the last line
	if code, out = runCLI(t, "audit", "verify", "--dir", dir); code == 0 || !strings.Contains(out, "cut off the end") {
		t.Errorf("verify after deleting the last line: exit %d\n%s", code, out)
	}
}

// TestAuditAcrossReplicas: two replicas write their own chains under one directory
// (dir/<replica>, as the Helm chart lays them out); verify checks each chain and names the
// broken one; export merges them by time, each event saying its replica, each replica's
// events in its chain's order.
func TestAuditAcrossReplicas(t *testing.T) {
	dir := t.TempDir()
	logs := map[string]*audit.Log{}
	for _, r := range []string{"portcullis-a", "portcullis-b"} {
		l, err := audit.Open(audit.Options{Dir: filepath.Join(dir, r), Replica: r})
		if err != nil {
			t.Fatal(err)
		}
		logs[r] = l
	}
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	// Interleaved in time: a0 b1 a2 b3 a4 b5 ...
	for i := range 10 {
		r := []string{"portcullis-a", "portcullis-b"}[i%2]
		ev := &audit.Event{Time: start.Add(time.Duration(i) * time.Second), Type: "pg.statement", Actor: "alice", Action: fmt.Sprintf("SELECT %d", i)}
		if err := logs[r].Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range logs {
		l.Close()
	}
	code, out := runCLI(t, "audit", "verify", "--dir", dir)
	if code != 0 || strings.Count(out, "intact: 5 events") != 2 {
		t.Fatalf("verify two intact chains: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "audit", "export", "--dir", dir)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 10 {
		t.Fatalf("export gave %d events, want 10:\n%s", len(lines), out)
	}
	lastSeq := map[string]uint64{}
	for i, line := range lines {
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		wantReplica := []string{"portcullis-a", "portcullis-b"}[i%2]
		if ev.Action != fmt.Sprintf("SELECT %d", i) || ev.Replica != wantReplica || ev.Seq != lastSeq[ev.Replica]+1 {
			t.Errorf("event %d: %s from %s, seq %d", i, ev.Action, ev.Replica, ev.Seq)
		}
		lastSeq[ev.Replica] = ev.Seq
	}

	seg := filepath.Join(dir, "portcullis-b", "segment-00000001.jsonl")
	b, _ := os.ReadFile(seg)
	os.WriteFile(seg, bytes.Replace(b, []byte("SELECT 3"), []byte("SELECT 4"), 1), 0o600)
	code, out = runCLI(t, "audit", "verify", "--dir", dir)
	if code == 0 || !strings.Contains(out, "portcullis-b is BROKEN") || !strings.Contains(out, "portcullis-a is intact") {
		t.Errorf("verify with one chain edited: exit %d\n%s", code, out)
	}
}

func TestServeRefusesABrokenConfig(t *testing.T) {
	for _, f := range []string{"testdata/unknown-key.yaml", "testdata/bad-cel.yaml", "testdata/unknown-team.yaml"} {
		code, out := runCLI(t, "serve", "--config", f)
		if code == 0 || !strings.Contains(out, "refusing to start") || !strings.Contains(out, f+":") {
			t.Errorf("serve --config %s: exit %d\n%s", f, code, out)
		}
	}
	// serve needs its secrets: an unset ${ENV} is an error for it, unlike policy check.
	code, out := runCLI(t, "serve", "--config", "../../configs/example.yaml")
	if code == 0 || !strings.Contains(out, "OIDC_CLIENT_SECRET is not set") {
		t.Errorf("serve with unset secrets: exit %d\n%s", code, out)
	}
}

// TestLoudEvents: the notify webhooks get break-glass events and alerts, nothing else.
func TestLoudEvents(t *testing.T) {
	for _, tc := range []struct {
		ev   audit.Event
		want bool
	}{
		{audit.Event{Type: "pg.statement"}, false},
		{audit.Event{Type: "pg.statement", BreakGlass: "apr_1"}, true},
		{audit.Event{Type: "breakglass.started"}, true},
		{audit.Event{Type: audit.TypePGMismatch, Alert: "mismatch"}, true},
	} {
		if got := loud(&tc.ev); got != tc.want {
			t.Errorf("loud(%s) = %v, want %v", tc.ev.Type, got, tc.want)
		}
	}
}
