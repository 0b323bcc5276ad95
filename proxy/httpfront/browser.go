package httpfront

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/proxy/identity"
)

// Browser use of an admin API: a browser that comes without a token is sent to the
// console to sign in, comes back with a one-minute ticket for this host alone, and gets a
// cookie of Portcullis's own, scoped to the host, that lasts as long as its console
// session. The cookie never reaches the upstream.

// sessionCookie is the front end's cookie on an admin host.
const sessionCookie = "portcullis_http"

// callbackPath is where the console sends a signed-in browser back to, on every host.
const callbackPath = "/.portcullis/callback"

// hostSession is what the cookie carries, signed for its host.
type hostSession struct {
	User    string    `json:"u"`
	Email   string    `json:"e,omitempty"`
	Groups  []string  `json:"g,omitempty"`
	Source  string    `json:"src,omitempty"`
	Expires time.Time `json:"exp"`
}

func cookiePurpose(host string) string { return "http-session\x00" + host }

// usedTickets remembers tickets already exchanged until they expire, so that a ticket
// seen in a log or a history cannot be used a second time on this replica.
type usedTickets struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (u *usedTickets) use(nonce string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[string]time.Time{}
	}
	for n, exp := range u.seen {
		if now.After(exp) {
			delete(u.seen, n)
		}
	}
	if _, ok := u.seen[nonce]; ok {
		return false
	}
	u.seen[nonce] = expires
	return true
}

// fromCookie returns the identity of a request carrying a valid host session cookie.
func (s *Server) fromCookie(r *http.Request, host string) *identity.Identity {
	if s.Keys == nil {
		return nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var hs hostSession
	if s.Keys.Decode(cookiePurpose(host), c.Value, &hs) != nil || !s.Now().Before(hs.Expires) || hs.User == "" {
		return nil
	}
	return &identity.Identity{Subject: *s.Config.Subject(hs.User, hs.Email, hs.Groups), Source: hs.Source, Expiry: hs.Expires}
}

// signIn sends a browser's page request without a session to the console, or reports
// false when the request is not one a browser navigates to (an API client gets 401).
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) bool {
	if s.Keys == nil || s.Config.Server.PublicURL == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) ||
		!strings.Contains(r.Header.Get("Accept"), "text/html") {
		return false
	}
	scheme := "http"
	if tlsOf(r) != nil {
		scheme = "https"
	}
	to := strings.TrimSuffix(s.Config.Server.PublicURL, "/") + "/http-login?" +
		url.Values{"origin": {scheme + "://" + r.Host}, "next": {r.URL.RequestURI()}}.Encode()
	http.Redirect(w, r, to, http.StatusFound)
	return true
}

// callback exchanges a console ticket for this host's session cookie.
func (s *Server) callback(w http.ResponseWriter, r *http.Request, host string) {
	var t signed.Ticket
	now := s.Now()
	if s.Keys == nil || s.Keys.Decode(signed.TicketPurpose, r.URL.Query().Get("ticket"), &t) != nil ||
		t.Host != host || !now.Before(t.Expires) || t.User == "" || !s.tickets.use(t.Nonce, t.Expires, now) {
		problem(w, http.StatusForbidden, "bad-ticket", "this sign-in link is not valid for this host, has expired, or was used already; open the page again", nil)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: tlsOf(r) != nil,
		Expires: t.Session, Value: s.Keys.Encode(cookiePurpose(host), hostSession{User: t.User, Email: t.Email, Groups: t.Groups, Source: t.Source, Expires: t.Session})})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, signed.LocalPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}

// stripOwnCookies removes Portcullis's cookies from a request going upstream, keeping
// the upstream's own.
func stripOwnCookies(h http.Header) {
	if len(h.Values("Cookie")) == 0 {
		return
	}
	r := &http.Request{Header: http.Header{"Cookie": h.Values("Cookie")}}
	var keep []string
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, "portcullis_") {
			keep = append(keep, c.String())
		}
	}
	h.Del("Cookie")
	if len(keep) > 0 {
		h.Set("Cookie", strings.Join(keep, "; "))
	}
}
