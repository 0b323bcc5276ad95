package httpfront

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/httpx"
	"github.com/portcullis/portcullis/proxy/identity"
)

// Authenticator turns a bearer token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*identity.Identity, error)
}

// ApprovalHeader carries, on a re-sent request, the id of its approved request.
const ApprovalHeader = "Portcullis-Approval"

// ReasonHeader carries why a request is made: approvers see it, policies may require it.
const ReasonHeader = "Portcullis-Reason"

// maxReason bounds a reason, as for SQL sessions.
const maxReason = 500

// approverBodyBytes bounds the body shown to approvers.
const approverBodyBytes = 16 << 10

// maxWait bounds Prefer: wait.
const maxWait = 15 * time.Minute

// Server is the HTTP front end; it is an http.Handler. Set the fields, then serve it.
type Server struct {
	Config *configs.Config
	Auth   Authenticator
	Gate   *gate.Gate
	Audit  *audit.Log
	Log    *slog.Logger
	// Credentials supplies each request's upstream credential (default: the
	// configuration's static headers).
	Credentials elevation.HeaderBroker
	// Transport reaches the upstreams, for resources without TLS settings of their own
	// (default: UpstreamTransport()).
	Transport http.RoundTripper
	Now       func() time.Time
	// HeaderTimeout and ReadTimeout bound how long a client may take to send a request's
	// head, and all of it (defaults 10s and 1m): a slow client is cut off.
	HeaderTimeout, ReadTimeout time.Duration

	// Keys check the console's sign-in tickets and sign the front end's own session
	// cookies (shared with the console); nil: browsers cannot sign in, tokens only.
	Keys *signed.Signer

	once   sync.Once
	byHost map[string]*route
	// Exchange ids: a random prefix per process and a counter.
	idPrefix  string
	exchanges atomic.Uint64
	cop       *http.CrossOriginProtection
	tickets   usedTickets
	mu        sync.Mutex
	hs        *http.Server // set by Serve
	shut      bool         // Shutdown was called
}

// route is one http resource as the front end serves it.
type route struct {
	res     *configs.Resource
	classes []class
	proxy   *httputil.ReverseProxy
	cert    *tls.Certificate // served by SNI on a TLS listener, when configured
	err     error            // the resource could not be set up (its files): answered 502
}

// class is a compiled resources[].http.classes entry.
type class struct {
	methods []string
	paths   []policy.PathPattern
	class   policy.Class
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Transport == nil {
			s.Transport = UpstreamTransport()
		}
		if s.Credentials == nil {
			s.Credentials = elevation.NewStaticBroker(s.Config)
		}
		s.byHost, s.cop = map[string]*route{}, http.NewCrossOriginProtection()
		s.idPrefix = "htx_" + rand.Text()[:8] + "_"
		for i := range s.Config.Resources {
			res := &s.Config.Resources[i]
			if res.Kind != "http" {
				continue
			}
			rt, err := s.newRoute(res)
			if err != nil {
				s.Log.Error("http resource cannot be served", "resource", res.Name, "err", err)
				rt = &route{res: res, err: err}
			}
			for _, h := range res.Hosts {
				s.byHost[strings.ToLower(h)] = rt
			}
		}
	})
}

// UpstreamTransport is http.DefaultTransport's settings with an idle pool sized for a proxy:
// the default keeps 2 idle connections per upstream, so under concurrency every other
// request would open (and the upstream accept, and both later close) a TCP connection.
func UpstreamTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 256
	return tr
}

