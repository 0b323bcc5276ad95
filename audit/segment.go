package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentPrefix = "segment-"
	segmentSuffix = ".jsonl"
	headFile      = "HEAD"
	// maxLine bounds one event's line; Append refuses larger events.
	maxLine = 1 << 20
)

func segmentName(n int) string { return fmt.Sprintf("%s%08d%s", segmentPrefix, n, segmentSuffix) }

// segments returns the segment numbers in dir, in order.
func segments(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, segmentPrefix), segmentSuffix))
		if err != nil || n <= 0 {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// head is the record of the last committed event, kept beside the segments so that
// events cut off the end of the log are noticed. It is rewritten in place after every
// group commit; it may lag the log after a crash, never lead it.
type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

func readHead(dir string) (*head, error) {
	b, err := os.ReadFile(filepath.Join(dir, headFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, " \n")
	if len(b) == 0 {
		return nil, nil // created, nothing committed yet
	}
	h := &head{}
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("malformed %s record: %w", headFile, err)
	}
	return h, nil
}

// encodeHead returns the head record padded to a fixed size, so that rewriting it in
// place never leaves a longer old record's tail behind.
func encodeHead(h head) []byte {
	b, _ := json.Marshal(h)
	const size = 128
	out := bytes.Repeat([]byte{' '}, size)
	copy(out, b)
	out[size-1] = '\n'
	return out
}

// lineReader reads the lines of one segment, each without its newline.
type lineReader struct {
	r    *bufio.Reader
	line int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next complete line; io.EOF at the end; errTornLine when the segment
// ends in the middle of a line.
func (lr *lineReader) next() ([]byte, error) {
	b, err := lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		full := bytes.Clone(b)
		for errors.Is(err, bufio.ErrBufferFull) && len(full) <= maxLine {
			b, err = lr.r.ReadSlice('\n')
			full = append(full, b...)
		}
		b = full
	}
	switch {
	case err == nil:
		lr.line++
		return b[:len(b)-1], nil
	case errors.Is(err, io.EOF) && len(b) == 0:
		return nil, io.EOF
	case errors.Is(err, io.EOF):
		return b, errTornLine
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("line %d is longer than %d bytes", lr.line+1, maxLine)
	default:
		return nil, err
	}
}

var errTornLine = errors.New("the segment ends in the middle of a line")

// lastEvent returns the last complete event in dir, and
// truncates a torn final line (the remains of a write interrupted by a crash, which was
// never acknowledged). It returns a nil event for an empty log.
func lastEvent(dir string, segs []int) (*Event, error) {
	for i := len(segs) - 1; i >= 0; i-- {
		path := filepath.Join(dir, segmentName(segs[i]))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		lr := newLineReader(f)
		var last []byte
		var good int64
		for {
			line, err := lr.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, errTornLine) {
				if terr := f.Truncate(good); terr != nil {
					f.Close()
					return nil, fmt.Errorf("could not cut the torn last line of %s: %w", path, terr)
				}
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			good += int64(len(line)) + 1
			last = append(last[:0], line...)
		}
		f.Close()
		if last == nil {
			continue
		}
		ev, err := decodeLine(last)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, lr.line, err)
		}
		return ev, nil
	}
	return nil, nil
}
