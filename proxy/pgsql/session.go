package pgsql

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// EffectKind is how a SQL statement changes the session's prepared statements or portals
// (cursors), the names that the extended protocol's Bind and Execute refer to.
type EffectKind uint8

// The effects a statement can have on the session's names.
const (
	EffectNone          EffectKind = iota
	EffectPrepare                  // PREPARE name AS ...: Name now runs Text
	EffectDeallocate               // DEALLOCATE name
	EffectDeallocateAll            // DEALLOCATE ALL
	EffectDiscardAll               // DISCARD ALL: every prepared statement and portal
	EffectDeclare                  // DECLARE name CURSOR ... FOR ...: portal Name runs Text
	EffectClose                    // CLOSE name
	EffectCloseAll                 // CLOSE ALL
)

// Tag is the command tag PostgreSQL answers a statement of this effect with.
func (k EffectKind) Tag() string {
	switch k {
	case EffectPrepare:
		return "PREPARE"
	case EffectDeallocate:
		return "DEALLOCATE"
	case EffectDeallocateAll:
		return "DEALLOCATE ALL"
	case EffectDiscardAll:
		return "DISCARD ALL"
	case EffectDeclare:
		return "DECLARE CURSOR"
	case EffectClose:
		return "CLOSE CURSOR"
	case EffectCloseAll:
		return "CLOSE CURSOR ALL"
	}
	return ""
}

// Effect is one statement's effect on the session's names.
type Effect struct {
	Kind EffectKind
	Name string
	// Text is the SQL of the whole statement (PREPARE ... AS q, DECLARE ... FOR q), for
	// classifying what the name will run.
	Text string
	// Hold: a cursor declared WITH HOLD outlives its transaction.
	Hold bool
}

// MayHaveEffects reports whether sql can contain a statement with an effect: one of
// their keywords appears in it as a word, in any case. Keywords cannot be quoted or
// escaped, so a string without any of them has no effect; the check costs no parse, one
// pass over the text.
func MayHaveEffects(sql string) bool {
	for i := 0; i < len(sql); i++ {
		if i > 0 && identChar(sql[i-1]) {
			continue
		}
		var words []string
		switch sql[i] | 0x20 {
		case 'p':
			words = []string{"prepare"}
		case 'd':
			words = []string{"deallocate", "discard", "declare"}
		case 'c':
			words = []string{"close"}
		default:
			continue
		}
		for _, w := range words {
			if wordAt(sql, i, w) {
				return true
			}
		}
	}
	return false
}

// wordAt reports whether the lower-case ASCII word w is at sql[i:], in any case, and not
// followed by more of an identifier.
func wordAt(sql string, i int, w string) bool {
	if i+len(w) > len(sql) {
		return false
	}
	for j := 0; j < len(w); j++ {
		if sql[i+j]|0x20 != w[j] {
			return false
		}
	}
	return i+len(w) == len(sql) || !identChar(sql[i+len(w)])
}

func identChar(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// SessionEffects returns the effect of each statement of sql in order, one per statement
// PostgreSQL runs (and answers with one CommandComplete). ok is false when sql does not
// parse: its effects are then unknown.
func SessionEffects(sql string) (effects []Effect, ok bool) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, false
	}
	effects = make([]Effect, len(tree.Stmts))
	for i, raw := range tree.Stmts {
		e := &effects[i]
		start, end := int(raw.StmtLocation), len(sql)
		if raw.StmtLen > 0 {
			end = start + int(raw.StmtLen)
		}
		if start < 0 || start > end || end > len(sql) {
			return nil, false
		}
		text := strings.TrimSpace(sql[start:end])
		switch n := nodeMessage(raw.GetStmt()).(type) {
		case *pg.PrepareStmt:
			e.Kind, e.Name, e.Text = EffectPrepare, n.Name, text
		case *pg.DeallocateStmt:
			if n.Isall || n.Name == "" {
				e.Kind = EffectDeallocateAll
			} else {
				e.Kind, e.Name = EffectDeallocate, n.Name
			}
		case *pg.DiscardStmt:
			if n.Target == pg.DiscardMode_DISCARD_ALL {
				e.Kind = EffectDiscardAll
			}
		case *pg.DeclareCursorStmt:
			e.Kind, e.Name, e.Text, e.Hold = EffectDeclare, n.Portalname, text, n.Options&cursorOptHold != 0
		case *pg.ClosePortalStmt:
			if n.Portalname == "" {
				e.Kind = EffectCloseAll
			} else {
				e.Kind, e.Name = EffectClose, n.Portalname
			}
		}
	}
	return effects, true
}

// cursorOptHold is PostgreSQL's CURSOR_OPT_HOLD: DECLARE ... WITH HOLD.
const cursorOptHold = 0x0020

// RoleSafe reports whether every statement of sql may run under a role switched on for it
// alone: reads and data changes (SELECT, INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY
// from or to the client). Nothing else is: statements that control the transaction or the
// session (BEGIN, COMMIT, SAVEPOINT, SET, RESET, DISCARD) or run code that may (CALL, DO)
// could keep the role beyond the statement, and objects created under it (a SECURITY
// DEFINER function, a view) would be owned by it and could lend its privileges later.
func RoleSafe(sql string) bool {
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.Stmts) == 0 {
		return false
	}
	for _, raw := range tree.Stmts {
		switch n := nodeMessage(raw.GetStmt()).(type) {
		case *pg.SelectStmt:
			if n.IntoClause != nil {
				return false // SELECT ... INTO creates a table
			}
		case *pg.InsertStmt, *pg.UpdateStmt, *pg.DeleteStmt, *pg.MergeStmt, *pg.TruncateStmt:
		case *pg.CopyStmt:
			if n.Filename != "" || n.IsProgram {
				return false
			}
		default:
			return false
		}
	}
	return true
}
