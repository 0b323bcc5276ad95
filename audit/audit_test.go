package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openLog(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	opts.Dir = dir
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t testing.TB, l *Log, n int, typ string) {
	t.Helper()
	for i := range n {
		ev := &Event{Type: typ, Actor: fmt.Sprintf("user%d", i%3), Resource: "orders", Action: fmt.Sprintf("SELECT %d", i), Decision: "allow", Rules: []string{"orders-read"}, Result: "ok"}
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func mustVerify(t *testing.T, dir string, want uint64) {
	t.Helper()
	s, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if s.Events != want {
		t.Fatalf("Verify counted %d events, want %d", s.Events, want)
	}
}

func TestConcurrentAppendsChain(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := l.Append(context.Background(), &Event{Type: "test", Actor: fmt.Sprint(g), Action: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir, 800)
	if err := l.Append(context.Background(), &Event{Type: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestAppendFillsEvent(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	l := openLog(t, dir, Options{Now: func() time.Time { return now }})
	a, b := &Event{Type: "x"}, &Event{Type: "y"}
	l.Append(context.Background(), a)
	l.Append(context.Background(), b)
	if a.Seq != 1 || b.Seq != 2 || !a.Time.Equal(now) {
		t.Errorf("events not filled in: %+v %+v", a, b)
	}
	// Ids and hashes are in the log (and in what sinks get), not on the appended events.
	sink := &memSink{}
	l.AddSink(sink)
	c := &Event{Type: "z", ID: "own-id"}
	l.Append(context.Background(), c)
	l.Close()
	var read []*Event
	Scan(dir, Filter{}, func(ev *Event) error { read = append(read, ev); return nil })
	if len(read) != 3 || read[0].PrevHash != GenesisHash || read[1].PrevHash != read[0].Hash || len(read[0].Hash) != 64 ||
		read[0].ID == "" || read[0].ID == read[1].ID || read[2].ID != "own-id" || !read[0].Time.Equal(now) {
		t.Errorf("events read back: %+v %+v %+v", read[0], read[1], read[2])
	}
	if got := sink.events(); len(got) != 1 || got[0].ID != "own-id" || got[0].Hash != read[2].Hash || got[0].PrevHash != read[1].Hash {
		t.Errorf("the sink got %+v, want the third event as read back", got)
	}
}

type memSink struct {
	mu  sync.Mutex
	got []Event
}

func (s *memSink) Name() string { return "memory" }
func (s *memSink) Write(_ context.Context, evs []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, evs...)
	return nil
}
func (s *memSink) events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

func TestReopenContinuesChainAndRotates(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentMaxBytes: 4096})
	appendN(t, l, 40, "first")
	l.Close()
	l = openLog(t, dir, Options{SegmentMaxBytes: 4096})
	appendN(t, l, 40, "second")
	l.Close()
	segs, _ := segments(dir)
	if len(segs) < 3 {
		t.Errorf("%d segments after 80 events at 4 KiB each, want rotation", len(segs))
	}
	mustVerify(t, dir, 80)
}

func TestTornTailIsRepaired(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	appendN(t, l, 5, "x")
	l.Close()
	f, _ := os.OpenFile(filepath.Join(dir, segmentName(1)), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":6,"id":"ev_torn","ti`)
	f.Close()
	if _, err := Verify(dir); err == nil {
		t.Error("Verify accepted a torn last line")
	}
	l = openLog(t, dir, Options{})
	appendN(t, l, 1, "after")
	l.Close()
	mustVerify(t, dir, 6)
}

// writeSmallLog writes a two-segment log and returns its directory and the segment files.
func writeSmallLog(t *testing.T) (string, []string) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentMaxBytes: 1200})
	appendN(t, l, 8, "pg.statement")
	l.Close()
	mustVerify(t, dir, 8)
	segs, _ := segments(dir)
	var files []string
	for _, s := range segs {
		files = append(files, filepath.Join(dir, segmentName(s)))
	}
	if len(files) < 2 {
		t.Fatalf("want at least two segments, got %d", len(files))
	}
	return dir, files
}

func TestEveryByteChangeIsDetected(t *testing.T) {
	dir, files := writeSmallLog(t)
	for _, file := range files {
		orig, _ := os.ReadFile(file)
		for i := range orig {
			changed := bytes.Clone(orig)
			changed[i] ^= 0x01
			os.WriteFile(file, changed, 0o600)
			if _, err := Verify(dir); err == nil {
				t.Fatalf("%s: changing byte %d (%q) went unnoticed", filepath.Base(file), i, orig[i])
			}
		}
		os.WriteFile(file, orig, 0o600)
	}
	mustVerify(t, dir, 8)
}

func TestRemovedOrReorderedEventsAreDetected(t *testing.T) {
	dir, files := writeSmallLog(t)
	for _, file := range files {
		orig, _ := os.ReadFile(file)
		lines := strings.SplitAfter(string(orig), "\n")
		lines = lines[:len(lines)-1] // after the final newline
		for i := range lines {
			without := strings.Join(append(append([]string{}, lines[:i]...), lines[i+1:]...), "")
			os.WriteFile(file, []byte(without), 0o600)
			_, err := Verify(dir)
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: deleting line %d went unnoticed (err %v)", filepath.Base(file), i+1, err)
			}
			if i > 0 && i < len(lines)-1 && ce.Line != i+1 {
				t.Errorf("deleting line %d: error names line %d: %v", i+1, ce.Line, ce)
			}
		}
		if len(lines) >= 2 {
			swapped := append([]string{lines[1], lines[0]}, lines[2:]...)
			os.WriteFile(file, []byte(strings.Join(swapped, "")), 0o600)
			if _, err := Verify(dir); err == nil {
				t.Errorf("%s: swapping two events went unnoticed", filepath.Base(file))
			}
		}
		os.WriteFile(file, orig, 0o600)
	}
	// Removing the whole last segment with events is caught by the head record.
	last := files[len(files)-1]
	orig, _ := os.ReadFile(last)
	if len(orig) == 0 { // rotation left an empty segment behind the last event
		last = files[len(files)-2]
		orig, _ = os.ReadFile(last)
	}
	os.Remove(last)
	if _, err := Verify(dir); err == nil {
		t.Errorf("removing the last segment: %v", err)
	}
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Error("Open accepted a log with events cut off the end")
	}
	os.WriteFile(last, orig, 0o600)
	mustVerify(t, dir, 8)
}

type faultyFile struct {
	File
	failSync bool
}

func (f *faultyFile) Sync() error {
	if f.failSync {
		return errors.New("injected: no space left on device")
	}
	return f.File.Sync()
}

func TestWriteFailureFailsClosed(t *testing.T) {
	dir := t.TempDir()
	var ff *faultyFile
	l := openLog(t, dir, Options{OpenSegment: func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		ff = &faultyFile{File: f}
		return ff, err
	}})
	appendN(t, l, 3, "ok")
	if err := l.Err(); err != nil {
		t.Fatalf("Err of a healthy log: %v", err)
	}
	ff.failSync = true
	if err := l.Append(context.Background(), &Event{Type: "doomed"}); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Append with failing fsync = %v, want the error", err)
	}
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Err after a failure = %v, want it", err)
	}
	ff.failSync = false
	if err := l.Append(context.Background(), &Event{Type: "after"}); err == nil || !strings.Contains(err.Error(), "failed earlier") {
		t.Fatalf("Append after a failure = %v, want refusal", err)
	}
	l.Close()
}

func TestExportFilters(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	l := openLog(t, dir, Options{Now: func() time.Time { clock = clock.Add(time.Minute); return clock }})
	appendN(t, l, 9, "pg.statement")
	l.Append(context.Background(), &Event{Type: "approval.decided", Actor: "bob", Subject: "alice", Resource: "orders"})
	l.Close()
	tests := []struct {
		f    Filter
		want int
	}{
		{Filter{}, 10},
		{Filter{Type: "approval.decided"}, 1},
		{Filter{Actor: "alice"}, 1},
		{Filter{Actor: "user1"}, 3},
		{Filter{Resource: "payments"}, 0},
		{Filter{Since: time.Date(2026, 11, 23, 12, 5, 0, 0, time.UTC)}, 6},
		{Filter{Until: time.Date(2026, 11, 23, 12, 5, 0, 0, time.UTC)}, 4},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		n, err := Export(dir, tt.f, &buf)
		if err != nil || n != tt.want || strings.Count(buf.String(), "\n") != tt.want {
			t.Errorf("Export(%+v) = %d, %v; want %d", tt.f, n, err, tt.want)
		}
	}
}

type chanSink struct{ ch chan []Event }

func (s *chanSink) Name() string { return "test" }
func (s *chanSink) Write(_ context.Context, evs []Event) error {
	s.ch <- evs
	return nil
}

func TestSinkReceivesCommittedEvents(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	s := &chanSink{ch: make(chan []Event, 100)}
	l.AddSink(s)
	appendN(t, l, 5, "x")
	l.Close()
	close(s.ch)
	var seqs []uint64
	for evs := range s.ch {
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Errorf("sink saw %v", seqs)
	}
}

// BenchmarkAppend measures durable appends (write + fsync) with concurrent writers, the
// way the proxy's sessions append; group commit shares one fsync between waiting writers.
func BenchmarkAppend(b *testing.B) {
	benchAppend(b, (*Log).Append)
}

// BenchmarkAppendWritten measures appends that wait for the write but not the fsync, as
// the proxy's reads do.
func BenchmarkAppendWritten(b *testing.B) {
	benchAppend(b, (*Log).AppendWritten)
}

func benchAppend(b *testing.B, appendFn func(*Log, context.Context, *Event) error) {
	for _, writers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := openLog(b, b.TempDir(), Options{})
			defer l.Close()
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				n := b.N / writers
				if w < b.N%writers {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						ev := &Event{Type: "pg.statement", Actor: "alice", Resource: "orders", Action: "SELECT * FROM orders WHERE id = $1", Decision: "allow", Rules: []string{"orders-read"}, Result: "ok"}
						if err := appendFn(l, context.Background(), ev); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

func TestEmptyLogVerifies(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	l.Close()
	mustVerify(t, dir, 0)
	l = openLog(t, dir, Options{})
	appendN(t, l, 1, "x")
	l.Close()
	mustVerify(t, dir, 1)
}

// TestEncoderMatchesEncodingJSON checks that the hand-written encoder writes exactly what
// encoding/json would.
func TestEncoderMatchesEncodingJSON(t *testing.T) {
	events := []*Event{
		{Seq: 1, ID: "ev_1", Time: time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC), Type: "pg.statement", PrevHash: GenesisHash},
		{Seq: 2, ID: "ev_2", Time: time.Date(2026, 11, 23, 12, 0, 0, 0, time.FixedZone("x", 3600)), Type: "t", Actor: "alice", Subject: "bob",
			Resource: "orders", Action: "SELECT '<tag>' & \"q\" \\ \n\t\r\x01 \u2028 é \xff", Decision: "allow", Rules: []string{"a", "b"}, PolicyHash: "h",
			Reason: "r", Result: "ok", Session: "s", BreakGlass: "bg_1", Alert: "mismatch", PrevHash: "p",
			Details: map[string]any{"class": "read", "tables": []string{"orders"}, "n": 3, "big": int64(1 << 40), "flag": true, "none": nil,
				"floaty": 1.5, "nested": map[string]any{"x": []int{1}}, "empty": []string{}}},
	}
	for _, e := range events {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEvent(nil, e, nil)
		if err != nil || string(got) != string(want) {
			t.Errorf("encoder differs:\n got %s\nwant %s", got, want)
		}
	}
}

// TestAttrsEncodeAsDetails checks that Attrs are written as if they were in Details: the
// same bytes, keys in order among Details' own, and back in Details when read.
func TestAttrsEncodeAsDetails(t *testing.T) {
	e := &Event{Seq: 1, ID: "ev_1", Time: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC), Type: TypePGStatement, PrevHash: GenesisHash,
		Details: map[string]any{"b": "map", "d": 4, "f": []string{"x"}},
		Attrs: []Attr{String("e", "<&>\u2028 \xff"), Int("a", -1<<40), Bool("c", true), Bool("c2", false), Strings("g", []string{"t", "<u>"}),
			Strings("h", nil), String("b", "ignored: Details has b"), Hex64("i", 0x0123456789abcdef)}}
	want, err := json.Marshal(e.withAttrsInDetails())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(want), `"i":"0123456789abcdef"`) {
		t.Fatalf("Hex64's value: %s", want)
	}
	if e.Details["a"] != nil || len(e.Attrs) != 8 {
		t.Fatal("withAttrsInDetails changed the event")
	}
	// Details' b wins over the Attr: withAttrsInDetails puts the Attr's last, so compare
	// against the map with Details' value restored.
	want = []byte(strings.Replace(string(want), `"b":"ignored: Details has b"`, `"b":"map"`, 1))
	got, err := appendEvent(nil, e, nil)
	if err != nil || string(got) != string(want) {
		t.Fatalf("attrs encode differently:\n got %s\nwant %s", got, want)
	}
	for _, only := range []*Event{{Type: "t", Attrs: []Attr{Int("n", 3)}}, {Type: "t", Details: map[string]any{"n": 3}}} {
		b, err := appendEvent(nil, only, nil)
		if err != nil || !strings.Contains(string(b), `"details":{"n":3}`) {
			t.Errorf("got %s", b)
		}
	}
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	if err := l.Append(context.Background(), &Event{Type: "t", Attrs: []Attr{Int("rows", 1000), String("tag", "UPDATE 1000")}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	var read []*Event
	if err := Scan(dir, Filter{}, func(ev *Event) error { read = append(read, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(read) != 1 || read[0].Details["rows"] != float64(1000) || read[0].Details["tag"] != "UPDATE 1000" {
		t.Fatalf("read back: %+v", read)
	}
}

func TestEnqueuedEventsAreWritten(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	for range 3 {
		l.Enqueue(&Event{Type: "pg.result"})
	}
	time.Sleep(5 * heldMaxDelay) // nobody waits: the timer writes them
	if s, err := Verify(dir); err != nil || s.Events != 3 {
		t.Fatalf("after the hold: %+v %v", s, err)
	}
	l.Enqueue(&Event{Type: "pg.result"})
	if err := l.AppendWritten(context.Background(), &Event{Type: "pg.statement"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := Verify(dir); s.Events != 5 {
		t.Errorf("a write took %d events along, want the held one too", s.Events-3)
	}
	l.Enqueue(&Event{Type: "pg.session.end"})
	l.Close()
	mustVerify(t, dir, 6)
}

// BenchmarkEncode measures encoding and hashing one event the size of an HTTP request's.
func BenchmarkEncode(b *testing.B) {
	ev := &Event{Seq: 12, ID: "ev_abcdefghij_12", Time: time.Now(), Type: TypeHTTPRequest, Actor: "alice", Resource: "admin",
		Session: "htx_abcdefgh_1", Action: "GET /bench/item", Decision: "allow", Rules: []string{"admin-read"},
		PolicyHash: "5f2a9c", Reason: "allowed by admin-read", PrevHash: GenesisHash,
		Details: map[string]any{"class": "read", "method": "GET", "path": "/bench/item", "body_bytes": 0, "client_addr": "127.0.0.1:5555", "host": "admin.test"}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = ev.encode(buf[:0], nil, false); err != nil {
			b.Fatal(err)
		}
	}
}
