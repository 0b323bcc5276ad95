package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// consoleEnv is Portcullis serving the demo configuration with single sign-on through a
// real OIDC provider, a real PostgreSQL behind it, and headless Chromium in front.
type consoleEnv struct {
	web, proxy string
	http       string // the HTTP front end's address
	kube       string // the Kubernetes front end's address
	browser    context.Context
	shots      string
	pg         *devserver.Postgres // the upstream, to look at when something hangs
}

func startConsoleEnv(t *testing.T) *consoleEnv {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := seedOrders(ctx, pg, "upstream-pw"); err != nil {
		t.Fatal(err)
	}
	port, err := devserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	web := fmt.Sprintf("127.0.0.1:%d", port)
	idp := testenv.StartOIDCProvider(t, "http://"+web+"/auth/callback")

	dir, err := os.MkdirTemp("", "portcullis-console-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	demo, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for old, repl := range map[string]string{
		"listen: 127.0.0.1:8080":            "listen: " + web,
		"public_url: http://127.0.0.1:8080": "public_url: http://" + web,
		"postgres_listen: 127.0.0.1:6432":   "postgres_listen: 127.0.0.1:0",
		"http_listen: 127.0.0.1:8081":       "http_listen: 127.0.0.1:0",
		"identity:\n": "identity:\n  oidc:\n    issuer: " + idp.Issuer + "\n    client_id: portcullis-console\n    client_secret: " + idp.ConsoleSecret +
			"\n    cli_client_id: portcullis-cli\n    user_claim: preferred_username\n",
	} {
		if !bytes.Contains(demo, []byte(old)) {
			t.Fatalf("demo.yaml has no %q", old)
		}
		demo = bytes.Replace(demo, []byte(old), []byte(repl), 1)
	}
	os.MkdirAll(filepath.Join(dir, "policies"), 0o755)
	os.WriteFile(filepath.Join(dir, "demo.yaml"), demo, 0o644)
	copyPolicies(t, filepath.Join(dir, "policies"))
	t.Setenv("DEMO_DIR", dir)
	t.Setenv("DEMO_PG_PORT", fmt.Sprint(pg.Port))
	t.Setenv("DEMO_PG_PASSWORD", "upstream-pw")
	t.Setenv("DEMO_KUBE_PORT", "0")
	cfg, err := configs.Load(filepath.Join(dir, "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := startServe(t, ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	shots := os.Getenv("PORTCULLIS_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(testenv.ModuleRoot(t), ".artifacts", "screenshots")
	}
	os.MkdirAll(shots, 0o755)
	var kube string
	if len(a.kube) > 0 {
		kube = a.kube[0]
	}
	return &consoleEnv{web: "http://" + a.api, proxy: a.postgres, http: a.http, kube: kube, browser: testenv.Browser(t), shots: shots, pg: pg}
}

// user opens a browser context of its own (its own cookies) and signs in through the
// OIDC provider's login and consent pages.
// copyPolicies copies the shipped policy files into dir.
func copyPolicies(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob("../../configs/policies/*.yaml")
	if len(files) == 0 {
		t.Fatal("no policy files in configs/policies")
	}
	os.MkdirAll(dir, 0o755)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644)
	}
}

func (e *consoleEnv) user(t *testing.T, name string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(e.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelT)
	do(t, ctx,
		chromedp.Navigate(e.web+"/"),
		chromedp.WaitVisible(chromedp.ID("sso")),
		chromedp.Click(chromedp.ID("sso")),
		providerSignIn(name),
		chromedp.WaitVisible(chromedp.CSS(`form.me`)),
	)
	who := text(t, ctx, `form.me span`)
	if who != name {
		t.Fatalf("signed in as %q, want %q", who, name)
	}
	return ctx
}

