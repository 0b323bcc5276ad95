package pgwire

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/human"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
)

var errClientGone = errors.New("the client went away")

// authorize decides a statement about to run and returns whether to forward it. When it
// does not, the client has been answered. simple says which protocol's error shape to use.
func (ss *session) authorize(act *policy.Action, params [][]byte, formats []int16, simple bool) (*stmtResult, bool) {
	if ss.srv.Tracer == nil {
		return ss.decide(context.Background(), act, params, formats, simple)
	}
	ctx, span := ss.srv.gate.Span(ss.traceCtx, "pg.statement", trace.SpanKindInternal)
	span.SetAttributes(attribute.String("db.operation.name", act.Kind), attribute.String("portcullis.class", act.Class.String()),
		attribute.StringSlice("db.collection.names", act.Tables))
	st, ok := ss.decide(ctx, act, params, formats, simple)
	span.SetAttributes(attribute.String("portcullis.decision", ss.dec.Effect.String()))
	if !ok {
		gate.EndSpan(span, errors.New("not run: "+ss.dec.Effect.String()))
		return nil, false
	}
	if st.approval != "" {
		span.SetAttributes(attribute.String("portcullis.approval", st.approval))
	}
	st.span = span
	_, st.upSpan = ss.srv.Tracer.Start(ctx, "pg.upstream", trace.WithSpanKind(trace.SpanKindClient))
	return st, true
}

// decide is authorize under ctx (which carries the statement's span when traced).
func (ss *session) decide(ctx context.Context, act *policy.Action, params [][]byte, formats []int16, simple bool) (*stmtResult, bool) {
	ss.stats.statements++
	act = ss.srv.refine(ss.res, act, ss.id)
	now := ss.srv.Now()
	act.InTransaction = ss.inTransaction()
	// An estimate is of this execution (its parameters, the table now): it goes on a copy,
	// never on the Action a prepared statement keeps for its next Execute.
	estimated := false
	if ss.srv.Config.Engine.NeedsEstimate(ss.res.Name, act.Class) && estimable(act) {
		act = ss.withEstimate(act, params, formats)
		estimated = true
	}
	d := &ss.dec
	v := ss.srv.gate.Decide(ctx, &ss.who.Subject, ss.res.Name, act, now, d)
	if v.Effect == policy.RequireApproval && !estimated && estimable(act) {
		// No policy reads the estimate, but the approver wants the blast radius.
		act = ss.withEstimate(act, params, formats)
	}
	ev := ss.statementEvent(act, params, formats, d)
	effect := v.Effect
	if bg := v.BreakGlass; bg != nil {
		// Break glass: allowed, loudly. The event says what it would have been.
		ev.Decision, ev.BreakGlass = policy.Allow.String(), bg.ID
		var bypassed []string
		for _, r := range d.Deciding() {
			bypassed = append(bypassed, r.Name)
		}
		ev.Attrs = append(ev.Attrs, audit.String("original_decision", d.Effect.String()), audit.Strings("bypassed", bypassed))
		ev.Reason = "break-glass " + bg.ID + " bypassed: " + ev.Reason
		ss.bindGrant(bg)
	}
	switch effect {
	case policy.Allow:
		if mayChangeFunctions(act.Class) {
			ss.srv.funcs.forget(ss.res.Name)
		}
		if err := ss.audit(ev, ev.BreakGlass == "" && ss.needsOnlyWrite(act)); err != nil {
			ss.fail(simple, errorResponse("ERROR", codeInternal, "statement not run: the audit log cannot be written", "", "tell the Portcullis operators"))
			return nil, false
		}
		// Written: the log holds it no longer (sinks got copies), so the next statement's
		// event can use its memory.
		ss.spareEv = ev
		return ss.newResult(now, act), true
	case policy.Deny:
		ss.stats.denied++
		ev.Result = "denied"
		ss.audit(ev, false) // denied either way; a failure is logged by audit
		ss.fail(simple, errorResponse("ERROR", codeInsufficientPrivilege, "permission denied by Portcullis: "+d.Reason(),
			fmt.Sprintf("Resource %s, %s statement (%s), policy snapshot %.12s.", ss.res.Name, act.Class, act.Kind, d.Snapshot),
			"Request an elevated role (portcullis request ROLE --for 1h --reason ...) or, in an emergency, break glass; if the policy is wrong, ask its owners."))
		return nil, false
	default:
		if d.Quorum != nil && d.Quorum.RequireReason && ss.reason == "" {
			ev.Result, ev.Reason = "refused", "no reason given: "+ev.Reason
			ss.auditLoudly(ev)
			ss.fail(simple, errorResponse("ERROR", codeInsufficientPrivilege, "Portcullis: this statement needs a reason before it can be sent for approval ("+d.Reason()+")",
				"Approvers see the reason with the statement.", reasonHint))
			return nil, false
		}
		held := *act // act may be the session's scratch Action, and the wait outlives it
		return ss.awaitApproval(ctx, &held, params, formats, d, ev, simple)
	}
}

