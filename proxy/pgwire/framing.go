package pgwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// DefaultMaxMessageSize bounds one protocol message.
const DefaultMaxMessageSize = 64 << 20

// errTooLarge is a message over the configured maximum.
var errTooLarge = errors.New("message too large")

// reader reads whole protocol messages (type byte, length, body).
type reader struct {
	r   *bufio.Reader
	max int
	buf []byte
	hdr [5]byte // here, not on next's stack, from where io.ReadFull would move it to the heap
}

// next returns the next message; body is valid until the following call.
func (m *reader) next() (typ byte, body []byte, err error) {
	hdr := m.hdr[:]
	if _, err := io.ReadFull(m.r, hdr); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
	if n < 0 {
		return 0, nil, fmt.Errorf("invalid message length %d", n+4)
	}
	if n > m.max {
		return hdr[0], nil, fmt.Errorf("%w: %d bytes (the limit is %d)", errTooLarge, n, m.max)
	}
	if cap(m.buf) < n {
		m.buf = make([]byte, n, max(n, 8192))
	}
	body = m.buf[:n]
	if _, err := io.ReadFull(m.r, body); err != nil {
		return 0, nil, fmt.Errorf("truncated message: %w", err)
	}
	return hdr[0], body, nil
}

// buffered reports whether more input is already waiting.
func (m *reader) buffered() bool { return m.r.Buffered() > 0 }

// writeRaw writes a message given its type and body.
func writeRaw(w *bufio.Writer, typ byte, body []byte) error {
	n := uint32(len(body) + 4)
	w.WriteByte(typ) // byte by byte: a header array passed to Write would be allocated
	w.WriteByte(byte(n >> 24))
	w.WriteByte(byte(n >> 16))
	w.WriteByte(byte(n >> 8))
	w.WriteByte(byte(n))
	_, err := w.Write(body)
	return err
}

// encoder is a protocol message of either direction.
type encoder interface {
	Encode(dst []byte) ([]byte, error)
}

// encode returns a message's wire bytes.
func encode(msgs ...encoder) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			panic("pgwire: cannot encode " + fmt.Sprintf("%T", m) + ": " + err.Error()) // fixed shapes; cannot happen
		}
	}
	return out
}

// SQLSTATE codes Portcullis answers with.
const (
	codeInsufficientPrivilege = "42501" // denied by policy
	codeQueryCanceled         = "57014"
	codeConnectionFailure     = "08006" // upstream unreachable
	codeProtocolViolation     = "08P01"
	codeInvalidPassword       = "28P01"
	codeInvalidAuthorization  = "28000"
	codeInvalidCatalog        = "3D000" // no such resource
	codeInvalidParameter      = "22023" // a Portcullis setting's bad name or value
	codeAdminShutdown         = "57P01" // an elevated session whose grant ended
	codeInternal              = "XX000"
)

func errorResponse(severity, code, msg, detail, hint string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg, Detail: detail, Hint: hint}
}
