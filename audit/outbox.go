package audit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Outbox keeps a sink's place in the audit log, so that the sink delivers from the log
// itself what it missed: events whose delivery failed, batches the log dropped while the
// sink was behind, and, after a restart, what was committed but not delivered before.
// Delivery is then at least once (a receiver dedupes by seq), in order, and never lost
// while the log exists. The place is a cursor file in the log's directory: the seq of the
// last event delivered.
type Outbox struct {
	// Dir is the audit log's directory; empty turns the outbox off (delivery is then
	// best-effort: what fails is logged and not retried from the log).
	Dir string
	// Name is the cursor file's name, one per receiver.
	Name string
	// Batch is how many events one send takes at most (default 1).
	Batch int

	mu     sync.Mutex  // one delivery at a time; guards cursor
	cursor uint64      // the last wanted event delivered; 0: not read yet
	behind atomic.Bool // a delivery failed or a batch was dropped: catch up from the log
}

// SendFunc delivers events, in order, all or none as far as the outbox knows: after an
// error it sends them again.
type SendFunc func(ctx context.Context, events []*Event) error

// Deliver sends the wanted events of a batch the log handed to the sink, in chunks of at
// most Batch, stopping at the first failure. With an outbox, after a failure or a dropped
// batch it first sends, from the log, the wanted events between the last one delivered
// and this batch.
func (o *Outbox) Deliver(ctx context.Context, events []Event, want func(*Event) bool, send SendFunc) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.Dir != "" && len(events) > 0 {
		if err := o.load(events[0].Seq); err != nil {
			return err
		}
		if o.behind.Load() {
			if err := o.catchUp(ctx, events[0].Seq-1, want, send); err != nil {
				return err
			}
			o.behind.Store(false)
		}
	}
	chunk := make([]*Event, 0, min(o.batch(), len(events)))
	for i := range events {
		ev := &events[i]
		if want != nil && !want(ev) || o.Dir != "" && ev.Seq <= o.cursor {
			continue // not for this receiver, or delivered from the log already
		}
		if chunk = append(chunk, ev); len(chunk) == o.batch() {
			if err := o.send(ctx, chunk, send); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
	}
	if len(chunk) > 0 {
		return o.send(ctx, chunk, send)
	}
	return nil
}

// Missed is told by the log that a batch for this sink was dropped (it was behind).
func (o *Outbox) Missed() { o.behind.Store(true) }

// Resume sends, from the log, what was committed and not delivered before this process
// started (the log calls the sink's Resume once, when the sink is added).
func (o *Outbox) Resume(ctx context.Context, want func(*Event) bool, send SendFunc) error {
	if o.Dir == "" {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.load(0); err != nil || o.cursor == 0 {
		return err // started fresh: the first batch sets the cursor
	}
	return o.catchUp(ctx, ^uint64(0), want, send)
}

func (o *Outbox) batch() int { return max(o.Batch, 1) }

// send delivers a chunk and moves the cursor past it; a failure marks the sink behind.
func (o *Outbox) send(ctx context.Context, chunk []*Event, send SendFunc) error {
	if err := send(ctx, chunk); err != nil {
		o.behind.Store(true)
		return err
	}
	return o.advance(chunk[len(chunk)-1].Seq)
}

// load reads the cursor once. A sink without one (its first run) starts just before seq
// from (0: not yet): it does not replay the log's history.
func (o *Outbox) load(from uint64) error {
	if o.cursor != 0 {
		return nil
	}
	b, err := os.ReadFile(o.file())
	switch {
	case err == nil:
		if o.cursor, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return fmt.Errorf("outbox %s: %w", o.file(), err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		if from <= 1 {
			return nil
		}
		return o.advance(from - 1)
	}
	return err
}

func (o *Outbox) file() string { return filepath.Join(o.Dir, o.Name) }

// catchUp sends, from the log, the wanted events after the cursor up to seq upTo.
func (o *Outbox) catchUp(ctx context.Context, upTo uint64, want func(*Event) bool, send SendFunc) error {
	if o.cursor >= upTo {
		return nil
	}
	var chunk []*Event
	err := Scan(o.Dir, Filter{}, func(ev *Event) error {
		if ev.Seq <= o.cursor || ev.Seq > upTo || want != nil && !want(ev) {
			return nil
		}
		if chunk = append(chunk, ev); len(chunk) < o.batch() {
			return nil
		}
		err := o.send(ctx, chunk, send)
		chunk = nil
		return err
	})
	var ce *ChainError
	if errors.As(err, &ce) && upTo == ^uint64(0) {
		err = nil // a line being written at the end: the live batches carry on from here
	}
	if err == nil && len(chunk) > 0 {
		err = o.send(ctx, chunk, send)
	}
	return err
}

// advance records that the wanted events up to seq were delivered.
func (o *Outbox) advance(seq uint64) error {
	o.cursor = seq
	if o.Dir == "" {
		return nil
	}
	tmp := o.file() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, o.file())
}
