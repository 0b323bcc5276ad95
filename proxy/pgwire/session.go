package pgwire

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/identity"
)

// session is one client connection and its upstream connection.
type session struct {
	srv        *Server
	id         string
	remote     string
	clientUser string
	database   string // as the client asked for it: the resource's name
	who        *identity.Identity
	res        *configs.Resource

	client net.Conn
	cr     *reader
	cw     *bufio.Writer // guarded by mu once the relay runs
	up     net.Conn
	ur     *reader
	uw     *bufio.Writer // client loop only

	creds elevation.Credentials // upstream credentials; released when the session ends
	// approvedRole is the database role an approved statement runs under, switched on
	// for that execution alone (credentials.vault.approved_role); empty for none.
	approvedRole string
	grant        *elevation.Request // the grant (elevation or break-glass) the session is bound to, or nil
	reason       string             // portcullis.reason: why the client runs what it runs, for approvers
	stopWatch    func()             // stops the grant watcher
	// traceCtx carries the session's span when Server.Tracer is set (else Background).
	traceCtx context.Context

	pid      uint32
	secret   []byte
	upPID    uint32
	upSecret []byte
	upParams map[string]string

	// Client loop state.
	keyBuf     []byte        // the shape key of the statement being classified
	queryAct   policy.Action // a simple Query's action, while it is decided (authorize copies it)
	memo       nameMemo
	hash       hash.Hash // SHA-256, for statement and parameter digests
	sumBuf     [sha256.Size]byte
	lastDigest struct{ text, sum string }
	spareEv    *audit.Event // a statement event written and free for the next statement
	// resultEv is the memory of every result event, which the log copies (guarded by mu).
	resultEv *audit.Event
	skip     bool // after an error of ours in the extended protocol, until Sync
	viewOps  []*op
	dec      policy.Decision
	stats    struct{ statements, denied, approvals int }
	// unsynced is set while writes of the open transaction block were audited without
	// waiting for fsync; the COMMIT waits for it.
	unsynced bool

	// waitCancel withdraws the statement waiting for approval, if any.
	waitCancel atomic.Pointer[context.CancelCauseFunc]

	mu       sync.Mutex
	cond     *sync.Cond        // on mu: signalled when the relay settles a response or ends
	queue    []entry           // responses owed to the client, in order
	queueArr []entry           // the array queue started in: reused once the queue is empty
	tags     map[string]string // command tags seen, to reuse their strings (internTag)
	// freeResult is a statement's result record that finish is done with, for the next
	// allowed statement (see newResult).
	freeResult *stmtResult
	names      names // prepared statements and portals, as the server confirmed them
	txStatus   byte
	ending     bool
	running    bool // run has started: the client loop and the relay are up
	busy       bool // the client loop is handling a message (see drain)
	// terminating is set once the client sent Terminate: the upstream closing is expected.
	terminating bool
	upDone      bool // the relay has ended
	// discarding is set after an error in the extended protocol when no Sync is queued:
	// the server skips every message until the next Sync.
	discarding bool
}

// entry is a response the client is owed: the response to a message forwarded upstream
// (kind is its type), or, when kind is 0, bytes Portcullis writes itself.
type entry struct {
	kind byte
	data []byte
	rfq  bool // synthetic: follow with ReadyForQuery at the then current status
	stmt *stmtResult
	op   *op // the change to the names the message makes once confirmed
	hide hide
}

// hide says which responses to a message the client does not see: those of messages
// Portcullis sends itself around an approved statement (see runApproved).
type hide uint8

const (
	showAll    hide = iota
	hideButErr      // Portcullis's own message: only an error reaches the client
	hideAll         // Portcullis's own message whose failure the client need not know
	hideReady       // the client's message, whose ReadyForQuery comes later
	hideButEnd      // Portcullis's own message that ends the client's: errors and ReadyForQuery
)

// shows reports whether the client sees a response of type typ.
func (h hide) shows(typ byte) bool {
	switch h {
	case hideButErr:
		return typ == 'E'
	case hideAll:
		return false
	case hideReady:
		return typ != 'Z'
	case hideButEnd:
		return typ == 'E' || typ == 'Z'
	}
	return true
}

