package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

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
		// A message is being handled: Shutdown waits (drain); if it ended the session
		// first, the message is dropped unhandled — the client was told, it never ran.
		ss.mu.Lock()
		if ss.ending {
			ss.mu.Unlock()
			return nil
		}
		ss.busy = true
		ss.mu.Unlock()
		if ss.skip && typ != 'S' {
			ss.idle()
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
			ss.expect('D', nil, nil)
			err = ss.forward(typ, body)
		case 'C':
			err = ss.close(body)
		case 'S':
			ss.skip = false
			ss.expect('S', nil, nil)
			err = ss.forward(typ, body)
		case 'H', 'd', 'c', 'f': // Flush; COPY data, done, fail (the COPY was decided)
			err = ss.forward(typ, body)
		case 'F':
			err = ss.functionCall(body)
		case 'X':
			// The server answers what came before the Terminate, then closes; the relay
			// passes those answers on before the session ends.
			ss.mu.Lock()
			ss.terminating = true
			ss.mu.Unlock()
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
		ss.idle()
	}
}

// idle marks the end of handling a message (see drain).
func (ss *session) idle() {
	ss.mu.Lock()
	ss.busy = false
	ss.mu.Unlock()
}

func (ss *session) forward(typ byte, body []byte) error { return writeRaw(ss.uw, typ, body) }

// query handles a simple-protocol Query: one decision for the whole string.
func (ss *session) query(body []byte) error {
	if len(body) == 0 || bytes.IndexByte(body, 0) != len(body)-1 { // as pgproto3 decodes a Query
		ss.inject(encode(errorResponse("ERROR", codeProtocolViolation, "malformed Query message", "", "")), true)
		return nil
	}
	text := memoString(body[:len(body)-1], &ss.memo.query)
	if pgsql.MentionsSetting(text) {
		if s, ok, err := pgsql.ParseSetting(text); ok {
			ss.setting(s, err)
			return nil
		}
	}
	act := ss.srv.cache.classifyInto(text, &ss.keyBuf, &ss.queryAct)
	// SQL-level EXECUTE is decided on what the name was prepared as.
	if name, ok := executeName(act); ok {
		v, err := ss.lockView()
		if err != nil {
			return err
		}
		p := v.stmt(name, len(v.ops))
		ss.mu.Unlock()
		if p != nil {
			act = executeAction(text, p)
		}
	}
	st, ok := ss.authorize(act, nil, nil, true)
	if !ok {
		return nil
	}
	o := ss.newOp()
	o.kind, o.sql = opSQL, ss.srv.sqlEffects(text)
	if st.approval != "" && ss.approvedRole != "" && pgsql.RoleSafe(text) {
		return ss.runApprovedQuery(body, st, o)
	}
	ss.expect('Q', st, o)
	return ss.forward('Q', body)
}

// parse classifies the statement text of a Parse; the decision is taken at each Execute.
// The name stands for this text once the server confirms the Parse.
func (ss *session) parse(body []byte) error {
	var p pgproto3.Parse
	if err := p.Decode(body); err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Parse message", "", ""))
		return nil
	}
	if pgsql.MentionsSetting(p.Query) {
		if _, ok, _ := pgsql.ParseSetting(p.Query); ok {
			ss.extendedError(errorResponse("ERROR", codeInvalidParameter, "Portcullis settings are set with a simple query, not a prepared statement", "",
				"Send SET portcullis.reason = '...' as a simple query (psql, or pgx Exec without arguments), or give it at connect time (PGOPTIONS='-c portcullis.reason=...')."))
			return nil
		}
	}
	prep := &prepared{act: ss.srv.cache.classifyWith(p.Query, &ss.keyBuf), effects: ss.srv.sqlEffects(p.Query)}
	ss.expect('P', nil, &op{kind: opParse, name: p.Name, prep: prep})
	return ss.forward('P', body)
}

func (ss *session) bind(body []byte) error {
	o := ss.newOp()
	if err := decodeBind(body, o, &ss.memo); err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Bind message", "", ""))
		return nil
	}
	ss.expect('B', nil, o)
	return ss.forward('B', body)
}

// newOp returns an op for the client loop to fill: one the names released, or a new one.
// A released op is referred to by nothing, and the client loop holds no view of the
// names while it makes a new op, so no portal it read earlier can be this one.
func (ss *session) newOp() *op {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if n := len(ss.names.free); n > 0 {
		o := ss.names.free[n-1]
		ss.names.free = ss.names.free[:n-1]
		return o
	}
	return new(op)
}

