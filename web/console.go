package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/portcullis/portcullis/internal/human"
	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy allows nothing but the console's own scripts, styles and
// connections: no inline script or style, no framing, forms only to the console.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// terminalCSP is the policy of a page with the terminal player: the same, and the
// player's WebAssembly terminal may be compiled (wasm-unsafe-eval allows no JavaScript
// eval).
var terminalCSP = strings.Replace(contentSecurityPolicy, "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", 1)

// consoleCtx is one console request: who is signed in and the form token of their session.
type consoleCtx struct {
	sess *session
	me   *identity.Identity
	csrf string
}

// page is what every console template gets.
type page struct {
	Title     string
	Nav       string
	Me        *identity.Identity
	CSRF      string
	Admin     bool // audit reader: sees every session and the audit log
	Reviewer  bool // break-glass reviewer
	Responder bool // may break glass
	Error     string
	Status    int
	Data      any
}

var funcs = template.FuncMap{
	"sql": func(s string) template.HTML {
		var b strings.Builder
		for _, sp := range pgsql.Highlight(s) {
			if sp.Kind == "" {
				b.WriteString(template.HTMLEscapeString(sp.Text))
				continue
			}
			fmt.Fprintf(&b, `<span class="t-%s">%s</span>`, sp.Kind, template.HTMLEscapeString(sp.Text))
		}
		return template.HTML(b.String())
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// clock is a compact UTC time for tables: 12-01 06:40:29.
	"clock": func(t time.Time) string { return t.UTC().Format("01-02 15:04:05") },
	// without returns the query q without key, encoded.
	"without": func(q url.Values, key string) string {
		out := url.Values{}
		for k, v := range q {
			if k != key {
				out[k] = v
			}
		}
		return out.Encode()
	},
	"ago": func(t time.Time) string { return humanDuration(time.Since(t)) + " ago" },
	"left": func(t time.Time) string {
		if d := time.Until(t); d > 0 {
			return humanDuration(d) + " left"
		}
		return "ended"
	},
	"join": strings.Join,
	// diff marks a unified diff's added and removed lines.
	"diff": func(s string) template.HTML {
		var b strings.Builder
		for _, l := range strings.SplitAfter(s, "\n") {
			class := ""
			switch {
			case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
				class = "file"
			case strings.HasPrefix(l, "+"):
				class = "add"
			case strings.HasPrefix(l, "-"):
				class = "del"
			case strings.HasPrefix(l, "@@"):
				class = "hunk"
			}
			if class == "" {
				b.WriteString(template.HTMLEscapeString(l))
				continue
			}
			fmt.Fprintf(&b, `<span class="%s">%s</span>`, class, template.HTMLEscapeString(l))
		}
		return template.HTML(b.String())
	},
	"list": func(v ...string) []string { return v },
	"dur":  human.Duration,
	"has":  slices.Contains[[]string],
	"rows": func(n int64) string {
		if n < 0 {
			return "unknown"
		}
		return fmt.Sprint(n)
	},
	"ms":  func(n int64) string { return fmt.Sprintf("+%.3fs", float64(n)/1000) },
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// parseTemplates parses each page with the layout.
func parseTemplates() map[string]*template.Template {
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", p))
	}
	return out
}

// securityHeaders sets the headers every console response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// registerConsole mounts the console's pages on r.
func (s *Server) registerConsole(r *mux.Router) {
	s.templates = parseTemplates()
	if s.Keys == nil {
		s.Keys = signed.New(s.Config.Console.SessionKey)
	}
	s.cookies = &signer{s.Keys}
	c := r.NewRoute().Subrouter()
	// Two CSRF defences on every state-changing request: the browser's own origin headers
	// (Sec-Fetch-Site / Origin) and a per-session token in every form.
	cop := http.NewCrossOriginProtection()
	c.Use(securityHeaders, cop.Handler)
	static, _ := fs.Sub(staticFS, "static")
	c.PathPrefix("/static/").Handler(http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static)))).Methods(http.MethodGet)
	c.Handle("/login", s.anon(s.loginPage)).Methods(http.MethodGet)
	c.Handle("/login/oidc", s.anon(s.loginOIDC)).Methods(http.MethodGet)
	c.Handle("/login/token", s.anon(s.loginToken)).Methods(http.MethodPost)
	c.Handle("/auth/callback", s.anon(s.callback)).Methods(http.MethodGet)
	c.Handle("/logout", s.anon(s.logout)).Methods(http.MethodPost)
	c.Handle("/http-login", s.console(s.httpLogin)).Methods(http.MethodGet)
	if s.Approvals == nil {
		return
	}
	c.Handle("/", s.console(s.inbox)).Methods(http.MethodGet)
	c.Handle("/requests/{id}", s.console(s.requestPage)).Methods(http.MethodGet)
	// Links printed before requests had their page at /requests/{id}.
	c.Handle("/approvals/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/requests/"+url.PathEscape(mux.Vars(r)["id"]), http.StatusMovedPermanently)
	})).Methods(http.MethodGet)
	c.Handle("/requests/{id}/decide", s.console(s.decideForm)).Methods(http.MethodPost)
	c.Handle("/requests/{id}/cancel", s.console(s.cancelForm)).Methods(http.MethodPost)
	c.Handle("/elevate", s.console(s.elevatePage)).Methods(http.MethodGet, http.MethodPost)
	c.Handle("/breakglass", s.console(s.breakGlassPage)).Methods(http.MethodGet, http.MethodPost)
	c.Handle("/active", s.console(s.activePage)).Methods(http.MethodGet)
	c.Handle("/active/{id}/end", s.console(s.endForm)).Methods(http.MethodPost)
	c.Handle("/reviews", s.console(s.reviewsPage)).Methods(http.MethodGet)
	c.Handle("/reviews/{id}", s.console(s.reviewForm)).Methods(http.MethodPost)
	c.Handle("/sessions", s.console(s.sessionsPage)).Methods(http.MethodGet)
	c.Handle("/sessions/{id}", s.console(s.replayPage)).Methods(http.MethodGet)
	c.Handle("/sessions/{id}/cast", s.console(func(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
		return s.writeCast(w, mux.Vars(r)["id"], s.isAdmin(c.subject()), c.me.User)
	})).Methods(http.MethodGet)
	c.Handle("/audit", s.console(s.auditPage)).Methods(http.MethodGet)
	c.Handle("/audit/export", s.console(s.auditExport)).Methods(http.MethodGet)
	c.Handle("/health", s.console(s.healthPage)).Methods(http.MethodGet)
	c.Handle("/events", s.console(s.events)).Methods(http.MethodGet)
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// anon serves pages that need no sign-in (the sign-in pages themselves). POSTs still
// need the session's form token.
func (s *Server) anon(h func(http.ResponseWriter, *http.Request, *consoleCtx) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if ok && sess.User != "" {
			revoked, err := s.Approvals.SessionRevoked(r.Context(), sess.ID)
			if err != nil {
				s.Log.Error("could not check whether a console session was ended", "user", sess.User, "err", err)
				s.renderError(w, r, &consoleCtx{sess: &session{}}, errStatus(http.StatusServiceUnavailable, "the approval store is unavailable; try again shortly"))
				return
			}
			if revoked {
				sess, ok = s.anonymous(), false
			}
		}
		if !ok {
			s.saveSession(w, sess)
		}
		c := &consoleCtx{sess: sess, csrf: s.cookies.csrfToken(sess.ID)}
		if sess.User != "" {
			c.me = s.identityOf(sess)
		}
		if r.Method == http.MethodPost && !s.checkForm(w, r, c) {
			return
		}
		if err := h(w, r, c); err != nil {
			s.renderError(w, r, c, err)
		}
	})
}

