package pgwire

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// clientLoop reads client messages, decides statements and forwards what may run. It
// returns when the client terminates or the connection ends.
func (ss *session) clientLoop() error {
	for {
		typ, body, err := ss.cr.next()
		if err != nil {
			if errors.Is(err, errTooLarge) {
				ss.inject(encode(errorResponse("FATAL", codeProtocolViolation, "message too large: "+err.Error(), "", "")), false)
			}
			return err
		}
		if ss.skip && typ != 'S' {
			continue
		}
		switch typ {
		case 'Q':
			err = ss.query(body)
		case 'P':
			err = ss.parse(body)
		case 'B':
			err = ss.bind(body)
		case 'E':
			err = ss.execute(body)
		case 'D':
			ss.expect('D', nil)
			err = ss.forward(typ, body)
		case 'C':
			var c pgproto3.Close
			if c.Decode(body) == nil {
				if c.ObjectType == 'S' {
					delete(ss.stmts, c.Name)
				} else {
					delete(ss.portals, c.Name)
				}
			}
			ss.expect('C', nil)
			err = ss.forward(typ, body)
		case 'S':
			ss.skip = false
			ss.expect('S', nil)
			err = ss.forward(typ, body)
		case 'H', 'd', 'c', 'f': // Flush; COPY data, done, fail (the COPY was decided)
			err = ss.forward(typ, body)
		case 'F':
			err = ss.functionCall(body)
		case 'X':
			ss.forward(typ, body)
			ss.uw.Flush()
			return nil
		default:
			ss.inject(encode(errorResponse("FATAL", codeProtocolViolation, fmt.Sprintf("invalid frontend message type %q", typ), "", "")), false)
			return fmt.Errorf("invalid frontend message type %q", typ)
		}
		if err != nil {
			return err
		}
		if !ss.cr.buffered() {
			if err := ss.uw.Flush(); err != nil {
				return err
			}
		}
	}
}

func (ss *session) forward(typ byte, body []byte) error { return writeRaw(ss.uw, typ, body) }

// query handles a simple-protocol Query: one decision for the whole string.
func (ss *session) query(body []byte) error {
	var q pgproto3.Query
	if err := q.Decode(body); err != nil {
		ss.inject(encode(errorResponse("ERROR", codeProtocolViolation, "malformed Query message", "", "")), true)
		return nil
	}
	act := ss.srv.cache.classify(q.String)
	// SQL-level PREPARE and EXECUTE: remember what was prepared, and decide EXECUTE (and
	// any protocol Bind to that name) on it.
	prepareName := ""
	if strings.HasPrefix(act.Kind, "PREPARE ") || act.Kind == "EXECUTE" {
		if name, prepare, ok := pgsql.PreparedName(q.String); ok {
			if prepare {
				prepareName = name
			} else if p := ss.stmts[name]; p != nil {
				cp := *p.act
				cp.Statement, cp.Kind = q.String, "EXECUTE "+strings.TrimPrefix(p.act.Kind, "PREPARE ")
				act = &cp
			}
		}
	}
	st, ok := ss.authorize(act, nil, nil, true)
	if !ok {
		return nil
	}
	if prepareName != "" {
		ss.stmts[prepareName] = &prepared{act: act}
	}
	ss.expect('Q', st)
	return ss.forward('Q', body)
}

// parse classifies the statement text of a Parse; the decision is taken at each Execute.
func (ss *session) parse(body []byte) error {
	var p pgproto3.Parse
	if err := p.Decode(body); err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Parse message", "", ""))
		return nil
	}
	ss.stmts[p.Name] = &prepared{act: ss.srv.cache.classify(p.Query)}
	ss.expect('P', nil)
	return ss.forward('P', body)
}

func (ss *session) bind(body []byte) error {
	var b pgproto3.Bind
	if err := b.Decode(body); err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Bind message", "", ""))
		return nil
	}
	pt := &portal{stmt: ss.stmts[b.PreparedStatement], formats: b.ParameterFormatCodes, params: make([][]byte, len(b.Parameters))}
	for i, v := range b.Parameters {
		if v != nil {
			pt.params[i] = bytes.Clone(v)
		}
	}
	ss.portals[b.DestinationPortal] = pt
	ss.expect('B', nil)
	return ss.forward('B', body)
}

// execute enforces the decision on the text the portal's statement was parsed from.
func (ss *session) execute(body []byte) error {
	var e pgproto3.Execute
	if err := e.Decode(body); err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Execute message", "", ""))
		return nil
	}
	var act *policy.Action
	var pt *portal
	if pt = ss.portals[e.Portal]; pt != nil && pt.stmt != nil {
		act = pt.stmt.act
	} else {
		// A portal we did not see bound, or bound to a statement we did not see parsed,
		// cannot be trusted to be what it claims: decide it as unknown.
		act = &policy.Action{Class: policy.ClassUnknown, Kind: "EXECUTE", Statement: "(unknown portal " + e.Portal + ")", EstimatedRows: -1}
		pt = &portal{}
	}
	st, ok := ss.authorize(act, pt.params, pt.formats, false)
	if !ok {
		return nil
	}
	ss.expect('E', st)
	return ss.forward('E', body)
}

// functionCall handles the fast-path function call, which can call any function by
// object id: it is decided as an unknown action.
func (ss *session) functionCall(body []byte) error {
	act := &policy.Action{Class: policy.ClassUnknown, Kind: "FUNCTION CALL", Statement: "(fast-path function call)", EstimatedRows: -1}
	st, ok := ss.authorize(act, nil, nil, true)
	if !ok {
		return nil
	}
	ss.expect('F', st)
	return ss.forward('F', body)
}

// extendedError answers an extended-protocol message with an error and, as PostgreSQL
// does, ignores what follows until Sync.
func (ss *session) extendedError(e *pgproto3.ErrorResponse) {
	ss.inject(encode(e), false)
	ss.skip = true
}
