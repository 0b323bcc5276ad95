package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestOpenTelemetry runs Portcullis with traces and an otlp audit sink pointed at a real
// OpenTelemetry Collector (OTLP/HTTP receiver, file exporter): a read and an approved
// write, then a Collector outage with statements during it. Every audit event must reach
// the Collector as a log record, in the log's order, with its seq, hash and the event's
// JSON exactly as stored (so that the chain can be checked there); the statements' spans
// must hang together: session → statement → decision, approval wait, upstream.
func TestOpenTelemetry(t *testing.T) {
	ctx := context.Background()
	col := testenv.Otelcol(t)
	cfgPath, _, _ := demoFiles(t)
	cfg, err := configs.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Telemetry.Traces = &configs.Traces{Endpoint: col.URL()}
	cfg.Audit.Sinks = append(cfg.Audit.Sinks, configs.AuditSink{Kind: "otlp", Endpoint: col.URL(), Events: "all"})
	serveCtx, stop := context.WithCancel(ctx)
	a := startServe(t, serveCtx, cfg, slog.New(slog.DiscardHandler))
	dsn := "postgres://alice:alice-demo-token@" + a.postgres + "/orders?sslmode=disable"

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE id > $1", 0).Scan(&n); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, "UPDATE orders SET status = 'traced' WHERE id = 1"); held <- err }()
	id := pendingApproval(t, a.api)
	if code := apiCall(t, a.api, "bob", "POST", "/api/v1/approvals/"+id+"/approve"); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	if err := <-held; err != nil {
		t.Fatalf("the approved write: %v", err)
	}

	// The Collector goes away; statements go on, audited; it comes back.
	col.Stop()
	for i := range 5 {
		if _, err := c.Exec(ctx, fmt.Sprintf("SELECT %d FROM orders LIMIT 1", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 'after the outage'"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)

	// Every event of the log, in order, with its hash and stored bytes.
	type stored struct {
		hash string
		line []byte
	}
	var want []uint64
	events := map[uint64]stored{}
	var last uint64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		want, events = want[:0], map[uint64]stored{}
		if err := audit.Scan(cfg.Audit.Dir, audit.Filter{}, func(ev *audit.Event) error {
			b, err := json.Marshal(ev)
			want = append(want, ev.Seq)
			events[ev.Seq] = stored{ev.Hash, b}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		logs, _ := col.Logs()
		got := map[uint64]bool{}
		for _, l := range logs {
			seq, _ := strconv.ParseUint(devserver.Attr(l.Attributes, "portcullis.seq"), 10, 64)
			got[seq] = true
		}
		missing := 0
		for _, s := range want {
			if !got[s] {
				missing++
			}
		}
		if missing == 0 && len(want) > 0 && want[len(want)-1] == last {
			break // every event there, and the log has stopped growing
		}
		last = want[len(want)-1]
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d audit events never reached the Collector", missing, len(want))
		}
	}
	logs, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	var prev uint64
	var prevHash string
	for _, l := range logs {
		seq, _ := strconv.ParseUint(devserver.Attr(l.Attributes, "portcullis.seq"), 10, 64)
		st, ok := events[seq]
		switch {
		case !ok:
			t.Fatalf("a log record with seq %d, which the audit log does not hold", seq)
		case seq < prev:
			t.Fatalf("seq %d arrived after %d: out of order", seq, prev)
		case seq == prev:
			continue // at least once: a batch sent again after the outage
		case devserver.Attr(l.Attributes, "portcullis.hash") != st.hash:
			t.Fatalf("seq %d: hash %q, the log holds %q", seq, devserver.Attr(l.Attributes, "portcullis.hash"), st.hash)
		case l.Body.StringValue != string(st.line):
			t.Fatalf("seq %d: body\n%s\nwant the event as stored\n%s", seq, l.Body.StringValue, st.line)
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(l.Body.StringValue), &ev); err != nil {
			t.Fatal(err)
		}
		if seq == prev+1 && prevHash != "" && ev.PrevHash != prevHash {
			t.Fatalf("seq %d: prev_hash %s does not chain to %s", seq, ev.PrevHash, prevHash)
		}
		if l.EventName != ev.Type || devserver.Attr(l.Attributes, "enduser.id") != ev.Actor {
			t.Fatalf("seq %d: event name %q, actor %q; want %q, %q", seq, l.EventName, devserver.Attr(l.Attributes, "enduser.id"), ev.Type, ev.Actor)
		}
		prev, prevHash = seq, ev.Hash
	}

	// Spans: flushed when the server stops.
	stop()
	var spans []devserver.OTLPSpan
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		spans, _ = col.Spans()
		if hasSpan(spans, "pg.session") || time.Now().After(deadline) {
			break
		}
	}
	byID := map[string]devserver.OTLPSpan{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var write *devserver.OTLPSpan
	for i, s := range spans {
		if s.Name == "pg.statement" && devserver.Attr(s.Attributes, "portcullis.approval") == id {
			write = &spans[i]
		}
	}
	if write == nil {
		t.Fatalf("no pg.statement span for the approved write (approval %s) among %d spans", id, len(spans))
	}
	if p, ok := byID[write.ParentSpanID]; !ok || p.Name != "pg.session" || devserver.Attr(p.Attributes, "enduser.id") != "alice" {
		t.Fatalf("the write's span's parent is %+v, want alice's pg.session", p)
	}
	children := map[string]devserver.OTLPSpan{}
	for _, s := range spans {
		if s.ParentSpanID == write.SpanID {
			children[s.Name] = s
		}
	}
	for _, name := range []string{"portcullis.decide", "portcullis.approval.wait", "pg.upstream"} {
		if _, ok := children[name]; !ok {
			t.Errorf("the approved write's span has no %s child (has %v)", name, keys(children))
		}
	}
	if d := children["portcullis.decide"]; devserver.Attr(d.Attributes, "portcullis.decision") != "require_approval" {
		t.Errorf("decision span says %q", devserver.Attr(d.Attributes, "portcullis.decision"))
	}
	if u := children["pg.upstream"]; devserver.Attr(u.Attributes, "portcullis.tag") != "UPDATE 1" {
		t.Errorf("upstream span's tag %q, want UPDATE 1", devserver.Attr(u.Attributes, "portcullis.tag"))
	}
	if w := children["portcullis.approval.wait"]; devserver.Attr(w.Attributes, "portcullis.result") != "approved" {
		t.Errorf("approval wait span's result %q", devserver.Attr(w.Attributes, "portcullis.result"))
	}
}

func hasSpan(spans []devserver.OTLPSpan, name string) bool {
	for _, s := range spans {
		if s.Name == name {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
