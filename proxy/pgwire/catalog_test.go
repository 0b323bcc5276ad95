package pgwire_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/devserver"
)

// TestClientToolsReadTheCatalog drives real psql and pg_dump through the proxy, and sends
// the catalog queries of pgAdmin and DBeaver: all of them read, and none may wait for an
// approval. Their functions are ones Portcullis does not list itself; the server declares
// them STABLE or IMMUTABLE.
func TestClientToolsReadTheCatalog(t *testing.T) {
	e := newEnv(t)
	host, port, _ := strings.Cut(e.addr, ":")
	tool := func(name string, args ...string) string {
		t.Helper()
		bin, err := devserver.PGProgram(name)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port, "-U", "alice", "-d", "orders"}, args...)...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token("alice"), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=5")
		out, err := cmd.CombinedOutput()
		if err != nil {
			held := ""
			if all, _ := e.approvals.List(context.Background()); len(all) > 0 {
				held = "held: " + all[0].Artifact.Statement
			}
			t.Fatalf("%s %v: %v\n%s\n%s", name, args, err, out, held)
		}
		return string(out)
	}
	for _, meta := range []string{`\d orders`, `\dt`, `\d+ orders`, `\df`, `\dn`, `\l`, `\du`, `\di`, `\dv`} {
		out := tool("psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", meta)
		if meta == `\d orders` && !strings.Contains(out, `Table "public.orders"`) {
			t.Errorf(`psql \d orders printed:\n%s`, out)
		}
		if meta == `\dt` && !strings.Contains(out, "timeouts") {
			t.Errorf(`psql \dt printed:\n%s`, out)
		}
	}
	if out := tool("pg_dump", "--schema-only"); !strings.Contains(out, "CREATE TABLE public.orders") {
		t.Errorf("pg_dump printed:\n%s", out)
	}

	// What pgAdmin and DBeaver ask when they open a database and its tables, over the
	// extended protocol.
	c := e.connect(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, q := range []string{
		// DBeaver: the tables of a schema.
		`select c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr, pg_catalog.pg_get_partkeydef(c.oid) as partition_key
		 from pg_catalog.pg_class c left outer join pg_catalog.pg_description d on d.objoid=c.oid and d.objsubid=0 and d.classoid='pg_class'::regclass
		 where c.relnamespace=$1 and c.relkind not in ('i','I','c')`,
		// DBeaver: the keywords, for its editor.
		`select string_agg(word, ',') from pg_catalog.pg_get_keywords() where word <> ALL ('{a,b}'::text[])`,
		// pgAdmin: the databases.
		`SELECT db.oid as did, db.datname as name, ta.spcname as spcname, db.datallowconn, pg_catalog.has_database_privilege(db.oid, 'CREATE') as cancreate,
		 datdba as owner, pg_catalog.pg_encoding_to_char(db.encoding) AS encoding, pg_catalog.obj_description(db.oid, 'pg_database') AS comments
		 FROM pg_catalog.pg_database db LEFT OUTER JOIN pg_catalog.pg_tablespace ta ON db.dattablespace = ta.oid WHERE db.oid > $1::OID ORDER BY datname`,
		// pgAdmin: a table's columns.
		`SELECT att.attname as name, pg_catalog.format_type(ty.oid, att.atttypmod) AS displaytypname, pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS defval,
		 pg_catalog.col_description(att.attrelid, att.attnum) AS description, pg_catalog.pg_get_userbyid(cl.relowner) AS owner
		 FROM pg_catalog.pg_attribute att JOIN pg_catalog.pg_type ty ON ty.oid = atttypid JOIN pg_catalog.pg_class cl ON cl.oid = att.attrelid
		 LEFT OUTER JOIN pg_catalog.pg_attrdef def ON adrelid = att.attrelid AND adnum = att.attnum
		 WHERE att.attrelid = $1::oid AND att.attnum > 0 AND att.attisdropped IS FALSE ORDER BY att.attnum`,
	} {
		arg := any(2200) // public's OID
		if strings.Contains(q, "db.oid >") {
			arg = 0
		} else if strings.Contains(q, "att.attrelid = $1") {
			arg = tableOID(t, e, "orders")
		} else if !strings.Contains(q, "$1") {
			arg = nil
		}
		args := []any{}
		if arg != nil {
			args = append(args, arg)
		}
		rows, err := c.Query(ctx, q, args...)
		if err == nil {
			_, err = pgx.CollectRows(rows, pgx.RowToMap)
		}
		if err != nil {
			t.Errorf("catalog query failed: %v\n%s", err, q)
		}
	}
	if all, _ := e.approvals.List(context.Background()); len(all) > 0 {
		t.Errorf("client tools' catalog queries asked for approval: %s", all[0].Artifact.Statement)
	}
}

// TestFunctionVolatility checks that what decides is what the server declares about each
// function a statement calls, overloads and all.
func TestFunctionVolatility(t *testing.T) {
	e := newEnv(t)
	up := e.upstream(t)
	ctx := context.Background()
	if _, err := up.Exec(ctx, `
		CREATE FUNCTION order_count() RETURNS bigint STABLE LANGUAGE sql AS 'SELECT count(*) FROM orders';
		CREATE FUNCTION touch(i int) RETURNS int VOLATILE LANGUAGE sql AS 'UPDATE orders SET status = status WHERE id = i RETURNING i';
		CREATE FUNCTION twice(i int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT i * 2';
		CREATE FUNCTION twice(t text) RETURNS text VOLATILE LANGUAGE sql AS 'SELECT t || t'`); err != nil {
		t.Fatal(err)
	}
	c := e.connect(t, "alice")
	var n int64
	if err := c.QueryRow(ctx, "SELECT order_count()").Scan(&n); err != nil || n != 5000 {
		t.Fatalf("a STABLE function: %d, %v", n, err)
	}
	for _, q := range []string{"SELECT touch(1)", "SELECT twice(2)", "SELECT no_such_function()"} {
		t.Run(q, func(t *testing.T) {
			c := e.connect(t, "alice")
			qctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { _, err := c.Exec(qctx, q); done <- err }()
			r := e.pending(t)
			if r.Artifact.Statement != q || r.Artifact.Class != "write" {
				t.Errorf("held %q as %s", r.Artifact.Statement, r.Artifact.Class)
			}
			cancel()
			if err := <-done; err == nil {
				t.Errorf("the held statement ended with %v", err)
			}
			e.waitState(t, r.ID, "abandoned")
		})
	}
}

func tableOID(t *testing.T, e *env, name string) uint32 {
	t.Helper()
	var oid uint32
	if err := e.upstream(t).QueryRow(context.Background(), "SELECT $1::regclass::oid", name).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	return oid
}
