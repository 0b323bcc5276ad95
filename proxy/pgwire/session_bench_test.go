package pgwire_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// BenchmarkSession drives one real session — a client over a loopback socket, Portcullis,
// real PostgreSQL — through the allow path: each operation is one statement decided
// (cached shape), audited before it is forwarded (its event written to a real segment),
// forwarded, answered, and its result recorded. The client writes pre-encoded messages and
// reads the answers into one buffer, so the allocations per operation are Portcullis's own
// (with PostgreSQL's answer read once by the proxy): the steady-state allow path's cost.
//
// prepared is the extended protocol as pgbench -M prepared and pgx send it: Bind, Execute
// and Sync of a statement parsed once; prepared_param binds a parameter, as they do.
func BenchmarkSession(b *testing.B) {
	e := newEnv(b)
	const query = "SELECT status FROM orders WHERE id = 1"
	for _, tc := range []struct {
		name string
		msgs func() []byte
		prep []byte
	}{
		{"simple", func() []byte { return encodeMsgs(&pgproto3.Query{String: query}) }, nil},
		{"prepared", func() []byte {
			return encodeMsgs(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		}, encodeMsgs(&pgproto3.Parse{Name: "s1", Query: query}, &pgproto3.Sync{})},
		{"prepared_param", func() []byte {
			return encodeMsgs(&pgproto3.Bind{PreparedStatement: "s2", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		}, encodeMsgs(&pgproto3.Parse{Name: "s2", Query: "SELECT status FROM orders WHERE id = $1"}, &pgproto3.Sync{})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := benchConn(b, e, "alice", "bench")
			if tc.prep != nil {
				c.roundTrip(b, tc.prep)
			}
			msgs := tc.msgs()
			c.roundTrip(b, msgs) // the first one classifies the shape
			b.ReportAllocs()
			for b.Loop() {
				c.roundTrip(b, msgs)
			}
		})
	}
}

// rawConn is the least a PostgreSQL client can be: it writes bytes and reads messages
// until ReadyForQuery, reusing one buffer.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
	hdr  [5]byte
}

// benchConn opens an authenticated session as user on resource db for raw use.
func benchConn(tb testing.TB, e *env, user, db string) *rawConn {
	conn, _ := rawSessionAs(tb, e, user, db, time.Hour)
	return &rawConn{conn: conn, r: bufio.NewReaderSize(conn, 32<<10), buf: make([]byte, 0, 8<<10)}
}

func (c *rawConn) write(tb testing.TB, b []byte) {
	if _, err := c.conn.Write(b); err != nil {
		tb.Fatal(err)
	}
}

// next reads one message; body is valid until the next call.
func (c *rawConn) next(tb testing.TB) (byte, []byte) {
	hdr := c.hdr[:]
	if _, err := io.ReadFull(c.r, hdr); err != nil {
		tb.Fatal(err)
	}
	n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		tb.Fatal(err)
	}
	return hdr[0], c.buf
}

// roundTrip sends msgs and reads to ReadyForQuery; an ErrorResponse fails the benchmark.
func (c *rawConn) roundTrip(tb testing.TB, msgs []byte) {
	c.write(tb, msgs)
	for {
		typ, body := c.next(tb)
		switch typ {
		case 'E':
			tb.Fatalf("error: %q", body)
		case 'Z':
			return
		}
	}
}

func encodeMsgs(msgs ...pgproto3.FrontendMessage) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			panic(fmt.Sprintf("encoding %T: %v", m, err))
		}
	}
	return out
}
