package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Webhook is a Sink that POSTs events to an HTTP endpoint, one request per event, in
// order. Each body is signed: the header X-Portcullis-Signature is "sha256=" and the hex
// HMAC-SHA256 of the body with Secret. Failed deliveries are retried with exponential
// backoff; the sink's own goroutine does this, so a slow receiver never slows the log.
type Webhook struct {
	URL    string
	Secret string
	// Format is "json" (the event as stored) or "slack" (an incoming-webhook message).
	Format string
	// Want selects the events to send; nil sends every event.
	Want func(*Event) bool
	// Link, when set, gives the console page of a request id; slack messages link the
	// break-glass session or approval request an event is about.
	Link func(id string) string
	// Attempts per event (default 5); the first retry waits Backoff (default 200ms),
	// each next one twice as long.
	Attempts int
	Backoff  time.Duration
	Client   *http.Client
	// Outbox, when set, is the audit log's directory: the webhook keeps there the seq of
	// the last event it delivered, and delivers from the log itself what it missed — events
	// whose delivery failed, batches dropped while it was behind, and, after a restart,
	// what was committed but not delivered before. Delivery is then at least once (a
	// receiver dedupes by X-Portcullis-Seq), in order, and never lost while the log exists.
	Outbox string

	mu     sync.Mutex  // one delivery at a time; guards cursor
	cursor uint64      // the last wanted event delivered; 0: not read yet
	behind atomic.Bool // a delivery failed or a batch was dropped: catch up from the log
}

var _ Sink = (*Webhook)(nil)

// Name identifies the webhook in logs (its URL).
func (w *Webhook) Name() string { return "webhook " + w.URL }

// Wants reports whether the webhook takes ev; the log does not queue the others for it.
func (w *Webhook) Wants(ev *Event) bool { return w.Want == nil || w.Want(ev) }

// Write delivers events in order, stopping at the first that cannot be delivered. With
// an outbox, after a failure or a dropped batch it first delivers, from the log, the
// wanted events between the last one it delivered and this batch.
func (w *Webhook) Write(ctx context.Context, events []Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.Outbox != "" && len(events) > 0 {
		if err := w.load(events[0].Seq); err != nil {
			return err
		}
		if w.behind.Load() {
			if err := w.catchUp(ctx, events[0].Seq-1); err != nil {
				return err
			}
			w.behind.Store(false)
		}
	}
	for i := range events {
		ev := &events[i]
		if !w.Wants(ev) || w.Outbox != "" && ev.Seq <= w.cursor {
			continue // not for this receiver, or delivered from the log already
		}
		if err := w.deliver(ctx, ev); err != nil {
			w.behind.Store(true)
			return err
		}
		if err := w.advance(ev.Seq); err != nil {
			return err
		}
	}
	return nil
}

// Missed is told by the log that a batch for this sink was dropped (it was behind).
func (w *Webhook) Missed() { w.behind.Store(true) }

// Resume delivers, from the log, what was committed and not delivered before this
// process started (the log calls it once, when the sink is added).
func (w *Webhook) Resume(ctx context.Context) error {
	if w.Outbox == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.load(0); err != nil || w.cursor == 0 {
		return err // started fresh: the first batch sets the cursor
	}
	return w.catchUp(ctx, ^uint64(0))
}

// load reads the cursor once. A webhook without one (its first run) starts just before
// seq from (0: not yet): it does not replay the log's history.
func (w *Webhook) load(from uint64) error {
	if w.cursor != 0 {
		return nil
	}
	b, err := os.ReadFile(w.cursorFile())
	switch {
	case err == nil:
		if w.cursor, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return fmt.Errorf("webhook outbox %s: %w", w.cursorFile(), err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		if from <= 1 {
			return nil
		}
		return w.advance(from - 1)
	}
	return err
}

// cursorFile is where the outbox keeps its position: one per receiver URL.
func (w *Webhook) cursorFile() string {
	sum := sha256.Sum256([]byte(w.URL))
	return filepath.Join(w.Outbox, "webhook-"+hex.EncodeToString(sum[:6])+".cursor")
}

// catchUp delivers, from the log, the wanted events after the cursor up to seq upTo.
func (w *Webhook) catchUp(ctx context.Context, upTo uint64) error {
	if w.cursor >= upTo {
		return nil
	}
	err := Scan(w.Outbox, Filter{}, func(ev *Event) error {
		if ev.Seq <= w.cursor || ev.Seq > upTo {
			return nil
		}
		if !w.Wants(ev) {
			return nil
		}
		if err := w.deliver(ctx, ev); err != nil {
			return err
		}
		return w.advance(ev.Seq)
	})
	var ce *ChainError
	if errors.As(err, &ce) && upTo == ^uint64(0) {
		return nil // a line being written at the end: the live batches carry on from here
	}
	return err
}

// advance records that the wanted events up to seq were delivered.
func (w *Webhook) advance(seq uint64) error {
	w.cursor = seq
	if w.Outbox == "" {
		return nil
	}
	tmp := w.cursorFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, w.cursorFile())
}

func (w *Webhook) deliver(ctx context.Context, ev *Event) error {
	body, err := w.body(ev)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, []byte(w.Secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	attempts, backoff := max(w.Attempts, 1), w.Backoff
	if w.Attempts == 0 {
		attempts = 5
	}
	if backoff == 0 {
		backoff = 200 * time.Millisecond
	}
	var last error
	for n := range attempts {
		if n > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff << (n - 1)):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Portcullis-Signature", sig)
		req.Header.Set("X-Portcullis-Event", ev.Type)
		req.Header.Set("X-Portcullis-Seq", strconv.FormatUint(ev.Seq, 10))
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
			err = fmt.Errorf("%s answered %s", w.URL, resp.Status)
		}
		last = err
	}
	return fmt.Errorf("event %d not delivered after %d attempts: %w", ev.Seq, attempts, last)
}

func (w *Webhook) body(ev *Event) ([]byte, error) {
	if w.Format != "slack" {
		return json.Marshal(ev)
	}
	text := fmt.Sprintf(":rotating_light: *%s* by %s", ev.Type, ev.Actor)
	if ev.Resource != "" {
		text += " on `" + ev.Resource + "`"
	}
	if ev.Action != "" {
		text += ": `" + ev.Action + "`"
	}
	if ev.BreakGlass != "" {
		text += " (break-glass " + ev.BreakGlass + ")"
	}
	if ev.Alert != "" {
		text += " (alert: " + ev.Alert + ")"
	}
	if ev.Reason != "" {
		text += "\n> " + ev.Reason
	}
	if w.Link != nil {
		id := ev.BreakGlass
		if a, ok := ev.Details["approval"].(string); ok && id == "" {
			id = a
		}
		if id != "" {
			text += "\n" + w.Link(id)
		}
	}
	return json.Marshal(map[string]string{"text": text})
}