// withEstimate returns a copy of act with the planner's row estimate for this execution.
func (ss *session) withEstimate(act *policy.Action, params [][]byte, formats []int16) *policy.Action {
	cp := *act
	cp.EstimatedRows = ss.srv.estimate(ss.res, ss.approvedRole, act.Statement, params, formats, ss.id)
	return &cp
}

// estimable reports whether the planner can estimate the rows act touches.
func estimable(act *policy.Action) bool {
	return (act.Kind == "UPDATE" || act.Kind == "DELETE") && !act.MultiStatement
}

// fail answers the current statement with an error.
func (ss *session) fail(simple bool, e *pgproto3.ErrorResponse) {
	if simple {
		ss.inject(encode(e), true)
	} else {
		ss.extendedError(e)
	}
}

// needsOnlyWrite reports whether a statement's audit event need only be written, not
// fsynced, before the statement runs. Reads change nothing. Writes inside an explicit
// transaction block change nothing lasting until COMMIT: should Portcullis die first, the
// upstream connection drops and PostgreSQL rolls them back; so they are written, and the
// COMMIT waits until everything before it is durable. DDL, admin, unknown statements and
// multi-statement strings are always durable first.
func (ss *session) needsOnlyWrite(act *policy.Action) bool {
	switch {
	case ss.unsynced && (act.MultiStatement || isCommit(act)):
		// Ends (or may end, hidden in a string) a block with unsynced writes.
	case act.Class == policy.ClassRead:
		return true
	case (act.Class == policy.ClassWrite || act.Class == policy.ClassDelete) && !act.MultiStatement && ss.txBlock():
		ss.unsynced = true
		return true
	}
	ss.unsynced = false // a durable append syncs every event before it
	return false
}

// isCommit reports whether a statement ends a transaction block durably.
func isCommit(act *policy.Action) bool {
	switch act.Kind {
	case "COMMIT", "PREPARE", "COMMIT_PREPARED":
		return true
	}
	return false
}

// audit writes a statement event before the statement is forwarded: fsynced, unless
// writeOnly (see needsOnlyWrite).
func (ss *session) audit(ev *audit.Event, writeOnly bool) error {
	var err error
	if writeOnly {
		err = ss.srv.Audit.AppendWritten(context.Background(), ev)
	} else {
		err = ss.srv.Audit.Append(context.Background(), ev)
	}
	if err != nil {
		ss.srv.Log.Error("audit write failed; statement refused", "session", ss.id, "err", err)
	}
	return err
}

// auditLoudly writes an event on a path where the statement is refused or abandoned
// whatever happens: a failure changes nothing for the client, and is logged loudly.
func (ss *session) auditLoudly(ev *audit.Event) {
	if err := ss.srv.Audit.Append(context.Background(), ev); err != nil {
		ss.srv.Log.Error("AUDIT WRITE FAILED; the event is lost", "type", ev.Type, "session", ss.id, "user", ss.who.User, "result", ev.Result, "err", err)
	}
}

