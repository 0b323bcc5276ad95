package pgwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/identity"
)

// Startup request codes (in place of the protocol version).
const (
	codeCancel  = 80877102
	codeSSL     = 80877103
	codeGSSENC  = 80877104
	maxStartup  = 10000
	protocol30  = 3 << 16
	upstreamApp = "portcullis"
)

// passedParams are the startup parameters passed on upstream. Others — notably options,
// which could set a role or any setting out of sight of policy — are dropped.
var passedParams = []string{"application_name", "client_encoding", "DateStyle", "TimeZone", "extra_float_digits", "IntervalStyle", "search_path"}

// startupError ends a connection during startup with a FATAL error to the client.
type startupError struct {
	code, msg, hint string
}

func (e *startupError) Error() string { return e.msg }

func fatal(code, format string, args ...any) error {
	return &startupError{code: code, msg: fmt.Sprintf(format, args...)}
}

// serveConn runs one client connection from accept to close.
func (s *Server) serveConn(conn net.Conn, loopback bool) {
	defer conn.Close()
	var ss *session
	defer func() {
		if p := recover(); p != nil {
			// A bug must cost this session only, not the process and every other session.
			s.Log.Error("a PostgreSQL session failed; it is closed", "remote", conn.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
			if ss != nil && ss.up != nil {
				ss.up.Close()
			}
		}
	}()
	conn.SetDeadline(time.Now().Add(s.StartupTimeout))
	ss, err := s.startup(conn, loopback)
	if err != nil {
		var se *startupError
		switch {
		case errors.As(err, &se):
			// The startup deadline may be what ended the startup (an upstream slow to
			// connect): the client still gets the error, not a bare close.
			c := ss.clientConnOr(conn)
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			w := bufio.NewWriter(c)
			w.Write(encode(errorResponse("FATAL", se.code, se.msg, "", se.hint)))
			w.Flush()
			s.Log.Info("pg connection refused", "remote", conn.RemoteAddr().String(), "code", se.code, "reason", se.msg)
		case errors.Is(err, errHandled), errors.Is(err, io.EOF):
		default:
			s.Log.Info("pg startup failed", "remote", conn.RemoteAddr().String(), "err", err)
		}
		if ss != nil && ss.up != nil {
			ss.up.Close()
		}
		return
	}
	ss.client.SetDeadline(time.Time{})
	ss.run()
}

// errHandled ends a connection that needs no answer (a cancel request).
var errHandled = errors.New("handled")

// startup negotiates TLS, authenticates the client, connects upstream and completes the
// handshake. The returned session is non-nil, even with an error, once TLS may have been
// negotiated, so that the error goes out on the right connection.
func (s *Server) startup(conn net.Conn, loopback bool) (*session, error) {
	ss := &session{srv: s, client: conn, remote: conn.RemoteAddr().String()}
	br := bufio.NewReaderSize(conn, 8192)
	secure := false
	var params map[string]string
	for params == nil {
		body, err := readStartup(br)
		if err != nil {
			return ss, err
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == codeSSL:
			if s.TLS == nil || secure {
				conn.Write([]byte{'N'})
				continue
			}
			if br.Buffered() > 0 {
				return ss, fatal(codeProtocolViolation, "data after SSLRequest before the TLS handshake")
			}
			conn.Write([]byte{'S'})
			tc := tls.Server(conn, s.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			conn, ss.client, secure = tc, tc, true
			br = bufio.NewReaderSize(conn, 8192)
		case code == codeGSSENC:
			conn.Write([]byte{'N'})
		case code == codeCancel:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err == nil {
				s.cancel(cr.ProcessID, cr.SecretKey)
			}
			return nil, errHandled
		case code>>16 == 3:
			var sm pgproto3.StartupMessage
			if err := sm.Decode(body); err != nil {
				return ss, fatal(codeProtocolViolation, "malformed startup message: %v", err)
			}
			params = sm.Parameters
			if code != protocol30 {
				// We speak 3.0; say so, as PostgreSQL does for newer minor versions.
				conn.Write(encode(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0}))
			}
		default:
			return ss, fatal(codeProtocolViolation, "unsupported frontend protocol %d.%d", code>>16, code&0xffff)
		}
	}
	ss.cr = &reader{r: br, max: s.MaxMessageSize}
	ss.cw = bufio.NewWriterSize(conn, 32<<10)
	ss.clientUser, ss.database = params["user"], params["database"]
	ss.reason = startupReason(params)
	if utf8.RuneCountInString(ss.reason) > maxReason {
		return ss, fatal(codeInvalidParameter, "portcullis.reason is too long: at most %d characters", maxReason)
	}

	if params["replication"] != "" && params["replication"] != "false" {
		return ss, fatal(codeInvalidAuthorization, "replication connections are not supported through Portcullis")
	}
	if !secure && !loopback {
		return ss, fatal(codeInvalidAuthorization, "Portcullis accepts tokens only over TLS on this listener; connect with sslmode=require")
	}

	// The password is the Portcullis token.
	ss.cw.Write(encode(&pgproto3.AuthenticationCleartextPassword{}))
	if err := ss.cw.Flush(); err != nil {
		return nil, err
	}
	typ, body, err := ss.cr.next()
	if err != nil {
		return nil, err
	}
	var pw pgproto3.PasswordMessage
	if typ != 'p' || pw.Decode(body) != nil {
		return ss, fatal(codeProtocolViolation, "expected a password message")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.StartupTimeout)
	defer cancel()
	who, err := s.Auth.Authenticate(ctx, pw.Password)
	if err != nil {
		s.auditStartup(ss, "denied", "invalid token")
		return ss, &startupError{code: codeInvalidPassword, msg: "password authentication failed: the password must be a valid Portcullis token", hint: "use the token from `portcullis token` (or your static token) as the password"}
	}
	ss.who = who
	// The resource is named only to someone who showed a token: the list of them is for
	// callers, not strangers.
	if ss.res = s.resource(params["database"]); ss.res == nil {
		s.auditStartup(ss, "denied", "no such resource")
		return ss, &startupError{code: codeInvalidCatalog, msg: fmt.Sprintf("no PostgreSQL resource named %q; the database name selects the resource", params["database"]),
			hint: s.resourcesFor(who)}
	}

	if err := s.connectUpstream(ctx, ss, params); err != nil {
		s.auditStartup(ss, "error", err.Error())
		return ss, err
	}
	s.register(ss)
	ss.id = fmt.Sprintf("pgs_%08x", ss.pid)
	if err := s.auditStartup(ss, "ok", ""); err != nil {
		s.unregister(ss)
		return ss, fatal(codeInternal, "the audit log cannot be written; refusing the session")
	}

	// Complete the client's handshake with the upstream's parameters and our own key.
	ss.cw.Write(encode(&pgproto3.AuthenticationOk{}))
	for _, k := range slices.Sorted(maps.Keys(ss.upParams)) {
		ss.cw.Write(encode(&pgproto3.ParameterStatus{Name: k, Value: ss.upParams[k]}))
	}
	ss.cw.Write(encode(&pgproto3.BackendKeyData{ProcessID: ss.pid, SecretKey: ss.secret}))
	if u := ss.clientUser; u != "" && u != who.User && u != who.Email {
		ss.cw.Write(encode(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
			Message: fmt.Sprintf("Portcullis: you connected as user %q, but the token is %s's: this session acts as %s", u, who.User, who.User),
			Detail:  "Portcullis decides, audits and asks approvals as the identity the token proves; the user name is not used.",
			Hint:    fmt.Sprintf("Connect with -U %s, or with your own token.", who.User)}))
	}
	ss.cw.Write(encode(&pgproto3.ReadyForQuery{TxStatus: ss.txStatus}))
	if err := ss.cw.Flush(); err != nil {
		s.unregister(ss)
		return nil, err
	}
	return ss, nil
}