// stmtResult collects how a forwarded statement ended, for the audit log.
type stmtResult struct {
	start     time.Time
	tag       string
	errCode   string
	errMsg    string
	approval  string
	act       *policy.Action // what was decided: the answer's tag must agree
	copiedOut bool           // a CopyOutResponse came for the statement now answering
	skipped   bool           // never ran: an earlier message of its pipeline failed
	// reuse is set on the records of allowed statements, which only the session's queue
	// refers to once forwarded: finish frees them for the next one. actCopy holds act.
	reuse   bool
	actCopy policy.Action
	// span is the statement's and upSpan its run upstream's, when traced; finish ends them.
	span, upSpan trace.Span
}

// newResult returns the result record of an allowed statement, with a copy of act: the
// caller's Action may be the session's scratch one or a prepared statement's, changed
// by the next statement while this one's answer is still owed.
func (ss *session) newResult(start time.Time, act *policy.Action) *stmtResult {
	ss.mu.Lock()
	st := ss.freeResult
	ss.freeResult = nil
	ss.mu.Unlock()
	if st == nil {
		st = new(stmtResult)
	}
	*st = stmtResult{start: start, reuse: true, actCopy: *act}
	st.act = &st.actCopy
	return st
}

func (ss *session) run() {
	ss.names = names{stmts: map[string]*prepared{}, portals: map[string]*portal{}}
	ss.cond = sync.NewCond(&ss.mu)
	ss.mu.Lock()
	ss.running = true
	ss.mu.Unlock()
	start := ss.srv.Now()
	ss.traceCtx = context.Background()
	var span trace.Span
	if ss.srv.Tracer != nil {
		ss.traceCtx, span = ss.srv.gate.Span(ss.traceCtx, "pg.session", trace.SpanKindServer)
		span.SetAttributes(attribute.String("portcullis.session", ss.id), attribute.String("enduser.id", ss.who.User),
			attribute.String("portcullis.resource", ss.res.Name), attribute.String("db.system.name", "postgresql"),
			attribute.String("client.address", ss.remote))
		defer span.End()
	}
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		ss.relay()
	}()
	if ss.grant != nil {
		ss.stopWatch = ss.watchGrant()
	}
	err := ss.clientLoop()
	if ss.stopWatch != nil {
		ss.stopWatch()
	}
	ss.mu.Lock()
	terminating := ss.terminating && err == nil
	ss.mu.Unlock()
	if terminating {
		// Let the answers owed before the Terminate reach the client (the server closes
		// its end after them), within a bound.
		select {
		case <-relayDone:
		case <-time.After(5 * time.Second):
		}
	}
	ss.mu.Lock()
	ss.ending = true
	ss.mu.Unlock()
	ss.up.Close()
	<-relayDone
	for _, e := range ss.queue { // owed answers that will never come
		if e.stmt != nil && e.stmt.span != nil {
			e.stmt.errCode, e.stmt.errMsg = codeConnectionFailure, "the session ended before PostgreSQL answered"
			endStatement(e.stmt)
		}
		if e.stmt != nil && e.stmt.approval != "" {
			ss.outcome(e.stmt.approval, elevation.Outcome{Result: elevation.OutcomeUnknown, Message: "the session ended before PostgreSQL answered"})
			e.stmt.approval = ""
		}
	}
	ss.client.Close()
	ss.srv.unregister(ss)
	if rerr := ss.srv.Broker.Release(context.Background(), ss.creds); rerr != nil {
		ss.srv.Log.Error("could not release upstream credentials", "session", ss.id, "err", rerr)
	}
	result, reason := "ok", ""
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		result, reason = "error", err.Error()
		if span != nil {
			span.SetStatus(codes.Error, reason)
		}
	}
	if span != nil {
		span.SetAttributes(attribute.Int("portcullis.statements", ss.stats.statements), attribute.Int("portcullis.denied", ss.stats.denied))
	}
	ss.srv.Audit.Enqueue(&audit.Event{Type: audit.TypePGSessionEnd, Actor: ss.who.User, Resource: ss.res.Name, Session: ss.id, Result: result, Reason: reason,
		Details: map[string]any{"duration_ms": ss.srv.Now().Sub(start).Milliseconds(), "statements": ss.stats.statements, "denied": ss.stats.denied, "approvals": ss.stats.approvals}})
}

