package httpfront

import (
	"encoding/json"
	"net/http"
)

// problem answers with an RFC 9457 problem document: type, title, status, detail, and
// extension members.
func problem(w http.ResponseWriter, status int, kind, detail string, ext map[string]any) {
	doc := map[string]any{"type": "urn:portcullis:problem:" + kind, "title": http.StatusText(status), "status": status, "detail": detail}
	for k, v := range ext {
		doc[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(doc)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
