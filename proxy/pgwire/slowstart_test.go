package pgwire_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/proxy/pgwire"
)

// slowWrites is an upstream connection whose first writes take longer than pgconn's
// slow-write timer (15 ms), as on a busy machine while many sessions connect at once.
type slowWrites struct {
	net.Conn
	slow atomic.Int32 // writes left to slow down
}

// Write returns late: the server's answer arrives while pgconn still waits for it, which
// is when pgconn's background reader reads on.
func (c *slowWrites) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.slow.Add(-1) >= 0 {
		time.Sleep(40 * time.Millisecond)
	}
	return n, err
}

// TestSlowUpstreamStartupKeepsTheFirstAnswer: when pgconn's writes during the upstream
// handshake are slow, pgconn starts a background reader, which may still be blocked in a
// Read of the connection when the session takes it over. Unless the session syncs the
// connection first, that reader takes the answer to the client's first statement and the
// client waits forever (the hang a soak of 100 sessions connecting at once found). Every
// session's first statements must complete, whichever client sends them.
func TestSlowUpstreamStartupKeepsTheFirstAnswer(t *testing.T) {
	e := newEnv(t, func(s *pgwire.Server) {
		s.DialUpstream = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			sw := &slowWrites{Conn: c}
			sw.slow.Store(3)
			return sw, nil
		}
	})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := pgconn.Connect(ctx, e.dsn("alice", "orders"))
			if err != nil {
				t.Errorf("session %d: connect: %v", i, err)
				return
			}
			defer c.Close(context.Background())
			// The simple protocol (as psql and pgx's Exec without arguments), then the
			// extended (as pgbench -M extended and pgx with arguments).
			if _, err := c.Exec(ctx, "SELECT count(*) FROM orders WHERE id <> 0").ReadAll(); err != nil {
				t.Errorf("session %d: first statement: %v", i, err)
				return
			}
			r := c.ExecParams(ctx, "SELECT id FROM orders WHERE id = $1", [][]byte{[]byte("1")}, nil, nil, nil).Read()
			if r.Err != nil || len(r.Rows) != 1 {
				t.Errorf("session %d: second statement: %v, %d rows", i, r.Err, len(r.Rows))
			}
		}()
	}
	wg.Wait()
}