func readStartup(br *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > maxStartup {
		return nil, fatal(codeProtocolViolation, "invalid startup packet length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, fmt.Errorf("truncated startup packet: %w", err)
	}
	return body, nil
}

// resourcesFor lists the PostgreSQL resources who may use: those where some policy lets
// them read, or asks an approval for it.
func (s *Server) resourcesFor(who *identity.Identity) string {
	var names []string
	var d policy.Decision
	for _, r := range s.Config.Resources {
		if r.Kind != "postgres" {
			continue
		}
		s.Config.Engine.Evaluate(&policy.Request{Subject: &who.Subject, Resource: r.Name, Action: &policy.Action{Class: policy.ClassRead, Kind: "SELECT", EstimatedRows: -1}, Time: s.Now()}, &d)
		if d.Effect != policy.Deny {
			names = append(names, r.Name)
		}
	}
	if len(names) == 0 {
		return "No PostgreSQL resource lets you read; ask the owners of its policies."
	}
	return "Resources you may use (as the database name): " + strings.Join(names, ", ") + "."
}

func (s *Server) resource(name string) *configs.Resource {
	for i := range s.Config.Resources {
		if r := &s.Config.Resources[i]; r.Name == name && r.Kind == "postgres" {
			return r
		}
	}
	return nil
}

// connectUpstream opens the session's own upstream connection with the broker's
// credentials (pgconn does the upstream authentication) and takes it over.
func (s *Server) connectUpstream(ctx context.Context, ss *session, params map[string]string) error {
	// A grant whose role has credentials of its own for this resource elevates the session.
	role := ""
	if v := ss.res.Credentials.Vault; v != nil {
		grants, err := s.Approvals.Grants(ctx, ss.who.User, s.Now())
		if err != nil {
			s.Log.Error("could not read elevation grants", "err", err)
		}
		for _, g := range grants {
			// An elevation's role, or for break-glass the "breakglass" path.
			r := g.Artifact.Role
			if g.Type == elevation.TypeBreakGlass {
				r = configs.BreakGlassCredentials
			}
			if _, ok := v.Roles[r]; ok && slices.ContainsFunc(g.Artifact.Grants, func(gs elevation.GrantScope) bool { return slices.Contains(gs.Resources, ss.res.Name) }) {
				role, ss.grant = r, g
				break
			}
		}
	}
	creds, err := s.Broker.Credentials(ctx, ss.res.Name, role)
	if err != nil {
		s.Log.Error("no upstream credentials", "resource", ss.res.Name, "role", role, "err", err)
		if errors.Is(err, elevation.ErrVaultUnavailable) {
			return fatal(codeConnectionFailure, "could not get credentials for resource %s: the secrets backend is unavailable; try again shortly", ss.res.Name)
		}
		return fatal(codeConnectionFailure, "Portcullis has no credentials for resource %s", ss.res.Name)
	}
	ss.creds = creds
	if v := ss.res.Credentials.Vault; v != nil && role == "" {
		ss.approvedRole = v.ApprovedRole
	}
	release := true
	defer func() {
		if release {
			s.Broker.Release(context.Background(), creds)
		}
	}()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(creds.Username, creds.Password), Host: ss.res.Upstream, Path: "/" + ss.res.Database}
	q := url.Values{"sslmode": {"prefer"}, "connect_timeout": {strconv.Itoa(int(s.StartupTimeout.Seconds()))}}
	u.RawQuery = q.Encode()
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		return fatal(codeConnectionFailure, "resource %s has an unusable upstream address", ss.res.Name)
	}
	for _, k := range passedParams {
		if v, ok := params[k]; ok {
			cfg.RuntimeParams[k] = v
		}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = upstreamApp
	}
	if s.DialUpstream != nil {
		cfg.DialFunc = s.DialUpstream
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		s.Log.Warn("upstream connection failed", "resource", ss.res.Name, "upstream", ss.res.Upstream, "err", err)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return fatal(codeConnectionFailure, "could not connect to resource %s: the upstream refused the connection (%s)", ss.res.Name, pgErr.Code)
		}
		return fatal(codeConnectionFailure, "could not connect to resource %s: the upstream is unreachable", ss.res.Name)
	}
	// pgconn reads in the background while a write of its is slow (the startup or the
	// password message, when the machine is busy): that reader may still be blocked in a
	// Read of the connection, and would take the answer to the session's first statement
	// for itself. SyncConn stops it and drains what it buffered before we take the
	// connection over.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return fatal(codeConnectionFailure, "could not connect to resource %s: the upstream connection did not settle", ss.res.Name)
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return fmt.Errorf("could not take over the upstream connection: %w", err)
	}
	release = false
	deadline := s.Now().Add(30 * 24 * time.Hour) // until the session ends
	if ss.grant != nil {
		deadline = ss.grant.NotAfter
	}
	s.Broker.KeepAlive(creds, deadline)
	ss.up = hc.Conn
	ss.upPID, ss.upSecret = hc.PID, hc.SecretKey
	ss.upParams, ss.txStatus = hc.ParameterStatuses, hc.TxStatus
	ss.ur = &reader{r: bufio.NewReaderSize(hc.Conn, 32<<10), max: s.MaxMessageSize}
	ss.uw = bufio.NewWriterSize(hc.Conn, 32<<10)
	return nil
}

func (s *Server) auditStartup(ss *session, result, reason string) error {
	ev := &audit.Event{Type: audit.TypePGSessionStart, Resource: ss.database, Session: ss.id, Result: result, Reason: reason,
		Details: map[string]any{"client_addr": ss.remote, "client_user": ss.clientUser}}
	if ss.grant != nil {
		ev.Details["grant"], ev.Details["role"] = ss.grant.ID, ss.grant.Artifact.Role
	}
	if ss.who != nil {
		ev.Actor = ss.who.User
	}
	return s.Audit.Append(context.Background(), ev)
}

// clientConnOr returns the session's client connection (TLS once negotiated) or c.
func (ss *session) clientConnOr(c net.Conn) net.Conn {
	if ss != nil && ss.client != nil {
		return ss.client
	}
	return c
}
