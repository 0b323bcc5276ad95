package kubefront

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/moby/spdystream/spdy"

	"github.com/portcullis/portcullis/audit"
)

// An exec or attach session is a WebSocket stream of the Kubernetes channel protocol: each
// message's first byte names a channel (stdin, stdout, stderr, the error/status channel,
// terminal resizes), the rest is its data. Portcullis records the session from the frames
// as they pass — stdin before it is forwarded, output as it comes — into the audit log as
// kube.stream events (asciicast v2 frames), so that the recording is in the hash chain
// with the decision that allowed it. Without a recording there is no session: a stream
// Portcullis cannot parse is refused, and a failed recording write ends the session.

// recordedProtocols are the WebSocket subprotocols whose framing Portcullis records. The
// base64 variants are not offered upstream.
var recordedProtocols = []string{"v5.channel.k8s.io", "v4.channel.k8s.io"}

// Channels of the Kubernetes remote command protocol.
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
	chanResize = 4
)

const (
	// maxFrame bounds one WebSocket message Portcullis holds to record it; kubectl and
	// the kubelet send at most 32 KiB.
	maxFrame = 1 << 20
	// castFlushEvery bounds how long output stays unrecorded; castFlushBytes how much.
	castFlushEvery = 100 * time.Millisecond
	castFlushBytes = 32 << 10
)

// recordableUpgrade checks that r is a stream Portcullis can record: exec or attach as a
// WebSocket offering one of recordedProtocols, port-forward as a WebSocket tunnelling SPDY,
// or any of them over SPDY/3.1. It returns the WebSocket subprotocols to offer the API
// server, or why the stream is refused.
func recordableUpgrade(r *http.Request, subresource string) ([]string, string) {
	want := recordedProtocols
	switch subresource {
	case "exec", "attach":
	case "portforward":
		want = []string{portForwardTunnel}
	default:
		return nil, subresource + " streams are not recorded by this Portcullis, so they are refused"
	}
	if strings.EqualFold(r.Header.Get("Upgrade"), spdyUpgrade) {
		return nil, ""
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return nil, "only WebSocket and SPDY/3.1 streams are recorded, so this one is refused"
	}
	var offer []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); slices.Contains(want, p) && !slices.Contains(offer, p) {
				offer = append(offer, p)
			}
		}
	}
	if len(offer) == 0 {
		return nil, "the client offers no stream protocol Portcullis records (" + strings.Join(want, ", ") + ")"
	}
	return offer, ""
}

// portForwardTunnel is the WebSocket subprotocol of port-forward (kubectl 1.31 and later):
// binary messages carry a SPDY connection.
const portForwardTunnel = "SPDY/3.1+portforward.k8s.io"

// spdyUpgrade is the Upgrade token of SPDY streams.
const spdyUpgrade = "SPDY/3.1"

// cast records one exec or attach session into the audit log.
type cast struct {
	x     *exchange
	start time.Time

	mu      sync.Mutex
	frames  [][3]any // [seconds, "o"|"i"|"r", data]
	size    int
	pending [3][]byte // per channel: the start of a UTF-8 sequence split between messages
	failed  error
	errData []byte // what the error channel said: a Status, read by exitCode
	stop    chan struct{}
	done    chan struct{}
	closeFn func()         // ends the session when the recording fails
	parsers []streamParser // ended by finish
	// portForward is the session's connections, for a port-forward.
	portForward *spdyConn
}

// streamExit is what the error channel said at the end: the command's exit code, or why
// it could not run.
type streamExit struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Details struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

func newCast(x *exchange) *cast {
	c := &cast{x: x, start: x.srv.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go c.flushLoop()
	return c
}

// flushLoop writes output at least every castFlushEvery.
func (c *cast) flushLoop() {
	defer close(c.done)
	t := time.NewTicker(castFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.flush()
		}
	}
}

// add appends a frame; output is written by the flush loop, or at once past castFlushBytes.
func (c *cast) add(kind string, data string) {
	c.mu.Lock()
	c.frames = append(c.frames, [3]any{c.x.srv.Now().Sub(c.start).Seconds(), kind, data})
	c.size += len(data)
	full := c.size >= castFlushBytes
	c.mu.Unlock()
	if full {
		c.flush()
	}
}

// flush writes the frames held as one kube.stream event. A write that fails ends the
// session: nothing further runs unrecorded.
func (c *cast) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return c.failed
	}
	if len(c.frames) == 0 {
		return nil
	}
	frames := c.frames
	c.frames, c.size = nil, 0
	x := c.x
	ev := &audit.Event{Type: audit.TypeKubeStream, Actor: x.who.User, Resource: x.res.Name, Session: x.id, Action: x.act.Statement,
		Details: map[string]any{"frames": frames}}
	if err := x.srv.Audit.AppendWritten(context.Background(), ev); err != nil {
		c.failed = fmt.Errorf("the session's recording could not be written: %w", err)
		x.srv.Log.Error("exec recording failed; the session is ended", "exchange", x.id, "err", err)
		if c.closeFn != nil {
			c.closeFn()
		}
		return c.failed
	}
	return nil
}

