package pgwire

import (
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// maxReason bounds the reason a client gives (characters).
const maxReason = 500

// reasonHint tells a client how to give a reason.
const reasonHint = "Give one, then run the statement again: SET portcullis.reason = 'what and why, TICKET-1'; or connect with PGOPTIONS='-c portcullis.reason=...'."

// setting answers a simple Query that sets, resets or shows a Portcullis setting
// (portcullis.reason): Portcullis keeps it, and the server never sees it.
func (ss *session) setting(s pgsql.Setting, err error) {
	fail := func(code, msg, hint string) { ss.fail(true, errorResponse("ERROR", code, msg, "", hint)) }
	switch {
	case err != nil:
		fail(codeInvalidParameter, err.Error(), "")
	case s.Show:
		ss.inject(encode(
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte(s.Name), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
			&pgproto3.DataRow{Values: [][]byte{[]byte(ss.reason)}},
			&pgproto3.CommandComplete{CommandTag: []byte("SHOW")}), true)
	case utf8.RuneCountInString(s.Value) > maxReason:
		fail(codeInvalidParameter, "portcullis.reason is too long: at most 500 characters", "")
	default:
		ss.reason = strings.TrimSpace(s.Value)
		if s.Reset {
			ss.reason = ""
		}
		ss.srv.Audit.Enqueue(&audit.Event{Type: audit.TypePGReason, Actor: ss.who.User, Resource: ss.res.Name, Session: ss.id, Reason: ss.reason, Result: "ok"})
		tag := "SET"
		if s.Reset {
			tag = "RESET"
		}
		ss.inject(encode(&pgproto3.CommandComplete{CommandTag: []byte(tag)}), true)
	}
}

// startupReason reads a reason given at connect time: the startup parameter
// portcullis.reason (pgx, JDBC), or "-c portcullis.reason=..." in options (libpq's
// PGOPTIONS), backslash-escaping spaces as libpq does.
func startupReason(params map[string]string) string {
	if r := params[pgsql.SettingReason]; r != "" {
		return r
	}
	args := splitOptions(params["options"])
	for i, a := range args {
		var kv string
		switch {
		case a == "-c" && i+1 < len(args):
			kv = args[i+1]
		case strings.HasPrefix(a, "-c"):
			kv = a[2:]
		case strings.HasPrefix(a, "--"):
			kv = a[2:]
		}
		if k, v, ok := strings.Cut(kv, "="); ok && strings.EqualFold(k, pgsql.SettingReason) {
			return v
		}
	}
	return ""
}

// splitOptions splits a startup options string at unescaped white space, removing the
// backslashes, as PostgreSQL reads it.
func splitOptions(s string) []string {
	var out []string
	var b strings.Builder
	escaped, some := false, false
	for _, r := range s {
		switch {
		case escaped:
			b.WriteRune(r)
			escaped, some = false, true
		case r == '\\':
			escaped = true
		case r == ' ' || r == '\t' || r == '\n':
			if some {
				out = append(out, b.String())
				b.Reset()
				some = false
			}
		default:
			b.WriteRune(r)
			some = true
		}
	}
	if some {
		out = append(out, b.String())
	}
	return out
}
