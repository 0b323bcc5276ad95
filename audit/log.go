package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log is closed")

// File is the part of *os.File the log writes segments through.
type File interface {
	Write([]byte) (int, error)
	Sync() error
	Close() error
}

// Options configures a Log.
type Options struct {
	// Dir holds the segments; it is created if missing.
	Dir string
	// SegmentMaxBytes starts a new segment once the current one is this large
	// (default 64 MiB).
	SegmentMaxBytes int64
	// NoSync skips fsync. Events can then be lost in a crash; for throwaway demos only.
	NoSync bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives operational messages (never event contents).
	Logger *slog.Logger
	// OpenSegment opens a segment file for appending; tests replace it to inject faults.
	OpenSegment func(path string) (File, error)
}

// Wait modes of an append.
const (
	waitDurable = iota // written and fsynced
	waitWritten        // written to the segment (survives a Portcullis crash, not a host crash)
	waitNone           // queued; committed in order, nobody waits
)

type appendReq struct {
	ev   *Event
	mode int
	done chan error
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	opts Options
	reqs chan *appendReq

	// Owned by the writer goroutine.
	segNum   int
	segSize  int64
	seq      uint64
	prevHash string
	buf      []byte

	fileMu sync.Mutex // guards seg against rotation while the syncer syncs it
	seg    File
	headF  *os.File

	syncMu      sync.Mutex // guards the fields below, shared by writer and syncer
	writtenSeq  uint64
	writtenHash string
	durable     []*appendReq // written, waiting for fsync, in seq order
	syncWake    chan struct{}

	mu     sync.RWMutex // guards closed, failed and sinks
	closed bool
	failed error
	sinks  []*sinkRunner

	idPrefix string // random per Open; event ids are the prefix and the sequence number

	loopDone chan struct{}
	syncDone chan struct{}
}

// lazySyncInterval bounds how long events nobody waits on stay unsynced.
const lazySyncInterval = 100 * time.Millisecond

