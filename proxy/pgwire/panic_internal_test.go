package pgwire

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
)

// TestRelayPanicClosesTheSession: a panic in a session's relay while it holds the
// session's lock (here, writing to a client writer that is missing) ends that session —
// its connections closed, the relay marked done, loudly logged — instead of deadlocking
// the session in its own cleanup or crashing the process.
func TestRelayPanicClosesTheSession(t *testing.T) {
	var logged bytes.Buffer
	var logMu sync.Mutex
	clientEnd, client := net.Pipe()
	upEnd, up := net.Pipe()
	ss := &session{
		srv:    &Server{Log: slog.New(slog.NewTextHandler(lockedWriter{&logged, &logMu}, nil))},
		id:     "pgs_test",
		client: client, up: up,
		ur:  &reader{r: bufio.NewReader(up), max: DefaultMaxMessageSize},
		res: &configs.Resource{Name: "orders"},
		// cw is nil: writing the relayed message panics with ss.mu held.
	}
	ss.cond = sync.NewCond(&ss.mu)
	done := make(chan struct{})
	go func() { defer close(done); ss.relay() }()
	go upEnd.Write([]byte{'S', 0, 0, 0, 8, 'a', 0, 'b', 0}) // a ParameterStatus from "upstream"
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not end after its panic (deadlocked on its own lock?)")
	}
	ss.mu.Lock() // free again
	upDone := ss.upDone
	ss.mu.Unlock()
	if !upDone {
		t.Error("the relay ended without marking the upstream done")
	}
	clientEnd.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := clientEnd.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(errText(err), "closed") {
		t.Errorf("the client connection after the panic: %v, want closed", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logged.String(), "relay failed") || !strings.Contains(logged.String(), "pgs_test") {
		t.Errorf("nothing logged about the panic: %q", logged.String())
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
