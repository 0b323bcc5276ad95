package kubefront

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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
	"github.com/portcullis/portcullis/internal/selfsigned"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/httpx"
	"github.com/portcullis/portcullis/proxy/identity"
)

// Authenticator turns a bearer token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*identity.Identity, error)
}

// approverBodyBytes bounds the object shown to approvers.
const approverBodyBytes = 16 << 10

// Server is the front end of one kubernetes resource: an https listener that speaks the
// Kubernetes API to kubectl and client-go tools, decides each request through the gate,
// and forwards it to the API server — as the caller, by impersonation, or with
// Portcullis's own credential (access: fixed) — streaming watches and logs as they come.
// Set the fields, then Serve.
type Server struct {
	Config   *configs.Config
	Resource *configs.Resource
	Auth     Authenticator
	Gate     *gate.Gate
	Audit    *audit.Log
	Log      *slog.Logger
	// Credentials supplies Portcullis's own credential for the API server (default: the
	// resource's static header).
	Credentials elevation.HeaderBroker
	// Tokens mints the service-account tokens of requests an elevation grant or a
	// break-glass session allows, when the resource has Vault roles for them (nil: those
	// run impersonated, with their roles as groups).
	Tokens TokenBroker
	Now    func() time.Time

	once      sync.Once
	initErr   error
	proxy     *httputil.ReverseProxy
	upstream  *url.URL
	transport http.RoundTripper
	cert      tls.Certificate
	caPEM     []byte
	idPrefix  string
	n         atomic.Uint64
	mu        sync.Mutex
	hs        *http.Server
	tokens    map[string]*grantToken // grant id -> its token
	stop      chan struct{}          // closed by Shutdown: grant tokens are revoked
	wg        sync.WaitGroup         // grant watchers
}

func (s *Server) init() error {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Credentials == nil {
			s.Credentials = elevation.NewStaticBroker(s.Config)
		}
		s.idPrefix = "kbx_" + rand.Text()[:8] + "_"
		s.stop = make(chan struct{})
		s.initErr = s.setUp()
	})
	return s.initErr
}

// setUp loads or makes the listener's certificate and builds the reverse proxy.
func (s *Server) setUp() error {
	k := &s.Resource.Kubernetes
	if st := k.ServerTLS; st != nil {
		cert, err := tls.LoadX509KeyPair(st.CertFile, st.KeyFile)
		if err != nil {
			return fmt.Errorf("kubernetes.server_tls: %w", err)
		}
		s.cert = cert
	} else {
		host, _, _ := net.SplitHostPort(k.Listen)
		var hosts []string
		if u, err := url.Parse(s.Resource.KubePublicURL()); err == nil {
			hosts = append(hosts, u.Hostname())
		}
		cert, err := selfsigned.Certificate(append(hosts, host)...)
		if err != nil {
			return err
		}
		s.cert = cert
	}
	// Kubeconfigs trust the last certificate of the chain served: the CA when the file
	// holds the chain, the certificate itself when it is self-signed or alone.
	chain := s.cert.Certificate
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[len(chain)-1]})

	up, err := url.Parse(s.Resource.Upstream)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	tc, err := httpx.UpstreamTLS(k.TLS)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 64
	// Streams (exec and attach) switch protocols, which HTTP/2 cannot: they go over HTTP/1.1.
	h1 := tr.Clone()
	h1.ForceAttemptHTTP2, h1.TLSNextProto = false, map[string]func(string, *tls.Conn) http.RoundTripper{}
	if h1.TLSClientConfig != nil {
		h1.TLSClientConfig = h1.TLSClientConfig.Clone()
		h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	s.upstream, s.transport = up, tr
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			x := pr.In.Context().Value(exchangeKey{}).(*exchange)
			x.rewrite(pr.Out.Header)
		},
		Transport:     s.Gate.Transport(byUpgrade{plain: tr, upgrade: h1}),
		FlushInterval: -1, // watches and logs -f: every chunk as it comes
		BufferPool:    httpx.CopyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode != http.StatusSwitchingProtocols {
				return nil
			}
			// An exec or attach stream: recorded, or not run.
			x := resp.Request.Context().Value(exchangeKey{}).(*exchange)
			backend, ok := resp.Body.(io.ReadWriteCloser)
			spdy := strings.EqualFold(resp.Header.Get("Upgrade"), spdyUpgrade) && strings.EqualFold(x.r.Header.Get("Upgrade"), spdyUpgrade)
			proto, forward := resp.Header.Get("Sec-WebSocket-Protocol"), x.attrs.Subresource == "portforward"
			tunnel := !spdy && forward && proto == portForwardTunnel
			if x.cast == nil || !ok || !(spdy || tunnel || !forward && slices.Contains(recordedProtocols, proto)) {
				resp.Body.Close()
				return errUnrecordable
			}
			resp.Body, x.upgraded = newTap(backend, x.cast, spdy, tunnel, forward), true
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			x := r.Context().Value(exchangeKey{}).(*exchange)
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				x.status = 499 // the client went away, or a grant's end cut the request
				return
			}
			if errors.Is(err, errUnrecordable) {
				x.status = http.StatusBadGateway
				status(w, http.StatusBadGateway, "InternalError", "the API server switched to a stream protocol Portcullis does not record; the session was not opened", nil)
				return
			}
			s.Log.Warn("the API server could not be reached", "resource", s.Resource.Name, "exchange", x.id, "err", err)
			status(w, http.StatusBadGateway, "ServiceUnavailable", "Portcullis could not reach the API server of "+s.Resource.Name, nil)
		},
	}
	return nil
}

