package audit

import (
	"context"
	"sync"
	"time"
)

// Sink receives committed events for export elsewhere (a webhook, OpenTelemetry, a SIEM).
// The segment files are the record; sinks are best-effort mirrors. A sink that falls more
// than its queue behind loses batches, and the loss is logged with the sequence numbers
// missed so that they can be backfilled from `portcullis audit export`.
type Sink interface {
	// Name identifies the sink in logs.
	Name() string
	// Write delivers events in sequence order. An error is logged; the events are not
	// retried by the log.
	Write(ctx context.Context, events []Event) error
}

const sinkQueue = 256

type sinkRunner struct {
	sink Sink
	ch   chan []Event
	wg   sync.WaitGroup
}

// AddSink starts delivering every event committed from now on to s.
func (l *Log) AddSink(s Sink) {
	r := &sinkRunner{sink: s, ch: make(chan []Event, sinkQueue)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for evs := range r.ch {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := s.Write(ctx, evs); err != nil {
				l.opts.Logger.Warn("audit sink failed", "sink", s.Name(), "first_seq", evs[0].Seq, "last_seq", evs[len(evs)-1].Seq, "err", err)
			}
			cancel()
		}
	}()
	l.mu.Lock()
	l.sinks = append(l.sinks, r)
	l.mu.Unlock()
}

func (l *Log) hasSinks() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.sinks) > 0
}

// toSinks hands a committed batch to every sink without waiting for any of them.
func (l *Log) toSinks(events []Event) {
	l.mu.RLock()
	sinks := l.sinks
	l.mu.RUnlock()
	if len(sinks) == 0 || len(events) == 0 {
		return
	}
	batch := append([]Event(nil), events...)
	for _, r := range sinks {
		select {
		case r.ch <- batch:
		default:
			l.opts.Logger.Error("audit sink is behind; batch not delivered", "sink", r.sink.Name(), "first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq)
		}
	}
}

func (r *sinkRunner) close() {
	close(r.ch)
	r.wg.Wait()
}
