package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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
	// Replica names this process in every event it writes (Event.Replica); empty: none.
	Replica string
}

// Wait modes of an append.
const (
	waitDurable = iota // written and fsynced
	waitWritten        // written to the segment (survives a Portcullis crash, not a host crash)
	waitNone           // queued; committed in order, nobody waits
)

type appendReq struct {
	ev   *Event
	own  eventWithAttrs // Enqueue's copy of its event, so that the caller may reuse its own
	mode int
	done chan error // answered once for waitDurable and waitWritten; unused for waitNone
}

// Log is an open audit log. It is safe for concurrent use.
//
// Appends join a queue. The appending goroutine that finds nobody writing becomes the
// writer: it encodes and writes everything queued, its own event and those that arrived
// meanwhile, in one write per round, until the queue is empty. So an uncontended append
// costs no hand-off between goroutines, and contended ones share writes (group commit).
// Events nobody waits for wake nobody: they are written with the next write, or by the
// flush loop within heldMaxDelay (woken once per such delay, not once per event). A
// separate sync loop fsyncs.
type Log struct {
	opts Options

	qmu        sync.Mutex
	qcond      *sync.Cond // signalled when writing ends
	queue      []*appendReq
	spare      []*appendReq
	writing    bool
	flushArmed bool          // the flush loop has been woken and will write what is queued
	flushWake  chan struct{} // wakes the flush loop
	flushStop  chan struct{} // closed by Close
	flushDone  chan struct{}

	// Owned by the current writer.
	segNum  int
	segSize int64
	seq     uint64
	chain   chain // ids and the hash of the last event written
	buf     []byte

	fileMu sync.Mutex // guards seg against rotation while the syncer syncs it
	seg    File
	headF  *os.File

	syncMu      sync.Mutex // guards the fields below, shared by writer and syncer
	writtenSeq  uint64
	writtenHash [2 * sha256.Size]byte
	durable     []*appendReq // written, waiting for fsync, in seq order
	syncWake    chan struct{}

	mu        sync.RWMutex // guards closed, failed, sinks and observers
	observers []Observer
	closed    bool
	failed    error
	sinks     []*sinkRunner
	hasSinks  atomic.Bool // read by the writer without mu

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
	l := &Log{opts: opts, syncDone: make(chan struct{}), syncWake: make(chan struct{}, 1),
		flushWake: make(chan struct{}, 1), flushStop: make(chan struct{}), flushDone: make(chan struct{}),
		chain: chain{idPrefix: "ev_" + rand.Text()[:10] + "_", replica: opts.Replica}}
	copy(l.chain.prev[:], GenesisHash)
	l.qcond = sync.NewCond(&l.qmu)
	if last != nil {
		l.seq = last.Seq
		copy(l.chain.prev[:], last.Hash)
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
	go l.syncLoop()
	go l.flushLoop()
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
// fills in ev's Seq, and Time if it is zero (see Event for its ID and hashes). An error means the
// event may not have been recorded and the caller must not go ahead with what it records.
func (l *Log) Append(ctx context.Context, ev *Event) error { return l.append(ctx, ev, waitDurable) }

// AppendWritten is Append for events that need only be in the log, in order, before the
// caller proceeds: it returns once the event is written to the segment (where it survives
// a crash of Portcullis), and the fsync follows within the next group commit.
func (l *Log) AppendWritten(ctx context.Context, ev *Event) error {
	return l.append(ctx, ev, waitWritten)
}

// Enqueue adds a copy of ev to the log without waiting for it; it is committed in order
// with the rest. ev may be reused once Enqueue returns (its Details map and slices are
// not copied: they must not change). A failure to write it is logged, and fails every
// later append.
func (l *Log) Enqueue(ev *Event) {
	if err := l.append(context.Background(), ev, waitNone); err != nil {
		l.opts.Logger.Error("audit event not recorded", "type", ev.Type, "err", err)
	}
}

// recycle puts a request back in reqs, without what it held.
func (r *appendReq) recycle() {
	clear(r.own.attrs[:min(len(r.own.ev.Attrs), len(r.own.attrs))])
	r.own.ev, r.ev = Event{}, nil
	reqs.Put(r)
}

// reqs recycles appendReqs, with their channels: an append is on every statement's path.
// A request goes back once nobody holds it: its waiter after the answer, or the writer
// after writing one nobody waits for.
var reqs = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

func (l *Log) append(ctx context.Context, ev *Event, mode int) error {
	r := reqs.Get().(*appendReq)
	r.ev, r.mode = ev, mode
	if mode == waitNone { // Enqueue: the log keeps a copy
		r.own.ev = *ev
		if n := copy(r.own.attrs[:], ev.Attrs); n == len(ev.Attrs) {
			r.own.ev.Attrs = r.own.attrs[:n]
		} else {
			r.own.ev.Attrs = slices.Clone(ev.Attrs)
		}
		r.ev = &r.own.ev
	}
	// Joining the queue under the read lock keeps Close from finishing under us.
	l.mu.RLock()
	if l.closed || l.failed != nil {
		closed, failed := l.closed, l.failed
		l.mu.RUnlock()
		r.recycle()
		if closed {
			return ErrClosed
		}
		return fmt.Errorf("audit log failed earlier, refusing further writes: %w", failed)
	}
	l.qmu.Lock()
	l.queue = append(l.queue, r)
	if mode == waitNone {
		if !l.writing && !l.flushArmed {
			l.flushArmed = true
			select {
			case l.flushWake <- struct{}{}:
			default:
			}
		}
		l.qmu.Unlock()
		l.mu.RUnlock()
		return nil
	}
	writer := !l.writing
	l.writing = true
	l.qmu.Unlock()
	l.mu.RUnlock()
	if writer {
		l.drain()
	}
	select {
	case err := <-r.done:
		r.ev = nil
		reqs.Put(r)
		return err
	case <-ctx.Done():
		// The writer still holds r and will answer into its buffered channel: r is left
		// to the garbage collector.
		return fmt.Errorf("audit write not confirmed: %w", ctx.Err())
	}
}

// heldMaxDelay bounds how long events nobody waits on are held before they are written.
const heldMaxDelay = 10 * time.Millisecond

// flushLoop writes, heldMaxDelay after it is woken, what was queued without a waiter and
// not yet taken along by another write.
func (l *Log) flushLoop() {
	defer close(l.flushDone)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-l.flushStop:
			return
		case <-l.flushWake:
		}
		t.Reset(heldMaxDelay)
		select {
		case <-l.flushStop:
			t.Stop()
			return
		case <-t.C:
		}
		l.timerFlush()
	}
}

