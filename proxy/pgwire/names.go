package pgwire

import (
	"strings"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// This file keeps the session's prepared statements and portals as PostgreSQL has them.
//
// A name enters or leaves the tables only when the server confirms the message that made
// the change (ParseComplete, BindComplete, CloseComplete, the CommandComplete of a SQL
// PREPARE, DEALLOCATE, DISCARD ALL, DECLARE or CLOSE); a message the server refused or
// skipped changes nothing. Deciding an Execute then needs the tables as they will be when
// the server reaches it: the confirmed tables, changed by the unanswered messages of the
// current pipeline before it (if any of those fails, the server skips the Execute too).
// Unanswered messages of an earlier pipeline (before a Sync or a simple Query) have no such
// guarantee, so when one of them could change a name, the decision waits for its answer.

// prepared is a prepared statement: what it was classified as, and what running it does
// to the session's names.
type prepared struct {
	act     *policy.Action
	effects []sqlEffect
}

// portal is a statement bound to parameters, or a cursor.
type portal struct {
	stmt    *prepared // nil: bound to a statement Portcullis does not know
	params  [][]byte
	formats []int16
	hold    bool // a cursor WITH HOLD: it outlives its transaction
	bind    *op  // the Bind it lives in, if any: free once the portal is gone
}

// sqlEffect is one SQL statement's effect on the session's names, with what a prepared
// statement or cursor it creates will run.
type sqlEffect struct {
	pgsql.Effect
	prep *prepared
}

// names are the confirmed tables. The relay changes them; both loops read them under mu.
type names struct {
	stmts   map[string]*prepared
	portals map[string]*portal
	// free holds ops nothing refers to any more, for the client loop to reuse (see
	// session.newOp): a confirmed Bind's once its portal has left the tables, any other
	// once its message is answered.
	free []*op
}

// maxFreeOps bounds names.free.
const maxFreeOps = 8

// release offers o for reuse. o must be in no table, no owed response and no view.
func (n *names) release(o *op) {
	if o.kind == 0 {
		return // released already: a released op has no kind until it is filled again
	}
	if len(n.free) < maxFreeOps {
		*o = op{params: o.params[:0], formats: o.formats[:0], paramBuf: o.paramBuf[:0]}
		n.free = append(n.free, o)
	}
}

// setPortal makes p the portal name, releasing the Bind of the one it replaces.
func (n *names) setPortal(name string, p *portal) {
	n.dropPortal(name)
	n.portals[name] = p
}

// dropPortal removes the portal name, releasing the Bind it lived in.
func (n *names) dropPortal(name string) {
	if p := n.portals[name]; p != nil {
		delete(n.portals, name)
		if p.bind != nil {
			n.release(p.bind)
		}
	}
}

// clearPortals removes every portal.
func (n *names) clearPortals() {
	for name := range n.portals {
		n.dropPortal(name)
	}
}

type opKind uint8

const (
	opParse opKind = iota + 1
	opBind
	opCloseStmt
	opClosePortal
	opSQL // a Query, or an Execute of a statement with effects
)

// op is the change a forwarded message makes to the names once the server confirms it.
type op struct {
	kind    opKind
	name    string // the statement (parse, close) or portal (bind, close)
	stmt    string // bind: the statement bound
	prep    *prepared
	params  [][]byte
	formats []int16
	sql     []sqlEffect // opSQL: one per CommandComplete, in order
	next    int         // opSQL: the next CommandComplete's index
	portal  portal      // bind: the portal, once the server confirms it
	// paramBuf holds a Bind's parameter values, which params slice: one buffer, kept
	// when the op is reused.
	paramBuf []byte
}

// sqlEffects returns what running sql does to the session's names; nil when nothing. A
// string that does not parse gets nil too: should it run and answer with a tag that
// changes names, the relay forgets the names of that kind (see applyTag).
func (s *Server) sqlEffects(sql string) []sqlEffect {
	if !pgsql.MayHaveEffects(sql) {
		return nil
	}
	effs, ok := pgsql.SessionEffects(sql)
	if !ok {
		return nil
	}
	var out []sqlEffect
	some := false
	for _, e := range effs {
		se := sqlEffect{Effect: e}
		switch e.Kind {
		case pgsql.EffectPrepare, pgsql.EffectDeclare:
			se.prep = &prepared{act: s.cache.classify(e.Text)}
		}
		some = some || e.Kind != pgsql.EffectNone
		out = append(out, se)
	}
	if !some {
		return nil
	}
	return out
}

// confirm applies a confirmed op. ss.mu is held.
func (n *names) confirm(o *op) {
	switch o.kind {
	case opParse:
		n.stmts[o.name] = o.prep
	case opBind:
		// The portal lives in its op, which is made per Bind anyway.
		o.portal = portal{stmt: n.stmts[o.stmt], params: o.params, formats: o.formats, bind: o}
		n.setPortal(o.name, &o.portal)
	case opCloseStmt:
		delete(n.stmts, o.name)
	case opClosePortal:
		n.dropPortal(o.name)
	}
}

// refused records that the server refused the message of o.
func (n *names) refused(o *op) {
	// A Parse or Bind to the unnamed statement or portal drops the old one first.
	switch {
	case o.kind == opParse && o.name == "":
		delete(n.stmts, "")
	case o.kind == opBind && o.name == "":
		n.dropPortal("")
	}
}

// applyTag applies the effect of one CommandComplete of an opSQL. A tag that changes
// names but is not the effect expected (a statement Portcullis could not parse, or one a
// function ran) makes it forget every name of that kind: they are decided as unknown
// from then on.
func (n *names) applyTag(o *op, tag string) {
	var e *sqlEffect
	if o.next < len(o.sql) {
		e = &o.sql[o.next]
	}
	o.next++
	kind := tagEffect(tag)
	if e == nil || e.Kind != kind {
		switch kind {
		case pgsql.EffectPrepare, pgsql.EffectDeallocate, pgsql.EffectDeallocateAll:
			clear(n.stmts)
		case pgsql.EffectDeclare, pgsql.EffectClose, pgsql.EffectCloseAll:
			n.clearPortals()
		case pgsql.EffectDiscardAll:
			clear(n.stmts)
			n.clearPortals()
		}
		return
	}
	switch e.Kind {
	case pgsql.EffectPrepare:
		n.stmts[e.Name] = e.prep
	case pgsql.EffectDeallocate:
		delete(n.stmts, e.Name)
	case pgsql.EffectDeallocateAll:
		clear(n.stmts)
	case pgsql.EffectDiscardAll:
		clear(n.stmts)
		n.clearPortals()
	case pgsql.EffectDeclare:
		n.setPortal(e.Name, &portal{stmt: e.prep, hold: e.Hold})
	case pgsql.EffectClose:
		n.dropPortal(e.Name)
	case pgsql.EffectCloseAll:
		n.clearPortals()
	}
}

// tagEffect returns the effect a command tag reports.
func tagEffect(tag string) pgsql.EffectKind {
	for k := pgsql.EffectPrepare; k <= pgsql.EffectCloseAll; k++ {
		if tag == k.Tag() {
			return k
		}
	}
	return pgsql.EffectNone
}

// transactionEnded drops the portals that end with their transaction: all but cursors
// WITH HOLD.
func (n *names) transactionEnded() {
	for name, p := range n.portals {
		if !p.hold {
			n.dropPortal(name)
		}
	}
}

// pendingView resolves names as the server will have them when it reaches the next
// message: the confirmed tables changed by the unanswered ops of the current pipeline.
type pendingView struct {
	n   *names
	ops []*op // the current pipeline's unanswered ops, in order
	// uncertain: answers to an earlier pipeline are missing; no name can be trusted.
	uncertain bool
}

// portal returns the portal name as of before ops[upTo], as a copy; the zero portal (no
// statement) when Portcullis does not know it.
func (v *pendingView) portal(name string, upTo int) portal {
	if v.uncertain {
		return portal{}
	}
	for i := upTo - 1; i >= 0; i-- {
		o := v.ops[i]
		switch o.kind {
		case opBind:
			if o.name == name {
				return portal{stmt: v.stmt(o.stmt, i), params: o.params, formats: o.formats}
			}
		case opClosePortal:
			if o.name == name {
				return portal{}
			}
		case opSQL:
			for j := len(o.sql) - 1; j >= 0; j-- {
				switch e := &o.sql[j]; e.Kind {
				case pgsql.EffectDeclare:
					if e.Name == name {
						return portal{stmt: e.prep, hold: e.Hold}
					}
				case pgsql.EffectClose:
					if e.Name == name {
						return portal{}
					}
				case pgsql.EffectCloseAll, pgsql.EffectDiscardAll:
					return portal{}
				}
			}
		}
	}
	if p := v.n.portals[name]; p != nil {
		return *p
	}
	return portal{}
}

// stmt returns the prepared statement name as of before ops[upTo].
func (v *pendingView) stmt(name string, upTo int) *prepared {
	if v.uncertain {
		return nil
	}
	for i := upTo - 1; i >= 0; i-- {
		o := v.ops[i]
		switch o.kind {
		case opParse:
			if o.name == name {
				return o.prep
			}
		case opCloseStmt:
			if o.name == name {
				return nil
			}
		case opSQL:
			for j := len(o.sql) - 1; j >= 0; j-- {
				switch e := &o.sql[j]; e.Kind {
				case pgsql.EffectPrepare:
					if e.Name == name {
						return e.prep
					}
				case pgsql.EffectDeallocate:
					if e.Name == name {
						return nil
					}
				case pgsql.EffectDeallocateAll, pgsql.EffectDiscardAll:
					return nil
				}
			}
		}
	}
	return v.n.stmts[name]
}

// executeName returns the name a single SQL EXECUTE statement runs.
func executeName(act *policy.Action) (string, bool) {
	if act.Kind != "EXECUTE" || act.MultiStatement {
		return "", false
	}
	name, prepare, ok := pgsql.PreparedName(act.Statement)
	return name, ok && !prepare
}

// executeAction is the action of EXECUTE of p: what p was prepared as.
func executeAction(stmt string, p *prepared) *policy.Action {
	cp := *p.act
	cp.Statement, cp.Kind = stmt, "EXECUTE "+strings.TrimPrefix(p.act.Kind, "PREPARE ")
	return &cp
}
