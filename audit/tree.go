package audit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Chains returns the directories at or under dir that hold an audit log, sorted. With
// several replicas each writes its own chain, typically in dir/<replica>.
func Chains(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		segs, err := segments(p)
		if err != nil {
			return err
		}
		if len(segs) > 0 {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// chainReader reads one chain's events in order, across its segments.
type chainReader struct {
	dir  string
	segs []int
	file *os.File
	lr   *lineReader
	// line and ev are the event read and not yet taken (line is a copy).
	line []byte
	ev   *Event
}

// advance reads the next event into r.line and r.ev; both are nil at the end.
func (r *chainReader) advance() error {
	r.line, r.ev = nil, nil
	for {
		if r.lr == nil {
			if len(r.segs) == 0 {
				return nil
			}
			f, err := os.Open(filepath.Join(r.dir, segmentName(r.segs[0])))
			if err != nil {
				return err
			}
			r.file, r.lr = f, newLineReader(f)
		}
		line, err := r.lr.next()
		if errors.Is(err, io.EOF) {
			r.file.Close()
			r.file, r.lr, r.segs = nil, nil, r.segs[1:]
			continue
		}
		if err == nil {
			r.ev, err = decodeLine(line)
		}
		if err != nil {
			return &ChainError{Segment: filepath.Join(r.dir, segmentName(r.segs[0])), Line: r.lr.line, Reason: err.Error()}
		}
		r.line = bytes.Clone(line)
		return nil
	}
}

func (r *chainReader) close() {
	if r.file != nil {
		r.file.Close()
	}
}

// Export writes every event under dir that passes f to w as JSON lines, exactly as
// stored (with seq, prev_hash and hash, so the receiver can check them), and stops with an
// error at an event that fails its own hash check. With several replicas' chains under
// dir (see Chains) their events are merged by time into one stream, each chain's own
// events in their order, so a receiver can still check each replica's hash chain (the
// replica field says whose).
func Export(dir string, f Filter, w io.Writer) (int, error) {
	dirs, err := Chains(dir)
	if err != nil {
		return 0, err
	}
	readers := make([]*chainReader, 0, len(dirs))
	defer func() {
		for _, r := range readers {
			r.close()
		}
	}()
	for _, d := range dirs {
		segs, err := segments(d)
		if err != nil {
			return 0, err
		}
		r := &chainReader{dir: d, segs: segs}
		if err := r.advance(); err != nil {
			return 0, err
		}
		readers = append(readers, r)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	for {
		// The earliest pending event; a handful of chains, so a scan, not a heap.
		var next *chainReader
		for _, r := range readers {
			if r.ev != nil && (next == nil || r.ev.Time.Before(next.ev.Time)) {
				next = r
			}
		}
		if next == nil {
			return n, bw.Flush()
		}
		if f.Match(next.ev) {
			bw.Write(next.line)
			bw.WriteByte('\n')
			n++
		}
		if err := next.advance(); err != nil {
			bw.Flush()
			return n, err
		}
	}
}
