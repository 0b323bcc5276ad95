package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// GenesisHash is the prev_hash of the first event of a log.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Event types: what happened. Writers and readers (the console, reviews, replay, metrics)
// use these names, never string literals.
const (
	TypeServerStarted = "server.started"
	TypeServerStopped = "server.stopped"
	// TypePoliciesReloaded: SIGHUP put a new policy set in force (details: the snapshots
	// before and after); a refused reload is the same type with result "refused".
	TypePoliciesReloaded = "server.policies_reloaded"

	TypePGSessionStart = "pg.session.start"
	TypePGSessionEnd   = "pg.session.end"
	// TypePGSessionCut: a session ended by Portcullis when the grant it used ended.
	TypePGSessionCut = "pg.session.cut"
	// TypePGStatement: a statement decided, before it is forwarded.
	TypePGStatement = "pg.statement"
	// TypePGResult: how a forwarded statement ended.
	TypePGResult = "pg.result"
	// TypePGReason: a session set or reset portcullis.reason.
	TypePGReason = "pg.reason"
	// TypePGApprovalClosed: a session's wait for an approval ended.
	TypePGApprovalClosed = "pg.approval.closed"
	// TypePGMismatch: PostgreSQL answered a statement with a result that does not fit the
	// decision taken for it (a statement decided as a read reported an UPDATE). The
	// session was ended. Always flagged (Alert "mismatch").
	TypePGMismatch = "pg.mismatch"

	// TypeHTTPRequest: an HTTP request decided, before it is forwarded.
	TypeHTTPRequest = "http.request"
	// TypeHTTPResult: how a forwarded HTTP request ended (status, bytes, duration).
	TypeHTTPResult = "http.result"
	// TypeHTTPApprovalClosed: a held HTTP request's wait (Prefer: wait) or re-send ended.
	TypeHTTPApprovalClosed = "http.approval.closed"

	// TypeKubeRequest: a Kubernetes API request decided, before it is forwarded.
	TypeKubeRequest = "kube.request"
	// TypeKubeResult: how a forwarded Kubernetes API request ended (status, bytes,
	// duration; for a watch or a log stream, when the stream ended).
	TypeKubeResult = "kube.result"
	// TypeKubeStream: part of an exec or attach session's recording — asciicast v2 frames
	// ([seconds, "o" | "i" | "r", data]) in details.frames, written as the session runs
	// (input before it is forwarded).
	TypeKubeStream = "kube.stream"
	// TypeKubePortForward: a connection through a port-forward session opened (written
	// before it is forwarded) or closed (with the bytes each way); details.port,
	// details.connection.
	TypeKubePortForward = "kube.portforward"
	// TypeKubeApprovalClosed: a held Kubernetes request was re-run under its approval
	// (or its wait, hold: wait, ended).
	TypeKubeApprovalClosed = "kube.approval.closed"
	// TypeKubeTokenMinted: a service-account token was minted (Vault's Kubernetes engine)
	// for an elevation grant's or break-glass session's requests to a cluster.
	TypeKubeTokenMinted = "kube.token.minted"
	// TypeKubeTokenRevoked: that token's lease was revoked, its grant having ended.
	TypeKubeTokenRevoked = "kube.token.revoked"

	TypeApprovalVote = "approval.vote"

	TypeElevationRequested = "elevation.requested"
	TypeElevationRevoked   = "elevation.revoked"
	TypeElevationEnded     = "elevation.ended"

	TypeBreakGlassRequested = "breakglass.requested"
	TypeBreakGlassStarted   = "breakglass.started"
	// TypeBreakGlassEmergency: break-glass with the sealed emergency credential.
	TypeBreakGlassEmergency = "breakglass.emergency"
	TypeBreakGlassEnded     = "breakglass.ended"
	TypeBreakGlassReviewed  = "breakglass.reviewed"

	TypeConsoleSignIn  = "console.signin"
	TypeConsoleSignOut = "console.signout"
)

// Event is one audited happening. Append fills in Seq, and Time when it is zero; the ID
// (when the event has none), PrevHash and Hash it gives the event are in the log's line, and
// set on the events sinks get and readers read, not on the appended event.
type Event struct {
	Seq  uint64    `json:"seq"`
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Type names what happened: one of the Type constants, for example TypePGStatement.
	Type string `json:"type"`
	// Actor is who acted; Subject is on whose behalf or whom the event is about, when
	// that is someone else (an approver acts on a requester's request).
	Actor    string `json:"actor,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Resource string `json:"resource,omitempty"`
	// Action is what was attempted: a statement, a verb and path, a role.
	Action string `json:"action,omitempty"`
	// Decision is the policy effect: allow, deny or require_approval.
	Decision   string   `json:"decision,omitempty"`
	Rules      []string `json:"rules,omitempty"`
	PolicyHash string   `json:"policy_hash,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	// Result is how it ended: ok, error, denied, approved, timeout, ...
	Result  string `json:"result,omitempty"`
	Session string `json:"session,omitempty"`
	// BreakGlass is the break-glass session an event happened under; such events are
	// flagged for review and always exported.
	BreakGlass string `json:"break_glass,omitempty"`
	// Alert flags an event security must look at, like a break-glass one: sent to the
	// notify webhooks, counted in the metrics, never filtered out of an export. It names
	// what was found, for example "mismatch".
	Alert string `json:"alert,omitempty"`
	// Replica names the Portcullis process whose log holds the event (audit.replica, by
	// default the host name): with several replicas, each writes its own chain.
	Replica string `json:"replica,omitempty"`
	// Details holds front-end specific facts (classification, row counts, durations).
	Details map[string]any `json:"details,omitempty"`
	// Attrs are more details, kept without a map for the events written on every statement
	// or request: they are encoded into "details" with Details' entries, all in key order,
	// exactly as if they were in Details. A key must not be in both. Read back from the
	// log, they are in Details.
	Attrs []Attr `json:"-"`

	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash,omitempty"`
}

