package httpfront

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Serve serves the front end on ln until Shutdown: plain HTTP/1.1, and TLS (chosen by
// SNI) for resources with server_tls, on the same port. Each connection's request heads
// are read as they arrive, before net/http parses them, so that a request whose framing
// is ambiguous (Content-Length with Transfer-Encoding) is refused rather than normalised.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	ml := &frontListener{Listener: ln, conns: make(chan net.Conn), done: make(chan struct{}), log: s.Log}
	if s.ServesTLS() {
		ml.tls = &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	go ml.acceptLoop()
	headerTimeout, readTimeout := s.HeaderTimeout, s.ReadTimeout
	if headerTimeout <= 0 {
		headerTimeout = 10 * time.Second
	}
	if readTimeout <= 0 {
		readTimeout = time.Minute
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: headerTimeout, ReadTimeout: readTimeout, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if fc, ok := c.(*frontConn); ok {
				return context.WithValue(ctx, connKey{}, fc)
			}
			return ctx
		}}
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.hs = hs
	s.mu.Unlock()
	return hs.Serve(ml)
}

// Shutdown stops Serve: no new connections, and waits for requests in flight until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	hs := s.hs
	s.shut = true
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Shutdown(ctx)
}

type connKey struct{}

// frontListener accepts connections and, when some resources are served over TLS, tells
// TLS ones (their first byte is a handshake record) from plain ones without holding up
// the accept loop.
type frontListener struct {
	net.Listener
	tls   *tls.Config
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	log   *slog.Logger
}

func (l *frontListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.once.Do(func() { close(l.done) })
				return
			}
			// Out of file descriptors or the like: wait a little and go on, as http.Server does.
			l.log.Warn("accepting a connection failed", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-l.done:
				return
			}
			continue
		}
		if l.tls == nil {
			select {
			case l.conns <- &frontConn{Conn: c}:
			case <-l.done:
				c.Close()
			}
			continue
		}
		go func() {
			br := bufio.NewReaderSize(c, 512)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			first, err := br.Peek(1)
			c.SetReadDeadline(time.Time{})
			if err != nil {
				c.Close()
				return
			}
			raw := &peekedConn{Conn: c, r: br}
			fc := &frontConn{Conn: raw}
			if first[0] == 0x16 { // a TLS handshake record
				fc.tls = tls.Server(raw, l.tls)
				fc.Conn = fc.tls
			}
			select {
			case l.conns <- fc:
			case <-l.done:
				c.Close()
			}
		}()
	}
}