// watchGrant cuts an elevated session when its grant ends (its not_after, or revoked):
// the client gets a 57P01 termination saying so, and the connection closes; the lease is
// revoked as the session ends.
// bindGrant ties the session to a break-glass session it used, so that it is cut when that
// ends. A session already bound keeps its first grant.
func (ss *session) bindGrant(bg *elevation.Request) {
	if ss.grant == nil {
		ss.grant = bg
		ss.stopWatch = ss.watchGrant()
	}
}

func (ss *session) watchGrant() (stop func()) {
	return every(250*time.Millisecond, func() bool {
		now := ss.srv.Now()
		grants, err := ss.srv.Approvals.Grants(context.Background(), ss.who.User, now)
		if err == nil && slices.ContainsFunc(grants, func(g *elevation.Request) bool { return g.ID == ss.grant.ID }) {
			return false
		}
		if err != nil && now.Before(ss.grant.NotAfter) {
			return false // cannot tell; the deadline still holds
		}
		ss.srv.Audit.Enqueue(&audit.Event{Type: audit.TypePGSessionCut, Actor: "portcullis", Subject: ss.who.User, Resource: ss.res.Name, Session: ss.id,
			Result: "terminated", Reason: ss.grant.Type + " ended", BreakGlass: breakGlassID(ss.grant), Details: map[string]any{"grant": ss.grant.ID, "role": ss.grant.Artifact.Role}})
		// A FATAL may come at any message boundary; the relay holds mu between messages.
		ss.mu.Lock()
		ss.ending = true
		ss.cw.Write(encode(errorResponse("FATAL", codeAdminShutdown, endedMessage(ss.grant), "", "Request the role again if you still need it.")))
		ss.cw.Flush()
		ss.mu.Unlock()
		ss.kill()
		return true
	})
}

func breakGlassID(r *elevation.Request) string {
	if r.Type == elevation.TypeBreakGlass {
		return r.ID
	}
	return ""
}

func endedMessage(r *elevation.Request) string {
	if r.Type == elevation.TypeBreakGlass {
		return fmt.Sprintf("terminating connection: break-glass session %s ended", r.ID)
	}
	return fmt.Sprintf("terminating connection: your %s elevation (%s) ended", r.Artifact.Role, r.ID)
}

// errShuttingDown withdraws a statement waiting for approval when Portcullis shuts down;
// its request stays pending for a re-run.
var errShuttingDown = gate.ErrShuttingDown

// drain ends the session if it is idle, telling the client why (see Server.Shutdown); a
// statement waiting for approval is withdrawn first, its client told, and the session
// ended once idle, at a later call.
func (ss *session) drain() {
	if wc := ss.waitCancel.Load(); wc != nil {
		(*wc)(errShuttingDown)
		return
	}
	ss.mu.Lock()
	idle := ss.running && !ss.busy && !ss.ending && len(ss.queue) == 0 && ss.txStatus == 'I'
	if idle {
		ss.ending = true
		ss.cw.Write(encode(errorResponse("FATAL", codeAdminShutdown, "terminating connection: Portcullis is shutting down", "",
			"Connect again: another Portcullis takes the session. No statement was cut.")))
		ss.cw.Flush()
	}
	ss.mu.Unlock()
	if idle {
		ss.kill()
	}
}

// kill ends the session from outside (server shutdown).
func (ss *session) kill() {
	ss.client.Close()
	if ss.up != nil {
		ss.up.Close()
	}
}