// timerFlush writes events nobody waits on when no other write has taken them along.
func (l *Log) timerFlush() {
	l.qmu.Lock()
	l.flushArmed = false
	if l.writing || len(l.queue) == 0 {
		l.qmu.Unlock()
		return
	}
	l.writing = true
	l.qmu.Unlock()
	l.drain()
}

// drain is the writer's loop: it writes the queue, round after round, until it is empty.
// The caller has set l.writing.
func (l *Log) drain() {
	for {
		l.qmu.Lock()
		batch := l.queue
		l.queue, l.spare = l.spare[:0], nil
		if len(batch) == 0 {
			l.spare = batch
			l.writing = false
			l.qcond.Broadcast()
			l.qmu.Unlock()
			return
		}
		l.qmu.Unlock()
		l.writeBatch(batch)
		clear(batch)
		l.qmu.Lock()
		if l.spare == nil {
			l.spare = batch[:0]
		}
		l.qmu.Unlock()
	}
}

// writeBatch chains, encodes and writes a batch in one write, acknowledges the appends
// that wait only for the write, hands the rest to the sync loop, and rotates the segment
// when it is full. A failure marks the log failed: what reached the disk is unknown, so no
// later event may chain onto it.
func (l *Log) writeBatch(batch []*appendReq) {
	err := l.failedErr()
	if err == nil {
		err = l.encodeBatch(batch)
	}
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
		for _, r := range batch {
			if r.mode != waitNone {
				r.done <- err
			} else {
				l.opts.Logger.Error("audit event not recorded", "type", r.ev.Type, "err", err)
				r.recycle()
			}
		}
		return
	}
	l.toSinks(batch) // before the answers: a waiter's request is reused once answered
	l.syncMu.Lock()
	l.writtenSeq, l.writtenHash = l.seq, l.chain.prev
	for _, r := range batch {
		switch r.mode {
		case waitDurable:
			l.durable = append(l.durable, r)
		case waitWritten:
			r.done <- nil
		case waitNone:
			r.recycle()
		}
	}
	durable := len(l.durable) > 0
	l.syncMu.Unlock()
	if durable {
		select {
		case l.syncWake <- struct{}{}:
		default:
		}
	}
}

// encodeBatch chains and encodes a batch onto l.buf. The events get their ids and hashes
// only when sinks are there to read them (making strings of them costs two allocations
// per event).
func (l *Log) encodeBatch(batch []*appendReq) error {
	now := l.opts.Now().UTC()
	fill := l.hasSinks.Load()
	for _, r := range batch {
		ev := r.ev
		l.seq++
		ev.Seq = l.seq
		if ev.Time.IsZero() {
			ev.Time = now
		}
		start := len(l.buf)
		var err error
		if l.buf, err = ev.encode(l.buf, &l.chain, fill); err != nil {
			return l.fail(err)
		}
		if len(l.buf)-start > maxLine {
			return l.fail(fmt.Errorf("event %d is larger than %d bytes", l.seq, maxLine))
		}
	}
	return nil
}

// datasync flushes a segment's data (and the size that makes it readable) to disk:
// fdatasync where the file has a descriptor, which skips the timestamps fsync also writes.
func datasync(f File) error {
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		for {
			err := syscall.Fdatasync(int(fd.Fd()))
			if err != syscall.EINTR {
				return err
			}
		}
	}
	return f.Sync()
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
			if serr := datasync(l.seg); serr != nil {
				err = l.fail(fmt.Errorf("could not sync audit segment: %w", serr))
			}
		}
		l.fileMu.Unlock()
	}
	if err == nil && upTo > 0 {
		if _, werr := l.headF.WriteAt(encodeHead(head{Seq: upTo, Hash: string(hash[:])}), 0); werr != nil {
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

// Err reports whether the log can be written: nil, or the failure that makes it refuse
// every further write (a failed write or fsync, or Close).
func (l *Log) Err() error {
	if err := l.failedErr(); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return nil
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

// Close writes what is queued, waits for the last fsync, flushes sinks and closes the
// files. Appends after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.flushStop)
	<-l.flushDone
	// Become the last writer.
	l.qmu.Lock()
	for l.writing {
		l.qcond.Wait()
	}
	l.writing = true
	l.qmu.Unlock()
	l.drain()
	close(l.syncWake)
	<-l.syncDone
	l.mu.RLock()
	sinks := l.sinks
	l.mu.RUnlock()
	for _, s := range sinks {
		s.close()
	}
	return errors.Join(l.seg.Close(), l.headF.Close())
}
