package audit

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
)

func TestWebhookSignedOrderedNonBlocking(t *testing.T) {
	var mu sync.Mutex
	var got []uint64
	failedOnce := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write(body)
		if r.Header.Get("X-Portcullis-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("bad signature on %s", body)
		}
		time.Sleep(100 * time.Millisecond) // a slow receiver
		mu.Lock()
		defer mu.Unlock()
		if !failedOnce {
			failedOnce = true
			w.WriteHeader(http.StatusBadGateway) // the first delivery fails; it is retried
			return
		}
		var ev Event
		json.Unmarshal(body, &ev)
		got = append(got, ev.Seq)
	}))
	defer srv.Close()

	l := openLog(t, t.TempDir(), Options{})
	l.AddSink(&Webhook{URL: srv.URL, Secret: "s3cret", Backoff: 10 * time.Millisecond, Want: func(ev *Event) bool { return ev.BreakGlass != "" }})
	var want []uint64
	var slowest time.Duration
	for i := range 30 {
		ev := &Event{Type: "pg.statement", Actor: "dave"}
		if i%6 == 0 {
			ev.BreakGlass = "bg_1"
		}
		start := time.Now()
		if err := l.AppendWritten(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		if ev.BreakGlass != "" {
			want = append(want, ev.Seq)
		}
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("an append waited %v for a slow webhook", slowest)
	}
	l.Close() // waits for the sink to finish
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v in order", got, want)
		}
	}
}

func TestWebhookSlackFormat(t *testing.T) {
	w := &Webhook{Format: "slack", Link: func(id string) string { return "https://portcullis.example/requests/" + id }}
	b, _ := w.body(&Event{Type: "breakglass.started", Actor: "dave", Resource: "orders", BreakGlass: "bg_1", Reason: "INC-1 db down"})
	var m map[string]string
	if json.Unmarshal(b, &m) != nil || !strings.Contains(m["text"], "breakglass.started") || !strings.Contains(m["text"], "https://portcullis.example/requests/bg_1") {
		t.Errorf("slack body %s", b)
	}
	b, _ = w.body(&Event{Type: "pg.mismatch", Actor: "alice", Alert: "mismatch", Details: map[string]any{"approval": "apr_2"}})
	if json.Unmarshal(b, &m) != nil || !strings.Contains(m["text"], "alert: mismatch") || !strings.Contains(m["text"], "/requests/apr_2") {
		t.Errorf("slack body %s", b)
	}
}

// TestWebhookOutbox: with an outbox, a receiver that is down loses nothing. Loud events
// committed while it fails are delivered from the log — after the next event, and after a
// restart of Portcullis (a new log and webhook over the same directory) — in order, each
// once, and quiet events are never sent.
func TestWebhookOutbox(t *testing.T) {
	var mu sync.Mutex
	var got []string
	down := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var ev Event
		json.NewDecoder(r.Body).Decode(&ev)
		got = append(got, ev.Action)
	}))
	defer srv.Close()
	loud := func(ev *Event) bool { return ev.BreakGlass != "" }
	dir := t.TempDir()
	newHook := func() *Webhook {
		return &Webhook{URL: srv.URL, Secret: "s", Want: loud, Attempts: 1, Backoff: time.Millisecond, Outbox: dir}
	}
	add := func(l *Log, action string, isLoud bool) {
		ev := &Event{Type: "pg.statement", Action: action}
		if isLoud {
			ev.BreakGlass = "bg-1"
		}
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			s := strings.Join(got, " ")
			mu.Unlock()
			if s == want {
				return
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("delivered %q, want %q", strings.Join(got, " "), want)
	}

	l := openLog(t, dir, Options{})
	l.AddSink(newHook())
	add(l, "q0", false)
	add(l, "b1", true) // the receiver is down: not delivered
	add(l, "q2", false)
	add(l, "b3", true)
	time.Sleep(50 * time.Millisecond)
	l.Close() // Portcullis stops with b1 and b3 undelivered

	mu.Lock()
	down = false
	mu.Unlock()
	l = openLog(t, dir, Options{})
	l.AddSink(newHook()) // a restart: it delivers what it missed from the log
	delivered("b1 b3")
	add(l, "q4", false)
	add(l, "b5", true)
	delivered("b1 b3 b5")

	// Down again, then up: the next event brings the missed one first.
	mu.Lock()
	down = true
	mu.Unlock()
	add(l, "b6", true)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	add(l, "b7", true)
	delivered("b1 b3 b5 b6 b7")
	l.Close()
}