// encode appends the event's line to dst: the JSON of the event without its hash, with
// ,"hash":"<sha256 of that JSON>" spliced in before the closing brace, and a newline.
// Without c it uses e.ID and e.PrevHash and sets e.Hash. With c (the log's writer) the
// event is chained: c gives its id and replica, when it has none, and its prev_hash, and
// c.prev becomes its hash; e is left as it is, unless fill asks for ID, Replica, PrevHash
// and Hash too.
func (e *Event) encode(dst []byte, c *chain, fill bool) ([]byte, error) {
	start := len(dst)
	dst, err := appendEvent(dst, e, c)
	if err != nil {
		return dst[:start], fmt.Errorf("could not encode audit event: %w", err)
	}
	sum := sha256.Sum256(dst[start:])
	dst = dst[:len(dst)-1] // the closing brace; the hash goes before it
	dst = append(dst, `,"hash":"`...)
	h := len(dst)
	dst = hex.AppendEncode(dst, sum[:])
	switch {
	case c == nil:
		e.Hash = string(dst[h:])
	case fill:
		if e.ID == "" {
			e.ID = c.idPrefix + strconv.FormatUint(e.Seq, 10)
		}
		if e.Replica == "" {
			e.Replica = c.replica
		}
		e.PrevHash, e.Hash = string(c.prev[:]), string(dst[h:])
		copy(c.prev[:], dst[h:])
	default:
		copy(c.prev[:], dst[h:])
	}
	return append(dst, "\"}\n"...), nil
}

var hashSuffix = regexp.MustCompile(`,"hash":"([0-9a-f]{64})"}$`)

// decodeLine checks one line (without its newline) against its own hash and returns the
// event it holds.
func decodeLine(line []byte) (*Event, error) {
	m := hashSuffix.FindSubmatchIndex(line)
	if m == nil {
		return nil, fmt.Errorf("no hash at the end of the line")
	}
	body := append(bytes.Clone(line[:m[0]]), '}')
	sum := sha256.Sum256(body)
	want := line[m[2]:m[3]]
	if hex.EncodeToString(sum[:]) != string(want) {
		return nil, fmt.Errorf("hash mismatch: the event was changed after it was written")
	}
	e := &Event{}
	if err := json.Unmarshal(body, e); err != nil {
		return nil, fmt.Errorf("malformed event: %w", err)
	}
	e.Hash = string(want)
	return e, nil
}

// eventWithAttrs is an event with room for the details of a statement's or a request's
// events, so that making one is one allocation.
type eventWithAttrs struct {
	ev    Event
	attrs [12]Attr
}

// NewEvent returns an empty event whose Attrs have room for a dozen details in the same
// allocation: for the events written on every statement or request.
func NewEvent() *Event {
	e := &eventWithAttrs{}
	e.ev.Attrs = e.attrs[:0]
	return &e.ev
}

// Reset empties e for reuse, keeping the room its Attrs have.
func (e *Event) Reset() { *e = Event{Attrs: e.Attrs[:0]} }

// Attr is one detail of an Event's Attrs: a string, an integer, a boolean or a list of
// strings, made with String, Int, Bool or Strings.
type Attr struct {
	Key  string
	kind attrKind
	str  string
	num  int64
	strs []string
}

type attrKind uint8

const (
	attrString attrKind = iota
	attrInt
	attrBool
	attrStrings
	attrHex64
)

// String is a string detail.
func String(key, v string) Attr { return Attr{Key: key, kind: attrString, str: v} }

// Int is an integer detail.
func Int(key string, v int64) Attr { return Attr{Key: key, kind: attrInt, num: v} }

// Bool is a boolean detail.
func Bool(key string, v bool) Attr {
	a := Attr{Key: key, kind: attrBool}
	if v {
		a.num = 1
	}
	return a
}

// Strings is a list-of-strings detail; the slice is not copied.
func Strings(key string, v []string) Attr { return Attr{Key: key, kind: attrStrings, strs: v} }

// Hex64 is a string detail of 16 hexadecimal digits, the big-endian bytes of v: the
// short digest of something, made without a string.
func Hex64(key string, v uint64) Attr { return Attr{Key: key, kind: attrHex64, num: int64(v)} }

// appendHex64 appends v's 8 big-endian bytes in lowercase hex.
func appendHex64(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

// value is the detail's value as Details would hold it (int64 for Int).
func (a Attr) value() any {
	switch a.kind {
	case attrHex64:
		return string(appendHex64(make([]byte, 0, 16), uint64(a.num)))
	case attrInt:
		return a.num
	case attrBool:
		return a.num != 0
	case attrStrings:
		return a.strs
	}
	return a.str
}

// Int returns the integer detail key, from Attrs or Details.
func (e *Event) Int(key string) (int64, bool) {
	for i := range e.Attrs {
		if a := &e.Attrs[i]; a.Key == key && a.kind == attrInt {
			return a.num, true
		}
	}
	switch v := e.Details[key].(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case float64: // read back from JSON
		return int64(v), true
	}
	return 0, false
}

// withAttrsInDetails returns a copy of e whose Details hold its Attrs too, for those who
// read events as values (sinks): e itself is not changed.
func (e Event) withAttrsInDetails() Event {
	if len(e.Attrs) == 0 {
		return e
	}
	d := make(map[string]any, len(e.Details)+len(e.Attrs))
	for k, v := range e.Details {
		d[k] = v
	}
	for _, a := range e.Attrs {
		d[a.Key] = a.value()
	}
	e.Details, e.Attrs = d, nil
	return e
}
