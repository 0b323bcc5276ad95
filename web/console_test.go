package web

import (
	"context"
	"fmt"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/identity"
)

// consoleServer serves the demo configuration (dev token sign-in on) with an embedded
// approval store, and returns the server, its approvals service, configuration and audit log.
func consoleServer(t *testing.T, edit func(*configs.Config)) (*httptest.Server, *elevation.Approvals, *configs.Config, *audit.Log) {
	t.Helper()
	cfg, err := configs.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audit.Dir = t.TempDir()
	if edit != nil {
		edit(cfg)
	}
	auth, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := elevation.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	approvals := elevation.NewApprovals(store, nil)
	log, err := audit.Open(audit.Options{Dir: cfg.Audit.Dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	srv := httptest.NewServer((&Server{Config: cfg, Auth: auth, Approvals: approvals, Audit: log, Log: slog.New(slog.DiscardHandler)}).Handler())
	t.Cleanup(srv.Close)
	return srv, approvals, cfg, log
}

// TestSignInIsAudited: sign-ins and sign-outs are in the audit log, and with the audit log
// unwritable nobody signs in.
func TestSignInIsAudited(t *testing.T) {
	srv, _, cfg, log := consoleServer(t, nil)
	b := newBrowser(t, srv)
	b.signIn("bob")
	b.do("POST", "/logout", url.Values{"csrf": {b.csrf("/")}})
	var got []string
	audit.Scan(cfg.Audit.Dir, audit.Filter{Actor: "bob"}, func(ev *audit.Event) error {
		src, _ := ev.Details["source"].(string)
		got = append(got, ev.Type+":"+src+ev.Result)
		return nil
	})
	if len(got) != 2 || got[0] != "console.signin:staticok" || got[1] != "console.signout:ok" {
		t.Errorf("audit events of bob: %v", got)
	}
	log.Close()
	c := newBrowser(t, srv)
	resp, body := c.do("POST", "/login/token", url.Values{"csrf": {c.csrf("/login")}, "token": {"bob-demo-token"}})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "audit log") {
		t.Errorf("sign-in with the audit log closed: %d", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("signed in without an audit event: %d", resp.StatusCode)
	}
}

// browser is an HTTP client with cookies that does not follow redirects, like a user
// whose every step we look at.
type browser struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
}

func newBrowser(t *testing.T, srv *httptest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, srv: srv, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) csrf(path string) string {
	b.t.Helper()
	_, page := b.do("GET", path, nil)
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no form token on %s:\n%s", path, page)
	}
	return m[1]
}

