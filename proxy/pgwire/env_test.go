package pgwire_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/proxy/pgwire"
	"github.com/portcullis/portcullis/web"
)

const upstreamPassword = "upstream-secret-pw"

// testConfig is the configuration of the tests: alice (engineering) writes, bob and erin
// (sre) and carol (security) approve.
const testConfig = `version: 1
server:
  public_url: http://portcullis.test
audit:
  readers: {teams: [security]}
identity:
  static_tokens:
    - {subject: alice, groups: [engineering], token_sha256: %s}
    - {subject: bob, groups: [sre], token_sha256: %s}
    - {subject: carol, groups: [security], token_sha256: %s}
    - {subject: erin, groups: [sre], token_sha256: %s}
    - {subject: dave, groups: [engineering, oncall], token_sha256: %s}
teams:
  - {name: engineering, groups: [engineering]}
  - {name: sre, groups: [sre]}
  - {name: security, groups: [security]}
resources:
  - name: orders
    kind: postgres
    upstream: %s
    labels: {env: production}
    credentials: {static: {username: portcullis, password: %s}}
  - name: bench
    kind: postgres
    upstream: %s
    database: orders
    labels: {env: staging}
    credentials: {static: {username: portcullis, password: %s}}
  - name: fuzz
    kind: postgres
    upstream: %s
    database: orders
    labels: {env: production}
    credentials: {static: {username: portcullis, password: %s}}
  - name: down
    kind: postgres
    upstream: 127.0.0.1:%d
    credentials: {static: {username: portcullis, password: x}}
breakglass:
  who: {groups: [oncall]}
  scopes:
    - {resources: [orders], actions: [write, ddl, admin]}
  durations: [2s, 30m]
  min_reason: 10
  reviewers: {teams: [security]}
  budgets: {engineering: 1}
roles:
  - name: orders-writer
    grants: [{resources: [orders], actions: [write]}]
    max_duration: 4h
    durations: [2s, 1h]
    require_reason: true
    quorum: {required_teams: [sre]}
policies:
  - name: orders-read
    match: {resources: {names: [orders]}, actions: [read]}
    effect: allow
  - name: orders-write
    description: writes need SRE
    match: {resources: {names: [orders]}, actions: [write, delete], except: {roles: [orders-writer]}}
    effect: require_approval
    quorum: {required_teams: [sre], timeout: 30s}
  - name: orders-writer-grant
    match: {resources: {names: [orders]}, actions: [write], principals: {roles: [orders-writer]}}
    effect: allow
  - name: orders-ddl
    description: no DDL on orders
    match: {resources: {names: [orders]}, actions: [ddl]}
    effect: deny
  - name: orders-admin
    tier: high
    match: {resources: {names: [orders]}, actions: [admin]}
    effect: deny
  - name: quick-timeout
    match: {resources: {names: [orders]}, actions: [write]}
    when: "'timeouts' in action.tables"
    effect: require_approval
    quorum: {required_teams: [sre], timeout: 1s}
  - name: two-approvers
    match: {resources: {names: [orders]}, actions: [write]}
    when: "'pairs' in action.tables"
    effect: require_approval
    quorum: {min_approvals: 2, approvers: {teams: [sre, security]}}
  - name: big-deletes
    description: deletes of more than 1000 rows are never allowed here
    match: {resources: {names: [orders]}, actions: [delete]}
    when: action.estimated_rows > 1000
    effect: deny
  - name: fuzz-read
    match: {resources: {names: [fuzz]}, actions: [read]}
    effect: allow
  - name: bench-all
    match: {resources: {names: [bench]}}
    effect: allow
`

type env struct {
	pg        *devserver.Postgres
	cfg       *configs.Config
	srv       *pgwire.Server
	addr      string
	api       *httptest.Server
	approvals *elevation.Approvals
	auditDir  string
	log       *audit.Log
}

func token(name string) string { return name + "-token" }

func sha(s string) string {
	return fmt.Sprintf("%x", sha256Sum([]byte(s)))
}

// newEnv starts PostgreSQL with the orders database, and Portcullis's PostgreSQL front
// end and API in front of it.
func newEnv(t testing.TB, opts ...func(*pgwire.Server)) *env {
	t.Helper()
	return newEnvYAML(t, nil, opts...)
}

// newEnvYAML is newEnv with the configuration changed by mutate first.
func newEnvYAML(t testing.TB, mutate func(yaml string) string, opts ...func(*pgwire.Server)) *env {
	t.Helper()
	return newEnvOn(t, testenv.Postgres(t), mutate, opts...)
}

