package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ChainError says where the chain first breaks.
type ChainError struct {
	Segment string
	Line    int
	Seq     uint64 // the sequence number expected at that point
	Reason  string
}

func (e *ChainError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s line %d (event %d): %s", e.Segment, e.Line, e.Seq, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.Segment, e.Reason)
}

// Summary describes an intact log.
type Summary struct {
	Events   uint64
	Segments int
	LastHash string
}

// Verify recomputes the hash chain of the log in dir. It returns a *ChainError naming the
// first event that was edited, removed or reordered, or the end of the log if events were
// cut off it.
func Verify(dir string) (*Summary, error) {
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	s := &Summary{Segments: len(segs), LastHash: GenesisHash}
	for i, n := range segs {
		name := segmentName(n)
		if i > 0 && n != segs[i-1]+1 {
			return nil, &ChainError{Segment: segmentName(segs[i-1] + 1), Seq: s.Events + 1, Reason: "segment is missing"}
		}
		err := readSegment(filepath.Join(dir, name), func(line int, ev *Event, err error) error {
			want := s.Events + 1
			switch {
			case err != nil:
				return &ChainError{Segment: name, Line: line, Seq: want, Reason: err.Error()}
			case ev.Seq != want:
				return &ChainError{Segment: name, Line: line, Seq: want, Reason: fmt.Sprintf("found event %d: events were removed or reordered", ev.Seq)}
			case ev.PrevHash != s.LastHash:
				return &ChainError{Segment: name, Line: line, Seq: want, Reason: "prev_hash does not match the event before: events were removed, reordered or replaced"}
			}
			s.Events, s.LastHash = ev.Seq, ev.Hash
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	h, err := readHead(dir)
	if err != nil {
		return nil, &ChainError{Segment: headFile, Reason: err.Error()}
	}
	if h != nil && (h.Seq > s.Events || (h.Seq == s.Events && h.Hash != s.LastHash)) {
		return nil, &ChainError{Segment: headFile, Seq: h.Seq, Reason: fmt.Sprintf("the log ends at event %d but %d were committed: events were cut off the end", s.Events, h.Seq)}
	}
	return s, nil
}

// readSegment calls fn for every line of a segment with the decoded event or the reason it
// could not be decoded; it stops at the first error fn returns.
func readSegment(path string, fn func(line int, ev *Event, err error) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lr := newLineReader(f)
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fn(lr.line+1, nil, err)
		}
		ev, derr := decodeLine(line)
		if err := fn(lr.line, ev, derr); err != nil {
			return err
		}
	}
}
