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

// Observer sees every committed event as it is committed, in order, on the log's own
// goroutine: it must be quick and must not keep the event (counters, histograms). Unlike
// a Sink it gets no copy, so it costs the request path nothing but its own work.
type Observer interface {
	Observe(*Event)
}

// AddObserver calls o for every event committed from now on.
func (l *Log) AddObserver(o Observer) {
	l.mu.Lock()
	l.observers = append(l.observers, o)
	l.mu.Unlock()
}

// wanter is a Sink that takes only some events; the others are not queued for it.
type wanter interface {
	Wants(*Event) bool
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
		if rs, ok := s.(interface{ Resume(context.Context) error }); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			if err := rs.Resume(ctx); err != nil {
				l.opts.Logger.Warn("audit sink could not deliver what it missed; it tries again with the next batch", "sink", s.Name(), "err", err)
			}
			cancel()
		}
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
	l.hasSinks.Store(true)
	l.mu.Unlock()
}

// toSinks hands a committed batch to every sink without waiting for any of them. Each
// sink gets copies of the events it wants, in order.
func (l *Log) toSinks(batch []*appendReq) {
	l.mu.RLock()
	sinks, observers := l.sinks, l.observers
	l.mu.RUnlock()
	for _, o := range observers {
		for _, req := range batch {
			o.Observe(req.ev)
		}
	}
	for _, r := range sinks {
		w, filtered := r.sink.(wanter)
		var events []Event
		for _, req := range batch {
			if !filtered || w.Wants(req.ev) {
				events = append(events, req.ev.withAttrsInDetails())
			}
		}
		if len(events) == 0 {
			continue
		}
		select {
		case r.ch <- events:
		default:
			l.opts.Logger.Error("audit sink is behind; batch not delivered", "sink", r.sink.Name(), "first_seq", events[0].Seq, "last_seq", events[len(events)-1].Seq)
			if m, ok := r.sink.(interface{ Missed() }); ok {
				m.Missed() // it delivers them from the log later
			}
		}
	}
}

func (r *sinkRunner) close() {
	close(r.ch)
	r.wg.Wait()
}
