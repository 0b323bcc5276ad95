package audit_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestSyslogToRsyslog: a real rsyslogd gets every event over TCP (octet-counted, a large
// event included) as RFC 5424 — facility authpriv, severity by how loud the event is, the
// type as MSGID — with the event's JSON, hash and replica intact; a second sink over UDP
// gets only the loud events.
func TestSyslogToRsyslog(t *testing.T) {
	rs := testenv.Rsyslog(t)
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir, Replica: "replica-1"})
	if err != nil {
		t.Fatal(err)
	}
	l.AddSink(&audit.Syslog{Network: "tcp", Addr: rs.TCPAddr(), AppName: "portcullis-tcp", Hostname: "replica-1"})
	l.AddSink(&audit.Syslog{Network: "udp", Addr: rs.UDPAddr(), AppName: "portcullis-udp", Hostname: "replica-1",
		Want: func(ev *audit.Event) bool { return ev.BreakGlass != "" }})
	ctx := context.Background()
	events := []*audit.Event{
		{Type: audit.TypePGStatement, Actor: "alice", Resource: "orders", Action: "SELECT 1", Decision: "allow"},
		{Type: audit.TypePGStatement, Actor: "alice", Resource: "orders", Action: "DROP TABLE orders", Decision: "deny", Result: "denied"},
		{Type: audit.TypePGStatement, Actor: "dave", Resource: "orders", Action: "ALTER TABLE orders ADD c int", Decision: "allow", BreakGlass: "bg-1"},
		{Type: "kube.stream", Actor: "bob", Resource: "cluster", Details: map[string]any{"frames": strings.Repeat("x", 20000)}},
	}
	for _, ev := range events {
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	l.Close() // delivers to the sinks
	stored := map[uint64]*audit.Event{}
	audit.Scan(dir, audit.Filter{}, func(ev *audit.Event) error { stored[ev.Seq] = ev; return nil })

	wantPri := []string{"85", "84", "81", "85"} // authpriv (10) × 8 + notice, warning, alert, notice
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(rs.File)
		if lines = strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) >= len(events)+1 {
			break
		}
	}
	var tcp, udp int
	for _, line := range lines {
		f := strings.SplitN(line, "|", 5)
		if len(f) != 5 {
			t.Fatalf("rsyslog wrote %q", line)
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(strings.TrimSpace(f[4])), &ev); err != nil {
			t.Fatalf("message is not the event's JSON: %v\n%.200s", err, f[4])
		}
		want := stored[ev.Seq]
		if want == nil || ev.Hash != want.Hash || ev.Replica != "replica-1" || f[2] != ev.Type || f[3] != "replica-1" || f[0] != wantPri[ev.Seq-1] {
			t.Errorf("syslog line %.120s: event %d hash %s replica %q pri %s", line, ev.Seq, ev.Hash, ev.Replica, f[0])
		}
		switch f[1] {
		case "portcullis-tcp":
			tcp++
		case "portcullis-udp":
			udp++
			if ev.BreakGlass == "" {
				t.Errorf("the loud-only UDP sink sent event %d", ev.Seq)
			}
		}
	}
	if tcp != len(events) || udp != 1 {
		t.Errorf("rsyslog got %d events over TCP (want %d) and %d over UDP (want 1)", tcp, len(events), udp)
	}
}

// TestJSONLinesAsStored: the jsonl sink writes each event exactly as the segment holds it
// (the same bytes, so hashes check out wherever the lines go).
func TestJSONLinesAsStored(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir, Replica: "r"})
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.SyncBuffer
	l.AddSink(&audit.JSONLines{Label: "test", W: &out})
	for _, a := range []string{"SELECT 1", "SELECT 'é\u2028<x>'", "UPDATE t SET a = 1"} {
		ev := &audit.Event{Type: audit.TypePGStatement, Actor: "alice", Action: a}
		ev.Attrs = append(ev.Attrs, audit.Int("rows", 3), audit.Hex64("params_digest", 0xfeed))
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg, err := os.ReadFile(dir + "/segment-00000001.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, line := range strings.Split(strings.TrimSpace(string(seg)), "\n") {
		if strings.Contains(line, `"type":"pg.statement"`) {
			stored = append(stored, line)
		}
	}
	if got := strings.TrimSpace(out.String()); got != strings.Join(stored, "\n") {
		t.Errorf("jsonl sink:\n%s\nsegment:\n%s", got, strings.Join(stored, "\n"))
	}
}
