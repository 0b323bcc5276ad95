package pgsql

import (
	"slices"
	"testing"
)

func TestMayHaveEffects(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1": false,
		"SELECT * FROM orders WHERE status = 'closed'":         false,
		"select prepared_at, closer from t":                    false,
		"PREPARE s AS SELECT 1":                                true,
		"select 1; dealLOCATE s":                               true,
		"DISCARD ALL":                                          true,
		"declare c cursor for select 1":                        true,
		"SELECT 1;CLOSE c":                                     true,
	} {
		if got := MayHaveEffects(sql); got != want {
			t.Errorf("MayHaveEffects(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestSessionEffects(t *testing.T) {
	effs, ok := SessionEffects("SELECT 1; PREPARE s1 AS DELETE FROM t; DEALLOCATE ALL; DECLARE c CURSOR WITH HOLD FOR SELECT 2; CLOSE ALL; DISCARD ALL; DISCARD PLANS")
	if !ok {
		t.Fatal("did not parse")
	}
	var kinds []EffectKind
	for _, e := range effs {
		kinds = append(kinds, e.Kind)
	}
	want := []EffectKind{EffectNone, EffectPrepare, EffectDeallocateAll, EffectDeclare, EffectCloseAll, EffectDiscardAll, EffectNone}
	if !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	if effs[1].Name != "s1" || effs[1].Text != "PREPARE s1 AS DELETE FROM t" || effs[3].Name != "c" || !effs[3].Hold {
		t.Errorf("effects %+v", effs)
	}
}

func TestTagClass(t *testing.T) {
	for tag, want := range map[string]string{
		"SELECT 5": "read", "INSERT 0 1": "write", "UPDATE 3": "write", "DELETE 1": "delete", "MERGE 2": "write",
		"COPY 10": "write", "CREATE TABLE": "ddl", "ALTER TABLE": "ddl", "DROP INDEX": "ddl", "GRANT": "admin",
		"CREATE ROLE": "admin", "BEGIN": "read", "FETCH 2": "read", "DEALLOCATE ALL": "read", "TRUNCATE TABLE": "delete",
		"SOMETHING NEW": "unknown",
	} {
		if got := TagClass(tag).String(); got != want {
			t.Errorf("TagClass(%q) = %s, want %s", tag, got, want)
		}
	}
}

func TestRoleSafe(t *testing.T) {
	for sql, want := range map[string]bool{
		"UPDATE orders SET status = 'x' WHERE id = 1":                                 true,
		"DELETE FROM orders; INSERT INTO orders VALUES (1)":                           true,
		"COPY orders FROM STDIN":                                                      true,
		"COPY orders FROM '/etc/passwd'":                                              false,
		"BEGIN; UPDATE orders SET status = 'x'":                                       false,
		"UPDATE orders SET status = 'x'; SET ROLE postgres":                           false,
		"SELECT * INTO t2 FROM orders":                                                false,
		"CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql SECURITY DEFINER": false,
		"CALL p()":       false,
		"DO $$ $$":       false,
		"EXECUTE s1":     false,
		"not sql at all": false,
	} {
		if got := RoleSafe(sql); got != want {
			t.Errorf("RoleSafe(%q) = %v, want %v", sql, got, want)
		}
	}
}

// The checks every statement now pays for: whether it may change names, and the class of
// its answer's tag.
func BenchmarkMayHaveEffects(b *testing.B) {
	for b.Loop() {
		MayHaveEffects("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;")
	}
}

func BenchmarkTagClass(b *testing.B) {
	for b.Loop() {
		TagClass("SELECT 1")
	}
}
