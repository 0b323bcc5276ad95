package pgsql

import (
	"slices"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		sql    string
		class  policy.Class
		kind   string
		tables []string
		multi  bool
	}{
		{"SELECT * FROM orders WHERE id = $1", policy.ClassRead, "SELECT", []string{"orders"}, false},
		{"select count(*), max(total) from public.orders o join customers c on c.id = o.customer_id", policy.ClassRead, "SELECT", []string{"orders", "customers"}, false},
		{"SELECT now(), lower('X')", policy.ClassRead, "SELECT", nil, false},
		{"SELECT nextval('orders_id_seq')", policy.ClassWrite, "SELECT", nil, false},
		{"SELECT my_cleanup()", policy.ClassWrite, "SELECT", nil, false},
		{"SELECT pg_terminate_backend(123)", policy.ClassAdmin, "SELECT", nil, false},
		{"SELECT * FROM orders FOR UPDATE", policy.ClassWrite, "SELECT", []string{"orders"}, false},
		{"SELECT * INTO orders_copy FROM orders", policy.ClassDDL, "SELECT", []string{"orders_copy", "orders"}, false},
		{"WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone", policy.ClassDelete, "SELECT", []string{"orders"}, false},
		{"UPDATE orders SET status = 'paid' WHERE id = 1", policy.ClassWrite, "UPDATE", []string{"orders"}, false},
		{"INSERT INTO orders (id) VALUES (1)", policy.ClassWrite, "INSERT", []string{"orders"}, false},
		{"DELETE FROM orders", policy.ClassDelete, "DELETE", []string{"orders"}, false},
		{"TRUNCATE orders", policy.ClassDelete, "TRUNCATE", []string{"orders"}, false},
		{"COPY orders FROM STDIN", policy.ClassWrite, "COPY FROM", []string{"orders"}, false},
		{"COPY orders TO STDOUT", policy.ClassRead, "COPY TO", []string{"orders"}, false},
		{"COPY orders TO '/tmp/x'", policy.ClassAdmin, "COPY", []string{"orders"}, false},
		{"ALTER TABLE orders ADD COLUMN note text", policy.ClassDDL, "ALTER TABLE", []string{"orders"}, false},
		{"CREATE TABLE t (id int)", policy.ClassDDL, "CREATE TABLE", []string{"t"}, false},
		{"DROP TABLE orders", policy.ClassDDL, "DROP TABLE", nil, false},
		{"CREATE INDEX ON orders (id)", policy.ClassDDL, "CREATE INDEX", []string{"orders"}, false},
		{"DO $$ BEGIN DELETE FROM orders; END $$", policy.ClassAdmin, "DO", nil, false},
		{"CALL archive_orders()", policy.ClassWrite, "CALL", nil, false},
		{"SET ROLE admin", policy.ClassAdmin, "SET ROLE", nil, false},
		{"SET SESSION AUTHORIZATION admin", policy.ClassAdmin, "SET SESSION AUTHORIZATION", nil, false},
		{"SET statement_timeout = '5s'", policy.ClassRead, "SET", nil, false},
		{"ALTER SYSTEM SET work_mem = '1GB'", policy.ClassAdmin, "ALTER SYSTEM", nil, false},
		{"GRANT SELECT ON orders TO bob", policy.ClassAdmin, "GRANT", []string{"orders"}, false},
		{"EXPLAIN DELETE FROM orders", policy.ClassRead, "EXPLAIN", []string{"orders"}, false},
		{"EXPLAIN ANALYZE DELETE FROM orders", policy.ClassDelete, "EXPLAIN ANALYZE DELETE", []string{"orders"}, false},
		{"BEGIN", policy.ClassRead, "BEGIN", nil, false},
		{"SELECT 1; DROP TABLE orders; SELECT 2", policy.ClassDDL, "DROP TABLE", nil, true},
		{"SELECT 1; UPDATE orders SET x = 1", policy.ClassWrite, "UPDATE", []string{"orders"}, true},
		{"SELEC * FROM orders", policy.ClassUnknown, "UNPARSEABLE", nil, false},
		{"", policy.ClassRead, "EMPTY", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			a := Classify(tt.sql)
			if a.Class != tt.class || a.Kind != tt.kind || !slices.Equal(a.Tables, tt.tables) || a.MultiStatement != tt.multi || a.Statement != tt.sql || a.EstimatedRows != -1 {
				t.Errorf("got class %v kind %q tables %v multi %v; want %v %q %v %v", a.Class, a.Kind, a.Tables, a.MultiStatement, tt.class, tt.kind, tt.tables, tt.multi)
			}
		})
	}
	if a := Classify("SELECT * FROM sales.orders"); !slices.Equal(a.Schemas, []string{"sales"}) {
		t.Errorf("schemas %v", a.Schemas)
	}
	if a := Classify("SELECT pg_catalog.lower(name), nextval('s') FROM t"); !slices.Equal(a.Functions, []string{"lower", "nextval"}) {
		t.Errorf("functions %v", a.Functions)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"SELECT 1", "UPDATE t SET a = 1", "DO $$ $$", "COPY t FROM STDIN", "\x00", "SELECT 'unterminated"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		a := Classify(sql)
		if a == nil || a.Statement != sql {
			t.Fatal("Classify lost the statement")
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	for b.Loop() {
		Classify("SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1")
	}
}

func TestSettingsAndLocks(t *testing.T) {
	for sql, want := range map[string]policy.Class{
		"SELECT pg_catalog.set_config('search_path', '', false)":                                                                                               policy.ClassRead,
		"SELECT set_config('role', 'orders_approved', false)":                                                                                                  policy.ClassAdmin,
		"SELECT set_config('Session_Authorization', 'postgres', false)":                                                                                        policy.ClassAdmin,
		"SELECT set_config($1, 'x', false)":                                                                                                                    policy.ClassAdmin,
		"SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'":                               policy.ClassRead,
		"SELECT set_config(name, 'orders_approved', false) FROM pg_settings WHERE name = 'role'":                                                               policy.ClassAdmin,
		"SELECT set_config(name, 'orders_approved', false) FROM pg_settings WHERE name LIKE 'rol%'":                                                            policy.ClassAdmin,
		"SELECT set_config(name, 'orders_approved', false) FROM (VALUES ('role')) v(name)":                                                                     policy.ClassAdmin,
		"SELECT (SELECT set_config(name, '', false) FROM pg_settings WHERE name = 'search_path'), set_config(name, 'x', false) FROM (VALUES ('role')) v(name)": policy.ClassAdmin,
		"LOCK TABLE orders IN ACCESS SHARE MODE":                                                                                                               policy.ClassRead,
		"LOCK TABLE orders":                                                                                                                                    policy.ClassWrite,
		"LOCK TABLE orders IN ROW EXCLUSIVE MODE":                                                                                                              policy.ClassWrite,
		"SELECT pg_catalog.pg_is_in_recovery()":                                                                                                                policy.ClassRead,
	} {
		if got := Classify(sql).Class; got != want {
			t.Errorf("%s: %s, want %s", sql, got, want)
		}
	}
}

func TestClassifyWith(t *testing.T) {
	stable := func(name string) (policy.Class, bool) {
		switch name {
		case "pg_table_is_visible", "app.order_total":
			return policy.ClassRead, true
		case "bump":
			return policy.ClassWrite, true
		}
		return 0, false
	}
	for sql, want := range map[string]policy.Class{
		"SELECT c.relname FROM pg_catalog.pg_class c WHERE pg_catalog.pg_table_is_visible(c.oid)": policy.ClassRead,
		"SELECT app.order_total(1)": policy.ClassRead,
		"SELECT order_total(1)":     policy.ClassWrite, // another name than app.order_total
		"SELECT bump()":             policy.ClassWrite,
		"SELECT unheard_of()":       policy.ClassWrite,
		"UPDATE orders SET n = 1 WHERE pg_table_is_visible(oid)": policy.ClassWrite,
		"SELECT pg_table_is_visible(1), pg_terminate_backend(2)": policy.ClassAdmin,
	} {
		if got := ClassifyWith(sql, stable).Class; got != want {
			t.Errorf("%s: %s, want %s", sql, got, want)
		}
	}
	act := Classify("SELECT lower(x), app.order_total(1), set_config('a', 'b', false), pg_table_is_visible(2) FROM t")
	if got := UnknownFunctions(act); !slices.Equal(got, []string{"app.order_total", "pg_table_is_visible"}) {
		t.Errorf("UnknownFunctions = %v", got)
	}
}
