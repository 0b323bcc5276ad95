// Package signed encodes values as tamper-evident strings (cookies, tickets): the
// value's JSON and an HMAC-SHA256 of it under a key and a purpose, so that a value
// signed for one purpose is never accepted for another.
package signed

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"
)

// Signer signs and checks values: base64url(json) "." base64url(HMAC-SHA256).
type Signer struct{ key []byte }

// New returns a Signer with key, or with a random key (valid for this process only)
// when key is empty.
func New(key string) *Signer {
	if key != "" {
		return &Signer{key: []byte(key)}
	}
	k := make([]byte, 32)
	rand.Read(k)
	return &Signer{key: k}
}

// MAC is the HMAC-SHA256 of b for purpose.
func (s *Signer) MAC(purpose string, b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(b)
	return m.Sum(nil)
}

// Encode signs v for purpose.
func (s *Signer) Encode(purpose string, v any) string {
	b, _ := json.Marshal(v)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(b) + "." + enc.EncodeToString(s.MAC(purpose, b))
}

// ErrBad means a value was not signed by this key for this purpose, or is malformed.
var ErrBad = errors.New("bad signed value")

// Decode checks value's signature for purpose (in constant time) and decodes it into v.
func (s *Signer) Decode(purpose, value string, v any) error {
	p, sig, ok := strings.Cut(value, ".")
	if !ok {
		return ErrBad
	}
	enc := base64.RawURLEncoding
	b, err1 := enc.DecodeString(p)
	got, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(got, s.MAC(purpose, b)) {
		return ErrBad
	}
	return json.Unmarshal(b, v)
}

// TicketPurpose is what a sign-in ticket for an admin host is signed for.
const TicketPurpose = "http-ticket"

// TicketTTL bounds how long a ticket may take from the console to the admin host.
const TicketTTL = time.Minute

// Ticket carries a console sign-in to one host of the HTTP front end: the front end
// checks it (once), and gives the browser a session cookie of its own for that host.
type Ticket struct {
	User    string    `json:"u"`
	Email   string    `json:"e,omitempty"`
	Groups  []string  `json:"g,omitempty"`
	Source  string    `json:"src,omitempty"`
	Host    string    `json:"h"`
	Nonce   string    `json:"n"`
	Expires time.Time `json:"exp"`  // of the ticket
	Session time.Time `json:"sexp"` // of the console session it comes from
}

// LocalPath returns p when it is a path on the same origin, and "/" otherwise, so that a
// redirect to it cannot leave the site.
func LocalPath(p string) string {
	// Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
	// "/\t/evil.example" is "//evil.example" to them: any such character refuses the path.
	// Escaped ones are refused too, though browsers leave them be.
	bad := func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsFunc(p, bad) {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") ||
		strings.HasPrefix(u.Path, "//") || strings.ContainsFunc(u.Path, bad) {
		return "/"
	}
	return p
}