// finish writes what is held and stops the flush loop.
func (c *cast) finish() error {
	for _, p := range c.parsers {
		p.close()
	}
	if c.portForward != nil {
		c.portForward.closeAll()
	}
	close(c.stop)
	<-c.done
	return c.flush()
}

// message records one channel message; fromClient says which way it went.
func (c *cast) message(fromClient bool, data []byte) {
	if len(data) == 0 {
		return
	}
	ch, data := data[0], data[1:]
	switch {
	case fromClient && ch == chanStdin:
		c.add("i", c.text(ch, data))
	case fromClient && ch == chanResize:
		// One size per message over a WebSocket; a stream of them over SPDY.
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var size struct{ Width, Height uint16 }
			if dec.Decode(&size) != nil {
				break
			}
			c.add("r", strconv.Itoa(int(size.Width))+"x"+strconv.Itoa(int(size.Height)))
		}
	case !fromClient && (ch == chanStdout || ch == chanStderr):
		c.add("o", c.text(ch, data))
	case !fromClient && ch == chanError:
		// The status may come in pieces (SPDY data frames); it is read at the end.
		c.mu.Lock()
		if len(c.errData)+len(data) <= 64<<10 {
			c.errData = append(c.errData, data...)
		}
		c.mu.Unlock()
	}
}

// text returns data as text, holding back a UTF-8 sequence cut at its end until the
// channel's next message completes it.
func (c *cast) text(ch byte, data []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int(ch) >= len(c.pending) {
		return string(data)
	}
	b := append(c.pending[ch], data...)
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	c.pending[ch] = bytes.Clone(b[cut:])
	return string(b[:cut])
}

// exitCode returns the command's exit code as the error channel reported it: 0 on
// Success, the NonZeroExitCode cause's, or -1 when unknown.
func (c *cast) exitCode() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var st streamExit
	switch {
	case json.Unmarshal(c.errData, &st) != nil:
		return -1, ""
	case st.Status == "Success":
		return 0, ""
	}
	for _, cause := range st.Details.Causes {
		if cause.Reason == "ExitCode" {
			if n, err := strconv.Atoi(cause.Message); err == nil {
				return n, st.Message
			}
		}
	}
	return -1, st.Message
}

// close is nothing to a frame reader, which runs in the caller.
func (f *frameReader) close() {}

// tunneled follows a WebSocket carrying SPDY: messages from the frame reader go to the SPDY
// reader, whose first error ends the direction.
type tunneled struct {
	frameReader
	inner *spdyReader
}

func newTunneled(inner *spdyReader) *tunneled {
	// A message the SPDY reader refuses stops it; feed then reports why.
	return &tunneled{frameReader: frameReader{onMessage: func(m []byte) { inner.feed(m) }}, inner: inner}
}

func (t *tunneled) feed(p []byte) error {
	if err := t.frameReader.feed(p); err != nil {
		return err
	}
	return t.inner.stopped()
}

func (t *tunneled) close() { t.inner.close() }

// frameReader follows one direction of a WebSocket connection and hands each complete
// message's payload (unmasked) to onMessage.
type frameReader struct {
	buf       []byte
	msg       []byte // a fragmented message's payload so far
	inMessage bool
	onMessage func([]byte)
}

var errFrameTooLarge = errors.New("a stream message is larger than Portcullis records")

// feed takes the next bytes of the direction.
func (f *frameReader) feed(p []byte) error {
	f.buf = append(f.buf, p...)
	for {
		br := bytes.NewReader(f.buf)
		h, err := ws.ReadHeader(br)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil // the header is not all here yet
		}
		if err != nil {
			return fmt.Errorf("malformed WebSocket frame: %w", err)
		}
		if h.Length > maxFrame || len(f.msg)+int(h.Length) > maxFrame {
			return errFrameTooLarge
		}
		hl := len(f.buf) - br.Len()
		if len(f.buf) < hl+int(h.Length) {
			if len(f.buf) > maxFrame+ws.MaxHeaderSize {
				return errFrameTooLarge
			}
			return nil // the payload is not all here yet
		}
		payload := f.buf[hl : hl+int(h.Length)]
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch {
		case h.OpCode.IsControl(): // ping, pong, close: nothing to record
		case h.OpCode == ws.OpContinuation && f.inMessage:
			f.msg = append(f.msg, payload...)
		case h.OpCode == ws.OpBinary || h.OpCode == ws.OpText:
			f.msg, f.inMessage = append(f.msg[:0], payload...), true
		default:
			return fmt.Errorf("unexpected WebSocket frame (opcode %d)", h.OpCode)
		}
		if h.Fin && f.inMessage && !h.OpCode.IsControl() {
			f.onMessage(f.msg)
			f.msg, f.inMessage = f.msg[:0], false
		}
		// Unmasking changed the buffer in place; it has been handed on already.
		f.buf = f.buf[:copy(f.buf, f.buf[hl+int(h.Length):])]
	}
}