func (b *browser) signIn(user string) {
	b.t.Helper()
	resp, body := b.do("POST", "/login/token", url.Values{"csrf": {b.csrf("/login")}, "token": {user + "-demo-token"}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign-in as %s: %d\n%s", user, resp.StatusCode, body)
	}
}

func TestConsoleHeadersAndCookies(t *testing.T) {
	srv, _, _, _ := consoleServer(t, nil)
	b := newBrowser(t, srv)
	resp, body := b.do("GET", "/login", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Development only") {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": contentSecurityPolicy, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(contentSecurityPolicy, "script-src 'self'") || strings.Contains(contentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows too much: %s", contentSecurityPolicy)
	}
	set := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"portcullis_session=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(set, "Secure") {
		t.Errorf("Secure cookie on a plain-HTTP console: %s", set)
	}
	// Signed out, every page sends you to sign in, and back afterwards.
	resp, _ = newBrowser(t, srv).do("GET", "/requests/x?y=1", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Frequests%2Fx%3Fy%3D1" {
		t.Errorf("signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestConsoleSecureCookieUnderTLS(t *testing.T) {
	srv, _, _, _ := consoleServer(t, func(c *configs.Config) { c.Server.PublicURL = "https://portcullis.example.com" })
	resp, _ := newBrowser(t, srv).do("GET", "/login", nil)
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "Secure") {
		t.Errorf("no Secure cookie with an https public_url: %s", resp.Header.Get("Set-Cookie"))
	}
}

// TestTemplatesHaveNoInlineCode keeps the CSP honest: no inline scripts, styles or
// event handlers anywhere in the console's pages.
func TestTemplatesHaveNoInlineCode(t *testing.T) {
	bad := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]|<script>|\sstyle=|\son[a-z]+=|javascript:|<style`)
	fs.WalkDir(templateFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := templateFS.ReadFile(p)
		if m := bad.Find(b); m != nil {
			t.Errorf("%s has inline code: %q", p, m)
		}
		return nil
	})
	// Assets stay small.
	for _, f := range []string{"static/app.js", "static/app.css"} {
		if st, err := fs.Stat(staticFS, f); err != nil || st.Size() > 16<<10 {
			t.Errorf("%s: %v, %d bytes (want under 16 KiB)", f, err, st.Size())
		}
	}
}

func TestConsoleCSRF(t *testing.T) {
	srv, approvals, cfg, _ := consoleServer(t, nil)
	alice, _ := cfg.StaticSubject("alice")
	req := pendingStatement(t, approvals, alice, "UPDATE orders SET status = 'x' WHERE id = 1")
	bob := newBrowser(t, srv)
	bob.signIn("bob")
	decide := "/requests/" + req.ID + "/decide"
	approve := url.Values{"decision": {"approve"}}

	// No token, a made-up token, another session's token: refused, nothing recorded.
	other := newBrowser(t, srv)
	for name, tok := range map[string]string{"none": "", "made up": "AAAA", "another session's": other.csrf("/login")} {
		f := url.Values{"decision": {"approve"}, "csrf": {tok}}
		resp, body := bob.do("POST", decide, f)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "out of date or came from another site") {
			t.Errorf("%s token: %d", name, resp.StatusCode)
		}
	}
	// A cross-site POST with the right token is refused by the origin check.
	tok := bob.csrf("/requests/" + req.ID)
	approve.Set("csrf", tok)
	resp, _ := bob.do("POST", decide, approve, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	if r, _ := approvals.Get(context.Background(), req.ID); r.State != elevation.StatePending || len(r.Votes) != 0 {
		t.Fatalf("a refused form changed the request: %s %v", r.State, r.Votes)
	}
	// The real form works.
	resp, body := bob.do("POST", decide, approve)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d\n%s", resp.StatusCode, body)
	}
	if r, _ := approvals.Get(context.Background(), req.ID); r.State != elevation.StateApproved {
		t.Errorf("after approving: %s", r.State)
	}
	// A signed-out POST is refused too.
	resp, _ = newBrowser(t, srv).do("POST", "/logout", url.Values{"csrf": {"x"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without a valid token: %d", resp.StatusCode)
	}
}

func pendingStatement(t *testing.T, approvals *elevation.Approvals, who *policy.Subject, sql string) *elevation.Request {
	t.Helper()
	q, err := policy.CompileQuorum(&policy.QuorumSpec{RequiredTeams: []string{"sre"}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := approvals.Create(context.Background(), who, "pgs_test", elevation.Artifact{Resource: "orders", Statement: sql, Class: "write",
		EstimatedRows: -1, Quorum: q, Snapshot: "snap", Requester: who.User,
		Rules: []elevation.RuleRef{{Name: "orders-write-approval", Effect: "require_approval", Tier: "high"}}})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestConsoleRequestPage(t *testing.T) {
	srv, approvals, cfg, _ := consoleServer(t, nil)
	alice, _ := cfg.StaticSubject("alice")
	req := pendingStatement(t, approvals, alice, "UPDATE orders SET note = '<script>alert(1)</script>' WHERE id = 1")

	bob := newBrowser(t, srv)
	bob.signIn("bob")
	_, page := bob.do("GET", "/requests/"+req.ID, nil)
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the statement is not escaped")
	}
	for _, want := range []string{`id="approve"`, "orders-write-approval", "team sre: 0/1", "env=production", "alice"} {
		if !strings.Contains(page, want) {
			t.Errorf("bob's request page lacks %q", want)
		}
	}
	// Self-approval: no buttons, the reason, and a forged POST is refused with the reason.
	a := newBrowser(t, srv)
	a.signIn("alice")
	_, page = a.do("GET", "/requests/"+req.ID, nil)
	if strings.Contains(page, `id="approve"`) || !strings.Contains(page, `id="whynot"`) {
		t.Error("alice may approve her own request on the page")
	}
	resp, page := a.do("POST", "/requests/"+req.ID+"/decide", url.Values{"decision": {"approve"}, "csrf": {a.csrf("/requests/" + req.ID)}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "requester") {
		t.Errorf("alice approving her own: %d", resp.StatusCode)
	}
	// carol (security, not SRE) sees why not; dave (not eligible, not involved) sees nothing.
	c := newBrowser(t, srv)
	c.signIn("carol")
	if _, page = c.do("GET", "/requests/"+req.ID, nil); strings.Contains(page, `id="approve"`) {
		t.Error("carol, not in sre, may approve")
	}
	d := newBrowser(t, srv)
	d.signIn("dave")
	if resp, _ = d.do("GET", "/requests/"+req.ID, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("dave, neither requester nor approver, GET the request: %d, want 404", resp.StatusCode)
	}
	// The inbox marks what bob can approve.
	if _, page = bob.do("GET", "/", nil); !strings.Contains(page, "you can approve") || !strings.Contains(page, req.ID) {
		t.Error("bob's inbox does not mark the request as his to approve")
	}
	if _, page = bob.do("GET", "/?type=elevation", nil); strings.Contains(page, req.ID) {
		t.Error("the type filter lets a statement through")
	}
}

func TestConsoleSignIn(t *testing.T) {
	srv, _, _, _ := consoleServer(t, nil)
	b := newBrowser(t, srv)
	// A wrong token: 401, still signed out.
	resp, _ := b.do("POST", "/login/token", url.Values{"csrf": {b.csrf("/login")}, "token": {"nope"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	// next never leaves the site.
	for _, next := range []string{"//evil.example/x", "https://evil.example", "/\\evil.example", "evil", "/\t/evil.example/y", "/\n/evil.example",
		"/%09/evil.example", "/x\\y", "/\x00x"} {
		b := newBrowser(t, srv)
		resp, _ := b.do("POST", "/login/token", url.Values{"csrf": {b.csrf("/login")}, "token": {"bob-demo-token"}, "next": {next}})
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("next %q sends to %q", next, loc)
		}
	}
	// Signed in, GET /login?next= redirects, to local paths only (the browser drops the tab).
	for next, want := range map[string]string{"/%09/evil.example/y": "/", "/%0a/evil.example": "/", "/requests/apr_1?x=1": "/requests/apr_1?x=1"} {
		b := newBrowser(t, srv)
		b.signIn("bob")
		resp, _ := b.do("GET", "/login?next="+next, nil)
		if loc := resp.Header.Get("Location"); loc != want {
			t.Errorf("signed in, next %q sends to %q, want %q", next, loc, want)
		}
	}
	// A session cookie changed by the client is ignored.
	u, _ := url.Parse(srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			c.Value = strings.Replace(c.Value, "e", "f", 1)
			b.c.Jar.SetCookies(u, []*http.Cookie{c})
		}
	}
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a tampered session still signed in: %d", resp.StatusCode)
	}
	// Sign-out ends the session, for a copy of its cookie too.
	b.signIn("bob")
	var kept []*http.Cookie
	for _, c := range b.c.Jar.Cookies(u) {
		kept = append(kept, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	b.do("POST", "/logout", url.Values{"csrf": {b.csrf("/")}})
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("signed out but still in: %d", resp.StatusCode)
	}
	copied := newBrowser(t, srv)
	copied.c.Jar.SetCookies(u, kept)
	if resp, _ := copied.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a copy of a signed-out session's cookie still signs in: %d", resp.StatusCode)
	}
	// A callback without this browser's sign-in state is refused.
	if resp, _ := b.do("GET", "/auth/callback?state=x&code=y", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback without state: %d", resp.StatusCode)
	}
}

func TestConsoleDevLoginOff(t *testing.T) {
	srv, _, _, _ := consoleServer(t, func(c *configs.Config) { c.Console.DevLogin = false })
	b := newBrowser(t, srv)
	if _, page := b.do("GET", "/login", nil); strings.Contains(page, "Development only") {
		t.Error("the dev-only form shows with console.dev_login off")
	}
	// Without the form there is no form token either; with or without one, no sign-in.
	resp, _ := b.do("POST", "/login/token", url.Values{"token": {"bob-demo-token"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("token sign-in with dev_login off: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("signed in with dev_login off: %d", resp.StatusCode)
	}
}

func TestConsoleSessionExpires(t *testing.T) {
	srv, _, _, _ := consoleServer(t, func(c *configs.Config) { c.Console.SessionTTL = configs.Duration(time.Second) })
	b := newBrowser(t, srv)
	b.signIn("bob")
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != 200 {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	time.Sleep(1100 * time.Millisecond)
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the session TTL: %d", resp.StatusCode)
	}
}

func TestConsoleAuthorization(t *testing.T) {
	srv, _, _, _ := consoleServer(t, nil)
	alice := newBrowser(t, srv)
	alice.signIn("alice")
	for _, p := range []string{"/audit", "/audit/export", "/health", "/reviews", "/breakglass"} {
		if resp, _ := alice.do("GET", p, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("alice GET %s: %d, want 403", p, resp.StatusCode)
		}
	}
	// Elevation through the form: a request page to follow, waiting for SRE.
	if _, page := alice.do("GET", "/elevate", nil); !strings.Contains(page, "orders-writer") || !strings.Contains(page, "<option>15m</option>") {
		t.Errorf("the elevation form:\n%s", page)
	}
	resp, body := alice.do("POST", "/elevate", url.Values{"csrf": {alice.csrf("/elevate")}, "role": {"orders-writer"}, "duration": {"15m"}, "reason": {"fix order 2"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/requests/apr_") {
		t.Fatalf("elevation request: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if _, page := alice.do("GET", resp.Header.Get("Location"), nil); !strings.Contains(page, "orders-writer") || !strings.Contains(page, "team sre: 0/1") {
		t.Errorf("the elevation's page:\n%s", page)
	}
	carol := newBrowser(t, srv)
	carol.signIn("carol")
	for _, p := range []string{"/audit", "/health", "/reviews", "/sessions"} {
		if resp, body := carol.do("GET", p, nil); resp.StatusCode != 200 {
			t.Errorf("carol GET %s: %d\n%s", p, resp.StatusCode, body)
		}
	}
	if resp, _ := carol.do("GET", "/audit?since=yesterday", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad time: %d", resp.StatusCode)
	}
	dave := newBrowser(t, srv)
	dave.signIn("dave")
	if resp, _ := dave.do("GET", "/breakglass", nil); resp.StatusCode != 200 {
		t.Errorf("dave's break-glass form: %d", resp.StatusCode)
	}
	// A short reason is refused with the service's message, and the form keeps the input.
	resp, body = dave.do("POST", "/breakglass", url.Values{"csrf": {dave.csrf("/breakglass")}, "resource": {"orders"}, "action": {"ddl"},
		"duration": {"1h"}, "incident": {"INC-9"}, "reason": {"too short"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "INC-9") || !strings.Contains(body, "too short") {
		t.Errorf("short reason: %d", resp.StatusCode)
	}
	for _, kept := range []string{`name="resource" value="orders" checked`, `name="action" value="ddl" checked`, `<option selected>1h</option>`} {
		if !strings.Contains(body, kept) {
			t.Errorf("the refused form lost %s", kept)
		}
	}
	if strings.Contains(body, `name="action" value="write" checked`) {
		t.Error("the refused form checked an action not chosen")
	}
}

// TestConsoleShowsEachPolicysQuorum: with two approval policies, the request page shows
// each policy's terms, and one policy's approver does not meet the other's.
func TestConsoleShowsEachPolicysQuorum(t *testing.T) {
	srv, approvals, cfg, _ := consoleServer(t, nil)
	eng, err := policy.Compile(&policy.Set{
		Resources: []policy.Resource{{Name: "orders", Kind: "postgres"}},
		Teams:     []string{"engineering", "sre", "security"},
		Policies: []policy.Policy{
			{Name: "needs-security", Match: policy.Match{Resources: policy.ResourceSelector{Names: []string{"orders"}}, Actions: []string{"write"}},
				Effect: "require_approval", Quorum: &policy.QuorumSpec{Approvers: policy.Principals{Teams: []string{"security"}}}},
			{Name: "needs-sre", Match: policy.Match{Resources: policy.ResourceSelector{Names: []string{"orders"}}, Actions: []string{"write"}},
				Effect: "require_approval", Quorum: &policy.QuorumSpec{RequiredTeams: []string{"sre"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := cfg.StaticSubject("alice")
	var d policy.Decision
	eng.Evaluate(&policy.Request{Subject: alice, Resource: "orders", Action: &policy.Action{Class: policy.ClassWrite, EstimatedRows: -1}, Time: time.Now()}, &d)
	req, err := approvals.Create(context.Background(), alice, "pgs_test", elevation.Artifact{Resource: "orders", Statement: "UPDATE orders SET status = 'x'",
		Class: "write", EstimatedRows: -1, Quorum: d.Quorum, Snapshot: "snap", Requester: alice.User})
	if err != nil {
		t.Fatal(err)
	}
	bob := newBrowser(t, srv)
	bob.signIn("bob")
	resp, _ := bob.do("POST", "/requests/"+req.ID+"/decide", url.Values{"decision": {"approve"}, "csrf": {bob.csrf("/requests/" + req.ID)}})
	if resp.StatusCode >= 400 {
		t.Fatalf("bob's approval: %d", resp.StatusCode)
	}
	_, page := bob.do("GET", "/requests/"+req.ID, nil)
	for _, want := range []string{"<b>needs-security</b> approvals: 0/1", "<b>needs-sre</b> team sre: 1/1 ✓", "on its own terms"} {
		if !strings.Contains(page, want) {
			t.Errorf("the request page lacks %q", want)
		}
	}
	if r, _ := approvals.Get(context.Background(), req.ID); r.State != elevation.StatePending {
		t.Errorf("one SRE approval met both policies: %s", r.State)
	}
}

// TestConsoleSessionEndsWithItsIDToken: a session made from an ID token ends when the
// token does, however long console.session_ttl is.
func TestConsoleSessionEndsWithItsIDToken(t *testing.T) {
	cfg, err := configs.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audit.Dir = t.TempDir()
	s := &Server{Config: cfg, Log: slog.New(slog.DiscardHandler)}
	s.Handler() // sets up the cookie signer
	exp := time.Now().Add(5 * time.Minute).Truncate(time.Second)
	rec := httptest.NewRecorder()
	id := &identity.Identity{Subject: policy.Subject{User: "bob"}, Source: identity.SourceOIDC, Expiry: exp}
	if err := s.startSession(rec, httptest.NewRequest("GET", "/auth/callback", nil), id); err != nil {
		t.Fatal(err)
	}
	var sess session
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie {
			if err := s.cookies.decode(sessionCookie, c.Value, &sess); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sess.User != "bob" || sess.Expires.After(exp) {
		t.Errorf("session of %q until %v; the ID token ends at %v", sess.User, sess.Expires, exp)
	}
}

// TestConsoleHistoryHidesBreakGlass: the request page's history of the requester's other
// requests shows only what the viewer may see: not their break-glass sessions to an
// approver of an unrelated statement.
func TestConsoleHistoryHidesBreakGlass(t *testing.T) {
	srv, approvals, cfg, _ := consoleServer(t, nil)
	dave, _ := cfg.StaticSubject("dave")
	bg, err := approvals.BreakGlass(context.Background(), cfg, dave, elevation.BreakGlassRequest{
		Scope: elevation.BreakGlassScope{Resources: []string{"orders"}, Actions: []string{"write"}}, Duration: "30m",
		Reason: "INC-9 orders stuck in pending, fixing by hand", Incident: "INC-9"})
	if err != nil {
		t.Fatal(err)
	}
	if bg.Pending() { // a high tier needs a second human: carol, of another team
		carolSubj, _ := cfg.StaticSubject("carol")
		if _, err := approvals.Approve(context.Background(), bg.ID, carolSubj, "go"); err != nil {
			t.Fatal(err)
		}
	}
	req := pendingStatement(t, approvals, dave, "UPDATE orders SET status = 'paid' WHERE id = 4")
	bob := newBrowser(t, srv)
	bob.signIn("bob")
	if _, page := bob.do("GET", "/requests/"+req.ID, nil); !strings.Contains(page, req.ID) || strings.Contains(page, bg.ID) {
		t.Errorf("bob's view of dave's statement request shows dave's break-glass %s", bg.ID)
	}
	carol := newBrowser(t, srv) // security reviews break-glass
	carol.signIn("carol")
	if resp, page := carol.do("GET", "/requests/"+bg.ID, nil); resp.StatusCode != 200 || !strings.Contains(page, bg.ID) {
		t.Errorf("carol, a break-glass reviewer, cannot open it: %d", resp.StatusCode)
	}
	if resp, _ := bob.do("GET", "/requests/"+bg.ID, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob opens dave's break-glass: %d, want 404", resp.StatusCode)
	}
}

// TestConsoleAuditPage: a search by actor returns that actor's events, says which flagged
// events it adds and why, pages newest first with a cursor, and shows a result's
// statement and error.
func TestConsoleAuditPage(t *testing.T) {
	srv, _, _, log := consoleServer(t, nil)
	ctx := context.Background()
	for i := range 60 {
		log.Append(ctx, &audit.Event{Type: "pg.statement", Actor: "alice", Resource: "orders", Action: fmt.Sprintf("SELECT %d", i), Decision: "allow"})
	}
	log.Append(ctx, &audit.Event{Type: "pg.result", Actor: "alice", Resource: "orders", Action: "UPDATE orders SET status = NULL", Result: "error",
		Reason: "23502: null value in column \"status\"", Details: map[string]any{"tag": ""}})
	log.Append(ctx, &audit.Event{Type: "pg.statement", Actor: "bob", Resource: "orders", Action: "SELECT 'bob'", Decision: "allow"})
	log.Append(ctx, &audit.Event{Type: "pg.statement", Actor: "dave", Resource: "orders", Action: "CREATE INDEX ON orders (status)", Decision: "allow", BreakGlass: "apr_BG"})
	carol := newBrowser(t, srv)
	carol.signIn("carol")

	tags := regexp.MustCompile(`<[^>]+>`)
	textOf := func(page string) string { return html.UnescapeString(tags.ReplaceAllString(page, "")) }
	_, page := carol.do("GET", "/audit?actor=bob", nil)
	rows := strings.Count(page, "<tr class=")
	if text := textOf(page); !strings.Contains(text, "SELECT 'bob'") || strings.Contains(text, "SELECT 7") {
		t.Errorf("actor=bob shows other actors' events")
	}
	if rows != 2 || !strings.Contains(page, `id="added"`) || !strings.Contains(page, "never filtered out") || !strings.Contains(textOf(page), "CREATE INDEX") {
		t.Errorf("actor=bob: %d rows; the flagged event should be added, and said so", rows)
	}

	_, page = carol.do("GET", "/audit?actor=alice", nil)
	if n := strings.Count(page, "<tr class="); n != 50 {
		t.Errorf("first page: %d rows, want 50", n)
	}
	if text := textOf(page); !strings.Contains(text, "23502: null value") || !strings.Contains(text, "UPDATE orders SET status = NULL") {
		t.Error("a result row does not show its statement and error")
	}
	m := regexp.MustCompile(`href="(/audit\?[^"]*before=\d+[^"]*)" id="older"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no link to older events")
	}
	_, older := carol.do("GET", html.UnescapeString(m[1]), nil)
	if n := strings.Count(older, "<tr class="); n != 12 || !strings.Contains(textOf(older), "SELECT 0") || strings.Contains(textOf(older), "SELECT 59") || strings.Contains(older, `id="older"`) {
		t.Errorf("second page: %d rows\n%s", n, older)
	}
}

