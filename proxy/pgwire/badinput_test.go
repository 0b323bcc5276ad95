package pgwire_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/pgwire"
)

// stillServes checks that the listener still accepts a normal session.
func stillServes(t *testing.T, e *env) {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.dsn("alice", "orders"))
	if err != nil {
		t.Fatalf("the listener stopped serving: %v", err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("the listener stopped serving: %v", err)
	}
}

// rawSession opens a raw, authenticated session as alice and returns its connection and
// frontend.
func rawSession(t *testing.T, e *env) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	return rawSessionAs(t, e, "alice", "orders", 10*time.Second)
}

// rawSessionAs opens a raw, authenticated session as user on resource db, closed when the
// test ends, with a deadline for all its reads and writes.
func rawSessionAs(t testing.TB, e *env, user, db string, deadline time.Duration) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	pc, err := pgconn.Connect(ctx, e.dsn(user, db))
	if err != nil {
		t.Fatalf("the listener stopped serving: %v", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	hc.Conn.SetDeadline(time.Now().Add(deadline))
	return hc.Conn, hc.Frontend
}

// fatalThenClose reads until the server's FATAL error and the end of the connection.
func fatalThenClose(t *testing.T, fe *pgproto3.Frontend, code string) {
	t.Helper()
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("connection ended without a %s error: %v", code, err)
		}
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			if er.Severity != "FATAL" || er.Code != code {
				t.Fatalf("got %s %s %q, want FATAL %s", er.Severity, er.Code, er.Message, code)
			}
			if _, err := fe.Receive(); err == nil {
				t.Fatal("the connection stayed open after FATAL")
			}
			return
		}
	}
}

func TestBadInputClosesOnlyThatSession(t *testing.T) {
	e := newEnv(t, func(s *pgwire.Server) {
		s.MaxMessageSize = 1 << 20
		s.StartupTimeout = 500 * time.Millisecond
	})
	other := e.connect(t, "bob") // a session that must not notice anything

	t.Run("oversized message", func(t *testing.T) {
		conn, fe := rawSession(t, e)
		var hdr [5]byte
		hdr[0] = 'Q'
		binary.BigEndian.PutUint32(hdr[1:], 2<<20)
		conn.Write(hdr[:])
		fatalThenClose(t, fe, "08P01")
	})
	t.Run("unknown message type", func(t *testing.T) {
		conn, fe := rawSession(t, e)
		conn.Write([]byte{'z', 0, 0, 0, 4})
		fatalThenClose(t, fe, "08P01")
	})
	t.Run("truncated message", func(t *testing.T) {
		conn, _ := rawSession(t, e)
		conn.Write([]byte{'Q', 0, 0, 1, 0, 'S', 'E', 'L'})
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn) // the server closes its side
	})
	t.Run("malformed query", func(t *testing.T) {
		conn, fe := rawSession(t, e)
		conn.Write([]byte{'Q', 0, 0, 0, 7, 'a', 'b', 'c'}) // no terminating NUL
		m, _ := fe.Receive()
		if er, ok := m.(*pgproto3.ErrorResponse); !ok || er.Code != "08P01" {
			t.Fatalf("malformed query: %#v", m)
		}
	})
	t.Run("startup never finished", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn)
		if d := time.Since(start); d < 400*time.Millisecond || d > 4*time.Second {
			t.Errorf("idle startup closed after %v, want about 500ms", d)
		}
	})
	t.Run("garbage startup packet", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte{0, 0, 0xff, 0xff, 1, 2, 3, 4})
		fe := pgproto3.NewFrontend(conn, conn)
		fatalThenClose(t, fe, "08P01")
	})
	t.Run("invalid token", func(t *testing.T) {
		_, err := pgx.Connect(context.Background(), strings.Replace(e.dsn("alice", "orders"), "alice-token", "forged", 1))
		if pgCode(err) != "28P01" || strings.Contains(err.Error(), "forged") {
			t.Errorf("forged token: %v", err)
		}
	})
	t.Run("unknown resource", func(t *testing.T) {
		_, err := pgx.Connect(context.Background(), e.dsn("alice", "payments"))
		if pgCode(err) != "3D000" {
			t.Errorf("unknown resource: %v", err)
		}
	})
	t.Run("upstream down", func(t *testing.T) {
		_, err := pgx.Connect(context.Background(), e.dsn("alice", "down"))
		if pgCode(err) != "08006" || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("upstream down: %v", err)
		}
	})
	t.Run("ssl declined without a certificate", func(t *testing.T) {
		c, err := pgx.Connect(context.Background(), strings.Replace(e.dsn("alice", "orders"), "sslmode=disable", "sslmode=prefer", 1))
		if err != nil {
			t.Fatalf("sslmode=prefer without TLS configured: %v", err)
		}
		c.Close(context.Background())
	})
	stillServes(t, e)
	var n int
	if err := other.QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil {
		t.Errorf("another session was disturbed: %v", err)
	}
}

