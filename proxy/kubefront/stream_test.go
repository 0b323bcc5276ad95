package kubefront

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/moby/spdystream/spdy"
)

// frames encodes messages as the client sends them: masked, the second one fragmented, a
// ping between.
func clientFrames(t testing.TB, msgs ...[]byte) []byte {
	var buf bytes.Buffer
	write := func(f ws.Frame) {
		f = ws.MaskFrameInPlace(f)
		if err := ws.WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range msgs {
		if i == 1 && len(m) > 2 {
			write(ws.NewFrame(ws.OpBinary, false, bytes.Clone(m[:2])))
			write(ws.NewPingFrame([]byte("hi")))
			write(ws.NewFrame(ws.OpContinuation, true, bytes.Clone(m[2:])))
			continue
		}
		write(ws.NewBinaryFrame(bytes.Clone(m)))
	}
	return buf.Bytes()
}

// TestFrameReader: messages come out whole and unmasked however the stream is cut.
func TestFrameReader(t *testing.T) {
	want := [][]byte{{chanStdin, 'l', 's', '\n'}, append([]byte{chanStdin}, bytes.Repeat([]byte("x"), 70000)...), {chanResize, '{', '}'}}
	stream := clientFrames(t, want...)
	for _, step := range []int{1, 3, 7, 4096, len(stream)} {
		var got [][]byte
		f := frameReader{onMessage: func(m []byte) { got = append(got, bytes.Clone(m)) }}
		for i := 0; i < len(stream); i += step {
			if err := f.feed(stream[i:min(i+step, len(stream))]); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: %d messages, want %d", step, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("step %d: message %d differs", step, i)
			}
		}
	}
}

// TestFrameReaderRefusesOversized: a message larger than Portcullis records ends the stream
// instead of being held without bound.
func TestFrameReaderRefusesOversized(t *testing.T) {
	var buf bytes.Buffer
	ws.WriteHeader(&buf, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: maxFrame + 1})
	f := frameReader{onMessage: func([]byte) {}}
	if err := f.feed(buf.Bytes()); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("oversized frame: %v", err)
	}
}

// TestCastTextKeepsRunesWhole: a UTF-8 character cut between two messages is recorded
// whole, in the second.
func TestCastTextKeepsRunesWhole(t *testing.T) {
	c := &cast{}
	s := "héllo"
	if got := c.text(chanStdout, []byte(s[:2])); got != "h" {
		t.Errorf("first part %q", got)
	}
	if got := c.text(chanStdout, []byte(s[2:])); got != "éllo" {
		t.Errorf("second part %q", got)
	}
}

// FuzzFrameReader: any byte stream, cut anywhere, neither panics nor yields more message
// bytes than it holds.
func FuzzFrameReader(f *testing.F) {
	f.Add(clientFrames(f, []byte{0, 'a'}, []byte{1, 'b', 'c', 'd'}), uint8(3))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		n := 0
		r := frameReader{onMessage: func(m []byte) { n += len(m) }}
		s := int(step) + 1
		for i := 0; i < len(stream); i += s {
			if r.feed(stream[i:min(i+s, len(stream))]) != nil {
				return
			}
		}
		if n > len(stream) {
			t.Errorf("%d message bytes from a %d-byte stream", n, len(stream))
		}
	})
}