// newRoute compiles res's classes and builds its reverse proxy, with a transport of its
// own when it has TLS settings.
func (s *Server) newRoute(res *configs.Resource) (*route, error) {
	classes, err := compileClasses(res)
	if err != nil {
		return nil, err
	}
	rt := &route{res: res, classes: classes}
	transport := s.Transport
	if t := res.HTTP.TLS; t != (configs.UpstreamTLS{}) {
		tc, err := httpx.UpstreamTLS(t)
		if err != nil {
			return nil, err
		}
		tr := UpstreamTransport()
		tr.TLSClientConfig = tc
		transport = tr
	}
	if st := res.HTTP.ServerTLS; st != nil {
		cert, err := tls.LoadX509KeyPair(st.CertFile, st.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("server_tls: %w", err)
		}
		rt.cert = &cert
	}
	rt.proxy = s.reverseProxy(res, transport)
	return rt, nil
}

// compileClasses compiles res's http.classes.
func compileClasses(res *configs.Resource) ([]class, error) {
	var out []class
	for _, c := range res.HTTP.Classes {
		cl, err := policy.ParseClass(c.Class)
		if err != nil {
			return nil, err
		}
		k := class{methods: c.Methods, class: cl}
		for _, p := range c.Paths {
			pp, err := policy.CompilePath(p)
			if err != nil {
				return nil, err
			}
			k.paths = append(k.paths, pp)
		}
		out = append(out, k)
	}
	return out, nil
}

// ClassifyFor classifies a request to res as the front end does: the method's class, or
// the first of res's http.classes that matches.
func ClassifyFor(res *configs.Resource, method string, u *url.URL) (*policy.Action, error) {
	classes, err := compileClasses(res)
	if err != nil {
		return nil, err
	}
	return (&route{res: res, classes: classes}).classify(method, u), nil
}

// classify classifies a request and applies the resource's class overrides.
func (rt *route) classify(method string, u *url.URL) *policy.Action {
	act := Classify(method, u)
	for _, c := range rt.classes {
		if len(c.methods) > 0 && !slices.Contains(c.methods, method) {
			continue
		}
		if len(c.paths) > 0 && !slices.ContainsFunc(c.paths, func(p policy.PathPattern) bool { return p.Match(act.Path) }) {
			continue
		}
		act.Class = c.class
		break
	}
	return act
}

// ServeHTTP authenticates, classifies, decides and forwards (or holds, or refuses) one
// request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	r, span := s.Gate.RequestSpan(r, "http.request", attribute.String("server.address", r.Host))
	defer span.End()
	if err := checkFraming(r); err != nil {
		// Content-Length with Transfer-Encoding, or repeated framing fields: a request that
		// two servers could split differently (smuggling). Refused, and the connection closed.
		w.Header().Set("Connection", "close")
		problem(w, http.StatusBadRequest, "ambiguous-framing", "the request has both Content-Length and Transfer-Encoding (or repeats them); send one", nil)
		return
	}
	// Only origin-form requests to a configured host: no CONNECT, no absolute-form.
	if r.Method == http.MethodConnect || !strings.HasPrefix(r.RequestURI, "/") {
		problem(w, http.StatusBadRequest, "bad-request", "Portcullis serves origin-form requests to a configured host only", nil)
		return
	}
	if !canonical(r.URL.EscapedPath()) {
		problem(w, http.StatusBadRequest, "non-canonical-path", "the path has dot segments, empty segments or an encoded slash or backslash; send it in canonical form", nil)
		return
	}
	if r.Header.Get("Upgrade") != "" {
		// A WebSocket (or other upgraded) stream would carry any number of actions under one
		// decision; each request is decided on its own, so upgrades are refused.
		problem(w, http.StatusNotImplemented, "upgrade-refused", "Portcullis does not forward protocol upgrades (WebSocket); each request is decided on its own", nil)
		return
	}
	host := hostOnly(r.Host)
	rt := s.byHost[host]
	st := tlsOf(r)
	switch {
	case rt == nil:
		problem(w, http.StatusNotFound, "unknown-host", fmt.Sprintf("no resource is served on host %q", host), nil)
		return
	case rt.cert != nil && st == nil:
		problem(w, http.StatusBadRequest, "https-required", fmt.Sprintf("%s is served over https only: https://%s", host, r.Host), nil)
		return
	case st != nil && !strings.EqualFold(strings.TrimSuffix(st.ServerName, "."), host):
		// The connection was set up for another host (SNI): a request must not ride it elsewhere.
		problem(w, http.StatusMisdirectedRequest, "misdirected", fmt.Sprintf("this connection was opened for %q, not %q", st.ServerName, host), nil)
		return
	case rt.err != nil:
		problem(w, http.StatusBadGateway, "misconfigured", rt.res.Name+" is not set up correctly; see Portcullis's log", nil)
		return
	}
	res := rt.res
	if r.URL.Path == callbackPath {
		s.callback(w, r, host)
		return
	}
	who := s.authenticate(w, r, host)
	if who == nil {
		return
	}
	body, err := httpx.ReadBody(w, r, res.HTTP.MaxRequestBytes)
	switch {
	case errors.Is(err, httpx.ErrTooLarge):
		problem(w, http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("the request body is larger than %d bytes", res.HTTP.MaxRequestBytes), nil)
		return
	case err != nil: // the client stopped sending, or sent a broken chunked body
		problem(w, http.StatusBadRequest, "bad-body", "the request body could not be read", nil)
		return
	}
	x := &exchange{srv: s, w: w, r: r, rt: rt, res: res, who: who, body: body, id: s.exchangeID(), start: s.Now()}
	x.serve()
}