func (ss *session) statementEvent(act *policy.Action, params [][]byte, formats []int16, d *policy.Decision) *audit.Event {
	ev := ss.spareEv
	ss.spareEv = nil
	if ev == nil {
		ev = audit.NewEvent()
	}
	ev.Reset()
	ev.Type, ev.Actor, ev.Resource, ev.Session, ev.Action = audit.TypePGStatement, ss.who.User, ss.res.Name, ss.id, act.Statement
	ev.Decision, ev.Rules, ev.PolicyHash, ev.Reason = d.Effect.String(), d.RuleNames(), d.Snapshot, d.Reason()
	ev.Attrs = append(ev.Attrs, audit.String("class", act.Class.String()), audit.String("kind", act.Kind),
		audit.String("digest", ss.digest(act.Statement)), audit.String("client_addr", ss.remote))
	if len(act.Tables) > 0 {
		ev.Attrs = append(ev.Attrs, audit.Strings("tables", act.Tables))
	}
	if act.MultiStatement {
		ev.Attrs = append(ev.Attrs, audit.Bool("multi_statement", true))
	}
	if act.InTransaction {
		ev.Attrs = append(ev.Attrs, audit.Bool("in_transaction", true))
	}
	if act.EstimatedRows >= 0 {
		ev.Attrs = append(ev.Attrs, audit.Int("estimated_rows", act.EstimatedRows))
	}
	if ss.reason != "" {
		ev.Attrs = append(ev.Attrs, audit.String("requester_reason", ss.reason))
	}
	if len(params) > 0 {
		if ss.res.AuditParams {
			ev.Attrs = append(ev.Attrs, audit.Strings("params", renderParams(params, formats)))
		} else {
			ev.Attrs = append(ev.Attrs, audit.Hex64("params_digest", ss.paramsSum(params)))
		}
	}
	return ev
}

// sha returns the session's SHA-256, reset.
func (ss *session) sha() hash.Hash {
	if ss.hash == nil {
		ss.hash = sha256.New()
	}
	ss.hash.Reset()
	return ss.hash
}

// digest is the short digest of a statement's text in its event: the first 8 bytes of its
// SHA-256, in hex. A prepared statement runs the same text again and again, so the last
// one is kept; the hash is the session's own, so that hashing allocates nothing.
func (ss *session) digest(text string) string {
	if text == ss.lastDigest.text && ss.lastDigest.sum != "" {
		return ss.lastDigest.sum
	}
	h := ss.sha()
	io.WriteString(h, text)
	var hx [16]byte
	hex.Encode(hx[:], h.Sum(ss.sumBuf[:0])[:8])
	ss.lastDigest.text, ss.lastDigest.sum = text, string(hx[:])
	return ss.lastDigest.sum
}

// renderParams shows parameter values as text; binary ones as \x hex.
func renderParams(params [][]byte, formats []int16) []string {
	out := make([]string, len(params))
	for i, p := range params {
		f := int16(0)
		switch {
		case len(formats) == 1:
			f = formats[0]
		case i < len(formats):
			f = formats[i]
		}
		switch {
		case p == nil:
			out[i] = "NULL"
		case f == 1:
			out[i] = `\x` + hex.EncodeToString(p)
		default:
			out[i] = string(p)
		}
	}
	return out
}

// paramsSum is the digest of a statement's parameter values in its event (params_digest,
// 16 hex digits): the first 8 bytes of the SHA-256 of each value's length, a colon and the
// value, hashed with the session's own hash so that nothing is allocated.
func (ss *session) paramsSum(params [][]byte) uint64 {
	h := ss.sha()
	for _, p := range params {
		h.Write(append(strconv.AppendInt(ss.sumBuf[:0], int64(len(p)), 10), ':'))
		h.Write(p)
	}
	return binary.BigEndian.Uint64(h.Sum(ss.sumBuf[:0]))
}