// console serves pages for signed-in users; others go to the sign-in page.
func (s *Server) console(h func(http.ResponseWriter, *http.Request, *consoleCtx) error) http.Handler {
	return s.anon(func(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
		if c.me == nil {
			if r.Method != http.MethodGet {
				return errStatus(http.StatusUnauthorized, "your session ended; sign in again")
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return nil
		}
		return h(w, r, c)
	})
}

// checkForm parses a POSTed form (64 KiB at most) and checks its token.
func (s *Server) checkForm(w http.ResponseWriter, r *http.Request, c *consoleCtx) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, c, errStatus(http.StatusBadRequest, "the form could not be read"))
		return false
	}
	if !s.cookies.csrfOK(c.sess.ID, r.PostForm.Get("csrf")) {
		s.renderError(w, r, c, errStatus(http.StatusForbidden, "this form is out of date or came from another site; reload the page and try again"))
		return false
	}
	return true
}

// identityOf turns a session into an identity, with the teams and roles the current
// configuration gives its user.
func (s *Server) identityOf(sess *session) *identity.Identity {
	return &identity.Identity{Subject: *s.Config.Subject(sess.User, sess.Email, sess.Groups), Source: sess.Source, Expiry: sess.Expires}
}

func (s *Server) newPage(c *consoleCtx, title, nav string, data any) *page {
	p := &page{Title: title, Nav: nav, Me: c.me, CSRF: c.csrf, Data: data}
	if c.me != nil {
		subj := &c.me.Subject
		p.Admin = s.isAdmin(subj)
		p.Reviewer = s.Config.BreakGlass.Reviewers.Names(subj)
		p.Responder = s.Config.BreakGlass.Who.Names(subj)
	}
	return p
}

func (s *Server) render(w http.ResponseWriter, name string, p *page) error {
	t, ok := s.templates[name]
	if !ok {
		return fmt.Errorf("no template %q", name)
	}
	var b bytes.Buffer // the whole page first: a template error becomes an error page, not half a page
	if err := t.Execute(&b, p); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status != 0 {
		w.WriteHeader(p.Status)
	}
	_, err := b.WriteTo(w)
	return err
}

// renderError shows an error page with the status the API would give for the same error.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, c *consoleCtx, err error) {
	status, msg := consoleStatus(err)
	if status == http.StatusInternalServerError {
		s.Log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	p := s.newPage(c, http.StatusText(status), "", nil)
	p.Error, p.Status = msg, status
	if rerr := s.render(w, "error", p); rerr != nil {
		http.Error(w, msg, status)
	}
}

func consoleStatus(err error) (int, string) {
	switch {
	case errors.Is(err, identity.ErrInvalidToken):
		return http.StatusUnauthorized, "sign-in failed: " + err.Error()
	case errors.Is(err, identity.ErrProviderUnavailable):
		return http.StatusServiceUnavailable, "the identity provider is unavailable; try again"
	}
	return statusOf(err)
}

// subject is the signed-in user's policy subject.
func (c *consoleCtx) subject() *policy.Subject { return &c.me.Subject }