// exchangeID names the next exchange: the process's prefix and a counter, one allocation.
func (s *Server) exchangeID() string {
	var b [40]byte
	return string(strconv.AppendUint(append(b[:0], s.idPrefix...), s.exchanges.Add(1), 10))
}

// authenticate returns who sent r — by bearer token, or by the host's session cookie
// for a browser — or answers the request and returns nil.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, host string) *identity.Identity {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && tok != "" {
		who, err := s.Auth.Authenticate(r.Context(), tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis", error="invalid_token"`)
			problem(w, http.StatusUnauthorized, "unauthenticated", "the token is not a valid Portcullis token", nil)
			return nil
		}
		return who
	}
	if who := s.fromCookie(r, host); who != nil {
		// A cookie rides along on requests other sites make: refuse cross-origin ones
		// (the browser's Sec-Fetch-Site / Origin) for anything but safe methods.
		if err := s.cop.Check(r); err != nil {
			problem(w, http.StatusForbidden, "cross-origin", "a cross-origin request cannot use your Portcullis session", nil)
			return nil
		}
		return who
	}
	if s.signIn(w, r) {
		return nil
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
	problem(w, http.StatusUnauthorized, "unauthenticated", "a Portcullis token is required: Authorization: Bearer <token>", nil)
	return nil
}

// GetCertificate chooses the certificate of the resource whose host a TLS client names
// (SNI), for a tls.Config on the HTTP listener.
func (s *Server) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.init()
	if rt := s.byHost[hostOnly(hello.ServerName)]; rt != nil && rt.cert != nil {
		return rt.cert, nil
	}
	return nil, fmt.Errorf("no certificate for %q", hello.ServerName)
}

// ServesTLS reports whether any resource is served over TLS.
func (s *Server) ServesTLS() bool {
	s.init()
	for _, rt := range s.byHost {
		if rt.cert != nil {
			return true
		}
	}
	return false
}

// exchange is one request through the front end.
type exchange struct {
	srv   *Server
	w     http.ResponseWriter
	r     *http.Request
	rt    *route
	res   *configs.Resource
	who   *identity.Identity
	body  []byte
	id    string
	start time.Time
	act   *policy.Action
	dec   policy.Decision
	role  string // the credentials' role: an active grant's, or break-glass
}

