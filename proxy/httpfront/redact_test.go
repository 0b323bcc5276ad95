package httpfront

import (
	"bytes"
	"io"
	"testing"
)

// chunkReader returns its data in reads of the given sizes (cycled).
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%64 + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkReader) Close() error { return nil }

// FuzzRedact: however the body is split into reads, what comes out is the body with every
// occurrence of the secret masked, byte for byte as long.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"data":{"id":"hvs.abcdef","policies":["default"]}}`), "hvs.abcdef", []byte{3, 7, 1})
	f.Add([]byte("ababababa"), "aba", []byte{1})
	f.Add([]byte("xxsecretsecretxx"), "secret", []byte{5, 2})
	f.Fuzz(func(t *testing.T, body []byte, secret string, sizes []byte) {
		if secret == "" || bytes.IndexByte([]byte(secret), '*') >= 0 {
			return
		}
		want := bytes.ReplaceAll(body, []byte(secret), bytes.Repeat([]byte("*"), len(secret)))
		got, err := io.ReadAll(newRedactReader(&chunkReader{data: bytes.Clone(body), sizes: sizes}, secret))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("redacting %q from %q: got %q (%v), want %q", secret, body, got, err, want)
		}
	})
}

// TestRedactDoesNotHoldAStream: bytes that cannot begin the secret are passed on at once.
func TestRedactDoesNotHoldAStream(t *testing.T) {
	pr, pw := io.Pipe()
	r := newRedactReader(pr, "hvs.secret")
	go pw.Write([]byte("data: one\n\n"))
	buf := make([]byte, 100)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "data: one\n\n" {
		t.Fatalf("first read: %q %v", buf[:n], err)
	}
	go pw.Write([]byte("data: hvs."))
	n, _ = r.Read(buf)
	if string(buf[:n]) != "data: " {
		t.Fatalf("second read: %q, want the part before a possible secret", buf[:n])
	}
	pw.Close()
	n, _ = r.Read(buf)
	if string(buf[:n]) != "hvs." {
		t.Fatalf("at the end: %q", buf[:n])
	}
}
