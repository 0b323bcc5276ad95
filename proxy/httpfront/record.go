package httpfront

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/configs"
)

// Recording bodies: a resource with record.bodies keeps each exchange's request and
// response bodies in its session recording (the audit log), with secrets taken out:
// fields whose names look like secrets (password, token, secret, credential, private,
// *key) and those configured are replaced by "[redacted]" at any depth, in JSON and in
// forms. Other text is kept up to max_bytes; JSON too large to parse whole, and binary
// bodies, are described, not kept.

const redacted = "[redacted]"

// recordBody returns what the recording keeps of a body of media type mt.
func recordBody(b []byte, mt string, rec *configs.HTTPRecord) string {
	switch {
	case len(b) == 0:
		return ""
	case isJSONType(mt):
		if int64(len(b)) > rec.MaxBytes {
			return fmt.Sprintf("(%d bytes of JSON: over the recording limit of %d, not kept)", len(b), rec.MaxBytes)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Sprintf("(%d bytes of malformed JSON, not kept)", len(b))
		}
		out, _ := json.Marshal(redactJSON(v, rec.RedactFields))
		return string(out)
	case mt == "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(b))
		if err != nil {
			return fmt.Sprintf("(%d bytes of malformed form, not kept)", len(b))
		}
		for k := range q {
			if sensitive(k, rec.RedactFields) {
				q[k] = []string{redacted}
			}
		}
		return cut(q.Encode(), rec.MaxBytes)
	case strings.HasPrefix(mt, "text/") && mt != "text/html":
		return cut(string(b), rec.MaxBytes)
	default:
		return fmt.Sprintf("(%d bytes of %s, not kept)", len(b), cmpOr(mt, "unknown type"))
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func cut(s string, max int64) string {
	if int64(len(s)) <= max {
		return s
	}
	return s[:max] + fmt.Sprintf("… (%d bytes in all)", len(s))
}

// redactJSON replaces the values of sensitive keys, at any depth.
func redactJSON(v any, extra []string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if sensitive(k, extra) {
				v[k] = redacted
			} else {
				v[k] = redactJSON(x, extra)
			}
		}
	case []any:
		for i, x := range v {
			v[i] = redactJSON(x, extra)
		}
	}
	return v
}

// sensitive reports whether a field name is a secret's.
func sensitive(name string, extra []string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "secret", "token", "credential", "private"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return n == "key" || strings.HasSuffix(n, "key") || strings.HasSuffix(n, "_key") ||
		slices.ContainsFunc(extra, func(e string) bool { return strings.EqualFold(e, name) })
}

func isJSONType(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }

// recordHeaders returns the configured headers of h, never credentials or cookies.
func recordHeaders(h http.Header, names []string, injected string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		c := http.CanonicalHeaderKey(n)
		switch c {
		case "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", http.CanonicalHeaderKey(injected), ApprovalHeader:
			continue
		}
		if v := h.Values(c); len(v) > 0 {
			out[c] = strings.Join(v, ", ")
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
