package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/portcullis/portcullis/audit"
)

// castMediaType is asciicast v2's media type.
const castMediaType = "application/x-asciicast"

// buildCast returns a session's terminal recording (exec or attach through the Kubernetes
// front end) as asciicast v2: a header line, then one [seconds, code, data] line per frame
// of its kube.stream events. It returns nil when the session has no terminal recording.
func buildCast(steps []recordingEntry) []byte {
	var frames []any
	width, height := 80, 24
	sized := false
	title := ""
	tty := false
	for _, st := range steps {
		if st.Type == audit.TypeKubeRequest && title == "" {
			title = st.Statement
			tty = strings.Contains(st.Statement, "tty=true")
		}
		if st.Type != audit.TypeKubeStream {
			continue
		}
		fs, _ := st.Details["frames"].([]any)
		for _, f := range fs {
			fr, ok := f.([]any)
			if !ok || len(fr) != 3 {
				continue
			}
			code, _ := fr[1].(string)
			data, ok := fr[2].(string)
			if !ok {
				continue
			}
			switch {
			case code == "r" && !sized:
				// The first size the terminal reported is the recording's.
				if w, h, ok := strings.Cut(data, "x"); ok {
					wn, err1 := strconv.Atoi(w)
					hn, err2 := strconv.Atoi(h)
					if err1 == nil && err2 == nil && wn > 0 && hn > 0 {
						width, height, sized = wn, hn, true
					}
				}
			case code == "o" && !tty:
				// Without a terminal the command wrote bare newlines; a player is a
				// terminal, which needs carriage returns too. The log keeps the bytes as sent.
				fr = []any{fr[0], "o", strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\n", "\r\n")}
			}
			frames = append(frames, fr)
		}
	}
	if frames == nil {
		return nil
	}
	var b bytes.Buffer
	start := steps[0].At
	header, _ := json.Marshal(map[string]any{"version": 2, "width": width, "height": height, "timestamp": start.Unix(), "title": title})
	b.Write(header)
	b.WriteByte('\n')
	for _, f := range frames {
		line, _ := json.Marshal(f)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// cast answers a session's terminal recording as asciicast v2.
func (s *Server) cast(w http.ResponseWriter, r *http.Request) error {
	return s.writeCast(w, mux.Vars(r)["id"], s.canReadAll(r), caller(r).User)
}

func (s *Server) writeCast(w http.ResponseWriter, id string, all bool, me string) error {
	_, steps, err := s.readRecording(id, all, me)
	if err != nil {
		return err
	}
	c := buildCast(steps)
	if c == nil {
		return errStatus(http.StatusNotFound, "this session has no terminal recording")
	}
	w.Header().Set("Content-Type", castMediaType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.cast"`)
	_, err = w.Write(c)
	return err
}