// cancel withdraws a statement waiting for approval, or cancels the running one upstream.
func (ss *session) cancel() {
	if wc := ss.waitCancel.Load(); wc != nil {
		(*wc)(errCancelRequested)
		return
	}
	go func() {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", ss.res.Upstream)
		if err != nil {
			ss.srv.Log.Warn("could not forward a cancel request", "session", ss.id, "err", err)
			return
		}
		defer c.Close()
		b, _ := (&pgproto3.CancelRequest{ProcessID: ss.upPID, SecretKey: ss.upSecret}).Encode(nil)
		c.Write(b)
		io.Copy(io.Discard, c) // the server closes when done
	}()
}

var errCancelRequested = errors.New("canceling statement due to user request")

// relay copies upstream messages to the client and settles the response queue.
func (ss *session) relay() {
	locked := false // ss.mu is held: a panic under it must not lock again
	defer func() {
		if p := recover(); p != nil {
			// A bug must cost this session only: it is closed, loudly.
			ss.srv.Log.Error("a session's relay failed; the session is closed", "session", ss.id, "panic", p, "stack", string(debug.Stack()))
			ss.kill()
		}
		if !locked {
			ss.mu.Lock()
		}
		ss.upDone = true
		ss.cond.Broadcast()
		ss.mu.Unlock()
	}()
	for {
		typ, body, err := ss.ur.next()
		ss.mu.Lock()
		locked = true
		if err != nil {
			if !ss.ending && !ss.terminating {
				ss.srv.Log.Warn("upstream connection lost", "session", ss.id, "err", err)
				ss.cw.Write(encode(errorResponse("FATAL", codeConnectionFailure, "the upstream connection to "+ss.res.Name+" closed", "", "")))
				ss.cw.Flush()
			}
			ss.mu.Unlock()
			locked = false
			ss.client.Close() // ends the client loop
			return
		}
		show := len(ss.queue) == 0 || ss.queue[0].hide.shows(typ)
		if mm := ss.settle(typ, body); mm != nil {
			ss.deceived(mm)
			ss.mu.Unlock()
			locked = false
			return
		}
		if show {
			writeRaw(ss.cw, typ, body)
		}
		ss.writeSynthetic()
		ss.cond.Broadcast()
		if !ss.ur.buffered() {
			if err := ss.cw.Flush(); err != nil {
				ss.mu.Unlock()
				locked = false
				ss.up.Close()
				return
			}
		}
		ss.mu.Unlock()
		locked = false
	}
}

// mismatch is a statement whose answer does not agree with what was decided for it.
type mismatch struct {
	st  *stmtResult
	tag string
}

// settle updates the queue and the names for one upstream message, before it is written
// to the client. It returns a mismatch, and settles nothing more, when the message is the
// CommandComplete of a statement that did something other than what was decided. ss.mu
// is held.
func (ss *session) settle(typ byte, body []byte) *mismatch {
	var head *entry
	if len(ss.queue) > 0 {
		head = &ss.queue[0]
	}
	switch typ {
	case 'Z':
		ss.txStatus = body[0]
		if head != nil && head.kind == 'Q' {
			// A simple Query drops the unnamed statement and portal.
			delete(ss.names.stmts, "")
			ss.names.dropPortal("")
		}
		if ss.txStatus == 'I' {
			ss.names.transactionEnded()
		}
		ss.pop()
	case '1', '2', '3': // ParseComplete, BindComplete, CloseComplete
		if head != nil && head.op != nil {
			ss.names.confirm(head.op)
		}
		ss.pop()
	case 'T', 'n': // RowDescription, NoData: the end of a Describe
		if head != nil && head.kind == 'D' {
			ss.pop()
		}
	case 'C':
		var cc pgproto3.CommandComplete
		if head != nil && cc.Decode(body) == nil {
			tag := ss.internTag(cc.CommandTag)
			if st := head.stmt; st != nil && head.hide != hideButEnd {
				st.tag = tag
				if st.act != nil && !tagAgrees(st.act, tag, st.copiedOut) {
					return &mismatch{st: st, tag: tag}
				}
				st.copiedOut = false
			}
			if head.kind == 'E' || head.kind == 'Q' {
				o := head.op
				if o == nil && tagEffect(tag) != 0 {
					o = &op{kind: opSQL}
				}
				if o != nil {
					ss.names.applyTag(o, tag)
				}
			}
		}
		if head != nil && head.kind == 'E' {
			ss.pop()
		}
	case 'H': // CopyOutResponse: the COPY under way sends rows out
		if head != nil && head.stmt != nil {
			head.stmt.copiedOut = true
		}
	case 'I', 's': // EmptyQueryResponse, PortalSuspended
		if head != nil && head.kind == 'E' {
			ss.pop()
		}
	case 'E':
		if head != nil && head.stmt != nil {
			var er pgproto3.ErrorResponse
			if er.Decode(body) == nil {
				head.stmt.errCode, head.stmt.errMsg = er.Code, er.Message
			}
		}
		if head != nil && head.kind != 'Q' && head.kind != 'F' && head.kind != 'S' {
			// In the extended protocol the server now skips everything until Sync.
			if head.op != nil {
				ss.names.refused(head.op)
			}
			ss.pop()
			for len(ss.queue) > 0 && ss.queue[0].kind != 'S' {
				if st := ss.queue[0].stmt; st != nil {
					st.skipped = true
				}
				ss.finish(&ss.queue[0])
				ss.queue = ss.queue[1:]
			}
			ss.discarding = len(ss.queue) == 0
		}
	}
	return nil
}