// newEnvOn is newEnvYAML in front of the PostgreSQL server pg.
func newEnvOn(t testing.TB, pg *devserver.Postgres, mutate func(yaml string) string, opts ...func(*pgwire.Server)) *env {
	t.Helper()
	e := &env{pg: pg}
	seed(t, e.pg)
	closed, _ := devserver.FreePort()
	yaml := fmt.Sprintf(testConfig, sha(token("alice")), sha(token("bob")), sha(token("carol")), sha(token("erin")), sha(token("dave")),
		e.pg.Addr(), upstreamPassword, e.pg.Addr(), upstreamPassword, e.pg.Addr(), upstreamPassword, closed)
	if mutate != nil {
		yaml = mutate(yaml)
	}
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	e.auditDir = t.TempDir()
	cfg.Audit.Dir = e.auditDir
	if e.log, err = audit.Open(audit.Options{Dir: e.auditDir}); err != nil {
		t.Fatal(err)
	}
	store, err := elevation.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.approvals = elevation.NewApprovals(store, nil)
	auth, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	e.srv = &pgwire.Server{Config: cfg, Auth: auth, Broker: elevation.NewStaticBroker(cfg), Approvals: e.approvals, Audit: e.log, Log: logger}
	for _, o := range opts {
		o(e.srv)
	}
	e.approvals = e.srv.Approvals // an option may have put it in another store
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	go e.srv.Serve(ln)
	metrics := web.NewEventMetrics()
	e.log.AddObserver(metrics)
	e.api = httptest.NewServer((&web.Server{Config: cfg, Auth: auth, Approvals: e.approvals, Audit: e.log, Log: logger, ClassifySQL: e.srv.Classify, Metrics: metrics}).Handler())
	t.Cleanup(func() {
		e.api.Close()
		e.srv.Close()
		e.log.Close()
		if _, err := audit.Verify(e.auditDir); err != nil {
			t.Errorf("audit log after the test: %v", err)
		}
	})
	return e
}

func seed(t testing.TB, p *devserver.Postgres) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, q := range []string{"CREATE ROLE portcullis LOGIN PASSWORD '" + upstreamPassword + "'", "CREATE DATABASE orders OWNER portcullis",
		"ALTER ROLE portcullis SET statement_timeout = '5s'"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db, err := pgx.Connect(ctx, fmt.Sprintf("postgres://portcullis:%s@%s/orders?sslmode=disable", upstreamPassword, p.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);
		INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 5000) g;
		CREATE TABLE timeouts (id int); CREATE TABLE pairs (id int); ANALYZE orders`); err != nil {
		t.Fatal(err)
	}
}

// connect opens a pgx connection to the proxy as user.
func (e *env) connect(t *testing.T, user string, params ...string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.dsn(user, "orders", params...))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (e *env) dsn(user, db string, params ...string) string {
	q := append([]string{"sslmode=disable"}, params...)
	return fmt.Sprintf("postgres://%s:%s@%s/%s?%s", user, token(user), e.addr, db, strings.Join(q, "&"))
}

// upstream opens a direct connection to the orders database, to check what happened.
func (e *env) upstream(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://portcullis:%s@%s/orders?sslmode=disable", upstreamPassword, e.pg.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (e *env) count(t *testing.T, where string) int {
	t.Helper()
	var n int
	if err := e.upstream(t).QueryRow(context.Background(), "SELECT count(*) FROM orders WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pending waits for the one pending approval request and returns it.
// audited reports whether the audit log holds an event about approval request id with
// result. The log is live: a line being written reads as an error, which is "not yet".
func (e *env) audited(t *testing.T, id, result string) bool {
	t.Helper()
	found := false
	err := audit.Scan(e.auditDir, audit.Filter{}, func(ev *audit.Event) error {
		if ev.Result == result && ev.Details["approval"] == id {
			found = true
		}
		return nil
	})
	return err == nil && found
}

func (e *env) pending(t *testing.T) *elevation.Request {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		all, err := e.approvals.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.Pending() {
				return r
			}
		}
	}
	t.Fatal("no approval request appeared")
	return nil
}

// waitState waits for request id to reach state.
func (e *env) waitState(t *testing.T, id, state string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, _ := e.approvals.Get(context.Background(), id)
		if r.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s is %s, want %s", id, r.State, state)
		}
	}
}

// call makes an API request as user and returns the status.
func (e *env) call(t *testing.T, user, method, path, body string) int {
	t.Helper()
	code, _ := e.get(t, user, method, path, body)
	return code
}

// get makes an API request as user and returns the status and the decoded body.
func (e *env) get(t *testing.T, user, method, path, body string) (int, map[string]any) {
	t.Helper()
	return getAt(t, e.api.URL, user, method, path, body)
}

// callAt makes an API request to the server at base and returns the status.
func callAt(t *testing.T, base, user, method, path, body string) int {
	t.Helper()
	code, _ := getAt(t, base, user, method, path, body)
	return code
}

func getAt(t *testing.T, base, user, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// metrics returns what the API's /metrics serves.
func (e *env) metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(e.api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