func (x *exchange) serve() {
	s, r := x.srv, x.r
	x.act = x.rt.classify(r.Method, r.URL)
	x.act.HTTP = &policy.HTTPRequest{RawQuery: r.URL.RawQuery, Header: r.Header, ContentType: httpx.MediaType(r.Header.Get("Content-Type")), Body: x.body}
	v := s.Gate.Decide(r.Context(), &x.who.Subject, x.res.Name, x.act, x.start, &x.dec)
	x.role = v.CredentialRole(x.res)
	ev := x.event()
	if bg := v.BreakGlass; bg != nil {
		ev.BreakGlass, ev.Decision = bg.ID, policy.Allow.String()
		ev.Attrs = append(ev.Attrs, audit.String("original_decision", x.dec.Effect.String()))
		ev.Reason = "break-glass " + bg.ID + " bypassed: " + ev.Reason
	}
	switch v.Effect {
	case policy.Allow:
		// A read changes nothing: its event is written, not waited on for fsync (as the
		// PostgreSQL front end does for reads); anything else is durable before it runs.
		write := s.Audit.Append
		if x.act.Class == policy.ClassRead && ev.BreakGlass == "" {
			write = s.Audit.AppendWritten
		}
		if err := write(r.Context(), ev); err != nil {
			s.Log.Error("audit write failed; request refused", "exchange", x.id, "err", err)
			problem(x.w, http.StatusServiceUnavailable, "audit-unavailable", "not forwarded: the audit log cannot be written", nil)
			return
		}
		x.forward("")
	case policy.Deny:
		ev.Result = "denied"
		x.auditLoudly(ev)
		problem(x.w, http.StatusForbidden, "denied", "denied by Portcullis: "+x.dec.Reason(), map[string]any{"rules": x.dec.RuleNames(), "policy_snapshot": x.dec.Snapshot})
	default:
		x.held(ev)
	}
}

// held answers a request that needs approval: redeemed when it carries an approved
// request's id, else made into a request and answered 202 — or, with Prefer: wait,
// held until it is decided.
func (x *exchange) held(ev *audit.Event) {
	s, r := x.srv, x.r
	art := x.artifact()
	switch {
	case len(art.Reason) > maxReason:
		problem(x.w, http.StatusBadRequest, "reason-too-long", fmt.Sprintf("%s is longer than %d characters", ReasonHeader, maxReason), nil)
		return
	case x.dec.Quorum != nil && x.dec.Quorum.RequireReason && art.Reason == "":
		problem(x.w, http.StatusBadRequest, "reason-required", fmt.Sprintf("this request needs a reason before it can be sent for approval (%s): send the header %s: <why, and a ticket>", x.dec.Reason(), ReasonHeader), nil)
		return
	}
	closed := &gate.Closed{Type: audit.TypeHTTPApprovalClosed, Actor: x.who.User, Resource: x.res.Name, Session: x.id, Action: art.Statement}
	if id := r.Header.Get(ApprovalHeader); id != "" {
		req, err := s.Gate.Redeem(r.Context(), &x.who.Subject, id, art, closed)
		if err != nil {
			x.redeemFailed(id, req, err)
			return
		}
		ev.Decision, ev.Result = policy.Allow.String(), "approved"
		ev.Attrs = append(ev.Attrs, audit.String("approval", req.ID))
		x.auditLoudly(ev)
		x.forward(req.ID)
		return
	}
	req, err := s.Gate.Hold(r.Context(), &x.who.Subject, x.id, art, ev)
	if err != nil {
		problem(x.w, http.StatusServiceUnavailable, "not-recorded", "not forwarded: "+err.Error(), nil)
		return
	}
	wait := preferWait(r.Header)
	if wait <= 0 {
		x.accepted(req)
		return
	}
	// Prefer: wait=N — hold the request until it is decided or N seconds pass; the
	// request stays valid for a re-send either way.
	ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
	defer cancel()
	got, err := s.Gate.Approvals.Wait(ctx, req.ID)
	switch {
	case err != nil:
		x.accepted(req) // still pending
	case got.State == elevation.StateApproved:
		red, err := s.Gate.Redeem(r.Context(), &x.who.Subject, req.ID, art, closed)
		if err != nil {
			x.redeemFailed(req.ID, red, err)
			return
		}
		x.forward(req.ID)
	default:
		x.notApproved(got)
	}
}