// pop settles the head of the queue.
func (ss *session) pop() {
	if len(ss.queue) == 0 {
		return
	}
	head := &ss.queue[0]
	if head.hide != hideReady { // its statement ends with the COMMIT that follows
		ss.finish(head)
	}
	if o := head.op; o != nil && o.portal.bind != o { // a confirmed Bind's lives on in its portal
		ss.names.release(o)
	}
	ss.queue[0] = entry{}
	ss.queue = ss.queue[1:]
}

// writeSynthetic writes the responses of ours that are now at the head of the queue.
func (ss *session) writeSynthetic() {
	for len(ss.queue) > 0 && ss.queue[0].kind == 0 {
		e := ss.queue[0]
		ss.queue = ss.queue[1:]
		ss.cw.Write(e.data)
		if e.rfq {
			ss.cw.Write(encode(&pgproto3.ReadyForQuery{TxStatus: ss.txStatus}))
		}
	}
}

// maxTags bounds the command tags a session keeps to reuse.
const maxTags = 64

// internTag returns tag as a string, the same string for the same tag while the session
// has room to keep them: a session mostly sees a few ("SELECT 1", "UPDATE 1"), and a
// string per answer would be an allocation per statement. Called with mu held.
func (ss *session) internTag(tag []byte) string {
	if t, ok := ss.tags[string(tag)]; ok { // a lookup by the bytes: no string is made
		return t
	}
	t := string(tag)
	if len(ss.tags) < maxTags {
		if ss.tags == nil {
			ss.tags = make(map[string]string, 8)
		}
		ss.tags[t] = t
	}
	return t
}

// owe adds a response the client is owed to the queue. The queue is popped from its
// front, so an append would soon need a new array: once it is empty, it starts again at
// the beginning of its array. Called with mu held.
func (ss *session) owe(e entry) {
	if len(ss.queue) == 0 {
		ss.queue = ss.queueArr[:0]
	}
	ss.queue = append(ss.queue, e)
	if cap(ss.queue) > cap(ss.queueArr) {
		ss.queueArr = ss.queue[:0]
	}
}

// inject sends bytes of ours to the client after every response owed before them.
func (ss *session) inject(data []byte, rfq bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.owe(entry{data: data, rfq: rfq})
	if len(ss.queue) == 1 {
		ss.writeSynthetic()
		ss.cw.Flush()
	}
}

// expect records that a forwarded message is owed a response, and the change o it makes
// to the names once confirmed. A message the server will skip (an earlier one of its
// pipeline failed) is owed nothing and changes nothing.
func (ss *session) expect(kind byte, st *stmtResult, o *op) {
	ss.expectHidden(kind, st, o, showAll)
}

