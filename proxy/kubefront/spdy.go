package kubefront

import (
	"errors"
	"fmt"
	"io"
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

// spdyConn follows both directions of one SPDY connection.
type spdyConn struct {
	mu      sync.Mutex
	streams map[spdy.StreamId]byte // channel of each stream the client opened
	cast    *cast
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

func newSPDYConn(c *cast) (client, server *spdyReader) {
	conn := &spdyConn{streams: map[spdy.StreamId]byte{}, cast: c}
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

// close ends the direction's parser.
func (r *spdyReader) close() {
	r.closeOnce.Do(func() { close(r.in) })
	<-r.done
}