// accepted answers 202 with the pending request: its id, where to approve it, how far its
// quorum is, and how to run it once approved.
func (x *exchange) accepted(req *elevation.Request) {
	url := x.srv.Config.Server.RequestURL(req.ID)
	var terms []string
	for _, t := range req.Progress().Terms {
		terms = append(terms, t.String())
	}
	x.w.Header().Set("Retry-After", "5")
	x.w.Header().Set("Location", url)
	writeJSON(x.w, http.StatusAccepted, map[string]any{
		"approval": req.ID, "state": req.State, "url": url, "progress": terms, "expires_at": req.ExpiresAt,
		"detail": fmt.Sprintf("This request needs approval (%s). Once approved, send the identical request again with the header %s: %s; it runs once.",
			x.dec.Reason(), ApprovalHeader, req.ID),
	})
}

// redeemFailed answers a re-sent request whose approval cannot run it.
func (x *exchange) redeemFailed(id string, req *elevation.Request, err error) {
	ext := map[string]any{"approval": id}
	switch {
	case errors.Is(err, gate.ErrPending):
		ext["progress"] = req.Progress().Terms
		problem(x.w, http.StatusConflict, "pending", "approval request "+id+" is still pending", ext)
	case errors.Is(err, gate.ErrNotApproved):
		x.notApproved(req)
	case errors.Is(err, gate.ErrUsed), errors.Is(err, gate.ErrRefused):
		problem(x.w, http.StatusConflict, "used", "approval request "+id+" has run its request already; an approval runs once", ext)
	case errors.Is(err, gate.ErrDiffers):
		problem(x.w, http.StatusConflict, "differs", "this request is not the one approved in "+id+" (method, path, query, body or content type differ, or the policies changed since)", ext)
	case errors.Is(err, elevation.ErrNotFound):
		problem(x.w, http.StatusNotFound, "no-approval", fmt.Sprintf("no approval request %q of yours", id), ext)
	default:
		x.srv.Log.Error("redeeming an approval failed", "exchange", x.id, "approval", id, "err", err)
		problem(x.w, http.StatusServiceUnavailable, "unavailable", "not forwarded: Portcullis could not check the approval", ext)
	}
}

func (x *exchange) notApproved(req *elevation.Request) {
	detail := fmt.Sprintf("approval request %s was %s", req.ID, req.State)
	for _, v := range req.Votes {
		if !v.Approve {
			detail += " by " + v.Approver.User
			if v.Comment != "" {
				detail += ": " + v.Comment
			}
		}
	}
	problem(x.w, http.StatusForbidden, "not-approved", detail, map[string]any{"approval": req.ID, "state": req.State})
}

