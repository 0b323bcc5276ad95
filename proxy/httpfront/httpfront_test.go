package httpfront

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/web"
)

const upstreamSecret = "Bearer upstream-secret-xyz"

const testConfig = `version: 1
server: {public_url: http://portcullis.test}
identity:
  static_tokens:
    - {subject: alice, groups: [engineering], token_sha256: %x}
    - {subject: bob, groups: [sre], token_sha256: %x}
teams:
  - {name: engineering, groups: [engineering]}
  - {name: sre, groups: [sre]}
resources:
  - name: admin
    kind: http
    upstream: %s
    hosts: [admin.test]
    http: {max_request_bytes: 1024, timeout: 1s}
    credentials: {static: {header: Authorization, value: "` + upstreamSecret + `"}}
  - name: down
    kind: http
    upstream: http://127.0.0.1:%d
    hosts: [down.test]
policies:
  - name: admin-read
    match: {resources: {names: [admin, down]}, actions: [read]}
    effect: allow
  - name: admin-write
    description: writes need SRE
    match: {resources: {names: [admin]}, actions: [write]}
    effect: require_approval
    quorum: {required_teams: [sre], timeout: 1m}
  - name: admin-delete
    description: no deletes through Portcullis
    match: {resources: {names: [admin]}, actions: [delete]}
    effect: deny
`

// seen is what the upstream received.
type seen struct {
	method, path, auth, cookie, body string
	traceparent                      string
}

type env struct {
	t         testing.TB
	front     *front
	srv       *Server
	approvals *elevation.Approvals
	cfg       *configs.Config
	mu        sync.Mutex
	got       []seen
	slow      atomic.Bool
	quiet     atomic.Bool // the upstream keeps no record of what it saw (benchmarks)
	upURL     string
	api       *httptest.Server // the console's API over the same audit log and approvals
	keys      *signed.Signer   // shared with the console: its sign-in tickets
}

func newEnv(t *testing.T) *env { return newEnvConfig(t, nil) }

// newServer returns a front end for cfg over a new audit log (in cfg.Audit.Dir) and
// approval store, with creds as its credential broker (nil: the static headers).
func newServer(t testing.TB, cfg *configs.Config, creds elevation.HeaderBroker) *Server {
	cfg.Audit.Dir = t.TempDir()
	log, err := audit.Open(audit.Options{Dir: cfg.Audit.Dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	store, err := elevation.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	approvals := elevation.NewApprovals(store, nil)
	auth, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Config: cfg, Auth: auth, Gate: &gate.Gate{Config: cfg, Approvals: approvals, Audit: log}, Audit: log,
		Credentials: creds, Keys: signed.New("test-session-key")}
}

// front is a front end served as Portcullis serves it (Server.Serve on a listener).
type front struct{ URL, Addr string }

func serveFront(t testing.TB, s *Server) *front {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return &front{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String()}
}

// benchEnv is newEnv with writes under /bench allowed, and the upstream's URL.
type benchEnv struct {
	*env
	upstream string
}

func newBenchEnv(t testing.TB) *benchEnv {
	e := newEnvConfig(t, func(y string) string {
		y = strings.Replace(y, "max_request_bytes: 1024, timeout: 1s", "max_request_bytes: 1048576, timeout: 10s", 1)
		// Writes under /bench are allowed: the held-writes policy keeps to the rest.
		y = strings.Replace(y, "match: {resources: {names: [admin]}, actions: [write]}", `match: {resources: {names: [admin]}, actions: [write], paths: ["/orders/**", "/flags/**"]}`, 1)
		return y + `  - name: bench-writes
    match: {resources: {names: [admin]}, actions: [write], paths: ["/bench/**"]}
    effect: allow
`
	})
	e.quiet.Store(true)
	return &benchEnv{env: e, upstream: e.upURL}
}

// newEnvConfig is newEnv with the configuration changed by mutate first.
func newEnvConfig(t testing.TB, mutate func(string) string) *env {
	e := &env{t: t}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !e.quiet.Load() {
			e.mu.Lock()
			e.got = append(e.got, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Cookie"), string(b), r.Header.Get("Traceparent")})
			e.mu.Unlock()
		}
		if e.slow.Load() {
			time.Sleep(2 * time.Second)
		}
		// An upstream that echoes its credential must not leak it.
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok": true, "method": %q}`, r.Method)
	}))
	t.Cleanup(up.Close)
	e.upURL = up.URL
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	port := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	y := fmt.Sprintf(testConfig, sha256.Sum256([]byte("alice-token")), sha256.Sum256([]byte("bob-token")), up.URL, port)
	if mutate != nil {
		y = mutate(y)
	}
	cfg, err := configs.Parse("http.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	s := newServer(t, cfg, nil)
	e.srv, e.approvals, e.keys = s, s.Gate.Approvals, s.Keys
	e.front = serveFront(t, s)
	e.api = httptest.NewServer((&web.Server{Config: cfg, Auth: s.Auth, Approvals: e.approvals, Audit: s.Audit}).Handler())
	t.Cleanup(e.api.Close)
	return e
}