// nameMemo keeps the last names and text of the messages on a statement's path, so that
// a driver sending the same ones again (a prepared statement run again, a query repeated)
// gets the same strings, not a new one each time.
type nameMemo struct{ portal, stmt, query string }

// memoString returns b as a string: *last when it is the same, else a new one it keeps.
func memoString(b []byte, last *string) string {
	if string(b) != *last { // compared without a new string
		*last = string(b)
	}
	return *last
}

var errMalformed = errors.New("malformed message")

// decodeBind decodes a Bind into o (kind, portal, statement, parameter formats and
// values) as pgproto3 does, errors included, reusing o's memory and the names in memo:
// a Bind is on every prepared statement's path. The values are copied into o.paramBuf.
func decodeBind(body []byte, o *op, memo *nameMemo) error {
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return errMalformed
	}
	portalName := body[:i]
	rp := i + 1
	i = bytes.IndexByte(body[rp:], 0)
	if i < 0 {
		return errMalformed
	}
	stmtName := body[rp : rp+i]
	rp += i + 1
	if len(body[rp:]) < 2 {
		return errMalformed
	}
	nf := int(binary.BigEndian.Uint16(body[rp:]))
	rp += 2
	if len(body[rp:]) < 2*nf {
		return errMalformed
	}
	formats := o.formats[:0]
	for range nf {
		formats = append(formats, int16(binary.BigEndian.Uint16(body[rp:])))
		rp += 2
	}
	if len(body[rp:]) < 2 {
		return errMalformed
	}
	np := int(binary.BigEndian.Uint16(body[rp:]))
	rp += 2
	// Two passes: the sizes first, so that the values go into one buffer that does not
	// move while params slice it.
	valuesAt, size := rp, 0
	for range np {
		if len(body[rp:]) < 4 {
			return errMalformed
		}
		n := int(int32(binary.BigEndian.Uint32(body[rp:])))
		rp += 4
		if n == -1 {
			continue
		}
		if n < 0 || len(body[rp:]) < n {
			return errMalformed
		}
		rp += n
		size += n
	}
	if len(body[rp:]) < 2 {
		return errMalformed
	}
	nr := int(binary.BigEndian.Uint16(body[rp:]))
	if len(body[rp+2:]) < 2*nr {
		return errMalformed
	}
	buf := o.paramBuf[:0]
	if buf == nil || cap(buf) < size { // never nil: an empty value is not a null one
		buf = make([]byte, 0, size)
	}
	params := o.params[:0]
	for rp = valuesAt; len(params) < np; {
		n := int(int32(binary.BigEndian.Uint32(body[rp:])))
		rp += 4
		if n == -1 {
			params = append(params, nil)
			continue
		}
		at := len(buf)
		buf = append(buf, body[rp:rp+n]...)
		params = append(params, buf[at:len(buf):len(buf)])
		rp += n
	}
	*o = op{kind: opBind, name: memoString(portalName, &memo.portal), stmt: memoString(stmtName, &memo.stmt),
		params: params, formats: formats, paramBuf: buf}
	return nil
}

func (ss *session) close(body []byte) error {
	var c pgproto3.Close
	if err := c.Decode(body); err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Close message", "", ""))
		return nil
	}
	o := &op{kind: opClosePortal, name: c.Name}
	if c.ObjectType == 'S' {
		o.kind = opCloseStmt
	}
	ss.expect('C', nil, o)
	return ss.forward('C', body)
}

// decodeExecute decodes an Execute as pgproto3 does, without a new string for the unnamed
// portal, the one drivers use: an Execute is on every prepared statement's path.
func decodeExecute(body []byte) (pgproto3.Execute, error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 || len(body) != i+5 {
		var e pgproto3.Execute
		return e, e.Decode(body) // its error, for what is malformed
	}
	e := pgproto3.Execute{MaxRows: binary.BigEndian.Uint32(body[i+1:])}
	if i > 0 {
		e.Portal = string(body[:i])
	}
	return e, nil
}

