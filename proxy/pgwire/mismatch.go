package pgwire

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// tagAgrees reports whether PostgreSQL's command tag for a statement fits what was decided
// for it: the statement did nothing more dangerous than its decided class. A COPY that
// sent rows out (CopyOutResponse came before its tag) read; any other COPY wrote.
func tagAgrees(act *policy.Action, tag string, copiedOut bool) bool {
	class := pgsql.TagClass(tag)
	if copiedOut && pgsql.TagName(tag) == "COPY" {
		class = policy.ClassRead
	}
	return !class.MoreDangerous(act.Class)
}

// deceived ends the session after PostgreSQL answered a statement with a tag that does not
// fit its decision: Portcullis decided one thing and the server ran another. The answer
// is withheld, the client gets a FATAL, and a pg.mismatch event, flagged for security,
// says what was decided and what ran. ss.mu is held.
func (ss *session) deceived(mm *mismatch) {
	act := mm.st.act
	ss.ending = true
	ev := &audit.Event{Type: audit.TypePGMismatch, Actor: ss.who.User, Resource: ss.res.Name, Session: ss.id, Action: act.Statement,
		Result: "terminated", Alert: "mismatch",
		Reason:  fmt.Sprintf("decided as %s (%s); PostgreSQL answered %q", act.Class, act.Kind, mm.tag),
		Details: map[string]any{"decided_class": act.Class.String(), "decided_kind": act.Kind, "tag": mm.tag, "tag_class": pgsql.TagClass(mm.tag).String()}}
	if mm.st.approval != "" {
		ev.Details["approval"] = mm.st.approval
		ss.outcome(mm.st.approval, elevation.Outcome{Result: elevation.OutcomeUnknown, Message: fmt.Sprintf("PostgreSQL answered %q, which is not what was approved; the session was ended", mm.tag)})
		mm.st.approval = ""
	}
	if err := ss.srv.Audit.Append(context.Background(), ev); err != nil {
		ss.srv.Log.Error("AUDIT WRITE FAILED for a statement mismatch", "session", ss.id, "user", ss.who.User, "statement", act.Statement, "tag", mm.tag, "err", err)
	}
	ss.srv.Log.Error("statement mismatch: the server ran something other than what was decided; session ended",
		"session", ss.id, "user", ss.who.User, "resource", ss.res.Name, "decided", act.Class.String(), "tag", mm.tag)
	ss.cw.Write(encode(errorResponse("FATAL", codeProtocolViolation,
		"terminating connection: PostgreSQL reported a result Portcullis did not allow for this statement", "",
		"The session was ended and the security team alerted.")))
	ss.cw.Flush()
	ss.kill()
}