// do sends a request for host as user (no token when user is "").
func (e *env) do(host, user, method, path, body string, header ...string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.front.URL+path, strings.NewReader(body))
	req.Host = host
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+user+"-token")
	}
	req.Header.Set("Cookie", "theirs=1; portcullis_session=console-secret; portcullis_http=front-secret")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

func (e *env) upstreamSaw() []seen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]seen(nil), e.got...)
}

func TestAllowDenyAndCredentials(t *testing.T) {
	e := newEnv(t)
	resp, out := e.do("admin.test", "alice", "GET", "/orders?status=new", "")
	if resp.StatusCode != 200 || out["method"] != "GET" {
		t.Fatalf("allowed read: %d %v", resp.StatusCode, out)
	}
	got := e.upstreamSaw()
	if len(got) != 1 || got[0].path != "/orders?status=new" || got[0].auth != upstreamSecret || got[0].cookie != "theirs=1" {
		t.Errorf("the upstream saw %+v: want the resource's credential and its own cookie, not the caller's token or Portcullis's cookies", got)
	}
	if v := resp.Header.Get("X-Echo-Auth"); v != "" {
		t.Errorf("the injected credential came back to the client: %q", v)
	}

	resp, out = e.do("admin.test", "alice", "DELETE", "/orders/7", "")
	if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(out["detail"].(string), "admin-delete") {
		t.Errorf("denied: %d %v", resp.StatusCode, out)
	}
	if len(e.upstreamSaw()) != 1 {
		t.Error("a denied request reached the upstream")
	}
}