func (l *frontListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *frontListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// peekedConn reads through the reader that peeked at its first byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// frontConn is one client connection: TLS terminated here when it is TLS (so that its
// plaintext can be read), and the request heads in its stream followed.
type frontConn struct {
	net.Conn
	tls  *tls.Conn
	mu   sync.Mutex
	scan framing
}

func (c *frontConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.scan.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// headOf returns what the scanner saw of r's head. Requests on a connection are served in
// order; heads net/http answered itself (OPTIONS *) are passed over by their request line.
func (c *frontConn) headOf(r *http.Request) (head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.scan.heads) > 0 {
		h := c.scan.heads[0]
		c.scan.heads = c.scan.heads[1:]
		m, target, _ := strings.Cut(h.line, " ")
		if m == r.Method && target == r.RequestURI {
			return h, true
		}
	}
	return head{}, false
}

// tlsState returns the connection's TLS state, or nil for a plain connection.
func (c *frontConn) tlsState() *tls.ConnectionState {
	if c.tls == nil {
		return nil
	}
	st := c.tls.ConnectionState()
	return &st
}

// head is what the scanner noted of one request head.
type head struct {
	line string // method and target
	// ambiguous: the head has both Content-Length and Transfer-Encoding, or several
	// Transfer-Encoding or differing Content-Length fields.
	ambiguous bool
}

// framing follows HTTP/1.1 message framing in a connection's byte stream, only to find
// where each request head begins and to note what it says about the body's length. It
// stops following (and notes nothing more) at anything it does not understand; net/http
// rejects such a stream itself.
type framing struct {
	state  int
	buf    []byte // the head or chunk-size line being read
	remain int64  // body or chunk bytes still to skip
	heads  []head
}

const (
	fHead = iota
	fBody
	fChunkSize
	fChunkData
	fChunkEnd
	fTrailer
	fStopped
)

const maxHead = 1 << 20

func (f *framing) feed(b []byte) {
	for len(b) > 0 {
		switch f.state {
		case fStopped:
			return
		case fHead, fChunkSize, fTrailer:
			line := f.state != fHead
			end := []byte("\r\n\r\n")
			if line {
				end = []byte("\n")
			}
			// The terminator may straddle reads: search the held bytes with the new ones.
			prev := len(f.buf)
			f.buf = append(f.buf, b...)
			i := bytes.Index(f.buf[max(prev-len(end)+1, 0):], end)
			if i < 0 {
				if len(f.buf) > maxHead {
					f.state = fStopped
				}
				return
			}
			i += max(prev-len(end)+1, 0) + len(end)
			tok, rest := f.buf[:i], b[i-prev:] // through the terminator; after it
			f.buf = f.buf[:0]
			switch f.state {
			case fHead:
				f.onHead(tok)
			case fChunkSize:
				f.onChunkSize(tok)
			case fTrailer:
				if len(bytes.TrimSpace(tok)) == 0 {
					f.state = fHead // the empty line ends the trailers, and the message
				}
			}
			b = rest
		case fBody, fChunkData:
			n := min(int64(len(b)), f.remain)
			f.remain -= n
			b = b[n:]
			if f.remain == 0 {
				if f.state == fBody {
					f.state = fHead
				} else {
					f.state, f.remain = fChunkEnd, 2
				}
			}
		case fChunkEnd: // the CRLF after a chunk's data
			n := min(int64(len(b)), f.remain)
			f.remain -= n
			b = b[n:]
			if f.remain == 0 {
				f.state = fChunkSize
			}
		}
	}
}

// onHead notes a request head and sets up for its body.
func (f *framing) onHead(raw []byte) {
	raw = bytes.TrimLeft(raw, "\r\n") // empty lines may precede a request
	first, rest, _ := bytes.Cut(raw, []byte("\n"))
	method, target, _ := bytes.Cut(bytes.TrimRight(first, "\r"), []byte(" "))
	target, _, _ = bytes.Cut(target, []byte(" "))
	var cl, te []byte
	ncl, nte, upgrade, ambiguous := 0, 0, string(method) == http.MethodConnect, false
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name, val = bytes.TrimSpace(name), bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			ambiguous = ambiguous || ncl > 0 && !bytes.Equal(val, cl)
			cl, ncl = val, ncl+1
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			te, nte = val, nte+1
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = true
		}
	}
	f.heads = append(f.heads, head{line: string(method) + " " + string(target), ambiguous: ambiguous || nte > 1 || nte > 0 && ncl > 0})
	switch {
	case upgrade:
		f.state = fStopped // the stream is not HTTP after an upgrade (refused, but stop following)
	case nte > 0:
		f.state = fChunkSize
		if !bytes.EqualFold(te, []byte("chunked")) {
			f.state = fStopped
		}
	case ncl > 0:
		n, err := strconv.ParseInt(string(cl), 10, 64)
		switch {
		case err != nil || n < 0:
			f.state = fStopped
		case n > 0:
			f.state, f.remain = fBody, n
		}
	}
}

// onChunkSize reads a chunk-size line: the last chunk (0) leads to the trailers.
func (f *framing) onChunkSize(line []byte) {
	s := strings.TrimSpace(string(line))
	s, _, _ = strings.Cut(s, ";")
	n, err := strconv.ParseInt(strings.TrimSpace(s), 16, 64)
	switch {
	case err != nil || n < 0:
		f.state = fStopped
	case n == 0:
		f.state = fTrailer
	default:
		f.state, f.remain = fChunkData, n
	}
}

// errAmbiguous: the request's framing could be read two ways.
var errAmbiguous = errors.New("ambiguous request framing")

// checkFraming refuses a request whose head had an ambiguous framing, as the connection
// scanner saw it. A request served without the scanner (a plain http.Server) is not checked.
func checkFraming(r *http.Request) error {
	fc, ok := r.Context().Value(connKey{}).(*frontConn)
	if !ok {
		return nil
	}
	h, ok := fc.headOf(r)
	if ok && h.ambiguous {
		return errAmbiguous
	}
	return nil
}

// tlsOf returns the TLS state r came over: terminated by Serve's connections, or by an
// http.Server's own TLS.
func tlsOf(r *http.Request) *tls.ConnectionState {
	if fc, ok := r.Context().Value(connKey{}).(*frontConn); ok && fc.tls != nil {
		return fc.tlsState()
	}
	return r.TLS
}