// providerSignIn fills the provider's login page and confirms its consent page. Each
// step waits for its own page's elements, never for ones both pages have.
func providerSignIn(user string) chromedp.Action[chromedp.Void] {
	consent := chromedp.CSS(`form:has(input[name=prompt][value=consent]) button[type=submit]`)
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(`input[name=login]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=login]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "any password"),
		chromedp.Submit(chromedp.CSS(`input[name=login]`)),
		chromedp.WaitVisible(consent),
		chromedp.Click(consent),
	)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("browser: %v\nat %s:\n%s", err, loc, body)
	}
}

// void drops an action's value, to run it among steps.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// text returns the text of the first element matching css. A live page replaces its
// regions when something changes (and once when its event stream opens), so a node found
// may be gone by the time it is read: then it is looked up again.
func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	for try := 0; ; try++ {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
		if err == nil {
			return strings.TrimSpace(s)
		}
		if try == 4 || !strings.Contains(err.Error(), "No node") && !strings.Contains(err.Error(), "Cannot find context") {
			t.Fatalf("text of %s: %v", css, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// shoot saves full-page screenshots of what ctx shows at a narrow (phone) and a wide width.
func (e *consoleEnv) shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	for _, vp := range []struct {
		suffix string
		w, h   int64
	}{{"narrow", 390, 844}, {"wide", 1280, 900}} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(vp.w, vp.h)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(e.shots, name+"-"+vp.suffix+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A narrow page must not scroll sideways: everything fits the phone's width.
	chromedp.Do(ctx, chromedp.EmulateViewport(390, 844))
	if w := eval[float64](t, ctx, "document.documentElement.scrollWidth"); w > 390 {
		t.Errorf("%s is %v px wide on a 390 px screen", name, w)
	}
	chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900))
}

// psql runs real psql through the proxy as user with one command, and returns its output;
// it fails the test if psql fails or takes longer than 20s (a statement held for approval).
func (e *consoleEnv) psql(t *testing.T, user, command string) string {
	t.Helper()
	bin, err := devserver.PGProgram("psql")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.proxy)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", user, "-d", "orders", "-c", command)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+user+"-demo-token", "PGSSLMODE=require")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", command, err, out)
	}
	return string(out)
}

// startServe runs serve until the test ends and returns where it listens; a serve that
// fails or does not come up fails the test with its error (and is not waited for twice).
func startServe(t *testing.T, ctx context.Context, cfg *configs.Config, log *slog.Logger) listening {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan listening, 1)
	exited := make(chan struct{})
	var err error
	go func() {
		err = serve(ctx, cfg, log, func(a listening) { ready <- a })
		close(exited)
	}()
	t.Cleanup(func() { cancel(); <-exited })
	select {
	case a := <-ready:
		return a
	case <-exited:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not come up")
	}
	return listening{}
}

// openUntil opens path in the browser until an element matching sel is on the page.
func (e *consoleEnv) openUntil(t *testing.T, ctx context.Context, path, sel string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// A navigation still under way (a form's POST and its redirect) aborts this one or
		// is aborted by it: either way, try again.
		err := chromedp.Do(ctx, chromedp.Navigate(e.web+path), chromedp.WaitReady(chromedp.CSS(`main`)))
		if err == nil && eval[bool](t, ctx, fmt.Sprintf("!!document.querySelector(%q)", sel)) {
			return
		}
		if err != nil && !strings.Contains(err.Error(), "ERR_ABORTED") && !strings.Contains(err.Error(), "Cannot find context") {
			t.Fatalf("open %s: %v", path, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %s", path, sel)
		}
	}
}

// apiGet GETs an API URL with a bearer token and decodes the JSON answer into out.
func apiGet(u, token string, out any) error {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// sqlClient connects to the proxy as user with a static token, as psql would.
func (e *consoleEnv) sqlClient(t *testing.T, user string, onNotice ...func(*pgconn.PgConn, *pgconn.Notice)) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s-demo-token@%s/orders?sslmode=require", user, user, e.proxy))
	if err != nil {
		t.Fatal(err)
	}
	if len(onNotice) > 0 {
		cfg.OnNotice = onNotice[0]
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s through the proxy: %v", user, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestConsoleInABrowser drives the console in headless Chromium, signed in through a
// real OIDC provider: a statement approval from the inbox reaching the waiting SQL
// client, live updates, self-approval refused, CSRF refused, break glass and its review,
// a recording replayed, the audit search and the health page.
func TestConsoleInABrowser(t *testing.T) {
	e := startConsoleEnv(t)

	bob := e.user(t, "bob")
	do(t, bob, chromedp.WaitVisible(chromedp.CSS(`#inbox`)))
	// The event stream connects once app.js runs (which the CSP allows as 'self').
	do(t, bob, void(chromedp.Poll[bool](`document.body.dataset.live === 'connected'`, chromedp.WithPollingTimeout(10*time.Second))))
	eval[bool](t, bob, "window.__noReload = true")

	// alice's statement waits for approval...
	notices := make(chan *pgconn.Notice, 4)
	alice := e.sqlClient(t, "alice", func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n })
	// Her reason goes with what she runs, without changing the statement's text.
	if _, err := alice.Exec(context.Background(), "SET portcullis.reason = 'customer paid by wire, TICKET-12'"); err != nil {
		t.Fatalf("SET portcullis.reason: %v", err)
	}
	result := make(chan error, 1)
	var finished time.Time
	go func() {
		_, err := alice.Exec(context.Background(), "UPDATE orders SET status = 'paid' WHERE id = 2 -- customer paid by wire")
		finished = time.Now()
		result <- err
	}()
	// ...and appears in bob's open inbox without a reload.
	do(t, bob, chromedp.WaitVisible(chromedp.CSS(`#inbox li.item .mark.can`)))
	if !eval[bool](t, bob, "window.__noReload === true") {
		t.Error("the inbox reloaded; want a live update")
	}
	e.shoot(t, bob, "inbox")

	// The link in the notice pgx got while its statement waits opens the request page.
	var link string
	select {
	case n := <-notices:
		link = regexp.MustCompile(`https?://\S+/requests/apr_\w+`).FindString(n.Detail)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting pgx client got no notice")
	}
	if link == "" {
		t.Fatal("the notice has no request link")
	}
	do(t, bob, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("approve")))
	do(t, bob, chromedp.Navigate(e.web+"/"), chromedp.WaitVisible(chromedp.CSS(`#inbox li.item`)))
	do(t, bob, void(chromedp.Poll[bool](`document.body.dataset.live === 'connected'`, chromedp.WithPollingTimeout(10*time.Second))))

	// alice, signed in herself, sees her request but may not approve it.
	aliceWeb := e.user(t, "alice")
	id := eval[string](t, bob, `document.querySelector('#inbox li.item').dataset.id`)
	if !strings.HasSuffix(link, "/requests/"+id) {
		t.Errorf("the notice links to %s; the request is %s", link, id)
	}
	do(t, aliceWeb, chromedp.Navigate(e.web+"/requests/"+id), chromedp.WaitVisible(chromedp.ID("whynot")))
	if n := eval[int](t, aliceWeb, `document.querySelectorAll('#approve').length`); n != 0 {
		t.Error("the requester sees an approve button")
	}
	// The requester reads what her request waits for, with the approvers named.
	if why := text(t, aliceWeb, "#whynot"); !strings.Contains(why, "Waiting for 1 approval from team sre (bob") || !strings.Contains(why, "your own request") {
		t.Errorf("what alice's request waits for: %q", why)
	}
	if who := text(t, aliceWeb, "#quorum"); !strings.Contains(who, "approved by team sre (bob") {
		t.Errorf("the quorum does not name the eligible approvers: %q", who)
	}
	// Forged approvals: with her own form token the service refuses (403); without a
	// token, the CSRF check refuses (403) before anything happens.
	forge := `(async (withToken) => {
		const body = new URLSearchParams({decision: 'approve', comment: 'self'});
		if (withToken) body.set('csrf', document.querySelector('input[name=csrf]').value);
		const r = await fetch('/requests/` + id + `/decide', {method: 'POST', body});
		return r.status + ' ' + (await r.text()).includes('%s');
	})`
	if got := eval[string](t, aliceWeb, fmt.Sprintf(forge, "requester")+"(true)"); got != "403 true" {
		t.Errorf("self-approval through the form: %s, want 403 naming the requester", got)
	}
	if got := eval[string](t, aliceWeb, fmt.Sprintf(forge, "reload the page")+"(false)"); got != "403 true" {
		t.Errorf("approval without the form token: %s, want 403", got)
	}

	// bob opens the request and approves it; the SQL client gets its result, and alice's
	// open page shows the decision without a reload.
	eval[bool](t, aliceWeb, "window.__noReload = true")
	do(t, bob, chromedp.Click(chromedp.CSS(`#inbox li.item a`)), chromedp.WaitVisible(chromedp.ID("approve")))
	if st := text(t, bob, "#statement"); !strings.Contains(st, "UPDATE orders SET status = 'paid' WHERE id = 2") {
		t.Errorf("the request page shows %q", st)
	}
	if reason := text(t, bob, "#reason"); reason != "customer paid by wire, TICKET-12" {
		t.Errorf("the request page shows the reason %q", reason)
	}
	for _, want := range []string{"orders-write-approval", "sre: 0/1", "Estimated rows", "env=production"} {
		if body := text(t, bob, "main"); !strings.Contains(body, want) {
			t.Errorf("the request page does not show %q", want)
		}
	}
	e.shoot(t, bob, "request")
	do(t, bob, chromedp.SendKeys(chromedp.CSS(`textarea[name=comment]`), "confirmed the wire transfer"))
	clicked := time.Now()
	do(t, bob, chromedp.Click(chromedp.ID("approve")))
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("alice's statement after approval: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alice's statement did not complete after the approval")
	}
	latency := finished.Sub(clicked)
	t.Logf("approval click in the browser -> SQL client has its result: %v", latency)
	if latency > time.Second {
		t.Errorf("the approval took %v to reach the SQL client, want under 1s", latency)
	}
	do(t, bob, chromedp.WaitVisible(chromedp.CSS(`#state.state-executed, #state.state-approved`)))
	do(t, aliceWeb, void(chromedp.Poll[bool](`!!document.querySelector('#state.state-executed, #state.state-approved')`, chromedp.WithPollingTimeout(5*time.Second))))
	if !eval[bool](t, aliceWeb, "window.__noReload === true") {
		t.Error("alice's request page reloaded; want a live update")
	}
	// One timeline entry per vote; the outcome is what PostgreSQL answered.
	// (The outcome lands just after the statement's result; bob's page may have loaded
	// between the two, so it is read again until it shows.)
	e.openUntil(t, bob, "/requests/"+id, `#outcome code`)
	if votes := eval[int](t, bob, `[...document.querySelectorAll('.timeline li')].filter(li => /approved/.test(li.textContent) && /bob/.test(li.textContent)).length`); votes != 1 {
		t.Errorf("bob's vote is in the timeline %d times, want once", votes)
	}
	if out := text(t, bob, "#outcome"); !strings.Contains(out, "UPDATE 1") {
		t.Errorf("the executed request says %q", out)
	}

	// An approved statement PostgreSQL refuses shows as failed, with its SQLSTATE, on the
	// request page and in the API: an approval never lends privileges.
	go func() {
		_, err := alice.Exec(context.Background(), "UPDATE ledger SET amount = 0 WHERE order_id = 1")
		result <- err
	}()
	var ledgerLink string
	select {
	case n := <-notices:
		ledgerLink = regexp.MustCompile(`https?://\S+/requests/apr_\w+`).FindString(n.Detail)
	case <-time.After(5 * time.Second):
		t.Fatal("no notice for the ledger update")
	}
	do(t, bob, chromedp.Navigate(ledgerLink), chromedp.WaitVisible(chromedp.ID("approve")), chromedp.Click(chromedp.ID("approve")))
	select {
	case err := <-result:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Fatalf("the approved ledger update: %v, want PostgreSQL's 42501", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the approved ledger update did not end")
	}
	e.openUntil(t, bob, ledgerLink[strings.Index(ledgerLink, "/requests/"):], `#state.outcome-failed`)
	if out := text(t, bob, "#outcome"); !strings.Contains(out, "failed: 42501: permission denied for table ledger") {
		t.Errorf("the failed request says %q", out)
	}
	e.shoot(t, bob, "request-failed")
	ledgerID := ledgerLink[strings.LastIndex(ledgerLink, "/")+1:]
	var view struct {
		Status     string `json:"status"`
		StatusNote string `json:"status_note"`
	}
	if err := apiGet(e.web+"/api/v1/approvals/"+ledgerID, "alice-demo-token", &view); err != nil || view.Status != "failed" || !strings.HasPrefix(view.StatusNote, "42501: ") {
		t.Errorf("the API shows the failed request as %+v (%v)", view, err)
	}

	// The elevation form offers the configured role with its own durations.
	do(t, aliceWeb, chromedp.Navigate(e.web+"/elevate"), chromedp.WaitVisible(chromedp.ID("role-orders-writer")))
	opts := eval[[]string](t, aliceWeb, `[...document.querySelectorAll('#role-orders-writer select option')].map(o => o.value)`)
	if strings.Join(opts, " ") != "15m 1h 4h" {
		t.Errorf("elevation durations: %q, want the role's 15m 1h 4h", opts)
	}
	e.shoot(t, aliceWeb, "elevate")

	// dave breaks glass for DDL, sees the countdown, ends it early.
	dave := e.user(t, "dave")
	do(t, dave, chromedp.Navigate(e.web+"/breakglass"), chromedp.WaitVisible(chromedp.ID("breakglass-form")))
	e.shoot(t, dave, "breakglass-form")
	do(t, dave,
		chromedp.Click(chromedp.CSS(`input[name=resource][value=orders]`)),
		chromedp.Click(chromedp.CSS(`input[name=action][value=ddl]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=incident]`), "INC-42"),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=reason]`), "orders needs an index now, checkout is timing out"),
		chromedp.Click(chromedp.ID("breakglass-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#active .countdown`)),
	)
	if c := text(t, dave, "#active .countdown"); !strings.Contains(c, "left") {
		t.Errorf("countdown: %q", c)
	}
	ddl := e.sqlClient(t, "dave")
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	if _, err := ddl.Exec(dctx, "CREATE INDEX orders_status ON orders (status)"); err != nil {
		testenv.LogPostgres(t, e.pg, "orders") // a wait on a lock: who holds it
		t.Errorf("DDL under break-glass: %v", err)
	}
	dcancel()
	e.shoot(t, dave, "active")
	do(t, dave, chromedp.Click(chromedp.CSS(`#active .end-now`)), chromedp.WaitVisible(chromedp.CSS(`#active .empty`)))

	// carol (security) reviews it, replays alice's session, searches the audit log.
	carol := e.user(t, "carol")
	do(t, carol, chromedp.Navigate(e.web+"/reviews"), chromedp.WaitVisible(chromedp.CSS(`#reviews section.review`)))
	if body := text(t, carol, "#reviews section.review"); !strings.Contains(body, "INC-42") || !strings.Contains(body, "CREATE INDEX") {
		t.Errorf("the review does not show the incident and the flagged DDL:\n%s", body)
	}
	e.shoot(t, carol, "reviews")
	do(t, carol,
		chromedp.SendKeys(chromedp.CSS(`#reviews input[name=notes]`), "index was needed"),
		chromedp.Click(chromedp.CSS(`#reviews section.review button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#reviews ul.history li`)),
	)
	if done := text(t, carol, "#reviews ul.history"); !strings.Contains(done, "carol: justified") {
		t.Errorf("reviewed list: %q", done)
	}

	do(t, carol, chromedp.Navigate(e.web+"/sessions"), chromedp.WaitVisible(chromedp.CSS(`table.sessions tbody tr`)))
	do(t, carol, void(chromedp.Evaluate[bool](`(() => { for (const tr of document.querySelectorAll('table.sessions tbody tr')) {
		if (tr.cells[1].textContent === 'alice') { tr.querySelector('a').click(); return true } } return false })()`)),
		chromedp.WaitVisible(chromedp.ID("player")))
	steps := eval[int](t, carol, `document.querySelectorAll('#recording .step').length`)
	if steps < 3 {
		t.Fatalf("alice's recording has %d steps", steps)
	}
	if shown := eval[string](t, carol, `document.getElementById('recording').dataset.shown`); shown != "0" {
		t.Errorf("before play, %s steps shown", shown)
	}
	do(t, carol, chromedp.Click(chromedp.ID("step")))
	if shown := eval[string](t, carol, `document.getElementById('recording').dataset.shown`); shown != "1" {
		t.Errorf("after one step, %s steps shown", shown)
	}
	do(t, carol,
		chromedp.SetValue(chromedp.ID("speed"), "64"),
		chromedp.Click(chromedp.ID("play")),
		void(chromedp.Poll[bool](fmt.Sprintf(`document.getElementById('recording').dataset.shown === '%d'`, steps), chromedp.WithPollingTimeout(20*time.Second))),
	)
	if rec := text(t, carol, "#recording"); !strings.Contains(rec, "require_approval") || !strings.Contains(rec, "UPDATE") {
		t.Errorf("the replay does not show the held statement:\n%s", rec)
	}
	e.shoot(t, carol, "replay")

	do(t, carol, chromedp.Navigate(e.web+"/audit?breakglass=1"), chromedp.WaitVisible(chromedp.CSS(`table.events`)))
	if rows := text(t, carol, "table.events"); !strings.Contains(rows, "breakglass.started") || strings.Contains(rows, "pg.session.start") {
		t.Errorf("break-glass-only audit search:\n%s", rows)
	}
	export := eval[string](t, carol, `fetch(document.getElementById('export').href).then(r => r.status + ' ' + r.headers.get('content-type'))`)
	if !strings.HasPrefix(export, "200 application/jsonl") {
		t.Errorf("export: %q", export)
	}
	lines := eval[string](t, carol, `fetch(document.getElementById('export').href).then(r => r.text())`)
	if !strings.Contains(lines, `"breakglass.started"`) || strings.Count(lines, "\n") < 2 {
		t.Errorf("exported JSON lines:\n%s", lines)
	}
	// By actor: alice's events, with dave's flagged break-glass events added and said so.
	do(t, carol, chromedp.Navigate(e.web+"/audit?actor=alice"), chromedp.WaitVisible(chromedp.CSS(`table.events`)))
	// (Actor means actor or subject: bob's vote on her request is "bob → alice".)
	if others := eval[[]string](t, carol, `[...new Set([...document.querySelectorAll('table.events tbody tr:not(.added) td[data-label=Actor]')].map(td => td.textContent.trim()))].filter(a => !/(^| )alice$/.test(a))`); len(others) > 0 {
		t.Errorf("actor=alice shows events of %v", others)
	}
	if note := text(t, carol, "#added"); !strings.Contains(note, "never filtered out") {
		t.Errorf("the added flagged events are not explained: %q", note)
	}
	e.shoot(t, carol, "audit")
	do(t, carol, chromedp.Navigate(e.web+"/health"), chromedp.WaitVisible(chromedp.ID("chain")))
	if chain := text(t, carol, "#chain"); !strings.HasPrefix(chain, "Intact") {
		t.Errorf("chain status: %q", chain)
	}

	// alice is not an audit reader.
	st := eval[float64](t, aliceWeb, `fetch('/audit').then(r => r.status)`)
	if st != 403 {
		t.Errorf("alice on /audit: %v, want 403", st)
	}
	// psql's own catalog queries (\d, \dt) run at once: their functions are STABLE.
	// (Last: these sessions would come first in the session list above.)
	for _, meta := range []string{`\d orders`, `\dt`} {
		out := e.psql(t, "alice", meta)
		if !strings.Contains(out, "orders") || !strings.Contains(out, "ledger") && meta == `\dt` {
			t.Errorf("psql %s:\n%s", meta, out)
		}
	}
}