// streamParser follows one direction of an exec or attach connection and records the
// channel messages it completes before feed returns.
type streamParser interface {
	feed(p []byte) error
	close()
}

// tap is the API server's side of an upgraded exec or attach connection, as the reverse
// proxy copies through it: what it reads the API server said, what it writes the client
// said. Client bytes are recorded before they are passed on.
type tap struct {
	io.ReadWriteCloser
	cast               *cast
	fromServer, client streamParser
	spdy               *spdyConn // the SPDY connection followed, for SPDY streams
	told               bool      // the client was told why the stream was cut
}

// cutFrame is the message that tells an exec or attach client its stream was cut: a
// Failure Status on the error channel, as the kubelet reports a failed command, in the
// stream's own framing. A port-forward is only closed.
func (t *tap) cutFrame(why string) []byte {
	st, _ := json.Marshal(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": cutMessage(why), "reason": "Forbidden", "code": http.StatusForbidden})
	var b bytes.Buffer
	switch {
	case t.cast.portForward != nil:
		return nil
	case t.spdy != nil:
		id, ok := t.spdy.streamOf(chanError)
		if !ok {
			return nil
		}
		f, err := spdy.NewFramer(&b, nil)
		if err != nil || f.WriteFrame(&spdy.DataFrame{StreamId: id, Flags: spdy.DataFlagFin, Data: st}) != nil {
			return nil
		}
	default:
		// The Status, then a normal close: a connection that just ends is an abnormal
		// closure, which the client reports instead of the Status it read.
		if ws.WriteFrame(&b, ws.NewBinaryFrame(append([]byte{chanError}, st...))) != nil ||
			ws.WriteFrame(&b, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))) != nil {
			return nil
		}
	}
	return b.Bytes()
}

func newTap(backend io.ReadWriteCloser, c *cast, isSPDY, tunnel, forward bool) *tap {
	t := &tap{ReadWriteCloser: backend, cast: c}
	switch {
	case isSPDY:
		t.client, t.fromServer = newSPDYConn(c, forward)
		t.spdy = t.client.(*spdyReader).conn
	case tunnel:
		// A WebSocket whose binary messages carry a SPDY connection's bytes.
		client, server := newSPDYConn(c, forward)
		t.client = newTunneled(client)
		t.fromServer = newTunneled(server)
	default:
		t.fromServer = &frameReader{onMessage: func(m []byte) { c.message(false, m) }}
		t.client = &frameReader{onMessage: func(m []byte) { c.message(true, m) }}
	}
	c.closeFn = func() { backend.Close() }
	c.parsers = []streamParser{t.client, t.fromServer}
	return t
}

func (t *tap) Read(p []byte) (int, error) {
	if t.told {
		return 0, io.EOF
	}
	n, err := t.ReadWriteCloser.Read(p)
	if err != nil && n == 0 {
		if why := t.cast.x.cut.Load(); why != nil {
			// Cut by Portcullis (the grant ended): the client is told why, on the
			// protocol's status channel, before the stream closes.
			t.told = true
			if msg := t.cutFrame(*why); len(msg) > 0 && len(msg) <= len(p) {
				return copy(p, msg), nil
			}
		}
	}
	if n > 0 {
		// The parsers copy what they keep (frames are unmasked in their own buffer), so p
		// goes on to the client as it came.
		if ferr := t.fromServer.feed(p[:n]); ferr != nil {
			t.cast.fail(ferr)
			return 0, ferr
		}
	}
	return n, err
}

// Write is called by the reverse proxy's one client-to-server copier.
func (t *tap) Write(p []byte) (int, error) {
	// The parsers copy what they keep (frames are unmasked in their own buffer): the API
	// server gets the bytes as the client sent them.
	if err := t.client.feed(p); err != nil {
		t.cast.fail(err)
		return 0, err
	}
	// Input is recorded before it reaches the container.
	if err := t.cast.flush(); err != nil {
		return 0, err
	}
	return t.ReadWriteCloser.Write(p)
}

// connection records a port-forward connection's opening (before it is forwarded) or end.
// A write that fails ends the session.
func (c *cast) connection(what string, fw *forwarded) error {
	x := c.x
	d := map[string]any{"connection": what, "port": fw.port, "request": fw.request}
	if what == "closed" {
		d["bytes_in"], d["bytes_out"] = fw.in, fw.out
	}
	ev := &audit.Event{Type: audit.TypeKubePortForward, Actor: x.who.User, Resource: x.res.Name, Session: x.id, Action: x.act.Statement, Details: d}
	if err := x.srv.Audit.AppendWritten(context.Background(), ev); err != nil {
		err = fmt.Errorf("the port-forward connection could not be recorded: %w", err)
		c.fail(err)
		return err
	}
	return nil
}

// fail ends the session: its stream can no longer be recorded.
func (c *cast) fail(err error) {
	c.mu.Lock()
	if c.failed == nil {
		c.failed = err
	}
	c.mu.Unlock()
	c.x.srv.Log.Error("stream cannot be recorded; the session is ended", "exchange", c.x.id, "err", err)
	if c.closeFn != nil {
		c.closeFn()
	}
}
