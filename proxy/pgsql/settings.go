package pgsql

import (
	"errors"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// SettingPrefix starts the names of the settings Portcullis itself keeps for a session
// (portcullis.reason). A front end answers them and never sends them upstream.
const SettingPrefix = "portcullis."

// Settings Portcullis knows.
const SettingReason = "portcullis.reason"

// Setting is a SET, RESET or SHOW of a Portcullis setting.
type Setting struct {
	Name  string
	Value string // for SET
	Reset bool   // RESET, or SET ... TO DEFAULT
	Show  bool
}

// MentionsSetting reports cheaply whether sql may touch a Portcullis setting: whether it
// contains "portcullis" in any case (SET portcullis . reason is the same setting).
func MentionsSetting(sql string) bool {
	const word = "portcullis"
	for i := 0; i+len(word) <= len(sql); i++ {
		if (sql[i] == 'p' || sql[i] == 'P') && strings.EqualFold(sql[i:i+len(word)], word) {
			return true
		}
	}
	return false
}

// ParseSetting reads sql as a statement on a Portcullis setting. ok is false when sql
// touches none. It is an error for a setting to share a string with other statements, or
// to be one Portcullis does not know.
func ParseSetting(sql string) (s Setting, ok bool, err error) {
	tree, perr := pg.Parse(sql)
	if perr != nil {
		return s, false, nil
	}
	for _, raw := range tree.Stmts {
		var name string
		switch n := nodeMessage(raw.GetStmt()).(type) {
		case *pg.VariableSetStmt:
			name = n.Name
			if !strings.HasPrefix(strings.ToLower(name), SettingPrefix) {
				continue
			}
			s = Setting{Name: n.Name, Reset: n.Kind == pg.VariableSetKind_VAR_RESET || n.Kind == pg.VariableSetKind_VAR_SET_DEFAULT}
			if n.Kind == pg.VariableSetKind_VAR_SET_VALUE {
				var vals []string
				for _, a := range n.Args {
					switch v := a.GetAConst().GetVal().(type) {
					case *pg.A_Const_Sval:
						vals = append(vals, v.Sval.GetSval())
					case *pg.A_Const_Ival:
						vals = append(vals, fmt.Sprint(v.Ival.GetIval()))
					default:
						return s, true, errors.New("portcullis settings take a quoted string: SET portcullis.reason = 'why'")
					}
				}
				s.Value = strings.Join(vals, ", ")
			}
		case *pg.VariableShowStmt:
			name = n.Name
			s = Setting{Name: n.Name, Show: true}
		default:
			continue
		}
		if !strings.HasPrefix(strings.ToLower(name), SettingPrefix) {
			continue
		}
		s.Name = strings.ToLower(s.Name)
		switch {
		case len(tree.Stmts) > 1:
			return s, true, fmt.Errorf("%s must be set in a statement of its own", s.Name)
		case s.Name != SettingReason:
			return s, true, fmt.Errorf("unrecognized Portcullis setting %q (there is %s)", s.Name, SettingReason)
		}
		return s, true, nil
	}
	return Setting{}, false, nil
}