// forward sends the request upstream with the resource's credential and audits its
// result. approval names the approval it runs under, if any.
func (x *exchange) forward(approval string) {
	ctx, cancel := context.WithTimeout(x.r.Context(), x.res.HTTP.Timeout.D())
	defer cancel()
	rec := &recorder{ResponseWriter: x.w, status: http.StatusOK}
	if x.res.HTTP.Record.Bodies {
		rec.keep = x.res.HTTP.Record.MaxBytes + 1 // one more: over the limit shows
	}
	cred, err := x.srv.Credentials.HeaderCredential(ctx, x.res.Name, x.who.User, x.role, approval != "")
	if err != nil {
		x.srv.Log.Error("no upstream credential; request not forwarded", "exchange", x.id, "resource", x.res.Name, "err", err)
		problem(rec, http.StatusServiceUnavailable, "credential-unavailable", "not forwarded: Portcullis could not get the credential for "+x.res.Name, nil)
	} else {
		released := !cred.Once
		release := func() {
			if released {
				return
			}
			released = true
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := x.srv.Credentials.ReleaseHeader(rctx, cred); err != nil {
				x.srv.Log.Error("could not revoke an approved request's credential; it expires with its TTL", "exchange", x.id, "err", err)
			}
		}
		defer release() // also when the client goes away mid-answer (the proxy panics)
		// A shallow copy: the reverse proxy clones the request (headers too) before changing it.
		r := x.r.WithContext(context.WithValue(ctx, credKey{}, cred))
		r.Body, r.ContentLength = http.NoBody, 0 // a request without a body says so: nothing to probe
		if len(x.body) > 0 {
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(x.body)), int64(len(x.body))
		}
		x.rt.proxy.ServeHTTP(rec, r)
		// A one-use credential is gone before the client sees the end of the answer. The
		// answer is not flushed here: recording its result below does not wait, and an
		// early flush would cost a write and chunked framing on every response.
		release()
	}
	ev := audit.NewEvent()
	ev.Type, ev.Actor, ev.Resource, ev.Session, ev.Action, ev.Result = audit.TypeHTTPResult, x.who.User, x.res.Name, x.id, x.act.Statement, "ok"
	ev.Attrs = append(ev.Attrs, audit.Int("status", int64(rec.status)), audit.Int("bytes", rec.bytes), audit.Int("duration_us", x.srv.Now().Sub(x.start).Microseconds()))
	if rec.status >= 500 {
		ev.Result = "error"
	}
	if r := &x.res.HTTP.Record; r.Bodies {
		h := x.w.Header()
		if b := recordBody(rec.kept, httpx.MediaType(h.Get("Content-Type")), r); b != "" {
			ev.Attrs = append(ev.Attrs, audit.String("response_body", b))
		}
		if hs := recordHeaders(h, r.Headers, x.injectedHeader()); hs != nil {
			ev.Details = map[string]any{"response_headers": hs}
		}
	}
	if approval != "" {
		ev.Attrs = append(ev.Attrs, audit.String("approval", approval))
	}
	x.srv.Audit.Enqueue(ev)
}

// emptySHA256 is the digest of an empty body, the body of most reads.
var emptySHA256 = func() string { sum := sha256.Sum256(nil); return hex.EncodeToString(sum[:]) }()

// bodySHA256 is the hex SHA-256 of the request's body.
func (x *exchange) bodySHA256() string {
	if len(x.body) == 0 {
		return emptySHA256
	}
	sum := sha256.Sum256(x.body)
	return hex.EncodeToString(sum[:])
}

// event is the audit event of the decided request, before anything is forwarded.
func (x *exchange) event() *audit.Event {
	ev := audit.NewEvent()
	ev.Type, ev.Actor, ev.Resource, ev.Session, ev.Action = audit.TypeHTTPRequest, x.who.User, x.res.Name, x.id, x.act.Statement
	ev.Decision, ev.Rules, ev.PolicyHash, ev.Reason = x.dec.Effect.String(), x.dec.RuleNames(), x.dec.Snapshot, x.dec.Reason()
	ev.Attrs = append(ev.Attrs, audit.String("class", x.act.Class.String()), audit.String("method", x.act.Method), audit.String("path", x.act.Path),
		audit.String("body_sha256", x.bodySHA256()), audit.Int("body_bytes", int64(len(x.body))), audit.String("client_addr", x.r.RemoteAddr),
		audit.String("host", x.r.Host))
	if q := x.r.URL.RawQuery; q != "" {
		ev.Attrs = append(ev.Attrs, audit.String("query", q))
	}
	if rec := &x.res.HTTP.Record; rec.Bodies {
		if b := recordBody(x.body, httpx.MediaType(x.r.Header.Get("Content-Type")), rec); b != "" {
			ev.Attrs = append(ev.Attrs, audit.String("request_body", b))
		}
		if h := recordHeaders(x.r.Header, rec.Headers, x.injectedHeader()); h != nil {
			ev.Details = map[string]any{"request_headers": h}
		}
	}
	return ev
}