// CAPEM is the certificate kubeconfigs trust for this front end's listener.
func (s *Server) CAPEM() ([]byte, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	return s.caPEM, nil
}

// Serve accepts https connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.init(); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
	}
	s.mu.Lock()
	s.hs = hs
	s.mu.Unlock()
	return hs.ServeTLS(ln, "", "")
}

// Shutdown stops accepting and waits for open requests until ctx ends; watches and other
// streams still open then are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	hs := s.hs
	s.mu.Unlock()
	var err error
	if hs != nil {
		if err = hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
	}
	// Grant tokens do not outlive the server that minted them.
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	return err
}

// ServeHTTP authenticates, classifies, decides and forwards (or holds, or refuses) one
// Kubernetes API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.init(); err != nil {
		s.Log.Error("kubernetes resource cannot be served", "resource", s.Resource.Name, "err", err)
		status(w, http.StatusBadGateway, "ServiceUnavailable", s.Resource.Name+" is not set up correctly; see Portcullis's log", nil)
		return
	}
	r, span := s.Gate.RequestSpan(r, "k8s.request", attribute.String("portcullis.resource", s.Resource.Name))
	defer span.End()
	who := s.authenticate(w, r)
	if who == nil {
		return
	}
	x := &exchange{srv: s, w: w, r: r, res: s.Resource, who: who, id: s.idPrefix + strconv.FormatUint(s.n.Add(1), 10), start: s.Now()}
	x.serve()
}

// authenticate returns who sent r, or answers 401 and returns nil.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *identity.Identity {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		status(w, http.StatusUnauthorized, "Unauthorized", "a Portcullis token is required: use a kubeconfig from `portcullis kubeconfig`, which runs `portcullis kube-credential`", nil)
		return nil
	}
	who, err := s.Auth.Authenticate(r.Context(), tok)
	if err != nil {
		status(w, http.StatusUnauthorized, "Unauthorized", "the token is not a valid Portcullis token; sign in again (portcullis login)", nil)
		return nil
	}
	return who
}