// TestConsoleOrderAndBreakGlassQuorum: the inbox (every view) and the requester's history
// list newest first; a break-glass request says which quorum applies, apart from the
// policies it bypasses.
func TestConsoleOrderAndBreakGlassQuorum(t *testing.T) {
	srv, approvals, cfg, _ := consoleServer(t, nil)
	alice, _ := cfg.StaticSubject("alice")
	var ids []string
	for i := range 3 {
		ids = append(ids, pendingStatement(t, approvals, alice, fmt.Sprintf("UPDATE orders SET status = 'n%d' WHERE id = %d", i, i)).ID)
		time.Sleep(5 * time.Millisecond) // distinct creation times
	}
	bob := newBrowser(t, srv)
	bob.signIn("bob")
	for _, view := range []string{"/", "/?state=all"} {
		_, page := bob.do("GET", view, nil)
		if a, b, c := strings.Index(page, ids[2]), strings.Index(page, ids[1]), strings.Index(page, ids[0]); a < 0 || !(a < b && b < c) {
			t.Errorf("%s is not newest first", view)
		}
	}
	// On the oldest request, the history lists the two others, newest first.
	_, page := bob.do("GET", "/requests/"+ids[0], nil)
	hist := page[strings.Index(page, "recent requests"):]
	if strings.Count(hist, `class="kind kind-statement"`) != 2 || !strings.Contains(hist, "pending") {
		t.Errorf("history:\n%s", hist)
	}
	// The requester reads what it waits for.
	a := newBrowser(t, srv)
	a.signIn("alice")
	if _, page = a.do("GET", "/requests/"+ids[1], nil); !strings.Contains(page, "Waiting for 1 approval from team sre (bob") {
		t.Error("the request page does not say what it waits for")
	}

	// dave breaks glass for writes, which a high-tier policy holds: one approver needed.
	dave := newBrowser(t, srv)
	dave.signIn("dave")
	resp, body := dave.do("POST", "/breakglass", url.Values{"csrf": {dave.csrf("/breakglass")}, "resource": {"orders"}, "action": {"write"},
		"duration": {"30m"}, "incident": {"INC-9"}, "reason": {"orders stuck in checkout, INC-9"}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/requests/") {
		t.Fatalf("break glass at a high tier: %d %s\n%s", resp.StatusCode, loc, body)
	}
	_, page = bob.do("GET", loc, nil)
	for _, want := range []string{"Break-glass at tier <b>high</b>: one approver, anyone but the responder", "What it bypasses", "orders-write-approval", "anyone but dave"} {
		if !strings.Contains(page, want) {
			t.Errorf("the break-glass request page lacks %q", want)
		}
	}
}