// expectHidden is expect for a message some of whose responses the client does not see.
func (ss *session) expectHidden(kind byte, st *stmtResult, o *op, h hide) {
	ss.mu.Lock()
	switch {
	case ss.discarding && kind != 'S':
		if st != nil {
			st.skipped = true
			ss.finish(&entry{stmt: st})
		}
	default:
		ss.discarding = false
		ss.owe(entry{kind: kind, stmt: st, op: o, hide: h})
	}
	ss.mu.Unlock()
}

func (ss *session) inTransaction() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.txStatus != 'I'
}

// txBlock reports whether an explicit transaction block is open and healthy, with every
// response settled, so the status is current.
func (ss *session) txBlock() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.txStatus == 'T' && len(ss.queue) == 0
}

// finish audits how a statement ended; the event is queued, not waited for.
func (ss *session) finish(e *entry) {
	st := e.stmt
	if st == nil {
		return
	}
	if st.act != nil && mayChangeFunctions(st.act.Class) {
		ss.srv.funcs.forget(ss.res.Name) // what it changed is now visible to all
	}
	ev := ss.resultEv // Enqueue copies it; finish runs with mu held
	if ev == nil {
		ev = audit.NewEvent()
		ss.resultEv = ev
	}
	ev.Reset()
	ev.Type, ev.Actor, ev.Resource, ev.Session, ev.Result = audit.TypePGResult, ss.who.User, ss.res.Name, ss.id, "ok"
	ev.Attrs = append(ev.Attrs, audit.Int("duration_us", ss.srv.Now().Sub(st.start).Microseconds()), audit.String("tag", st.tag))
	if st.act != nil {
		ev.Action = st.act.Statement // so that a result reads on its own
	}
	switch {
	case st.skipped:
		ev.Result, ev.Reason = "skipped", "not run: an earlier message of the pipeline failed"
	case st.errCode != "":
		ev.Result, ev.Reason = "error", st.errCode+": "+st.errMsg
	}
	if st.approval != "" {
		ev.Attrs = append(ev.Attrs, audit.String("approval", st.approval))
		o := elevation.Outcome{Result: elevation.OutcomeRan, Tag: st.tag}
		switch {
		case st.skipped:
			o = elevation.Outcome{Result: elevation.OutcomeNotRun, Message: "an earlier message of its pipeline failed"}
		case st.errCode != "":
			o = elevation.Outcome{Result: elevation.OutcomeFailed, Code: st.errCode, Message: st.errMsg}
		}
		ss.outcome(st.approval, o)
		st.approval = "" // recorded
	}
	ss.srv.Audit.Enqueue(ev)
	if st.span != nil {
		endStatement(st)
	}
	if st.reuse {
		ss.freeResult = st
	}
}

// endStatement ends a traced statement's spans with how it ended.
func endStatement(st *stmtResult) {
	var err error
	switch {
	case st.skipped:
		err = errors.New("not run: an earlier message of the pipeline failed")
	case st.errCode != "":
		err = errors.New(st.errCode + ": " + st.errMsg)
	}
	attrs := []attribute.KeyValue{attribute.String("db.response.status_code", st.errCode), attribute.String("portcullis.tag", st.tag)}
	if st.upSpan != nil {
		gate.EndSpan(st.upSpan, err, attrs...)
	}
	gate.EndSpan(st.span, err, attrs...)
	st.span, st.upSpan = nil, nil
}

// outcome records what became of an approved statement on its request, without holding
// up the session; a failure is logged.
func (ss *session) outcome(id string, o elevation.Outcome) {
	ss.srv.outcomes.Add(1)
	go func() {
		defer ss.srv.outcomes.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := ss.srv.Approvals.RecordOutcome(ctx, id, o); err != nil {
			ss.srv.Log.Error("could not record an approved statement's outcome on its request", "approval", id, "session", ss.id, "outcome", o.Result, "err", err)
		}
	}()
}