// execute enforces the decision on the text the portal's statement was parsed from.
func (ss *session) execute(body []byte) error {
	e, err := decodeExecute(body)
	if err != nil {
		ss.extendedError(errorResponse("ERROR", codeProtocolViolation, "malformed Execute message", "", ""))
		return nil
	}
	v, err := ss.lockView()
	if err != nil {
		return err
	}
	pt := v.portal(e.Portal, len(v.ops))
	var act *policy.Action
	var effects []sqlEffect
	if pt.stmt != nil {
		act, effects = pt.stmt.act, pt.stmt.effects
		if name, ok := executeName(act); ok {
			if p := v.stmt(name, len(v.ops)); p != nil {
				act = executeAction(act.Statement, p)
			}
		}
	}
	ss.mu.Unlock()
	if act == nil {
		// A portal the server has not confirmed, or bound to a statement it has not
		// confirmed, cannot be trusted to be what it claims: decide it as unknown.
		act = &policy.Action{Class: policy.ClassUnknown, Kind: "EXECUTE", Statement: "(unknown portal " + e.Portal + ")", EstimatedRows: -1}
		pt = portal{}
	}
	st, ok := ss.authorize(act, pt.params, pt.formats, false)
	if !ok {
		return nil
	}
	var o *op
	if effects != nil {
		o = &op{kind: opSQL, sql: effects}
	}
	if st.approval != "" && ss.approvedRole != "" && pgsql.RoleSafe(act.Statement) {
		return ss.runApprovedExecute(body, st, o)
	}
	ss.expect('E', st, o)
	return ss.forward('E', body)
}

// defaultPipelineWait is Server.PipelineWait's default.
const defaultPipelineWait = 3 * time.Second

// lockView returns the names as the server will have them when it reaches the next
// message, with ss.mu held; the caller unlocks it. While a message of an earlier pipeline
// that can change names is unanswered, it flushes what was forwarded and waits, up to
// Server.PipelineWait: answers that do not come by then (a slow earlier statement, or a server that
// holds them until a Sync still behind this message) leave the view uncertain, and every
// name in it is decided as unknown.
func (ss *session) lockView() (pendingView, error) {
	flushed := false
	wait := ss.srv.PipelineWait
	if wait <= 0 {
		wait = defaultPipelineWait
	}
	deadline := time.Now().Add(wait)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	ss.mu.Lock()
	for {
		boundary := -1 // the last Sync, Query or function call queued
		for i := len(ss.queue) - 1; i >= 0; i-- {
			if k := ss.queue[i].kind; k == 'S' || k == 'Q' || k == 'F' {
				boundary = i
				break
			}
		}
		earlier := false
		for i := 0; i <= boundary && !earlier; i++ {
			earlier = ss.queue[i].op != nil
		}
		if !earlier {
			ops := ss.viewOps[:0]
			for i := boundary + 1; i < len(ss.queue); i++ {
				if o := ss.queue[i].op; o != nil {
					ops = append(ops, o)
				}
			}
			ss.viewOps = ops
			return pendingView{n: &ss.names, ops: ops}, nil
		}
		if ss.upDone {
			ss.mu.Unlock()
			return pendingView{}, errUpstreamGone
		}
		if !flushed {
			ss.mu.Unlock()
			if err := ss.uw.Flush(); err != nil {
				return pendingView{}, err
			}
			flushed = true
			timer = time.AfterFunc(wait, func() {
				ss.mu.Lock()
				ss.cond.Broadcast()
				ss.mu.Unlock()
			})
			ss.mu.Lock()
			continue
		}
		if !time.Now().Before(deadline) {
			ss.srv.Log.Warn("answers to an earlier pipeline did not come in time; deciding its names as unknown",
				"session", ss.id, "waited", wait, "owed", ss.owed(), "discarding", ss.discarding, "tx_status", string(ss.txStatus))
			return pendingView{n: &ss.names, uncertain: true}, nil
		}
		ss.cond.Wait()
	}
}

var errUpstreamGone = errors.New("the upstream connection closed")

// owed describes the responses owed, for logs: one letter a message (its type; 0 for
// Portcullis's own), with * after those that change names. ss.mu is held.
func (ss *session) owed() string {
	b := make([]byte, 0, 2*len(ss.queue))
	for _, e := range ss.queue {
		k := e.kind
		if k == 0 {
			k = '0'
		}
		b = append(b, k)
		if e.op != nil {
			b = append(b, '*')
		}
	}
	return string(b)
}

// functionCall handles the fast-path function call, which can call any function by
// object id: it is decided as an unknown action.
func (ss *session) functionCall(body []byte) error {
	act := &policy.Action{Class: policy.ClassUnknown, Kind: "FUNCTION CALL", Statement: "(fast-path function call)", EstimatedRows: -1}
	st, ok := ss.authorize(act, nil, nil, true)
	if !ok {
		return nil
	}
	ss.expect('F', st, nil)
	return ss.forward('F', body)
}

// extendedError answers an extended-protocol message with an error and, as PostgreSQL
// does, ignores what follows until Sync.
func (ss *session) extendedError(e *pgproto3.ErrorResponse) {
	ss.inject(encode(e), false)
	ss.skip = true
}