func TestHeldRequestRunsOnceWhenResent(t *testing.T) {
	e := newEnv(t)
	const body = `{"amount": 12}`
	resp, out := e.do("admin.test", "alice", "POST", "/orders/2/refund", body, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted || out["approval"] == nil || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("held write: %d %v", resp.StatusCode, out)
	}
	id := out["approval"].(string)
	if !strings.HasSuffix(out["url"].(string), "/requests/"+id) {
		t.Errorf("202 without the request page: %v", out)
	}
	if len(e.upstreamSaw()) != 0 {
		t.Fatal("a held request reached the upstream")
	}
	// Re-sent before approval: 409, pending.
	if resp, out := e.do("admin.test", "alice", "POST", "/orders/2/refund", body, "Content-Type", "application/json", ApprovalHeader, id); resp.StatusCode != 409 || !strings.Contains(out["type"].(string), "pending") {
		t.Errorf("re-sent while pending: %d %v", resp.StatusCode, out)
	}
	alice, _ := e.cfg.StaticSubject("alice")
	if _, err := e.approvals.Approve(context.Background(), id, alice, ""); err == nil {
		t.Fatal("self-approval accepted")
	}
	bob, _ := e.cfg.StaticSubject("bob")
	if _, err := e.approvals.Approve(context.Background(), id, bob, "ok"); err != nil {
		t.Fatal(err)
	}
	// Another body, or another caller, with the id: refused.
	if resp, _ := e.do("admin.test", "alice", "POST", "/orders/2/refund", `{"amount": 1200}`, "Content-Type", "application/json", ApprovalHeader, id); resp.StatusCode != 409 {
		t.Errorf("a different body under the approval: %d", resp.StatusCode)
	}
	if resp, _ := e.do("admin.test", "bob", "POST", "/orders/2/refund", body, "Content-Type", "application/json", ApprovalHeader, id); resp.StatusCode != 404 {
		t.Errorf("another caller presenting alice's approval: %d", resp.StatusCode)
	}
	resp, out = e.do("admin.test", "alice", "POST", "/orders/2/refund", body, "Content-Type", "application/json", ApprovalHeader, id)
	if resp.StatusCode != 200 || out["method"] != "POST" {
		t.Fatalf("re-sent after approval: %d %v", resp.StatusCode, out)
	}
	if resp, _ := e.do("admin.test", "alice", "POST", "/orders/2/refund", body, "Content-Type", "application/json", ApprovalHeader, id); resp.StatusCode != 409 {
		t.Errorf("re-sent a second time: %d, want 409", resp.StatusCode)
	}
	got := e.upstreamSaw()
	if len(got) != 1 || got[0].body != body {
		t.Errorf("the upstream saw %+v, want the approved request once", got)
	}
}

func TestPreferWaitResumesOnApproval(t *testing.T) {
	e := newEnv(t)
	bob, _ := e.cfg.StaticSubject("bob")
	var approved time.Time
	go func() {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			all, _ := e.approvals.List(context.Background())
			if len(all) == 1 && all[0].Pending() {
				approved = time.Now()
				e.approvals.Approve(context.Background(), all[0].ID, bob, "")
				return
			}
		}
	}()
	resp, out := e.do("admin.test", "alice", "PUT", "/flags/checkout", `{"on": true}`, "Prefer", "wait=10")
	if resp.StatusCode != 200 || out["method"] != "PUT" {
		t.Fatalf("Prefer: wait: %d %v", resp.StatusCode, out)
	}
	if d := time.Since(approved); d > time.Second {
		t.Errorf("resumed %v after the approval, want within 1s", d)
	}
	// A wait that ends first answers 202: still pending, redeemable later.
	resp, out = e.do("admin.test", "alice", "PUT", "/flags/search", `{"on": true}`, "Prefer", "wait=1")
	if resp.StatusCode != http.StatusAccepted || out["state"] != "pending" {
		t.Errorf("a wait that ran out: %d %v", resp.StatusCode, out)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	if resp, _ := e.do("admin.test", "", "GET", "/orders", ""); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	if resp, _ := e.do("admin.test", "mallory", "GET", "/orders", ""); resp.StatusCode != 401 {
		t.Errorf("a bad token: %d", resp.StatusCode)
	}
	if resp, _ := e.do("nowhere.test", "alice", "GET", "/orders", ""); resp.StatusCode != 404 {
		t.Errorf("an unknown host: %d", resp.StatusCode)
	}
	for _, p := range []string{"/x/../orders", "/orders/%2e%2e/admin", "/orders//2", "/orders%2F2", "/a/./b"} {
		if resp, _ := e.do("admin.test", "alice", "GET", p, ""); resp.StatusCode != 400 {
			t.Errorf("non-canonical path %s: %d, want 400", p, resp.StatusCode)
		}
	}
	if resp, _ := e.do("admin.test", "alice", "POST", "/orders", strings.Repeat("x", 2048)); resp.StatusCode != 413 {
		t.Errorf("an oversized body: %d", resp.StatusCode)
	}
	if resp, _ := e.do("down.test", "alice", "GET", "/", ""); resp.StatusCode != 502 {
		t.Errorf("upstream down: %d", resp.StatusCode)
	}
	e.slow.Store(true)
	if resp, _ := e.do("admin.test", "alice", "GET", "/slow", ""); resp.StatusCode != 504 {
		t.Errorf("slow upstream: %d", resp.StatusCode)
	}
	e.slow.Store(false)
	// Absolute-form and CONNECT, over a raw connection (framing: TestAmbiguousFraming).
	for _, raw := range []string{
		"GET http://admin.test/orders HTTP/1.1\r\nHost: admin.test\r\nAuthorization: Bearer alice-token\r\n\r\n",
		"CONNECT admin.test:443 HTTP/1.1\r\nHost: admin.test:443\r\nAuthorization: Bearer alice-token\r\n\r\n",
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.front.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		b := make([]byte, 64)
		n, _ := c.Read(b)
		c.Close()
		if !strings.HasPrefix(string(b[:n]), "HTTP/1.1 400") {
			t.Errorf("%q: answered %q, want 400", strings.SplitN(raw, "\r\n", 2)[0], b[:n])
		}
	}
	for _, s := range e.upstreamSaw() {
		if s.path == "/orders" && s.method == "POST" {
			t.Error("a refused request reached the upstream")
		}
	}
}

