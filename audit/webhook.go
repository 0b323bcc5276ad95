package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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

	once sync.Once
	box  Outbox
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
	return w.outbox().Deliver(ctx, events, w.Wants, w.send)
}

// Missed is told by the log that a batch for this sink was dropped (it was behind).
func (w *Webhook) Missed() { w.outbox().Missed() }

// Resume delivers, from the log, what was committed and not delivered before this
// process started (the log calls it once, when the sink is added).
func (w *Webhook) Resume(ctx context.Context) error {
	return w.outbox().Resume(ctx, w.Wants, w.send)
}

// outbox is the webhook's place in the log: a cursor file per receiver URL.
func (w *Webhook) outbox() *Outbox {
	w.once.Do(func() {
		sum := sha256.Sum256([]byte(w.URL))
		w.box = Outbox{Dir: w.Outbox, Name: "webhook-" + hex.EncodeToString(sum[:6]) + ".cursor"}
	})
	return &w.box
}

// send POSTs one event (the outbox's batch is 1).
func (w *Webhook) send(ctx context.Context, evs []*Event) error { return w.deliver(ctx, evs[0]) }

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