func TestTLSAndCleartextRules(t *testing.T) {
	cfgTLS, err := pgwire.TLSConfig(e2eTLS(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(s *pgwire.Server) { s.TLS = cfgTLS })
	c, err := pgx.Connect(context.Background(), strings.Replace(e.dsn("alice", "orders"), "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatalf("TLS session: %v", err)
	}
	if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
		t.Error("sslmode=require did not give a TLS connection")
	}
	c.Close(context.Background())

	// On a listener that is not loopback-only, cleartext tokens without TLS are refused.
	ifaces, _ := net.InterfaceAddrs()
	var external string
	for _, a := range ifaces {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			external = ip.IP.String()
		}
	}
	if external == "" {
		t.Fatal("no non-loopback address on this machine to test the TLS rule with")
	}
	ln, err := net.Listen("tcp", external+":0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(ln)
	dsn := strings.Replace(e.dsn("alice", "orders"), e.addr, ln.Addr().String(), 1)
	if _, err := pgx.Connect(context.Background(), dsn); pgCode(err) != "28000" {
		t.Errorf("cleartext on a non-loopback listener: %v", err)
	}
	if c, err := pgx.Connect(context.Background(), strings.Replace(dsn, "sslmode=disable", "sslmode=require", 1)); err != nil {
		t.Errorf("TLS on a non-loopback listener: %v", err)
	} else {
		c.Close(context.Background())
	}
}

// TestPgbench runs pgbench through Portcullis in simple, extended and prepared modes and
// expects zero failed transactions.
func TestPgbench(t *testing.T) {
	e := newEnv(t)
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
		if len(matches) == 0 {
			t.Fatal("pgbench not found: install the postgresql package (make tools)")
		}
		bin = matches[len(matches)-1]
	}
	host, port, _ := net.SplitHostPort(e.addr)
	env := append(os.Environ(), "PGPASSWORD="+token("alice"), "PGSSLMODE=disable")
	run := func(args ...string) string {
		// A bound, and on failure what PostgreSQL was doing: a run once hung with both of
		// its session's goroutines idle, each waiting for its peer.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// Before the bound kills pgbench (and its sessions with it): what PostgreSQL and
		// Portcullis's session goroutines are doing.
		dump := time.AfterFunc(2*time.Minute+45*time.Second, func() {
			testenv.LogPostgres(t, e.pg, "orders")
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			for _, g := range strings.Split(b.String(), "\n\n") {
				if strings.Contains(g, "pgwire.(*session)") {
					t.Logf("goroutine:\n%s", g)
				}
			}
		})
		defer dump.Stop()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port, "-U", "alice"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-i", "-s", "1", "-q", "bench")
	for _, args := range [][]string{
		{"-S", "-M", "simple", "-c", "4", "-t", "300", "bench"},
		{"-S", "-M", "extended", "-c", "2", "-t", "200", "bench"},
		{"-S", "-M", "prepared", "-c", "4", "-t", "300", "bench"},
		{"-M", "prepared", "-c", "2", "-t", "100", "bench"},
	} {
		out := run(args...)
		if !strings.Contains(out, "number of failed transactions: 0") {
			t.Errorf("pgbench %v:\n%s", args, out)
		}
	}
}

func TestCancelRunningStatementReachesUpstream(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	var n int64
	err := c.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 2000000000)").Scan(&n)
	if err == nil {
		t.Fatal("the long query finished")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the cancel took %v to stop the query", d)
	}
	// The upstream backend stopped the query (57014), so the session is usable again.
	c2 := e.connect(t, "alice")
	if err := c2.QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// pgx sends the CancelRequest asynchronously, on its own connection, as it closes the
	// session, so the backend may take a moment to see it on a loaded machine; uncancelled,
	// the query would run for minutes.
	up := e.upstream(t)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var running int
		if err := up.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 2000000000)%' AND state = 'active' AND pid <> pg_backend_pid()").Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancelled query still runs upstream 10s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestGSSENCRequestDeclined(t *testing.T) {
	e := newEnv(t)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}) // GSSENCRequest
	b := make([]byte, 1)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest answered %q, %v; want N", b, err)
	}
}