// FuzzClassify: any method and request target classify without panic, into a known
// class, and the statement names the method and the target as sent.
func FuzzClassify(f *testing.F) {
	for _, s := range [][2]string{{"GET", "/orders?x=1"}, {"POST", "/orders/2/refund"}, {"DELETE", "/a/%2e%2e/b"}, {"BREW", "*"}, {"get", "//x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		act := Classify(method, u)
		if act.Method != method || !strings.HasPrefix(act.Statement, method+" ") {
			t.Fatalf("%q %q: %+v", method, target, act)
		}
		switch act.Class.String() {
		case "read", "write", "delete", "unknown":
		default:
			t.Fatalf("%q: class %s", method, act.Class)
		}
	})
}

func TestStripWait(t *testing.T) {
	for in, want := range map[string]string{
		"wait=10":                 "",
		"return=minimal, wait=5":  "return=minimal",
		"respond-async, Wait = 3": "respond-async",
		"return=representation":   "return=representation",
	} {
		h := http.Header{"Prefer": {in}}
		stripWait(h)
		if got := h.Get("Prefer"); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestExchangesAreSessions: each HTTP exchange is listed in the sessions API beside SQL
// sessions, and its recording replays the decision and the result.
func TestExchangesAreSessions(t *testing.T) {
	e := newEnv(t)
	if resp, _ := e.do("admin.test", "alice", "GET", "/orders/5", ""); resp.StatusCode != 200 {
		t.Fatalf("read: %d", resp.StatusCode)
	}
	get := func(path string, out any) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.api.URL+path, nil)
		req.Header.Set("Authorization", "Bearer alice-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(out)
	}
	var list struct {
		Sessions []struct{ ID, Kind, Resource, Result string }
	}
	var id string
	for deadline := time.Now().Add(5 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		get("/api/v1/sessions", &list) // the result event is queued, not waited for
		for _, s := range list.Sessions {
			if s.Kind == "http" && s.Resource == "admin" && s.Result == "ok" {
				id = s.ID
			}
		}
	}
	if id == "" {
		t.Fatalf("the exchange is not listed as a finished http session: %+v", list)
	}
	var rec struct {
		Recording []struct{ Type, Statement, Decision string }
	}
	get("/api/v1/sessions/"+id+"/recording", &rec)
	if len(rec.Recording) != 2 || rec.Recording[0].Type != "http.request" || rec.Recording[0].Statement != "GET /orders/5" || rec.Recording[0].Decision != "allow" || rec.Recording[1].Type != "http.result" {
		t.Errorf("recording: %+v", rec.Recording)
	}
}