// TestSPDYReader: SPDY streams opened by the client name their channel; data frames on
// them are recorded per channel, each before feed returns, however the bytes are cut.
func TestSPDYReader(t *testing.T) {
	var client, server bytes.Buffer
	cf, _ := spdy.NewFramer(&client, nil)
	sf, _ := spdy.NewFramer(&server, nil)
	for id, typ := range map[spdy.StreamId]string{1: "error", 3: "stdin", 5: "stdout", 7: "resize"} {
		cf.WriteFrame(&spdy.SynStreamFrame{StreamId: id, Headers: http.Header{"Streamtype": {typ}}})
	}
	cf.WriteFrame(&spdy.DataFrame{StreamId: 3, Data: []byte("typed\n")})
	cf.WriteFrame(&spdy.DataFrame{StreamId: 7, Data: []byte(`{"Width":90,"Height":20}` + "\n" + `{"Width":91,"Height":21}` + "\n")})
	sf.WriteFrame(&spdy.DataFrame{StreamId: 5, Data: []byte("printed\n")})
	sf.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte(`{"status":"Failure","reason":"NonZeroExitCode",`)})
	sf.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte(`"details":{"causes":[{"reason":"ExitCode","message":"7"}]}}`)})

	c := &cast{x: &exchange{srv: &Server{Now: time.Now}}}
	in, out := newSPDYConn(c, false)
	feed := func(r *spdyReader, b []byte, step int) {
		for i := 0; i < len(b); i += step {
			if err := r.feed(b[i:min(i+step, len(b))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	feed(in, client.Bytes(), 5)
	c.mu.Lock()
	got := fmt.Sprint(c.frames)
	c.mu.Unlock()
	for _, want := range []string{"i typed\n", "r 90x20", "r 91x21"} {
		if !strings.Contains(got, want) {
			t.Errorf("after the client's bytes, the recording %q lacks %q", got, want)
		}
	}
	feed(out, server.Bytes(), 3)
	in.close()
	out.close()
	if !strings.Contains(fmt.Sprint(c.frames), "o printed\n") {
		t.Errorf("output not recorded: %v", c.frames)
	}
	if code, _ := c.exitCode(); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}

	// Data on a stream the client never opened is not passed through unrecorded.
	c2 := &cast{x: &exchange{srv: &Server{Now: time.Now}}}
	in2, _ := newSPDYConn(c2, false)
	var stray bytes.Buffer
	f2, _ := spdy.NewFramer(&stray, nil)
	f2.WriteFrame(&spdy.DataFrame{StreamId: 9, Data: []byte("x")})
	if err := in2.feed(stray.Bytes()); err == nil {
		t.Error("data on an unopened stream was accepted")
	}
}

// FuzzSPDYReader: any bytes from either side, cut anywhere, end in a recording or an
// error, never a panic or a hang.
func FuzzSPDYReader(f *testing.F) {
	var seed bytes.Buffer
	fr, _ := spdy.NewFramer(&seed, nil)
	fr.WriteFrame(&spdy.SynStreamFrame{StreamId: 1, Headers: http.Header{"Streamtype": {"stdin"}}})
	fr.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte("ls\n")})
	f.Add(seed.Bytes(), uint8(4), true)
	f.Fuzz(func(t *testing.T, stream []byte, step uint8, fromClient bool) {
		c := &cast{x: &exchange{srv: &Server{Now: time.Now}}}
		in, out := newSPDYConn(c, false)
		r := out
		if fromClient {
			r = in
		}
		s := int(step) + 1
		for i := 0; i < len(stream); i += s {
			if r.feed(stream[i:min(i+s, len(stream))]) != nil {
				break
			}
		}
		in.close()
		out.close()
	})
}

// TestCutFrame: a stream cut by Portcullis tells the client why on the error channel, in
// the stream's own framing — a WebSocket binary message, or a SPDY data frame ending the
// error stream the client opened.
func TestCutFrame(t *testing.T) {
	c := &cast{x: &exchange{srv: &Server{Now: time.Now}}}
	var h ws.Header
	wsTap := &tap{cast: c}
	b := wsTap.cutFrame("elevation apr_X ended")
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil || h.OpCode != ws.OpBinary || !h.Fin || h.Masked {
		t.Fatalf("WebSocket frame header %+v, %v", h, err)
	}
	payload := b[len(b)-r.Len():]
	if payload[0] != chanError || !strings.Contains(string(payload[1:]), `"message":"Portcullis ended this stream: elevation apr_X ended; request access again to go on"`) {
		t.Errorf("WebSocket payload %q", payload)
	}

	in, _ := newSPDYConn(c, false)
	var open bytes.Buffer
	fr, _ := spdy.NewFramer(&open, nil)
	fr.WriteFrame(&spdy.SynStreamFrame{StreamId: 5, Headers: http.Header{"Streamtype": {"error"}}})
	if err := in.feed(open.Bytes()); err != nil {
		t.Fatal(err)
	}
	spdyTap := &tap{cast: c, spdy: in.conn}
	got, err := spdy.NewFramer(io.Discard, bytes.NewReader(spdyTap.cutFrame("break-glass bg_Y ended")))
	if err != nil {
		t.Fatal(err)
	}
	f, err := got.ReadFrame()
	df, ok := f.(*spdy.DataFrame)
	if err != nil || !ok || df.StreamId != 5 || df.Flags&spdy.DataFlagFin == 0 || !strings.Contains(string(df.Data), "break-glass bg_Y ended") {
		t.Errorf("SPDY frame %+v, %v", f, err)
	}
	in.close()
}
