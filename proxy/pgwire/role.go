package pgwire

import (
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// An approved statement runs under the resource's approved role (approved_role), switched
// on for its execution alone, so that the session's own credential can stay least
// privilege: the database itself refuses a write that was never approved.
//
// The switch is SET LOCAL ROLE, which no transaction outlives, and it is undone with
// RESET ROLE right after the statement, before any later message of the client reaches
// the server:
//
//   - simple Query, no transaction block open: BEGIN; SET LOCAL ROLE r — the statement —
//     COMMIT. The client sees its statement's answers and one ReadyForQuery, as before; a
//     failed statement rolls the block, and the role, back.
//   - simple Query inside a block: SET LOCAL ROLE r — the statement — RESET ROLE. If the
//     statement fails, the block is aborted and its rollback undoes the role.
//   - Execute: the same with Parse/Bind/Execute under the reserved name portcullis.role;
//     an error skips the rest of the pipeline, and the rollback at Sync undoes the role.
//
// Only statements that cannot keep a role past themselves are switched (pgsql.RoleSafe);
// others run with the session's credential, which refuses what it may not do.

// roleName names the prepared statement and portal of the role switch. Clients must not
// use it.
const roleName = "portcullis.role"

func (ss *session) setRole() string { return setRole(ss.approvedRole) }

func setRole(role string) string { return "SET LOCAL ROLE " + pgx.Identifier{role}.Sanitize() }

// runApprovedQuery forwards an approved simple Query under the approved role.
func (ss *session) runApprovedQuery(body []byte, st *stmtResult, o *op) error {
	status, err := ss.settledStatus()
	if err != nil {
		return err
	}
	// Inside a block: switch, run, reset. Outside one: a block of Portcullis's own, whose
	// COMMIT ends the client's statement; the statement's result is audited with it, so a
	// COMMIT that fails (a deferred constraint) is the statement failing.
	before, clientHide, after, afterSt, afterHide := ss.setRole(), showAll, "RESET ROLE", (*stmtResult)(nil), hideAll
	switch status {
	case 'I':
		before, clientHide, after, afterSt, afterHide = "BEGIN; "+ss.setRole(), hideReady, "COMMIT", st, hideButEnd
	case 'T':
	default: // an aborted block: the statement fails under any role
		ss.expect('Q', st, o)
		return ss.forward('Q', body)
	}
	if err := ss.hiddenQuery(before, nil, hideButErr); err != nil {
		return err
	}
	ss.expectHidden('Q', st, o, clientHide)
	if err := ss.forward('Q', body); err != nil {
		return err
	}
	return ss.hiddenQuery(after, afterSt, afterHide)
}

// runApprovedExecute forwards an approved Execute under the approved role.
func (ss *session) runApprovedExecute(body []byte, st *stmtResult, o *op) error {
	if err := ss.hiddenStatement(ss.setRole(), hideButErr); err != nil {
		return err
	}
	ss.expect('E', st, o)
	if err := ss.forward('E', body); err != nil {
		return err
	}
	return ss.hiddenStatement("RESET ROLE", hideAll)
}

// hiddenQuery sends a simple Query of Portcullis's own; st, when set, is the client
// statement whose result it settles.
func (ss *session) hiddenQuery(sql string, st *stmtResult, h hide) error {
	ss.expectHidden('Q', st, nil, h)
	_, err := ss.uw.Write(encode(&pgproto3.Query{String: sql}))
	return err
}

func (ss *session) hiddenStatement(sql string, h hide) error {
	for _, m := range [...]pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: roleName, Query: sql},
		&pgproto3.Bind{DestinationPortal: roleName, PreparedStatement: roleName},
		&pgproto3.Execute{Portal: roleName},
		&pgproto3.Close{ObjectType: 'P', Name: roleName},
		&pgproto3.Close{ObjectType: 'S', Name: roleName},
	} {
		b := encode(m)
		ss.expectHidden(b[0], nil, nil, h)
		if _, err := ss.uw.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// settledStatus returns the transaction status once every response owed is in.
func (ss *session) settledStatus() (byte, error) {
	if err := ss.flushUpstream(); err != nil {
		return 0, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for len(ss.queue) > 0 && !ss.upDone {
		ss.cond.Wait()
	}
	if ss.upDone {
		return 0, errUpstreamGone
	}
	return ss.txStatus, nil
}
