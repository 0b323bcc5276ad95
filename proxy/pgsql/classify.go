package pgsql

import (
	"reflect"
	"slices"
	"strings"
	"unicode"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portcullis/portcullis/policy"
)

// Classify parses sql and returns the action it performs. It never fails: a statement the
// parser rejects is returned as ClassUnknown with kind "UNPARSEABLE". EstimatedRows is -1.
// A function Portcullis does not know makes the statement a write; see ClassifyWith.
func Classify(sql string) *policy.Action { return ClassifyWith(sql, nil) }

// Volatility answers what calling a function Portcullis does not know can do, as the
// server declares it (see UnknownFunctions): ClassRead for one PostgreSQL itself marks
// IMMUTABLE or STABLE, which cannot modify data. ok false leaves the function a write.
type Volatility func(name string) (class policy.Class, ok bool)

// ClassifyWith is Classify, asking known for the functions it does not know itself.
func ClassifyWith(sql string, known Volatility) *policy.Action {
	act := &policy.Action{Class: policy.ClassRead, Statement: sql, EstimatedRows: -1}
	tree, err := pg.Parse(sql)
	if err != nil {
		act.Class, act.Kind = policy.ClassUnknown, "UNPARSEABLE"
		return act
	}
	if len(tree.Stmts) == 0 {
		act.Kind = "EMPTY"
		return act
	}
	act.MultiStatement = len(tree.Stmts) > 1
	first := true
	for _, raw := range tree.Stmts {
		c := &collector{known: known}
		class, kind := c.statement(raw.GetStmt())
		if first || class.MoreDangerous(act.Class) {
			act.Class, act.Kind, first = class, kind, false
		}
		for _, t := range c.tables {
			if !slices.Contains(act.Tables, t.name) {
				act.Tables = append(act.Tables, t.name)
			}
			if t.schema != "" && !slices.Contains(act.Schemas, t.schema) {
				act.Schemas = append(act.Schemas, t.schema)
			}
		}
		for _, f := range c.functions {
			if !slices.Contains(act.Functions, f) {
				act.Functions = append(act.Functions, f)
			}
		}
	}
	return act
}

type table struct{ schema, name string }

// collector walks one statement's tree, gathering what it touches and raising the class
// for anything that makes the statement more than it looks at the top.
type collector struct {
	class     policy.Class
	tables    []table
	functions []string
	ctes      []string
	known     Volatility
	setting   string // the one pg_settings row the SELECT being walked reads (settingsQuery)
}

func (c *collector) raise(class policy.Class) {
	if class.MoreDangerous(c.class) {
		c.class = class
	}
}

func (c *collector) statement(n *pg.Node) (policy.Class, string) {
	msg := nodeMessage(n)
	if msg == nil {
		return policy.ClassUnknown, "UNKNOWN"
	}
	class, kind := topLevel(msg)
	c.class = class
	c.walk(msg.ProtoReflect())
	if kind == "EXPLAIN" {
		c.class = policy.ClassRead // plain EXPLAIN plans the statement without running it
	}
	// Names defined by WITH are not tables.
	c.tables = slices.DeleteFunc(c.tables, func(t table) bool { return t.schema == "" && slices.Contains(c.ctes, t.name) })
	return c.class, kind
}

// walk visits every message below m.
func (c *collector) walk(m protoreflect.Message) {
	c.visit(m.Interface())
	if sel, ok := m.Interface().(*pg.SelectStmt); ok {
		// What a SELECT reads from pg_settings holds inside it, and only there.
		outer := c.setting
		c.setting = settingsQuery(sel)
		defer func() { c.setting = outer }()
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				c.walk(l.Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			c.walk(v.Message())
		}
		return true
	})
}

func (c *collector) visit(m proto.Message) {
	switch n := m.(type) {
	case *pg.CommonTableExpr:
		c.ctes = append(c.ctes, n.Ctename)
	case *pg.RangeVar:
		if n.Relname != "" {
			c.tables = append(c.tables, table{schema: n.Schemaname, name: n.Relname})
		}
	case *pg.FuncCall:
		name := funcName(n.Funcname)
		c.functions = append(c.functions, name)
		c.raise(c.functionClass(name, n))
	case *pg.InsertStmt, *pg.UpdateStmt, *pg.MergeStmt:
		c.raise(policy.ClassWrite) // data-modifying statements nested in a WITH
	case *pg.DeleteStmt:
		c.raise(policy.ClassDelete)
	case *pg.LockingClause:
		c.raise(policy.ClassWrite) // SELECT ... FOR UPDATE / FOR SHARE takes row locks
	case *pg.IntoClause:
		c.raise(policy.ClassDDL) // SELECT ... INTO creates a table
	}
}

func funcName(parts []*pg.Node) string {
	var names []string
	for _, p := range parts {
		names = append(names, p.GetString_().GetSval())
	}
	if len(names) == 2 && names[0] == "pg_catalog" {
		names = names[1:]
	}
	return strings.Join(names, ".")
}

// nodeMessage returns the concrete statement inside a Node.
func nodeMessage(n *pg.Node) proto.Message {
	if n == nil || n.Node == nil {
		return nil
	}
	v := reflect.ValueOf(n.Node).Elem().Field(0) // each oneof wrapper holds one field
	if !v.IsValid() || v.IsNil() {
		return nil
	}
	m, _ := v.Interface().(proto.Message)
	return m
}

