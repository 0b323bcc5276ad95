package httpfront

import (
	"bytes"
	"io"
	"sync"
)

// redactReader passes a response body through with every occurrence of a secret replaced
// by as many '*' (so Content-Length still holds), as the body streams: of what it has read,
// it holds back only a tail that begins the secret (an occurrence the next read may
// complete), so a streamed response is not delayed.
type redactReader struct {
	r      io.ReadCloser
	secret []byte
	buf    []byte // read from r; buf[:ready] is checked and may be returned
	ready  int
	err    error
	pooled *[]byte // the buffer's pool entry, given back at Close
}

func newRedactReader(r io.ReadCloser, secret string) *redactReader {
	return &redactReader{r: r, secret: []byte(secret)}
}

func (x *redactReader) Read(p []byte) (int, error) {
	for x.ready == 0 {
		if x.err != nil {
			if len(x.buf) > 0 { // the held-back tail, at the end of the body
				x.ready = len(x.buf)
				break
			}
			return 0, x.err
		}
		if x.buf == nil {
			x.pooled = bufPool.Get().(*[]byte)
			x.buf = (*x.pooled)[:0]
		}
		if cap(x.buf)-len(x.buf) < 4096 { // a held-back tail as long as the buffer: grow
			nb := make([]byte, len(x.buf), 2*cap(x.buf))
			copy(nb, x.buf)
			x.buf = nb
		}
		n, err := x.r.Read(x.buf[len(x.buf):cap(x.buf)])
		start := max(len(x.buf)-len(x.secret)+1, 0) // an occurrence may begin in the held-back tail
		x.buf = x.buf[:len(x.buf)+n]
		x.err = err
		mask(x.buf, start, x.secret)
		x.ready = len(x.buf) - heldBack(x.buf, x.secret)
	}
	n := copy(p, x.buf[:x.ready])
	x.ready -= n
	x.buf = x.buf[:copy(x.buf, x.buf[n:])]
	return n, nil
}

// Close closes the body and gives the buffer back.
func (x *redactReader) Close() error {
	if x.pooled != nil {
		bufPool.Put(x.pooled)
		x.pooled, x.buf, x.ready = nil, nil, 0
		x.err = io.ErrClosedPipe
	}
	return x.r.Close()
}

// bufPool holds the buffers response bodies are read through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// heldBack returns the length of the longest tail of b that is a proper prefix of secret.
func heldBack(b, secret []byte) int {
	for k := min(len(secret)-1, len(b)); k > 0; k-- {
		if bytes.HasSuffix(b, secret[:k]) {
			return k
		}
	}
	return 0
}

// mask overwrites each occurrence of secret in b at or after from with '*'.
func mask(b []byte, from int, secret []byte) {
	for len(secret) > 0 && from < len(b) {
		i := bytes.Index(b[from:], secret)
		if i < 0 {
			return
		}
		at := from + i
		for k := range secret {
			b[at+k] = '*'
		}
		from = at + len(secret)
	}
}