// awaitApproval has the gate hold the statement for approval, tells the client, and
// waits — this session only — for the decision. The gate audits and binds; this
// translates its answers into the protocol's.
func (ss *session) awaitApproval(ctx context.Context, act *policy.Action, params [][]byte, formats []int16, d *policy.Decision, ev *audit.Event, simple bool) (*stmtResult, bool) {
	ss.stats.approvals++
	// A cancel from the client withdraws the request from now on: one that arrives while
	// the request is being created must not go to the server instead and be lost.
	wctx, cancel := context.WithCancelCause(ctx)
	ss.waitCancel.Store(&cancel)
	defer func() {
		ss.waitCancel.Store(nil)
		cancel(nil)
	}()
	art := elevation.Artifact{
		Resource: ss.res.Name, Statement: act.Statement, Params: renderParams(params, formats), Class: act.Class.String(), Kind: act.Kind,
		Tables: act.Tables, Functions: act.Functions, EstimatedRows: act.EstimatedRows, Quorum: d.Quorum, Snapshot: d.Snapshot, Requester: ss.who.User,
		Reason: ss.reason,
	}
	for _, r := range d.Matched {
		art.Rules = append(art.Rules, elevation.RuleRef{Name: r.Name, Effect: r.Effect.String(), Tier: r.Tier.String(), Description: r.Description})
	}
	req, err := ss.srv.gate.Hold(ctx, &ss.who.Subject, ss.id, art, ev)
	switch {
	case errors.Is(err, gate.ErrAudit):
		ss.fail(simple, errorResponse("ERROR", codeInternal, "statement not run: the audit log cannot be written", "", ""))
		return nil, false
	case err != nil:
		ss.fail(simple, errorResponse("ERROR", codeInternal, "statement not run: Portcullis could not record the approval request", "", ""))
		return nil, false
	}
	// Everything forwarded before this statement gets its answers now, so that the notice,
	// which is owed after them, reaches the client at once: a Flush makes the server send
	// what it holds until the next Sync.
	if err := ss.flushUpstream(); err != nil {
		ss.srv.Log.Warn("could not flush the pipeline before waiting for approval", "session", ss.id, "err", err)
	}
	url := ss.srv.Config.Server.RequestURL(req.ID)
	var terms []string
	for _, t := range req.Progress().Terms {
		terms = append(terms, t.String())
	}
	ss.inject(encode(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
		Message: fmt.Sprintf("Portcullis: this statement needs approval (%s). Approval request %s is waiting for %s.", d.Reason(), req.ID, strings.Join(terms, ", ")),
		Detail:  fmt.Sprintf("Approve at %s or with: portcullis approve %s. The statement runs as soon as the quorum is met; it waits up to %s.", url, req.ID, human.Duration(d.Quorum.Timeout)),
		Hint:    "Cancel (Ctrl-C) to withdraw the request."}), false)

	stop := ss.watchClient(cancel)
	r, err := ss.srv.gate.Await(wctx, req, &gate.Closed{Type: audit.TypePGApprovalClosed, Actor: ss.who.User, Resource: ss.res.Name, Session: ss.id})
	stop()
	ss.waitCancel.Store(nil)
	var withdrawn *gate.Withdrawn
	switch {
	case err == nil:
		return &stmtResult{start: ss.srv.Now(), approval: r.ID, act: act}, true
	case errors.As(err, &withdrawn):
		switch {
		case errors.Is(err, errCancelRequested):
			ss.fail(simple, errorResponse("ERROR", codeQueryCanceled, "canceling statement due to user request; approval request "+req.ID+" withdrawn", "", ""))
		case errors.Is(err, errShuttingDown):
			ss.fail(simple, errorResponse("ERROR", codeAdminShutdown, "statement not run: Portcullis is shutting down; approval request "+req.ID+" stays pending", "",
				"Connect again and run the same statement again: another Portcullis takes the request up, with the votes it has."))
		default:
			ss.client.Close()
		}
	case errors.Is(err, gate.ErrRefused):
		why := strings.TrimPrefix(err.Error(), gate.ErrRefused.Error()+": ")
		ss.outcome(r.ID, elevation.Outcome{Result: elevation.OutcomeNotRun, Message: "refused: " + why})
		ss.fail(simple, errorResponse("ERROR", codeInsufficientPrivilege, "permission denied by Portcullis: "+why, "", "Run the statement again to ask for a new approval."))
	case errors.Is(err, gate.ErrNotApproved):
		msg := fmt.Sprintf("permission denied by Portcullis: approval request %s was %s", r.ID, r.State)
		for _, v := range r.Votes {
			if !v.Approve {
				msg += " by " + v.Approver.User
				if v.Comment != "" {
					msg += ": " + v.Comment
				}
			}
		}
		code := codeInsufficientPrivilege
		if r.State == elevation.StateExpired {
			code = codeQueryCanceled
			msg += fmt.Sprintf(" (nobody decided within %s)", human.Duration(d.Quorum.Timeout))
		}
		ss.fail(simple, errorResponse("ERROR", code, msg, "", ""))
	case errors.Is(err, gate.ErrAudit):
		ss.fail(simple, errorResponse("ERROR", codeInternal, "statement not run: the audit log cannot be written", "", ""))
	default:
		ss.fail(simple, errorResponse("ERROR", codeInternal, "statement not run: Portcullis could not follow its approval request", "", ""))
	}
	return nil, false
}