// topLevel returns the class and kind of a statement from its type alone.
func topLevel(m proto.Message) (policy.Class, string) {
	switch n := m.(type) {
	case *pg.SelectStmt:
		return policy.ClassRead, "SELECT"
	case *pg.InsertStmt:
		return policy.ClassWrite, "INSERT"
	case *pg.UpdateStmt:
		return policy.ClassWrite, "UPDATE"
	case *pg.MergeStmt:
		return policy.ClassWrite, "MERGE"
	case *pg.DeleteStmt:
		return policy.ClassDelete, "DELETE"
	case *pg.TruncateStmt:
		return policy.ClassDelete, "TRUNCATE"
	case *pg.CopyStmt:
		switch {
		case n.Filename != "" || n.IsProgram:
			return policy.ClassAdmin, "COPY" // reads or writes server files or runs a program
		case n.IsFrom:
			return policy.ClassWrite, "COPY FROM"
		}
		return policy.ClassRead, "COPY TO"
	case *pg.ExplainStmt:
		for _, o := range n.Options {
			if o.GetDefElem().GetDefname() == "analyze" {
				// EXPLAIN ANALYZE runs the statement.
				class, kind := topLevel(nodeMessage(n.Query))
				return class, "EXPLAIN ANALYZE " + kind
			}
		}
		return policy.ClassRead, "EXPLAIN"
	case *pg.PrepareStmt:
		class, kind := topLevel(nodeMessage(n.Query))
		return class, "PREPARE " + kind
	case *pg.DeclareCursorStmt:
		return policy.ClassRead, "DECLARE CURSOR"
	case *pg.ExecuteStmt:
		return policy.ClassUnknown, "EXECUTE" // the prepared statement's text decides; see pgwire
	case *pg.DoStmt:
		return policy.ClassAdmin, "DO"
	case *pg.CallStmt:
		return policy.ClassWrite, "CALL"
	case *pg.VariableSetStmt:
		if n.Name == "role" || n.Name == "session_authorization" {
			return policy.ClassAdmin, "SET " + strings.ToUpper(strings.ReplaceAll(n.Name, "_", " "))
		}
		return policy.ClassRead, "SET"
	case *pg.TransactionStmt:
		return policy.ClassRead, strings.TrimPrefix(n.Kind.String(), "TRANS_STMT_")
	case *pg.LockStmt:
		if n.Mode == accessShareLock {
			// The lock a SELECT takes (pg_dump takes it on every table it dumps): it
			// only keeps the table from being altered or dropped meanwhile.
			return policy.ClassRead, "LOCK"
		}
		return policy.ClassWrite, "LOCK"
	case *pg.NotifyStmt:
		return policy.ClassWrite, "NOTIFY"
	case *pg.VariableShowStmt, *pg.DiscardStmt, *pg.DeallocateStmt, *pg.FetchStmt, *pg.ClosePortalStmt, *pg.ListenStmt, *pg.UnlistenStmt:
		return policy.ClassRead, kindOf(m)
	case *pg.AlterSystemStmt, *pg.CreateRoleStmt, *pg.AlterRoleStmt, *pg.AlterRoleSetStmt, *pg.DropRoleStmt,
		*pg.GrantStmt, *pg.GrantRoleStmt, *pg.AlterDefaultPrivilegesStmt, *pg.CreatedbStmt, *pg.DropdbStmt,
		*pg.AlterDatabaseStmt, *pg.AlterDatabaseSetStmt, *pg.CreateTableSpaceStmt, *pg.DropTableSpaceStmt,
		*pg.VacuumStmt, *pg.ReindexStmt, *pg.ClusterStmt, *pg.CheckPointStmt, *pg.LoadStmt,
		*pg.CreateSubscriptionStmt, *pg.AlterSubscriptionStmt, *pg.DropSubscriptionStmt,
		*pg.CreatePublicationStmt, *pg.AlterPublicationStmt, *pg.ReassignOwnedStmt, *pg.DropOwnedStmt,
		*pg.CreateFdwStmt, *pg.CreateForeignServerStmt, *pg.CreateUserMappingStmt, *pg.AlterUserMappingStmt:
		return policy.ClassAdmin, kindOf(m)
	case *pg.CreateStmt:
		return policy.ClassDDL, "CREATE TABLE"
	case *pg.CreateTableAsStmt:
		return policy.ClassDDL, "CREATE TABLE AS"
	case *pg.IndexStmt:
		return policy.ClassDDL, "CREATE INDEX"
	case *pg.ViewStmt:
		return policy.ClassDDL, "CREATE VIEW"
	case *pg.DropStmt:
		return policy.ClassDDL, "DROP " + strings.ReplaceAll(strings.TrimPrefix(n.RemoveType.String(), "OBJECT_"), "_", " ")
	case *pg.RenameStmt:
		return policy.ClassDDL, "ALTER " + strings.ReplaceAll(strings.TrimPrefix(n.RenameType.String(), "OBJECT_"), "_", " ") + " RENAME"
	}
	kind := kindOf(m)
	for _, p := range []string{"CREATE", "ALTER", "DROP", "COMMENT", "SECURITY LABEL", "REFRESH", "IMPORT"} {
		if strings.HasPrefix(kind, p) {
			return policy.ClassDDL, kind
		}
	}
	return policy.ClassUnknown, kind
}

// kindOf turns a node type name into words: AlterTableStmt -> ALTER TABLE.
func kindOf(m proto.Message) string {
	name := strings.TrimSuffix(string(m.ProtoReflect().Descriptor().Name()), "Stmt")
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// PreparedName returns the statement name of a single SQL-level PREPARE or EXECUTE
// statement, with which of the two it is. Front ends use it to decide EXECUTE name (and a
// protocol Bind to that name) on what was prepared.
func PreparedName(sql string) (name string, prepare bool, ok bool) {
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false, false
	}
	switch n := nodeMessage(tree.Stmts[0].GetStmt()).(type) {
	case *pg.PrepareStmt:
		return n.Name, true, true
	case *pg.ExecuteStmt:
		return n.Name, false, true
	}
	return "", false, false
}