// artifact is exactly what an approval of this request approves: method, path, query,
// the body's digest and its content type, under the decision's policies.
func (x *exchange) artifact() elevation.Artifact {
	art := elevation.Artifact{Resource: x.res.Name, Statement: x.act.Statement, Class: x.act.Class.String(), Kind: x.act.Kind,
		Params:        []string{"body-sha256=" + x.bodySHA256(), "content-type=" + x.r.Header.Get("Content-Type")},
		EstimatedRows: -1, Quorum: x.dec.Quorum, Snapshot: x.dec.Snapshot, Requester: x.who.User, Reason: strings.TrimSpace(x.r.Header.Get(ReasonHeader)),
		Body: recordBody(x.body, httpx.MediaType(x.r.Header.Get("Content-Type")), &configs.HTTPRecord{MaxBytes: approverBodyBytes, RedactFields: x.res.HTTP.Record.RedactFields})}
	for _, r := range x.dec.Matched {
		art.Rules = append(art.Rules, elevation.RuleRef{Name: r.Name, Effect: r.Effect.String(), Tier: r.Tier.String(), Description: r.Description})
	}
	return art
}

// injectedHeader is the header the resource's credential goes in, if any.
func (x *exchange) injectedHeader() string {
	switch c := x.res.Credentials; {
	case c.Vault != nil:
		return c.Vault.Header
	case c.Static != nil:
		return c.Static.Header
	}
	return ""
}

func (x *exchange) auditLoudly(ev *audit.Event) {
	if err := x.srv.Audit.Append(context.Background(), ev); err != nil {
		x.srv.Log.Error("AUDIT WRITE FAILED; the event is lost", "type", ev.Type, "exchange", x.id, "user", x.who.User, "err", err)
	}
}

// credKey carries a request's upstream credential from forward to the reverse proxy.
type credKey struct{}

func credentialOf(r *http.Request) elevation.HeaderCredential {
	c, _ := r.Context().Value(credKey{}).(elevation.HeaderCredential)
	return c
}

// errEncoded: the upstream answered in a content coding Portcullis cannot read to check
// it for the credential.
var errEncoded = errors.New("the response is in a content coding Portcullis cannot check")

// errResponseTooLarge: the response is over http.max_response_bytes.
var errResponseTooLarge = errors.New("the response is larger than the resource allows")

// limitedBody ends a response body that runs past its bound with an error, which makes
// the reverse proxy cut the response (the client sees it end early, never the rest).
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	// Read one byte more than is left: a body that ends exactly at the bound is whole.
	n, err := b.ReadCloser.Read(p[:min(int64(len(p)), b.left+1)])
	if int64(n) > b.left {
		n, err = int(b.left), errResponseTooLarge
	}
	b.left -= int64(n)
	return n, err
}

