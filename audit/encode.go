package audit

import (
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// chain is what the log gives each event as it writes it: an id made of idPrefix and the
// event's sequence number, when the event has none of its own, and the hash of the event
// before it — written into the line without making strings of them.
type chain struct {
	idPrefix string // plain ASCII
	replica  string // the log's replica name, for events without one
	prev     [2 * sha256.Size]byte
}

// appendEvent appends the JSON of e without its hash: the same bytes encoding/json gives
// for Event with Hash empty (and, given c, with the ID and PrevHash c gives it), without
// reflection (the audit log is on every statement's path). Details values of other types
// than the common ones go through encoding/json.
func appendEvent(b []byte, e *Event, c *chain) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"id":`...)
	if e.ID == "" && c != nil {
		b = append(b, '"')
		b = append(b, c.idPrefix...)
		b = strconv.AppendUint(b, e.Seq, 10)
		b = append(b, '"')
	} else {
		b = appendString(b, e.ID)
	}
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = appendString(b, e.Type)
	for _, f := range [...]struct{ name, v string }{
		{`,"actor":`, e.Actor}, {`,"subject":`, e.Subject}, {`,"resource":`, e.Resource},
		{`,"action":`, e.Action}, {`,"decision":`, e.Decision},
	} {
		if f.v != "" {
			b = append(b, f.name...)
			b = appendString(b, f.v)
		}
	}
	if len(e.Rules) > 0 {
		b = append(b, `,"rules":`...)
		b = appendStrings(b, e.Rules)
	}
	for _, f := range [...]struct{ name, v string }{
		{`,"policy_hash":`, e.PolicyHash}, {`,"reason":`, e.Reason}, {`,"result":`, e.Result}, {`,"session":`, e.Session},
		{`,"break_glass":`, e.BreakGlass}, {`,"alert":`, e.Alert}, {`,"replica":`, replicaOf(e, c)},
	} {
		if f.v != "" {
			b = append(b, f.name...)
			b = appendString(b, f.v)
		}
	}
	if len(e.Details) > 0 || len(e.Attrs) > 0 {
		b = append(b, `,"details":{`...)
		var err error
		if b, err = appendDetails(b, e); err != nil {
			return b, err
		}
		b = append(b, '}')
	}
	b = append(b, `,"prev_hash":`...)
	if c != nil {
		b = append(b, '"')
		b = append(b, c.prev[:]...)
		b = append(b, '"')
	} else {
		b = appendString(b, e.PrevHash)
	}
	return append(b, '}'), nil
}

// replicaOf is the replica an event is written with: its own, or the log's.
func replicaOf(e *Event, c *chain) string {
	if e.Replica == "" && c != nil {
		return c.replica
	}
	return e.Replica
}

// appendDetails appends the members of e's details object — Details' entries and Attrs —
// in key order, as encoding/json orders a map's keys.
func appendDetails(b []byte, e *Event) ([]byte, error) {
	var arr [16]string // on the stack for the usual handful of details
	keys := arr[:0]
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var order [16]int // Attrs' indexes in key order: an insertion sort of a few
	attrs := order[:0]
	for i := range e.Attrs {
		if _, dup := e.Details[e.Attrs[i].Key]; dup {
			continue // Details' wins; a key must not be in both
		}
		j := len(attrs)
		attrs = append(attrs, i)
		for ; j > 0 && e.Attrs[attrs[j-1]].Key > e.Attrs[i].Key; j-- {
			attrs[j] = attrs[j-1]
		}
		attrs[j] = i
	}
	first := true
	for len(keys) > 0 || len(attrs) > 0 {
		if !first {
			b = append(b, ',')
		}
		first = false
		if len(attrs) == 0 || len(keys) > 0 && keys[0] < e.Attrs[attrs[0]].Key {
			b = appendString(b, keys[0])
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, e.Details[keys[0]]); err != nil {
				return b, err
			}
			keys = keys[1:]
			continue
		}
		a := &e.Attrs[attrs[0]]
		attrs = attrs[1:]
		b = appendString(b, a.Key)
		b = append(b, ':')
		switch a.kind {
		case attrString:
			b = appendString(b, a.str)
		case attrInt:
			b = strconv.AppendInt(b, a.num, 10)
		case attrBool:
			b = strconv.AppendBool(b, a.num != 0)
		case attrStrings:
			b = appendStrings(b, a.strs)
		case attrHex64:
			b = append(b, '"')
			b = appendHex64(b, uint64(a.num))
			b = append(b, '"')
		}
	}
	return b, nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendString(b, v), nil
	case []string:
		return appendStrings(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case nil:
		return append(b, "null"...), nil
	}
	j, err := json.Marshal(v)
	return append(b, j...), err
}

func appendStrings(b []byte, s []string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes a JSON string holds as they are: printable, and not a
// quote, a backslash or one of the HTML characters encoding/json escapes.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := byte(0x20); c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string, escaping as encoding/json does (HTML
// characters included), with invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