// exchange is one API request through the front end.
type exchange struct {
	srv   *Server
	w     http.ResponseWriter
	r     *http.Request
	res   *configs.Resource
	who   *identity.Identity
	id    string
	start time.Time
	body  []byte
	attrs Attributes
	act   *policy.Action
	dec   policy.Decision
	v     gate.Verdict
	// Set for the forward: Portcullis's credential, and whether the request runs under an
	// approval.
	cred     elevation.HeaderCredential
	approved bool
	status   int
	// serviceAccount is set when the request runs as a grant's service account.
	serviceAccount string
	// stream is set when the request asks to switch protocols (exec, attach, port-forward).
	stream bool
	// offer is the WebSocket subprotocols offered upstream for an exec, attach or
	// port-forward, which cast records once the API server switches protocols (upgraded).
	offer    []string
	cast     *cast
	upgraded bool
	// unrecordable says why an upgrade (a port-forward, a base64 WebSocket) would not be
	// recorded.
	unrecordable string
	// cut says why Portcullis ended the request's stream (its grant ended).
	cut atomic.Pointer[string]
}

// cutMessage is what a client is told when Portcullis ends its stream.
func cutMessage(why string) string {
	return "Portcullis ended this stream: " + why + "; request access again to go on"
}

// endWatch tells a JSON watch that was cut why, as the API server tells a watch it ends: an
// ERROR event carrying a Status (kubectl prints its message).
func (x *exchange) endWatch(rec *recorder, why string) {
	if rec.status != http.StatusOK || x.attrs.Verb != "watch" || !strings.Contains(rec.Header().Get("Content-Type"), "json") {
		return
	}
	b, _ := json.Marshal(map[string]any{"type": "ERROR", "object": map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": cutMessage(why), "reason": "Forbidden", "code": http.StatusForbidden}})
	if _, err := rec.ResponseWriter.Write(append(b, '\n')); err == nil {
		http.NewResponseController(rec.ResponseWriter).Flush()
	}
}

// refuseUnrecordable answers a stream Portcullis would not record: it does not run.
func (x *exchange) refuseUnrecordable(ev *audit.Event) {
	ev.Result, ev.Reason = "refused", x.unrecordable
	x.auditLoudly(ev)
	status(x.w, http.StatusForbidden, "Forbidden", x.unrecordable, nil)
}

// exchangeKey carries the exchange from forward to the reverse proxy's Rewrite.
type exchangeKey struct{}

func (x *exchange) serve() {
	s, r := x.srv, x.r
	var class policy.Class
	x.attrs, class = Classify(r)
	x.stream = isUpgrade(r)
	x.act = x.action(class)
	if hasPrefixHeader(r.Header, "Impersonate-") {
		// Portcullis itself acts as the caller; a caller acting as someone else through it
		// would borrow Portcullis's right to impersonate.
		ev := x.event()
		ev.Decision, ev.Result, ev.Reason = policy.Deny.String(), "denied", "impersonation (kubectl --as) is not possible through Portcullis"
		x.auditLoudly(ev)
		status(x.w, http.StatusForbidden, "Forbidden", "impersonation (kubectl --as, --as-group) is not possible through Portcullis: requests run as you", nil)
		return
	}
	body, err := httpx.ReadBody(x.w, r, x.res.Kubernetes.MaxRequestBytes)
	switch {
	case errors.Is(err, httpx.ErrTooLarge):
		status(x.w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", fmt.Sprintf("the request body is larger than %d bytes", x.res.Kubernetes.MaxRequestBytes), nil)
		return
	case err != nil:
		status(x.w, http.StatusBadRequest, "BadRequest", "the request body could not be read", nil)
		return
	}
	x.body = body
	x.act.HTTP = &policy.HTTPRequest{RawQuery: r.URL.RawQuery, Header: r.Header, ContentType: httpx.MediaType(r.Header.Get("Content-Type")), Body: x.body}
	x.v = s.Gate.Decide(r.Context(), &x.who.Subject, x.res.Name, x.act, x.start, &x.dec)
	ev := x.event()
	if bg := x.v.BreakGlass; bg != nil {
		ev.BreakGlass, ev.Decision = bg.ID, policy.Allow.String()
		ev.Attrs = append(ev.Attrs, audit.String("original_decision", x.dec.Effect.String()))
		ev.Reason = "break-glass " + bg.ID + " bypassed: " + ev.Reason
	}
	if x.stream {
		// exec, attach and port-forward are streams into a container: they are recorded,
		// and a stream Portcullis cannot record does not run (fail closed). One that needs
		// approval is still held (the request is the same whatever protocol a client
		// offers), but only a recordable re-run runs it.
		x.offer, x.unrecordable = recordableUpgrade(r, x.attrs.Subresource)
		if x.unrecordable != "" && x.v.Effect == policy.Allow {
			x.refuseUnrecordable(ev)
			return
		}
	}
	switch x.v.Effect {
	case policy.Allow:
		// A read changes nothing: its event is written, not waited on for fsync; anything
		// else is durable before it runs.
		write := s.Audit.Append
		if x.act.Class == policy.ClassRead && ev.BreakGlass == "" {
			write = s.Audit.AppendWritten
		}
		if err := write(r.Context(), ev); err != nil {
			s.Log.Error("audit write failed; request refused", "exchange", x.id, "err", err)
			status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: the audit log cannot be written", nil)
			return
		}
		x.forward("")
	case policy.Deny:
		ev.Result = "denied"
		x.auditLoudly(ev)
		status(x.w, http.StatusForbidden, "Forbidden", fmt.Sprintf("%s: denied by Portcullis: %s", x.describe(), x.dec.Reason()),
			&details{Causes: causes("policy", x.dec.RuleNames())})
	default:
		x.held(ev)
	}
}

// action is the policy action of the request.
func (x *exchange) action(class policy.Class) *policy.Action {
	a := x.attrs
	method := x.r.Method
	if x.stream {
		// An exec or attach is the same request whether kubectl opens it as a WebSocket
		// (GET) or, falling back, over SPDY (POST): one approval covers either.
		method = "CONNECT"
	}
	return &policy.Action{Class: class, Kind: a.Verb, Statement: method + " " + x.r.URL.RequestURI(), Method: x.r.Method, Path: x.r.URL.Path,
		Namespace: a.Namespace, EstimatedRows: -1,
		Kube: &policy.KubeRequest{Verb: a.Verb, Group: a.Group, Version: a.Version, Resource: a.Kind, Subresource: a.Subresource, Name: a.Name}}
}

// describe is the request as kubectl users think of it: "delete configmaps/orders-config
// in prod".
func (x *exchange) describe() string {
	a := x.attrs
	if !a.Resource {
		return a.Verb + " " + a.Path
	}
	what := a.Kind
	if a.Group != "" {
		what += "." + a.Group
	}
	if a.Name != "" {
		what += "/" + a.Name
	}
	if a.Subresource != "" {
		what += " (" + a.Subresource + ")"
	}
	if a.Namespace != "" {
		what += " in " + a.Namespace
	}
	return a.Verb + " " + what
}

// held answers a request that needs approval. A re-run of a request approved for this
// caller runs it, once; a re-run while it waits says so; otherwise a request is made and
// the caller told (hold: answer) or kept waiting (hold: wait).
func (x *exchange) held(ev *audit.Event) {
	s, r := x.srv, x.r
	art := x.artifact()
	closed := &gate.Closed{Type: audit.TypeKubeApprovalClosed, Actor: x.who.User, Resource: x.res.Name, Session: x.id, Action: art.Statement}
	prior, err := x.priorRequest(art.Hash())
	if err != nil {
		s.Log.Error("could not look up approval requests", "exchange", x.id, "err", err)
		status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: Portcullis could not read its approval requests", nil)
		return
	}
	if prior != nil && prior.State == elevation.StatePending {
		status(x.w, http.StatusForbidden, "ApprovalPending", fmt.Sprintf("%s is still waiting for approval (%s): request %s, %s (%s). Re-run the same command once it is approved.",
			x.describe(), x.dec.Reason(), prior.ID, progress(prior), s.Config.Server.RequestURL(prior.ID)), approvalDetails(prior))
		return
	}
	if prior != nil && x.unrecordable != "" { // approved, but this stream would not be recorded
		x.refuseUnrecordable(ev)
		return
	}
	if prior != nil { // approved: this is the re-run it waited for
		req, err := s.Gate.Redeem(r.Context(), &x.who.Subject, prior.ID, art, closed)
		if err != nil {
			x.redeemFailed(prior.ID, err)
			return
		}
		ev.Decision, ev.Result = policy.Allow.String(), "approved"
		ev.Attrs = append(ev.Attrs, audit.String("approval", req.ID))
		if err := s.Audit.Append(r.Context(), ev); err != nil {
			s.Log.Error("audit write failed; approved request refused", "exchange", x.id, "err", err)
			status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: the audit log cannot be written", nil)
			return
		}
		x.forward(req.ID)
		return
	}
	req, err := s.Gate.Hold(r.Context(), &x.who.Subject, x.id, art, ev)
	if err != nil {
		status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: "+err.Error(), nil)
		return
	}
	if x.res.Kubernetes.Hold != configs.KubeHoldWait || x.unrecordable != "" {
		status(x.w, http.StatusForbidden, "ApprovalRequired", fmt.Sprintf("%s needs approval (%s): request %s, %s. Approve at %s, then re-run the same command; it runs once.",
			x.describe(), x.dec.Reason(), req.ID, progress(req), s.Config.Server.RequestURL(req.ID)), approvalDetails(req))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), x.res.Kubernetes.HoldTimeout.D())
	defer cancel()
	got, err := s.Gate.Await(ctx, req, closed)
	var withdrawn *gate.Withdrawn
	switch {
	case err == nil:
		x.forward(got.ID)
	case errors.Is(err, gate.ErrNotApproved):
		status(x.w, http.StatusForbidden, "Forbidden", fmt.Sprintf("approval request %s was %s%s", got.ID, got.State, denial(got)), approvalDetails(got))
	case errors.As(err, &withdrawn):
		status(x.w, http.StatusGatewayTimeout, "Timeout", fmt.Sprintf("approval request %s was not decided within %s; it is withdrawn", req.ID, x.res.Kubernetes.HoldTimeout.D()), approvalDetails(req))
	default:
		status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: "+err.Error(), approvalDetails(req))
	}
}

// priorRequest finds the caller's newest approval request for exactly this artifact that
// is pending or approved and unused, or nil.
func (x *exchange) priorRequest(hash string) (*elevation.Request, error) {
	all, err := x.srv.Gate.Approvals.List(x.r.Context())
	if err != nil {
		return nil, err
	}
	var best *elevation.Request
	for _, req := range all {
		if req.Type != elevation.TypeStatement || req.Requester.User != x.who.User || req.ArtifactHash != hash {
			continue
		}
		if req.State != elevation.StatePending && req.State != elevation.StateApproved {
			continue
		}
		if best == nil || req.CreatedAt.After(best.CreatedAt) {
			best = req
		}
	}
	return best, nil
}

// redeemFailed answers a re-run whose approval cannot run it.
func (x *exchange) redeemFailed(id string, err error) {
	switch {
	case errors.Is(err, gate.ErrUsed), errors.Is(err, gate.ErrRefused), errors.Is(err, gate.ErrDiffers):
		status(x.w, http.StatusConflict, "Conflict", fmt.Sprintf("approval request %s cannot run this request: %v; run the command again to ask anew", id, err), nil)
	default:
		x.srv.Log.Error("redeeming an approval failed", "exchange", x.id, "approval", id, "err", err)
		status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: Portcullis could not check the approval", nil)
	}
}

// forward sends the request to the API server and audits its result once the answer (or
// the stream) ends. approval names the approval it runs under, if any.
func (x *exchange) forward(approval string) {
	s := x.srv
	x.approved = approval != ""
	cred, err := x.credential()
	if err != nil {
		s.Log.Error("no credential for the API server; request not forwarded", "exchange", x.id, "err", err)
		status(x.w, http.StatusServiceUnavailable, "ServiceUnavailable", "not forwarded: Portcullis could not get its credential for "+x.res.Name, nil)
		return
	}
	x.cred = cred
	rec := &recorder{ResponseWriter: x.w, status: http.StatusOK, keep: x.approved}
	ctx := context.WithValue(x.r.Context(), exchangeKey{}, x)
	cut := &x.cut
	if g := x.boundGrant(); g != nil {
		// A stream opened under a grant (a watch, logs -f, exec) ends with the grant.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		stop := s.untilGrantEnds(g, func(why string) { cut.Store(&why); cancel() })
		defer stop()
		defer cancel()
	}
	r := x.r.WithContext(ctx)
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(x.body)), int64(len(x.body))
	if x.stream && x.unrecordable == "" {
		x.cast = newCast(x) // an exec, attach or port-forward Portcullis records
	}
	// The reverse proxy panics (http.ErrAbortHandler) when the client goes away mid-stream,
	// or the stream is cut: the result is written either way.
	defer func() {
		if cred.Once {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.Credentials.ReleaseHeader(rctx, cred); err != nil {
				s.Log.Error("could not revoke an approved request's credential; it expires with its TTL", "exchange", x.id, "err", err)
			}
			cancel()
		}
		if x.status != 0 {
			rec.status = x.status
		}
		ev := &audit.Event{Type: audit.TypeKubeResult, Actor: x.who.User, Resource: x.res.Name, Session: x.id, Action: x.act.Statement,
			Result: "ok", Details: map[string]any{"status": rec.status, "bytes": rec.bytes, "duration_us": s.Now().Sub(x.start).Microseconds()}}
		var castErr error
		if x.cast != nil {
			castErr = x.cast.finish()
			if x.upgraded {
				ev.Details["status"], ev.Details["recorded"] = http.StatusSwitchingProtocols, true
				code, msg := x.cast.exitCode()
				ev.Details["exit_code"] = code
				if msg != "" {
					ev.Details["exit_message"] = msg
				}
			}
		}
		switch p := recover(); {
		case cut.Load() != nil:
			ev.Result, ev.Reason = "cut", *cut.Load()
			if !x.upgraded {
				x.endWatch(rec, *cut.Load())
			}
		case castErr != nil:
			ev.Result, ev.Reason = "error", castErr.Error()
		case p != nil:
			ev.Result, ev.Reason = "aborted", "the stream ended before the answer did (the client went away)"
			defer panic(p)
		case rec.status >= 400:
			ev.Result = "error"
		}
		if approval != "" {
			ev.Details["approval"] = approval
			x.recordOutcome(approval, rec)
		}
		if x.serviceAccount != "" {
			ev.Details["service_account"] = x.serviceAccount
		}
		s.Audit.Enqueue(ev)
	}()
	s.proxy.ServeHTTP(rec, r)
}

// boundGrant is the grant whose privilege the request runs with, if any: the break-glass
// session that allowed it, or the grant of the caller's elevation role in use.
func (x *exchange) boundGrant() *elevation.Request {
	if x.v.BreakGlass != nil {
		return x.v.BreakGlass
	}
	if len(x.v.Grants) == 0 || x.approved {
		return nil
	}
	role := x.v.CredentialRole(x.res)
	if role == "" {
		role = x.v.Grants[0]
	}
	g, err := x.grantFor(role)
	if err != nil {
		return nil
	}
	return g
}

// recordOutcome records what became of an approved request on it: the API server's
// status, and its message when it refused.
func (x *exchange) recordOutcome(id string, rec *recorder) {
	o := elevation.Outcome{Result: elevation.OutcomeRan, Tag: fmt.Sprintf("HTTP %d", rec.status), At: x.srv.Now()}
	if rec.status >= 400 {
		o.Result, o.Code, o.Message = elevation.OutcomeFailed, fmt.Sprintf("HTTP %d", rec.status), statusMessage(rec.kept)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := x.srv.Gate.Approvals.RecordOutcome(ctx, id, o); err != nil {
		x.srv.Log.Error("could not record an approved request's outcome", "exchange", x.id, "approval", id, "err", err)
	}
}

// credential is what the request authenticates to the API server with: for a request
// allowed by a grant whose role has a Vault path, the grant's own service-account token;
// otherwise Portcullis's credential (with impersonation, by identify).
func (x *exchange) credential() (elevation.HeaderCredential, error) {
	s := x.srv
	role := x.v.CredentialRole(x.res)
	if role == "" || s.Tokens == nil || x.approved {
		return s.Credentials.HeaderCredential(x.r.Context(), x.res.Name, x.who.User, role, x.approved)
	}
	grant, err := x.grantFor(role)
	if err != nil {
		return elevation.HeaderCredential{}, err
	}
	c, err := s.grantCredential(x.r.Context(), grant, role)
	if err != nil {
		return elevation.HeaderCredential{}, err
	}
	x.serviceAccount = c.Username
	return elevation.HeaderCredential{Header: "Authorization", Value: "Bearer " + c.Password, Secret: c.Password}, nil
}

// rewrite sets the outgoing request's identity headers for the exchange as decided.
func (x *exchange) rewrite(h http.Header) {
	x.identify(h, x.cred, x.approved)
	if x.offer != nil {
		h.Set("Sec-WebSocket-Protocol", strings.Join(x.offer, ", "))
	}
}

// identify sets a request's identity headers: none of the caller's credentials,
// Portcullis's own credential, and — unless access is fixed and nothing is elevated — the
// caller impersonated, with their teams and roles (active grants' included) as groups and
// the approved or break-glass groups when those apply.
func (x *exchange) identify(h http.Header, cred elevation.HeaderCredential, approved bool) {
	h.Del("Authorization")
	for k := range h {
		if strings.HasPrefix(k, "Impersonate-") {
			delete(h, k)
		}
	}
	if cred.Header != "" {
		h.Set(cred.Header, cred.Value)
	}
	if x.serviceAccount != "" {
		return // the grant's service account acts as itself
	}
	k := &x.res.Kubernetes
	var extra []string
	switch {
	case x.v.BreakGlass != nil:
		extra = k.BreakGlassGroups
	case approved:
		extra = k.ApprovedGroups
	}
	if k.Access == configs.KubeFixed && len(extra) == 0 && len(x.v.Grants) == 0 {
		return
	}
	h.Set("Impersonate-User", x.who.User)
	var groups []string
	for _, g := range slices.Concat(x.v.Subject.Teams, x.v.Subject.Roles, extra) {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		h.Add("Impersonate-Group", g)
	}
}

// emptySHA256 is the digest of an empty body.
var emptySHA256 = func() string { sum := sha256.Sum256(nil); return hex.EncodeToString(sum[:]) }()

func (x *exchange) bodySHA256() string {
	if len(x.body) == 0 {
		return emptySHA256
	}
	sum := sha256.Sum256(x.body)
	return hex.EncodeToString(sum[:])
}

// event is the audit event of the decided request, before anything is forwarded.
func (x *exchange) event() *audit.Event {
	a := x.attrs
	ev := audit.NewEvent()
	ev.Type, ev.Actor, ev.Resource, ev.Session, ev.Action = audit.TypeKubeRequest, x.who.User, x.res.Name, x.id, x.act.Statement
	ev.Decision, ev.Rules, ev.PolicyHash, ev.Reason = x.dec.Effect.String(), x.dec.RuleNames(), x.dec.Snapshot, x.dec.Reason()
	ev.Attrs = append(ev.Attrs, audit.String("class", x.act.Class.String()), audit.String("verb", a.Verb), audit.String("method", x.r.Method),
		audit.String("path", x.r.URL.Path), audit.String("body_sha256", x.bodySHA256()), audit.Int("body_bytes", int64(len(x.body))),
		audit.String("client_addr", x.r.RemoteAddr), audit.String("user_agent", x.r.UserAgent()))
	for _, f := range [...]struct{ k, v string }{{"query", x.r.URL.RawQuery}, {"group", a.Group}, {"resource", a.Kind},
		{"subresource", a.Subresource}, {"namespace", a.Namespace}, {"name", a.Name}} {
		if f.v != "" {
			ev.Attrs = append(ev.Attrs, audit.String(f.k, f.v))
		}
	}
	return ev
}

// artifact is exactly what an approval of this request approves: method, path and query,
// the body's digest and content type, under the decision's policies. Approvers see the
// object sent (a Secret's never).
func (x *exchange) artifact() elevation.Artifact {
	art := elevation.Artifact{Resource: x.res.Name, Statement: x.act.Statement, Class: x.act.Class.String(), Kind: x.describe(),
		Params:        []string{"body-sha256=" + x.bodySHA256(), "content-type=" + x.r.Header.Get("Content-Type")},
		EstimatedRows: -1, Quorum: x.dec.Quorum, Snapshot: x.dec.Snapshot, Requester: x.who.User, Body: x.approverBody(), Preview: x.preview()}
	for _, r := range x.dec.Matched {
		art.Rules = append(art.Rules, elevation.RuleRef{Name: r.Name, Effect: r.Effect.String(), Tier: r.Tier.String(), Description: r.Description})
	}
	return art
}

// approverBody is the request body as approvers see it.
func (x *exchange) approverBody() string {
	switch {
	case len(x.body) == 0:
		return ""
	case x.attrs.Kind == "secrets":
		return fmt.Sprintf("(a Secret's data is not shown: %d bytes)", len(x.body))
	case len(x.body) > approverBodyBytes:
		return fmt.Sprintf("(%d bytes, too large to show)", len(x.body))
	case !strings.Contains(httpx.MediaType(x.r.Header.Get("Content-Type")), "json") && !strings.Contains(httpx.MediaType(x.r.Header.Get("Content-Type")), "yaml"):
		return fmt.Sprintf("(%d bytes of %s)", len(x.body), x.r.Header.Get("Content-Type"))
	}
	return string(x.body)
}

func (x *exchange) auditLoudly(ev *audit.Event) {
	if err := x.srv.Audit.Append(context.Background(), ev); err != nil {
		x.srv.Log.Error("AUDIT WRITE FAILED; the event is lost", "type", ev.Type, "exchange", x.id, "user", x.who.User, "err", err)
	}
}

// byUpgrade sends requests that switch protocols over HTTP/1.1, the rest as usual.
type byUpgrade struct{ plain, upgrade http.RoundTripper }

func (t byUpgrade) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Upgrade") != "" {
		return t.upgrade.RoundTrip(r)
	}
	return t.plain.RoundTrip(r)
}

// errUnrecordable: the API server answered an upgrade with a stream Portcullis cannot record.
var errUnrecordable = errors.New("unrecordable stream")

// isUpgrade reports whether r asks to switch protocols (exec, attach and port-forward use
// SPDY or WebSocket).
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// recorder notes the status and size of the answer as it streams.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	keep   bool   // keep the answer's first bytes (an approved request's, for its outcome)
	kept   []byte // up to 4 KiB
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	if r.keep && len(r.kept) < 4<<10 {
		r.kept = append(r.kept, b[:min(len(b), 4<<10-len(r.kept))]...)
	}
	return n, err
}

// Unwrap lets the reverse proxy flush (watches) through the recorder.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