// reverseProxy forwards to res's upstream: the caller's credentials and Portcullis's own
// headers stay here, the request's credential is added, and the credential never comes
// back in a response's headers or body, nor in an error.
func (s *Server) reverseProxy(res *configs.Resource, transport http.RoundTripper) *httputil.ReverseProxy {
	target, _ := url.Parse(res.Upstream) // validated by configs
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			for _, h := range []string{"Authorization", ApprovalHeader, ReasonHeader, "Proxy-Authorization"} {
				pr.Out.Header.Del(h)
			}
			stripOwnCookies(pr.Out.Header) // the upstream's own cookies go on
			stripWait(pr.Out.Header)       // Portcullis's own preference; others go on
			if c := credentialOf(pr.In); c.Header != "" {
				pr.Out.Header.Set(c.Header, c.Value)
				// The body must be readable to be checked for the credential: let the
				// transport ask for gzip and decode it, rather than pass the client's codings.
				pr.Out.Header.Del("Accept-Encoding")
			}
		},
		Transport:  s.Gate.Transport(transport),
		BufferPool: httpx.CopyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			if max := res.HTTP.MaxResponseBytes; max > 0 {
				if resp.ContentLength > max {
					return errResponseTooLarge
				}
				resp.Body = &limitedBody{ReadCloser: resp.Body, left: max}
			}
			secret := credentialOf(resp.Request).Secret
			if secret == "" {
				return nil
			}
			for k, vs := range resp.Header {
				for _, v := range vs {
					if strings.Contains(v, secret) {
						resp.Header.Del(k)
					}
				}
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
				return errEncoded
			}
			resp.Body = newRedactReader(resp.Body, secret)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.Log.Warn("upstream request failed", "resource", res.Name, "err", redact(err.Error(), credentialOf(r).Secret))
			var ne net.Error
			switch {
			case errors.Is(err, errResponseTooLarge):
				problem(w, http.StatusBadGateway, "response-too-large", fmt.Sprintf("%s answered with more than %d bytes", res.Name, res.HTTP.MaxResponseBytes), nil)
			case errors.Is(err, errEncoded):
				problem(w, http.StatusBadGateway, "upstream-encoding", res.Name+" answered in a content coding Portcullis cannot check for its credential", nil)
			case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
				problem(w, http.StatusGatewayTimeout, "upstream-timeout", fmt.Sprintf("%s did not answer within %s", res.Name, res.HTTP.Timeout), nil)
			default:
				problem(w, http.StatusBadGateway, "upstream-unavailable", res.Name+" could not be reached", nil)
			}
		},
	}
}

// Classify returns what an HTTP request does: its method gives the class (GET, HEAD and
// OPTIONS read; POST, PUT and PATCH write; DELETE deletes; anything else is unknown).
func Classify(method string, u *url.URL) *policy.Action {
	// Policies see the decoded path: with encoded slashes refused (canonical), decoding
	// is unambiguous, and /orders/%32/refund is /orders/2/refund to them as upstream.
	act := &policy.Action{Kind: method, Method: method, Path: u.Path, EstimatedRows: -1}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		act.Class = policy.ClassRead
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		act.Class = policy.ClassWrite
	case http.MethodDelete:
		act.Class = policy.ClassDelete
	default:
		act.Class = policy.ClassUnknown
	}
	act.Statement = method + " " + u.RequestURI()
	return act
}

// canonical reports whether an escaped request path is in canonical form: no "." or ".."
// segments (encoded or not), no empty segments but a trailing one, no encoded "/" or "\",
// no backslash. A policy on /admin/** must not be walked around by /x/../admin.
func canonical(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
		return false
	}
	lower := strings.ToLower(p)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		dec, err := url.PathUnescape(seg)
		switch {
		case err != nil, dec == ".", dec == "..":
			return false
		case seg == "" && i != len(segs)-1:
			return false
		}
	}
	return true
}

// preferWait reads Prefer: wait=N (RFC 7240).
func preferWait(h http.Header) time.Duration {
	for _, v := range h.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "wait") {
				if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil && n > 0 {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	return 0
}

// stripWait removes the wait preference from Prefer headers, keeping any others
// (return=minimal, ...).
func stripWait(h http.Header) {
	vals := h.Values("Prefer")
	if len(vals) == 0 {
		return
	}
	var keep []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if k, _, _ := strings.Cut(strings.TrimSpace(p), "="); !strings.EqualFold(strings.TrimSpace(k), "wait") && strings.TrimSpace(p) != "" {
				keep = append(keep, strings.TrimSpace(p))
			}
		}
	}
	h.Del("Prefer")
	if len(keep) > 0 {
		h.Set("Prefer", strings.Join(keep, ", "))
	}
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// recorder notes the status and size of a response as it passes, and keeps its first
// keep bytes for the recording.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
	keep   int64
	kept   []byte
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	if room := r.keep - int64(len(r.kept)); room > 0 {
		r.kept = append(r.kept, b[:min(int64(len(b)), room)]...)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush lets streamed responses through as they come.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