// TestCLILogin signs the CLI in through the real provider, with a browser on the loopback
// redirect and with the device flow, and uses the kept token with the API and the SQL proxy.
func TestCLILogin(t *testing.T) {
	e := startConsoleEnv(t)
	t.Setenv("PORTCULLIS_TOKEN_FILE", filepath.Join(t.TempDir(), "token.json"))
	t.Setenv("PORTCULLIS_TOKEN", "")

	// Before signing in there is no token.
	if code, out := runCLI(t, "token", "--server", e.web); code == 0 || !strings.Contains(out, "portcullis login") {
		t.Errorf("token before login: %d %s", code, out)
	}
	for _, tc := range []struct {
		name, user string
		args       []string
		urlRe      *regexp.Regexp
		confirm    bool // the device flow asks to confirm the code first
	}{
		{"loopback", "alice", []string{"--no-browser"}, regexp.MustCompile(`(http://127\.0\.0\.1:\d+/auth\S+)`), false},
		{"device", "bob", []string{"--device"}, regexp.MustCompile(`or open (\S+)\)`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &testenv.SyncBuffer{}
			done := make(chan int, 1)
			go func() {
				done <- run(append([]string{"login", "--server", e.web, "--timeout", "60s"}, tc.args...), out, out)
			}()
			var url string
			for deadline := time.Now().Add(20 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if m := tc.urlRe.FindStringSubmatch(out.String()); m != nil {
					url = m[1]
				}
			}
			if url == "" {
				t.Fatalf("login printed no address:\n%s", out)
			}
			ctx, cancel := chromedp.NewContext(e.browser, chromedp.WithNewBrowserContext())
			defer cancel()
			ctx, cancelT := context.WithTimeout(ctx, time.Minute)
			defer cancelT()
			do(t, ctx, chromedp.Navigate(url))
			if tc.confirm {
				confirm := chromedp.CSS(`button[form="op.deviceConfirmForm"]:not([name=abort])`)
				do(t, ctx, chromedp.WaitVisible(confirm), chromedp.Click(confirm))
			}
			do(t, ctx, providerSignIn(tc.user))
			select {
			case code := <-done:
				if code != 0 || !strings.Contains(out.String(), "Signed in to "+e.web+" as "+tc.user) {
					t.Fatalf("login: exit %d\n%s", code, out)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("login did not finish:\n%s", out)
			}
			code, tok := runCLI(t, "token", "--server", e.web)
			tok = strings.TrimSpace(tok)
			if code != 0 || strings.Count(tok, ".") != 2 {
				t.Fatalf("token: %d %q", code, tok)
			}
			// The API takes it (the CLI's own commands use it without --token)...
			if code, out := runCLI(t, "approvals", "list", "--server", e.web); code != 0 {
				t.Errorf("approvals list with the kept token: %d %s", code, out)
			}
			// ...and so does the SQL proxy, as psql's password.
			// Bounded, so that a stalled session fails here, not at the suite's timeout.
			qctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := pgx.Connect(qctx, fmt.Sprintf("postgres://x:%s@%s/orders?sslmode=require", tok, e.proxy))
			if err != nil {
				t.Fatalf("psql with the token: %v", err)
			}
			defer c.Close(context.Background())
			var n int
			if err := c.QueryRow(qctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 5 {
				t.Errorf("SELECT with the token: %d %v", n, err)
			}
		})
	}
}

// TestShutdownEndsEventStreams: an open console event stream does not hold the server's
// shutdown.
func TestShutdownEndsEventStreams(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DEMO_DIR", dir)
	cfg, err := configs.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Listen, cfg.Server.PostgresListen = "127.0.0.1:0", ""
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), func(a listening) { ready <- a })
	}()
	var a listening
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get("http://" + a.api + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if tok == nil {
		t.Fatalf("no form on /login:\n%s", page)
	}
	resp, err = c.PostForm("http://"+a.api+"/login/token", url.Values{"csrf": {string(tok[1])}, "token": {"bob-demo-token"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign-in: %v %v", resp, err)
	}
	resp.Body.Close()
	stream, err := c.Get("http://" + a.api + "/events")
	if err != nil || stream.StatusCode != 200 || stream.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not stop with an event stream open")
	}
}
