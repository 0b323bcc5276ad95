package pgwire

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// volatilityTTL bounds how long what a server declared about a function is believed
// without asking again. A DDL or admin statement through this Portcullis forgets the
// resource's answers at once; the bound covers changes made some other way.
const volatilityTTL = 5 * time.Minute

// functions remembers, per resource, what its upstream declares about the functions
// statements call (pg_proc.provolatile): a function PostgreSQL itself marks IMMUTABLE or
// STABLE cannot modify data, so a statement calling it is no less a read. An unqualified
// name is judged on every function of that name in any schema, so that whichever one the
// session's search_path finds, it was judged; one VOLATILE overload makes it a write.
type functions struct {
	mu sync.Mutex
	m  map[string]map[string]funcInfo // resource -> name as the classifier gives it
}

// funcInfo is what the server declared about every function of one name.
type funcInfo struct {
	class     policy.Class // ClassRead when there are some and none is VOLATILE, else ClassWrite
	overloads []overload
	at        time.Time
}

// overload is one pg_proc row: the function's OID and signature, and its volatility.
type overload struct {
	oid       uint32
	signature string
	volatile  byte // i, s or v
}

// known returns a Volatility answering from what is remembered for resource.
func (f *functions) known(resource string, now time.Time) pgsql.Volatility {
	f.mu.Lock()
	m := f.m[resource]
	f.mu.Unlock()
	return func(name string) (policy.Class, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fi, ok := m[name]
		if !ok || now.Sub(fi.at) > volatilityTTL {
			return 0, false
		}
		return fi.class, true
	}
}

// missing returns which of names have no fresh answer for resource.
func (f *functions) missing(resource string, names []string, now time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range names {
		if fi, ok := f.m[resource][n]; !ok || now.Sub(fi.at) > volatilityTTL {
			out = append(out, n)
		}
	}
	return out
}

func (f *functions) remember(resource string, got map[string]funcInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]map[string]funcInfo{}
	}
	if f.m[resource] == nil {
		f.m[resource] = map[string]funcInfo{}
	}
	for n, fi := range got {
		f.m[resource][n] = fi
	}
}

// forget drops what is remembered for resource: a statement that may create, replace,
// alter or drop functions is about to run, or ran.
func (f *functions) forget(resource string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, resource)
}

// mayChangeFunctions reports whether a statement may change what functions exist or what
// they declare; such a statement makes the resource's answers stale.
func mayChangeFunctions(class policy.Class) bool {
	switch class {
	case policy.ClassDDL, policy.ClassAdmin, policy.ClassUnknown:
		return true
	}
	return false
}

// volatilityQuery returns, for each name ("fn" or "schema.fn"), every function it could
// be with its volatility.
const volatilityQuery = `SELECT q.name, p.oid, n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', p.provolatile
FROM pg_catalog.unnest($1::text[]) AS q(name)
JOIN pg_catalog.pg_proc p ON p.proname = pg_catalog.regexp_replace(q.name, '^.*\.', '')
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.strpos(q.name, '.') = 0 OR n.nspname = pg_catalog.split_part(q.name, '.', 1)`

// writesAnyway are statement kinds that are writes whatever their functions do.
var writesAnyway = map[string]bool{"INSERT": true, "UPDATE": true, "MERGE": true, "COPY FROM": true, "CALL": true, "LOCK": true, "NOTIFY": true}

// refine re-decides what a statement calling functions Portcullis does not know does, on
// what the upstream declares about them. It returns act itself when nothing changes or the
// upstream cannot say.
func (s *Server) refine(res *configs.Resource, act *policy.Action, session string) *policy.Action {
	if act.Class != policy.ClassWrite || len(act.Functions) == 0 || writesAnyway[act.Kind] {
		return act
	}
	unknown := pgsql.UnknownFunctions(act)
	if len(unknown) == 0 {
		return act
	}
	now := s.Now()
	f := &s.funcs
	if miss := f.missing(res.Name, unknown, now); len(miss) > 0 {
		got, err := s.lookupFunctions(res, miss, now, session)
		if err != nil {
			s.Log.Warn("could not ask the upstream what functions it has; they stay writes", "session", session, "resource", res.Name, "functions", miss, "err", err)
			return act
		}
		f.remember(res.Name, got)
	}
	out := pgsql.ClassifyWith(act.Statement, f.known(res.Name, now))
	if out.Class == act.Class {
		return act
	}
	out.InTransaction, out.EstimatedRows = act.InTransaction, act.EstimatedRows
	return out
}

// lookupFunctions asks the upstream for the functions names may be, on a connection of
// its own with the session's kind of credentials.
func (s *Server) lookupFunctions(res *configs.Resource, names []string, now time.Time, session string) (map[string]funcInfo, error) {
	got := make(map[string]funcInfo, len(names))
	for _, n := range names {
		got[n] = funcInfo{class: policy.ClassWrite, at: now} // until the server shows otherwise
	}
	err := s.catalog(res, session, func(ctx context.Context, conn *pgconn.PgConn) error {
		arr := "{" + quoteArray(names) + "}"
		res := conn.ExecParams(ctx, volatilityQuery, [][]byte{[]byte(arr)}, nil, nil, nil).Read()
		if res.Err != nil {
			return res.Err
		}
		for _, row := range res.Rows {
			name := string(row[0])
			fi := got[name]
			o := overload{signature: string(row[2]), volatile: firstByte(row[3])}
			if oid, err := strconv.ParseUint(string(row[1]), 10, 32); err == nil {
				o.oid = uint32(oid)
			}
			fi.overloads = append(fi.overloads, o)
			got[name] = fi
		}
		for n, fi := range got {
			if len(fi.overloads) > 0 && !slices.ContainsFunc(fi.overloads, func(o overload) bool { return o.volatile != 'i' && o.volatile != 's' }) {
				fi.class = policy.ClassRead
				got[n] = fi
			}
		}
		return nil
	})
	return got, err
}

// catalogTimeout bounds a catalog connection: credentials, connect and query.
const catalogTimeout = 15 * time.Second

// catalog runs fn on a short-lived connection of its own to res, with fresh credentials
// of an ordinary session's kind that are released afterwards.
func (s *Server) catalog(res *configs.Resource, session string, fn func(context.Context, *pgconn.PgConn) error) error {
	// Minting credentials (a Vault lease) and connecting can take seconds on a loaded
	// host; giving up early decides the statement as a write and holds psql's own \dt.
	ctx, cancel := context.WithTimeout(context.Background(), catalogTimeout)
	defer cancel()
	creds, err := s.Broker.Credentials(ctx, res.Name, "")
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Broker.Release(context.Background(), creds); err != nil {
			s.Log.Error("could not release the upstream credentials of a catalog connection", "session", session, "resource", res.Name, "err", err)
		}
	}()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(creds.Username, creds.Password), Host: res.Upstream, Path: "/" + res.Database, RawQuery: "sslmode=prefer"}
	conn, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return fn(ctx, conn)
}

// quoteArray renders names as the elements of a text[] literal.
func quoteArray(names []string) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range n {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	return b.String()
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}
