package kubefront

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
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
