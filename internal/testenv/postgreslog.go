package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/devserver"
)

// LogPostgres logs what PostgreSQL is doing in database db: every session with what it
// waits for, its transaction, its last query, and the locks it holds or waits for — for
// a test that found a statement never answered.
func LogPostgres(t testing.TB, pg *devserver.Postgres, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN(db))
	if err != nil {
		t.Logf("postgres: %v", err)
		return
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT a.pid, a.usename, coalesce(a.state, ''), coalesce(a.wait_event_type || ':' || a.wait_event, ''),
		coalesce(a.backend_xid::text, ''), left(a.query, 160),
		coalesce(string_agg(l.relation::regclass::text || ' ' || l.mode || CASE WHEN l.granted THEN '' ELSE ' (waiting)' END, ', '), '')
		FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND l.relation IS NOT NULL
		WHERE a.datname = $1 AND a.pid <> pg_backend_pid() GROUP BY 1, 2, 3, 4, 5, 6`, db)
	if err != nil {
		t.Logf("postgres: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		var user, state, wait, xid, query, locks string
		if err := rows.Scan(&pid, &user, &state, &wait, &xid, &query, &locks); err == nil {
			t.Logf("postgres session %d %s %s wait=%s xid=%s locks: %s; last query: %s", pid, user, state, wait, xid, locks, query)
		}
	}
}