// flushUpstream sends what was forwarded with a Flush, which has the server answer it
// without waiting for a Sync.
func (ss *session) flushUpstream() error {
	if err := ss.forward('H', nil); err != nil {
		return err
	}
	return ss.uw.Flush()
}

// watchClient cancels the wait when the client's connection closes. It checks without
// reading, so pipelined messages stay where they are.
func (ss *session) watchClient(cancel context.CancelCauseFunc) (stop func()) {
	return every(200*time.Millisecond, func() bool {
		if peerClosed(ss.client) {
			cancel(errClientGone)
			return true
		}
		return false
	})
}

// every calls check at each interval until it returns true or stop is called.
func every(interval time.Duration, check func() (done bool)) (stop func()) {
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if check() {
					return
				}
			}
		}
	}()
	return func() { close(quit) }
}

// peerClosed reports whether the other end has closed c, peeking at the socket.
func peerClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil
		return true
	})
	return closed || err != nil
}

// estimate asks res's planner how many rows an UPDATE or DELETE would touch, on a
// connection of its own. It returns -1 when it cannot tell.
func (s *Server) estimate(res *configs.Resource, approvedRole, sql string, params [][]byte, formats []int16, session string) int64 {
	rows := int64(-1)
	err := s.catalog(res, session, func(ctx context.Context, conn *pgconn.PgConn) error {
		// Planning an UPDATE or DELETE checks its privileges, which a reader credential
		// lacks; under the approved role, in a transaction never committed, it may plan.
		if approvedRole != "" {
			if _, err := conn.Exec(ctx, "BEGIN; "+setRole(approvedRole)).ReadAll(); err != nil {
				return fmt.Errorf("could not switch to the approved role: %w", err)
			}
		}
		r := conn.ExecParams(ctx, "EXPLAIN (FORMAT JSON) "+sql, params, nil, formats, nil).Read()
		if r.Err == nil && len(r.Rows) > 0 && len(r.Rows[0]) > 0 {
			rows = planRows(r.Rows[0][0])
		}
		return nil
	})
	if err != nil {
		s.Log.Warn("row estimate failed", "session", session, "resource", res.Name, "err", err)
	}
	return rows
}

// planRows reads the row estimate from EXPLAIN (FORMAT JSON) output: the rows the
// ModifyTable node's input produces.
func planRows(b []byte) int64 {
	type node struct {
		Type  string  `json:"Node Type"`
		Rows  float64 `json:"Plan Rows"`
		Plans []node  `json:"Plans"`
	}
	var out []struct{ Plan node }
	if json.Unmarshal(b, &out) != nil || len(out) == 0 {
		return -1
	}
	n := out[0].Plan
	if n.Type == "ModifyTable" && len(n.Plans) > 0 {
		n = n.Plans[0]
	}
	return int64(n.Rows)
}
