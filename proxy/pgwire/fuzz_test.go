package pgwire_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func encodeAll(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

// FuzzMessages sends arbitrary bytes after a real startup, through to a real upstream:
// nothing may panic, every session must end, and the listener must keep serving.
func FuzzMessages(f *testing.F) {
	f.Add(encodeAll(&pgproto3.Query{String: "SELECT 1"}))
	f.Add(encodeAll(&pgproto3.Query{String: "SELECT 1; DROP TABLE orders"}))
	f.Add(encodeAll(&pgproto3.Parse{Query: "SELECT $1::int"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("1")}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encodeAll(&pgproto3.Parse{Name: "s", Query: "DELETE FROM orders"}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Flush{}, &pgproto3.Sync{}))
	f.Add(encodeAll(&pgproto3.Query{String: "COPY orders FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\tx\n")}, &pgproto3.CopyDone{}))
	f.Add(encodeAll(&pgproto3.Query{String: "COPY orders TO STDOUT"}))
	f.Add(encodeAll(&pgproto3.Close{ObjectType: 'S', Name: "x"}, &pgproto3.Sync{}, &pgproto3.Terminate{}))
	f.Add([]byte{'E', 0, 0, 0, 9, 'p', 0, 0, 0, 0})
	f.Add([]byte{'P', 0xff, 0xff, 0xff, 0xff})
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		pc, err := pgconn.Connect(context.Background(), e.dsn("carol", "fuzz"))
		if err != nil {
			t.Fatalf("the listener stopped serving: %v", err)
		}
		hc, err := pc.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Conn.Close()
		hc.Conn.SetDeadline(time.Now().Add(3 * time.Second))
		go func() {
			hc.Conn.Write(append(data, encodeAll(&pgproto3.Sync{}, &pgproto3.Terminate{})...))
			hc.Conn.(*net.TCPConn).CloseWrite() // the end of the client's input
		}()
		io.Copy(io.Discard, hc.Conn) // until the server ends the session (or the deadline)
	})
}
