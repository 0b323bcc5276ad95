package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/identity"
)

// Authenticator turns the password a client sends into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*identity.Identity, error)
}

// Server is the PostgreSQL front end. Set the fields, then call Serve.
type Server struct {
	Config    *configs.Config
	Auth      Authenticator
	Broker    elevation.CredentialBroker
	Approvals *elevation.Approvals
	Audit     *audit.Log
	Log       *slog.Logger
	// TLS answers SSLRequest; nil declines it.
	TLS *tls.Config
	// MaxMessageSize bounds one client or upstream message (default 64 MiB).
	MaxMessageSize int
	// StartupTimeout bounds the time from accept to a ready session (default 10s).
	StartupTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// PipelineWait bounds how long a decision waits for the answers to an earlier
	// pipeline before deciding the names they could change as unknown (default 3s).
	PipelineWait time.Duration
	// DialUpstream dials PostgreSQL for a session (default: a net.Dialer bounded by
	// StartupTimeout).
	DialUpstream pgconn.DialFunc
	// Tracer, when set, makes a span per session, per statement, for its decision, its
	// approval wait and its run upstream (nil: no tracing, no cost).
	Tracer trace.Tracer

	initOnce sync.Once
	cache    *classCache
	funcs    functions
	gate     *gate.Gate
	mu       sync.Mutex
	sessions map[uint32]*session // by backend process id we gave the client
	closed   bool
	lns      []net.Listener
	wg       sync.WaitGroup
	outcomes sync.WaitGroup // outcomes being recorded on approval requests
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.MaxMessageSize <= 0 {
			s.MaxMessageSize = DefaultMaxMessageSize
		}
		if s.StartupTimeout <= 0 {
			s.StartupTimeout = 10 * time.Second
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		s.cache = newClassCache(50_000)
		s.gate = &gate.Gate{Config: s.Config, Approvals: s.Approvals, Audit: s.Audit, Log: s.Log, Tracer: s.Tracer}
		s.sessions = map[uint32]*session{}
	})
}

// Serve accepts connections on ln until Close. Cleartext passwords are accepted without
// TLS only when ln listens on a loopback address.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	loopback := isLoopback(ln.Addr())
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(conn, loopback)
		}()
	}
}

// Classify returns what sql does on the PostgreSQL resource named resource, decided as
// a session's statement is: what the upstream declares about its functions included, and
// the rows an UPDATE or DELETE touches when a policy reads the estimate. The decisions
// API asks it so as to decide as the proxy does. ok is false for no such resource.
func (s *Server) Classify(resource, sql string) (act *policy.Action, ok bool) {
	s.init()
	res := s.resource(resource)
	if res == nil {
		return nil, false
	}
	act = s.refine(res, s.cache.classify(sql), "")
	if s.Config.Engine.NeedsEstimate(res.Name, act.Class) && estimable(act) {
		role := ""
		if v := res.Credentials.Vault; v != nil {
			role = v.ApprovedRole
		}
		act.EstimatedRows = s.estimate(res, role, sql, nil, nil, "")
	}
	return act, true
}

// Close stops accepting, ends every session and waits for them.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for _, ss := range s.sessions {
		ss.kill()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.outcomes.Wait()
	return nil
}

// Shutdown stops accepting connections and drains the sessions. Each ends as soon as it is
// idle — no answer owed, no transaction block open, no message being handled — with a
// FATAL 57P01 that says Portcullis is shutting down, so the client connects again (to
// another replica behind the load balancer) between statements, never inside one. A
// statement waiting for approval is told the same and its request withdrawn. Sessions
// still busy when ctx ends are cut, as Close does. It returns when every session has
// ended, with ctx's error if some had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		s.mu.Lock()
		live := make([]*session, 0, len(s.sessions))
		for _, ss := range s.sessions {
			live = append(live, ss)
		}
		s.mu.Unlock()
		if len(live) == 0 {
			break
		}
		if ctx.Err() != nil {
			err = ctx.Err()
			for _, ss := range live {
				ss.kill()
			}
			break
		}
		for _, ss := range live {
			ss.drain()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	s.wg.Wait()
	s.outcomes.Wait()
	return err
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// register gives a session a unique backend key.
func (s *Server) register(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var b [8]byte
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, dup := s.sessions[pid]; pid != 0 && !dup {
			ss.pid, ss.secret = pid, b[4:]
			s.sessions[pid] = ss
			return
		}
	}
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[ss.pid] == ss {
		delete(s.sessions, ss.pid)
	}
}

// cancel handles a CancelRequest: a statement waiting for approval is withdrawn; a
// running one is cancelled upstream.
func (s *Server) cancel(pid uint32, secret []byte) {
	s.mu.Lock()
	ss := s.sessions[pid]
	s.mu.Unlock()
	if ss == nil || subtle.ConstantTimeCompare(ss.secret, secret) != 1 {
		return // as PostgreSQL does, say nothing either way
	}
	ss.cancel()
}
