package web

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/signed"
)

// Cookie names. The session cookie holds who signed in; the login cookie holds one
// sign-in's state, nonce and PKCE verifier until the provider redirects back.
const (
	sessionCookie = "portcullis_session"
	loginCookie   = "portcullis_login"
)

// session is what a console session cookie carries, signed with the session key. The
// teams and roles are not in it: they are worked out from the configuration on each
// request, so configuration changes apply at once.
type session struct {
	ID      string    `json:"sid"`
	User    string    `json:"u,omitempty"`
	Email   string    `json:"e,omitempty"`
	Groups  []string  `json:"g,omitempty"`
	Source  string    `json:"src,omitempty"`
	Expires time.Time `json:"exp"`
}

// loginState is one sign-in in progress.
type loginState struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Next     string    `json:"next"`
	Expires  time.Time `json:"exp"`
}

// signer signs and checks cookie values with the key shared with the HTTP front end.
type signer struct{ *signed.Signer }

func (s *signer) encode(purpose string, v any) string { return s.Encode(purpose, v) }

func (s *signer) decode(purpose, value string, v any) error { return s.Decode(purpose, value, v) }

func (s *signer) mac(purpose string, b []byte) []byte { return s.MAC(purpose, b) }

// csrfToken is the form token of a session: a MAC of its id, so it needs no storage and
// changes with every new session.
func (s *signer) csrfToken(sid string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", []byte(sid)))
}

func (s *signer) csrfOK(sid, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && sid != "" && hmac.Equal(got, s.mac("csrf", []byte(sid)))
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setCookie writes a cookie the way every console cookie is written: HttpOnly, SameSite
// Lax (the sign-in comes back as a top-level navigation from the provider), Secure when
// the console is served over TLS.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: strings.HasPrefix(s.Config.Server.PublicURL, "https://")}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

// session returns the request's session, valid and unexpired, or a new anonymous one.
func (s *Server) session(r *http.Request) (*session, bool) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		var sess session
		if s.cookies.decode(sessionCookie, c.Value, &sess) == nil && s.Now().Before(sess.Expires) && sess.ID != "" {
			return &sess, true
		}
	}
	return s.anonymous(), false
}

// anonymous returns a new session nobody has signed in to.
func (s *Server) anonymous() *session {
	return &session{ID: randomToken(), Expires: s.Now().Add(s.Config.Console.SessionTTL.D())}
}

func (s *Server) saveSession(w http.ResponseWriter, sess *session) {
	s.setCookie(w, sessionCookie, s.cookies.encode(sessionCookie, sess), sess.Expires)
}