// Open opens the log in opts.Dir, creating it if needed, and continues the chain from its
// last event.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("audit log directory is not set")
	}
	if opts.SegmentMaxBytes <= 0 {
		opts.SegmentMaxBytes = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OpenSegment == nil {
		opts.OpenSegment = func(path string) (File, error) {
			return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("could not create audit directory: %w", err)
	}
	segs, err := segments(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("could not list audit segments: %w", err)
	}
	last, err := lastEvent(opts.Dir, segs)
	if err != nil {
		return nil, fmt.Errorf("could not recover the audit log: %w", err)
	}
	l := &Log{opts: opts, reqs: make(chan *appendReq, 4096), prevHash: GenesisHash, loopDone: make(chan struct{}),
		syncDone: make(chan struct{}), syncWake: make(chan struct{}, 1), idPrefix: "ev_" + rand.Text()[:10] + "_"}
	if last != nil {
		l.seq, l.prevHash = last.Seq, last.Hash
	}
	if h, err := readHead(opts.Dir); err != nil {
		return nil, err
	} else if h != nil && h.Seq > l.seq {
		return nil, fmt.Errorf("audit log is missing events: %s records event %d but the log ends at %d; run portcullis audit verify", headFile, h.Seq, l.seq)
	}
	num := 1
	if len(segs) > 0 {
		num = segs[len(segs)-1]
	}
	if err := l.openSegment(num); err != nil {
		return nil, err
	}
	if l.headF, err = os.OpenFile(filepath.Join(opts.Dir, headFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("could not open the audit head record: %w", err)
	}
	go l.commitLoop()
	go l.syncLoop()
	return l, nil
}

func (l *Log) openSegment(num int) error {
	path := filepath.Join(l.opts.Dir, segmentName(num))
	size := int64(0)
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	f, err := l.opts.OpenSegment(path)
	if err != nil {
		return fmt.Errorf("could not open audit segment: %w", err)
	}
	if !l.opts.NoSync {
		if err := syncDir(l.opts.Dir); err != nil {
			f.Close()
			return err
		}
	}
	l.seg, l.segNum, l.segSize = f, num, size
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("could not open audit directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("could not sync audit directory: %w", err)
	}
	return nil
}

// Append writes ev to the log and returns once it is durable (written and fsynced). It
// fills in ev's Seq, ID, PrevHash and Hash, and Time if it is zero. An error means the
// event may not have been recorded and the caller must not go ahead with what it records.
func (l *Log) Append(ctx context.Context, ev *Event) error { return l.append(ctx, ev, waitDurable) }

// AppendWritten is Append for events that need only be in the log, in order, before the
// caller proceeds: it returns once the event is written to the segment (where it survives
// a crash of Portcullis), and the fsync follows within the next group commit.
func (l *Log) AppendWritten(ctx context.Context, ev *Event) error {
	return l.append(ctx, ev, waitWritten)
}

// Enqueue adds ev to the log without waiting for it; it is committed in order with the
// rest. A failure to write it is logged, and fails every later append.
func (l *Log) Enqueue(ev *Event) {
	if err := l.append(context.Background(), ev, waitNone); err != nil {
		l.opts.Logger.Error("audit event not recorded", "type", ev.Type, "err", err)
	}
}

func (l *Log) append(ctx context.Context, ev *Event, mode int) error {
	l.mu.RLock()
	closed, failed := l.closed, l.failed
	if !closed && failed == nil {
		// Sending under the read lock keeps Close from closing the channel under us.
		r := &appendReq{ev: ev, mode: mode, done: make(chan error, 1)}
		select {
		case l.reqs <- r:
			l.mu.RUnlock()
			if mode == waitNone {
				return nil
			}
			select {
			case err := <-r.done:
				return err
			case <-ctx.Done():
				return fmt.Errorf("audit write not confirmed: %w", ctx.Err())
			}
		case <-ctx.Done():
			l.mu.RUnlock()
			return fmt.Errorf("audit write not started: %w", ctx.Err())
		}
	}
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return fmt.Errorf("audit log failed earlier, refusing further writes: %w", failed)
}

const maxBatch = 1024

// heldMax bounds how long, and how much, events nobody waits on are held before they are
// written: they ride along with the next write someone waits for.
const (
	heldMaxDelay = 10 * time.Millisecond
	heldMaxBytes = 256 << 10
)

// commitLoop encodes queued events in order and writes them in batches, one write per
// batch, then hands them to the sync loop.
func (l *Log) commitLoop() {
	defer close(l.loopDone)
	defer close(l.syncWake)
	batch := make([]*appendReq, 0, maxBatch)
	var held []*appendReq // encoded into l.buf, not yet written
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var r *appendReq
		var ok bool
		if len(held) > 0 {
			select {
			case r, ok = <-l.reqs:
			case <-timer.C:
				held = l.flush(held)
				continue
			}
		} else {
			r, ok = <-l.reqs
		}
		if !ok {
			l.flush(held)
			return
		}
		batch = append(batch[:0], r)
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if err := l.encodeBatch(batch); err != nil {
			for _, r := range append(held, batch...) {
				r.done <- err
			}
			held = held[:0]
			continue
		}
		wasIdle := len(held) == 0
		held = append(held, batch...)
		waited := false
		for _, r := range batch {
			waited = waited || r.mode != waitNone
		}
		switch {
		case waited || len(l.buf) >= heldMaxBytes:
			timer.Stop()
			held = l.flush(held)
		case wasIdle:
			timer.Reset(heldMaxDelay)
		}
	}
}

// encodeBatch chains and encodes a batch onto l.buf. On failure the log is marked failed.
func (l *Log) encodeBatch(batch []*appendReq) error {
	if err := l.failedErr(); err != nil {
		return err
	}
	now := l.opts.Now().UTC()
	for _, r := range batch {
		ev := r.ev
		l.seq++
		ev.Seq, ev.PrevHash = l.seq, l.prevHash
		if ev.ID == "" {
			ev.ID = l.idPrefix + strconv.FormatUint(l.seq, 10)
		}
		if ev.Time.IsZero() {
			ev.Time = now
		}
		start := len(l.buf)
		var err error
		if l.buf, err = ev.encode(l.buf); err != nil {
			return l.fail(err)
		}
		if len(l.buf)-start > maxLine {
			return l.fail(fmt.Errorf("event %d is larger than %d bytes", l.seq, maxLine))
		}
		l.prevHash = ev.Hash
	}
	return nil
}

// flush writes the encoded events in one call, acknowledges those that wait only for the
// write, queues the rest for the sync loop, and rotates the segment when it is full. It
// returns held emptied.
func (l *Log) flush(held []*appendReq) []*appendReq {
	if len(held) == 0 {
		return held
	}
	err := l.failedErr()
	if err == nil {
		if _, werr := l.seg.Write(l.buf); werr != nil {
			err = l.fail(fmt.Errorf("could not write audit segment: %w", werr))
		}
	}
	if err == nil {
		l.segSize += int64(len(l.buf))
		if l.segSize >= l.opts.SegmentMaxBytes {
			err = l.rotate()
		}
	}
	l.buf = l.buf[:0]
	if err != nil {
		for _, r := range held {
			r.done <- err
		}
		return held[:0]
	}
	events := make([]Event, 0, len(held))
	l.syncMu.Lock()
	l.writtenSeq, l.writtenHash = l.seq, l.prevHash
	for _, r := range held {
		events = append(events, *r.ev)
		if r.mode == waitDurable {
			l.durable = append(l.durable, r)
		} else {
			r.done <- nil
		}
	}
	l.syncMu.Unlock()
	select {
	case l.syncWake <- struct{}{}:
	default:
	}
	l.toSinks(events)
	return held[:0]
}

// rotate syncs and closes the full segment and opens the next.
func (l *Log) rotate() error {
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	if !l.opts.NoSync {
		if err := l.seg.Sync(); err != nil {
			return l.fail(fmt.Errorf("could not sync audit segment: %w", err))
		}
	}
	if err := l.seg.Close(); err != nil {
		return l.fail(fmt.Errorf("could not close audit segment: %w", err))
	}
	if err := l.openSegment(l.segNum + 1); err != nil {
		return l.fail(err)
	}
	l.opts.Logger.Info("audit segment rotated", "segment", segmentName(l.segNum), "seq", l.seq)
	return nil
}

// syncLoop fsyncs what the commit loop wrote and acknowledges the appends waiting for
// durability; one fsync covers every batch written before it began. While someone waits
// it syncs as often as it can; events nobody waits on are synced within lazySyncInterval.
func (l *Log) syncLoop() {
	defer close(l.syncDone)
	var synced uint64
	lazy := time.NewTimer(lazySyncInterval)
	defer lazy.Stop()
	for {
		select {
		case _, ok := <-l.syncWake:
			if !ok {
				l.syncOnce(&synced, true) // whatever the last batches left
				return
			}
			l.syncOnce(&synced, false)
		case <-lazy.C:
			l.syncOnce(&synced, true)
			lazy.Reset(lazySyncInterval)
		}
	}
}

// syncOnce syncs if appends wait for it, or if force and anything is unsynced.
func (l *Log) syncOnce(synced *uint64, force bool) {
	l.syncMu.Lock()
	upTo, hash, waiting := l.writtenSeq, l.writtenHash, l.durable
	if len(waiting) == 0 && (!force || upTo == *synced) {
		l.syncMu.Unlock()
		return
	}
	l.durable = nil
	l.syncMu.Unlock()
	var err error
	if err = l.failedErr(); err == nil {
		l.fileMu.Lock()
		if !l.opts.NoSync {
			if serr := l.seg.Sync(); serr != nil {
				err = l.fail(fmt.Errorf("could not sync audit segment: %w", serr))
			}
		}
		l.fileMu.Unlock()
	}
	if err == nil && upTo > 0 {
		if _, werr := l.headF.WriteAt(encodeHead(head{Seq: upTo, Hash: hash}), 0); werr != nil {
			err = l.fail(fmt.Errorf("could not update the audit head record: %w", werr))
		}
	}
	if err == nil {
		*synced = upTo
	}
	for _, r := range waiting {
		r.done <- err
	}
}

func (l *Log) failedErr() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.failed != nil {
		return fmt.Errorf("audit log failed earlier, refusing further writes: %w", l.failed)
	}
	return nil
}

func (l *Log) fail(err error) error {
	l.mu.Lock()
	l.failed = err
	l.mu.Unlock()
	l.opts.Logger.Error("audit log failed; every further audited action will be refused", "err", err)
	return err
}

// Close waits for pending appends, flushes sinks and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.loopDone
	<-l.syncDone
	l.mu.RLock()
	sinks := l.sinks
	l.mu.RUnlock()
	for _, s := range sinks {
		s.close()
	}
	return errors.Join(l.seg.Close(), l.headF.Close())
}
