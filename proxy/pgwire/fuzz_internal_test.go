package pgwire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

func startupPacket(code uint32, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, rest...)
}

// FuzzStartup feeds arbitrary bytes to a connection's startup: nothing may panic, and
// every connection must end.
func FuzzStartup(f *testing.F) {
	sm, _ := (&pgproto3.StartupMessage{ProtocolVersion: protocol30, Parameters: map[string]string{"user": "alice", "database": "orders"}}).Encode(nil)
	pw, _ := (&pgproto3.PasswordMessage{Password: "alice-token"}).Encode(nil)
	cancel, _ := (&pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	withReason, _ := (&pgproto3.StartupMessage{ProtocolVersion: protocol30, Parameters: map[string]string{"user": "alice", "database": "orders",
		"options": `-c portcullis.reason=fix\ it --x=y -c`, "portcullis.reason": "why"}}).Encode(nil)
	f.Add(sm)
	f.Add(append(withReason, pw...))
	f.Add(append(sm, pw...))
	f.Add(append(startupPacket(codeSSL), sm...))
	f.Add(append(startupPacket(codeGSSENC), sm...))
	f.Add(cancel)
	f.Add(startupPacket(5<<16 | 1))
	f.Add([]byte{0, 0, 0, 4})
	cfg, err := configs.Parse("fuzz.yaml", []byte(`version: 1
identity:
  static_tokens:
    - {subject: alice, token_sha256: 0c9d2f4e02fe7c5ed09bb3f1ef0d6de0cb6c8bcdb1bb8b0f1f1e1d1b2c3d4e5f}
resources:
  - {name: orders, kind: postgres, upstream: "127.0.0.1:1", credentials: {static: {username: u, password: p}}}
`))
	if err != nil {
		f.Fatal(err)
	}
	auth, _ := identity.New(cfg)
	log, err := audit.Open(audit.Options{Dir: f.TempDir(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { log.Close() })
	store, err := elevation.OpenFileStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{Config: cfg, Auth: auth, Broker: elevation.NewStaticBroker(cfg), Audit: log, Approvals: elevation.NewApprovals(store, nil), StartupTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go s.Serve(ln)
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		// A real loopback connection, half-closed after the input: the server sees every
		// byte, answers each step, then reads the end of the input.
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("the listener stopped accepting: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("the server did not end the connection: %v", err)
		}
	})
}

// FuzzShapeKey checks the classification cache's premise: statements that share a shape
// key classify alike.
func FuzzShapeKey(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM orders WHERE id = 42", "UPDATE t SET a = 'x''y' WHERE b = 3.5", "SELECT $1::int + 7",
		"DELETE FROM \"Orders\" WHERE note = 'a'", "SELECT 1e5", "SELECT E'\\n'", "COPY t TO '/tmp/x'",
	} {
		f.Add(s, "7")
	}
	f.Fuzz(func(t *testing.T, sql, lit string) {
		key, ok := shapeKey(sql)
		if !ok {
			return
		}
		// Re-draw the literals and compare classifications when the key is the same.
		other := []byte(sql)
		for i := range other {
			if other[i] >= '0' && other[i] <= '9' {
				other[i] = '0' + (other[i]-'0'+1)%10
			}
		}
		key2, ok2 := shapeKey(string(other))
		if !ok2 || key2 != key {
			return
		}
		a, b := pgsql.Classify(sql), pgsql.Classify(string(other))
		if a.Class != b.Class || a.Kind != b.Kind || !slices.Equal(a.Tables, b.Tables) || !slices.Equal(a.Functions, b.Functions) || a.MultiStatement != b.MultiStatement {
			t.Fatalf("same shape %q, different classes:\n%q -> %v %s %v\n%q -> %v %s %v", key, sql, a.Class, a.Kind, a.Tables, other, b.Class, b.Kind, b.Tables)
		}
	})
}

// FuzzDecodeExecute checks that Portcullis's Execute decoder, which spares the unnamed
// portal a string, reads every body exactly as pgproto3 does, errors included.
func FuzzDecodeExecute(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00"))
	f.Add([]byte("p1\x00\x00\x00\x00\x0a"))
	f.Add([]byte("p1\x00\x00\x00"))
	f.Add([]byte("no nul"))
	f.Add([]byte("\x00\x00\x00\x00\x00extra"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var want pgproto3.Execute
		wantErr := want.Decode(body)
		got, err := decodeExecute(body)
		if (err != nil) != (wantErr != nil) || err == nil && got != want {
			t.Fatalf("decodeExecute(%q) = %+v, %v; pgproto3: %+v, %v", body, got, err, want, wantErr)
		}
	})
}

// FuzzDecodeBind checks that Portcullis's Bind decoder, which reuses an op's memory and
// the last names, reads every body as pgproto3 does: the same errors, names, formats and
// values (a null value stays nil), also into an op used before, and that the values are
// copies, unchanged when the reader's buffer is reused.
func FuzzDecodeBind(f *testing.F) {
	for _, b := range []*pgproto3.Bind{
		{},
		{DestinationPortal: "p", PreparedStatement: "s1", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{[]byte("42"), nil, {}}, ResultFormatCodes: []int16{0, 1}},
		{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("x")}},
	} {
		buf, _ := b.Encode(nil)
		f.Add(buf[5:])
	}
	f.Add([]byte("p\x00s\x00\x00\x01"))
	f.Add([]byte("\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"))
	var memo nameMemo
	reused := new(op)
	f.Fuzz(func(t *testing.T, body []byte) {
		var want pgproto3.Bind
		wantErr := want.Decode(body)
		for _, o := range []*op{new(op), reused} {
			read := slices.Clone(body) // the reader's buffer
			err := decodeBind(read, o, &memo)
			clear(read)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("decodeBind(%q): %v; pgproto3: %v", body, err, wantErr)
			}
			if err != nil {
				continue
			}
			if o.kind != opBind || o.name != want.DestinationPortal || o.stmt != want.PreparedStatement ||
				!slices.Equal(o.formats, want.ParameterFormatCodes) || len(o.params) != len(want.Parameters) {
				t.Fatalf("decodeBind(%q) = %+v; pgproto3: %+v", body, o, want)
			}
			for i, v := range want.Parameters {
				if (v == nil) != (o.params[i] == nil) || !bytes.Equal(v, o.params[i]) {
					t.Fatalf("decodeBind(%q): parameter %d is %q; pgproto3: %q", body, i, o.params[i], v)
				}
			}
		}
	})
}

// TestParamsSum pins the parameter digest of statement events to its definition: the
// first 8 bytes of the SHA-256 of each value's length, a colon and the value.
func TestParamsSum(t *testing.T) {
	ss := new(session)
	for _, params := range [][][]byte{nil, {[]byte("42")}, {nil, {}, []byte("x:y"), bytes.Repeat([]byte("v"), 1000)}} {
		h := sha256.New()
		for _, p := range params {
			fmt.Fprintf(h, "%d:", len(p))
			h.Write(p)
		}
		want := binary.BigEndian.Uint64(h.Sum(nil))
		for range 2 { // the session's hash is reused
			if got := ss.paramsSum(params); got != want {
				t.Fatalf("paramsSum(%q) = %x, want %x", params, got, want)
			}
		}
	}
}
