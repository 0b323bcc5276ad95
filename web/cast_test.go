package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
)

// TestBuildCast: a session's kube.stream frames become asciicast v2 — the header takes the
// first terminal size and the request as title; output without a terminal gets carriage
// returns; sessions without a recording have none.
func TestBuildCast(t *testing.T) {
	at := time.Unix(1700000000, 0)
	steps := []recordingEntry{
		{At: at, Type: audit.TypeKubeRequest, Statement: "CONNECT /api/v1/namespaces/demo/pods/box/exec?command=sh&stdin=true"},
		{At: at, Type: audit.TypeKubeStream, Details: map[string]any{"frames": []any{
			[]any{0.1, "r", "100x30"}, []any{0.2, "i", "ls\n"}, []any{0.3, "o", "a\nb\n"},
		}}},
		{At: at, Type: audit.TypeKubeStream, Details: map[string]any{"frames": []any{[]any{0.4, "r", "120x40"}}}},
	}
	lines := bufio.NewScanner(bytes.NewReader(buildCast(steps)))
	var got []string
	for lines.Scan() {
		got = append(got, lines.Text())
	}
	if len(got) != 5 {
		t.Fatalf("cast lines: %q", got)
	}
	var h map[string]any
	if err := json.Unmarshal([]byte(got[0]), &h); err != nil {
		t.Fatal(err)
	}
	if h["version"] != float64(2) || h["width"] != float64(100) || h["height"] != float64(30) || h["timestamp"] != float64(1700000000) || h["title"] != steps[0].Statement {
		t.Errorf("header %v", h)
	}
	if got[2] != `[0.2,"i","ls\n"]` || got[3] != `[0.3,"o","a\r\nb\r\n"]` || got[4] != `[0.4,"r","120x40"]` {
		t.Errorf("frames %q", got[1:])
	}
	if c := buildCast(steps[:1]); c != nil {
		t.Errorf("a session without a recording has a cast: %q", c)
	}
}

// TestReplayShowsPortForwardConnections: a port-forward session's page says, per step,
// which connection opened or closed, to which port, with its bytes.
func TestReplayShowsPortForwardConnections(t *testing.T) {
	s := &Server{templates: parseTemplates()}
	steps := []recordingEntry{
		{Type: audit.TypeKubePortForward, Details: map[string]any{"connection": "opened", "port": "8080", "request": "0"}},
		{Type: audit.TypeKubePortForward, Details: map[string]any{"connection": "closed", "port": "8080", "request": "0", "bytes_in": float64(78), "bytes_out": float64(1203)}},
	}
	w := httptest.NewRecorder()
	if err := s.render(w, "replay", &page{Data: &replayData{ID: "kbx_1", User: "alice", Steps: steps}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"connection opened to port 8080</span>", "connection closed to port 8080, 78 bytes in, 1203 bytes out</span>"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
