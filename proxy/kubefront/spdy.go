package kubefront

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/moby/spdystream/spdy"
)

// SPDY exec and attach (kubectl before 1.30, and its fallback when a WebSocket is refused)
// carry each channel as a SPDY stream the client opens with a streamType header; data
// frames then name the stream. Each direction is parsed by spdystream's framer (each
// direction has its own header compression), fed synchronously so that the client's
// input is recorded before it is passed on.

// spdyStreamTypes maps the streamType header to the channel the recording uses.
var spdyStreamTypes = map[string]byte{"stdin": chanStdin, "stdout": chanStdout, "stderr": chanStderr, "error": chanError, "resize": chanResize}

// spdyConn follows both directions of one SPDY connection: an exec or attach session's
// channels, or a port-forward session's connections.
type spdyConn struct {
	mu      sync.Mutex
	streams map[spdy.StreamId]byte // channel of each stream the client opened
	cast    *cast
	// Port-forward: each connection is a data stream (and an error stream) the client
	// opens naming the port and the connection's request id.
	forward bool
	conns   map[spdy.StreamId]*forwarded
}

// forwarded is one connection of a port-forward session.
type forwarded struct {
	port, request string
	in, out       int64 // bytes from the client, from the pod
	closed        bool
}

// spdyReader follows one direction: bytes go in through feed, frames come out of the
// framer in its own goroutine.
type spdyReader struct {
	conn       *spdyConn
	fromClient bool
	in         chan []byte
	ack        chan struct{}
	done       chan struct{}
	err        error
	buf        []byte
	fed        bool
	closeOnce  sync.Once
}

func newSPDYConn(c *cast, forward bool) (client, server *spdyReader) {
	conn := &spdyConn{streams: map[spdy.StreamId]byte{}, cast: c, forward: forward, conns: map[spdy.StreamId]*forwarded{}}
	if forward {
		c.portForward = conn
	}
	return conn.reader(true), conn.reader(false)
}

func (c *spdyConn) reader(fromClient bool) *spdyReader {
	r := &spdyReader{conn: c, fromClient: fromClient, in: make(chan []byte), ack: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// run parses frames until the direction ends or a frame cannot be parsed.
func (r *spdyReader) run() {
	defer close(r.done)
	fr, err := spdy.NewFramerWithOptions(io.Discard, r, spdy.WithMaxControlFramePayloadSize(1<<20))
	if err != nil {
		r.err = err
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.err = fmt.Errorf("malformed SPDY frame: %w", err)
			}
			return
		}
		if err := r.frame(f); err != nil {
			r.err = err
			return
		}
	}
}

func (r *spdyReader) frame(f spdy.Frame) error {
	c := r.conn
	if c.forward {
		return r.forwardFrame(f)
	}
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		ch, ok := spdyStreamTypes[f.Headers.Get("streamType")]
		if !r.fromClient || !ok {
			return fmt.Errorf("unexpected SPDY stream %q", f.Headers.Get("streamType"))
		}
		c.mu.Lock()
		c.streams[f.StreamId] = ch
		c.mu.Unlock()
	case *spdy.DataFrame:
		if len(f.Data) > maxFrame {
			return errFrameTooLarge
		}
		c.mu.Lock()
		ch, ok := c.streams[f.StreamId]
		c.mu.Unlock()
		if !ok {
			return fmt.Errorf("SPDY data on stream %d, which was never opened", f.StreamId)
		}
		c.cast.message(r.fromClient, append([]byte{ch}, f.Data...))
	}
	return nil // replies, settings, pings, window updates, resets, go-away: nothing to record
}

// Read is the framer's input: the bytes feed hands over, one chunk at a time. Asking for
// more after a chunk tells feed that the chunk has been parsed.
func (r *spdyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.fed {
			r.ack <- struct{}{}
		}
		b, ok := <-r.in
		if !ok {
			return 0, io.EOF
		}
		r.buf, r.fed = b, true
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// feed hands p to the framer and returns once every frame it completes has been recorded.
func (r *spdyReader) feed(p []byte) error {
	select {
	case r.in <- p:
	case <-r.done:
		return r.failure()
	}
	select {
	case <-r.ack:
		return nil
	case <-r.done:
		return r.failure()
	}
}

func (r *spdyReader) failure() error {
	if r.err != nil {
		return r.err
	}
	return io.ErrClosedPipe
}

// stopped returns why the parser stopped, or nil while it runs.
func (r *spdyReader) stopped() error {
	select {
	case <-r.done:
		return r.failure()
	default:
		return nil
	}
}

// close ends the direction's parser.
func (r *spdyReader) close() {
	r.closeOnce.Do(func() { close(r.in) })
	<-r.done
}

// forwardFrame follows a port-forward session: a connection opened is recorded before its
// stream reaches the API server; its bytes are counted; its end is recorded.
func (r *spdyReader) forwardFrame(f spdy.Frame) error {
	c := r.conn
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		typ, port, req := f.Headers.Get("streamType"), f.Headers.Get("port"), f.Headers.Get("requestID")
		if !r.fromClient || (typ != "data" && typ != "error") || port == "" {
			return fmt.Errorf("unexpected port-forward stream %q", typ)
		}
		if typ == "error" {
			return nil
		}
		fw := &forwarded{port: port, request: req}
		c.mu.Lock()
		c.conns[f.StreamId] = fw
		c.mu.Unlock()
		return c.cast.connection("opened", fw)
	case *spdy.DataFrame:
		c.mu.Lock()
		fw := c.conns[f.StreamId]
		if fw != nil {
			if r.fromClient {
				fw.in += int64(len(f.Data))
			} else {
				fw.out += int64(len(f.Data))
			}
		}
		c.mu.Unlock()
	case *spdy.RstStreamFrame:
		c.closeStream(f.StreamId)
	}
	return nil
}

// streamOf returns the stream the client opened for channel ch.
func (c *spdyConn) streamOf(ch byte) (spdy.StreamId, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, got := range c.streams {
		if got == ch {
			return id, true
		}
	}
	return 0, false
}

// closeStream records the end of the connection on stream id, once.
func (c *spdyConn) closeStream(id spdy.StreamId) {
	c.mu.Lock()
	fw := c.conns[id]
	done := fw == nil || fw.closed
	if fw != nil {
		fw.closed = true
	}
	c.mu.Unlock()
	if !done {
		c.cast.connection("closed", fw)
	}
}

// closeAll records the end of every connection still open (the session ended).
func (c *spdyConn) closeAll() {
	c.mu.Lock()
	ids := make([]spdy.StreamId, 0, len(c.conns))
	for id := range c.conns {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		c.closeStream(id)
	}
}
