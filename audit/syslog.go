package audit

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Syslog is a sink that sends each event to a syslog collector as an RFC 5424 message:
// facility authpriv, the event's type as MSGID, its JSON (as stored, with seq and hash) as
// the message. Over TCP and TLS messages are framed by octet counting (RFC 6587); over
// UDP each is one datagram. A connection that fails is opened again for the next batch,
// and a batch that failed is sent once more on the new connection.
type Syslog struct {
	// Network is tcp, tls or udp; Addr is host:port.
	Network, Addr string
	// TLS configures a tls collector (nil: the system's roots, the host's name).
	TLS *tls.Config
	// AppName is APP-NAME (default portcullis); Hostname is HOSTNAME (default the host's).
	AppName, Hostname string
	// Want selects the events sent; nil: all.
	Want func(*Event) bool

	mu   sync.Mutex
	conn net.Conn
	buf  []byte
}

// Name implements Sink.
func (s *Syslog) Name() string { return "syslog " + s.Network + "://" + s.Addr }

// Wants implements the sink filter.
func (s *Syslog) Wants(ev *Event) bool { return s.Want == nil || s.Want(ev) }

// Write implements Sink.
func (s *Syslog) Write(ctx context.Context, events []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if err = s.send(ctx, events); err == nil {
			return nil
		}
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
	}
	return err
}

func (s *Syslog) send(ctx context.Context, events []Event) error {
	if s.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		var err error
		switch s.Network {
		case "tls":
			cfg := s.TLS
			if cfg == nil {
				cfg = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			s.conn, err = (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", s.Addr)
		default:
			s.conn, err = d.DialContext(ctx, s.Network, s.Addr)
		}
		if err != nil {
			return err
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		s.conn.SetWriteDeadline(dl)
	}
	host, app := s.Hostname, s.AppName
	if host == "" {
		host, _ = os.Hostname()
	}
	if app == "" {
		app = "portcullis"
	}
	stream := s.Network != "udp"
	s.buf = s.buf[:0]
	for i := range events {
		msg, err := syslogMessage(&events[i], host, app)
		if err != nil {
			return err
		}
		if stream {
			s.buf = strconv.AppendInt(s.buf, int64(len(msg)), 10)
			s.buf = append(s.buf, ' ')
			s.buf = append(s.buf, msg...)
			continue
		}
		if _, err := s.conn.Write(msg); err != nil {
			return err
		}
	}
	if stream {
		_, err := s.conn.Write(s.buf)
		return err
	}
	return nil
}

// Close closes the connection.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn.Close()
	}
	return nil
}

// facilityAuthPriv is syslog's security/authorization facility (10).
const facilityAuthPriv = 10

// syslogSeverity is how loud an event is: alert for break-glass and alerts, warning for a
// refusal or failure, notice for the rest.
func syslogSeverity(ev *Event) int {
	switch {
	case ev.Alert != "" || ev.BreakGlass != "":
		return 1
	case ev.Decision == "deny", ev.Result == "denied", ev.Result == "refused", ev.Result == "error":
		return 4
	}
	return 5
}

// syslogMessage formats ev as an RFC 5424 message.
func syslogMessage(ev *Event, host, app string) ([]byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	msgid := ev.Type
	if len(msgid) > 32 {
		msgid = msgid[:32]
	}
	b := fmt.Appendf(nil, "<%d>1 %s %s %s %d %s - ", facilityAuthPriv*8+syslogSeverity(ev),
		ev.Time.UTC().Format(time.RFC3339Nano), syslogField(host, 255), syslogField(app, 48), os.Getpid(), syslogField(msgid, 32))
	return append(b, body...), nil
}

// syslogField is s as a header field: printable ASCII without spaces, at most n bytes, or
// the nil value "-".
func syslogField(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// JSONLines is a sink that writes each event's JSON, as stored, on a line of its own to W
// (a file, or standard output for a container's log collector).
type JSONLines struct {
	// Label names the destination in logs.
	Label string
	W     io.Writer
	// Want selects the events written; nil: all.
	Want func(*Event) bool

	mu  sync.Mutex
	buf []byte
}

// Name implements Sink.
func (j *JSONLines) Name() string { return "jsonl " + j.Label }

// Wants implements the sink filter.
func (j *JSONLines) Wants(ev *Event) bool { return j.Want == nil || j.Want(ev) }

// Write implements Sink: the whole batch in one write.
func (j *JSONLines) Write(_ context.Context, events []Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = j.buf[:0]
	for i := range events {
		b, err := json.Marshal(&events[i])
		if err != nil {
			return err
		}
		j.buf = append(append(j.buf, b...), '\n')
	}
	_, err := j.W.Write(j.buf)
	return err
}
