package kubefront

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/redisstore"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/identity"
)

const testConfig = `version: 1
server: {public_url: http://portcullis.test}
identity:
  static_tokens:
    - {subject: alice, groups: [engineering], token_sha256: %x}
    - {subject: bob, groups: [sre], token_sha256: %x}
teams:
  - {name: engineering, groups: [engineering]}
  - {name: sre, groups: [sre]}
resources:
  - name: cluster
    kind: kubernetes
    labels: {env: production}
    upstream: %s
    kubernetes:
      listen: 127.0.0.1:0
      tls: {ca_file: %s}
      approved_groups: ["portcullis:approved"]
      max_request_bytes: 65536
    credentials: {static: {header: Authorization, value: "Bearer ` + devserver.KubePortcullisToken + `"}}
policies:
  - name: cluster-reads
    match: {resources: {names: [cluster]}, actions: [read]}
    effect: allow
  - name: demo-free
    match: {resources: {names: [cluster]}, actions: [write, delete, exec], kubernetes: {namespaces: [demo]}}
    effect: allow
  - name: prod-changes
    description: changes in prod need an SRE
    match: {resources: {names: [cluster]}, actions: [write, delete, exec], kubernetes: {namespaces: [prod]}}
    effect: require_approval
    quorum: {required_teams: [sre], timeout: 10m}
  - name: system-writes
    description: kube-system is not changed through Portcullis
    match: {resources: {names: [cluster]}, actions: [write, delete], kubernetes: {namespaces: ["kube-*"]}}
    effect: deny
`

type env struct {
	t         *testing.T
	cfg       *configs.Config
	kube      *devserver.Kube
	srv       *Server
	approvals *elevation.Approvals
	auditDir  string
	url       string
	kubectl   string
	dir       string
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOpts{}) }

// envOpts changes the environment newEnvWith builds.
type envOpts struct {
	users   []devserver.KubeUser          // more static tokens the API server accepts
	mutate  func(e *env, y string) string // changes the configuration's YAML
	prepare func(e *env)                  // runs once the server is built, before it serves
}

func newEnvWith(t *testing.T, o envOpts) *env {
	kubectl, err := devserver.KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	// The demo's cluster: Portcullis may impersonate; teams read; engineering edits in
	// demo; the portcullis:approved group edits everywhere; prod holds orders-config and
	// the orders Deployment.
	k := testenv.Kube(t, append(o.users, devserver.KubeUser{Token: devserver.KubePortcullisToken, Name: devserver.KubePortcullisUser})...)
	if err := k.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, kube: k, kubectl: kubectl, dir: t.TempDir()}

	y := fmt.Sprintf(testConfig, sha256.Sum256([]byte("alice-token")), sha256.Sum256([]byte("bob-token")), k.URL(), k.CAFile)
	if o.mutate != nil {
		y = o.mutate(e, y)
	}
	cfg, err := configs.Parse("kube.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audit.Dir = t.TempDir()
	e.auditDir = cfg.Audit.Dir
	log, err := audit.Open(audit.Options{Dir: cfg.Audit.Dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	// Approvals in Redis, as users run them.
	r := testenv.Redis(t)
	store, err := redisstore.Open(context.Background(), r.URL(), "portcullis:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e.approvals = elevation.NewApprovals(store, nil)
	t.Cleanup(e.approvals.Close)
	auth, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &Server{Config: cfg, Resource: cfg.Resource("cluster"), Auth: auth, Audit: log,
		Gate: &gate.Gate{Config: cfg, Approvals: e.approvals, Audit: log}}
	e.cfg = cfg
	if o.prepare != nil {
		o.prepare(e)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	e.url = "https://" + ln.Addr().String()
	return e
}

// portForward runs kubectl port-forward to demo/web's httpd through Portcullis (over a
// WebSocket tunnel, or SPDY when websockets is "false"), fetches a file through it, and
// checks that the connection was recorded: opened, then closed with its bytes.
func (e *env) portForward(websockets string) {
	t := e.t
	t.Helper()
	before := 0
	for _, ev := range e.events() {
		if ev.Type == audit.TypeKubePortForward {
			before++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectl, "--kubeconfig", e.kubeconfig("alice"), "port-forward", "-n", "demo", "pod/web", "0:8080")
	cmd.Env = append(os.Environ(), "KUBECTL_PORT_FORWARD_WEBSOCKETS="+websockets)
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`).FindStringSubmatch(line)
	if err != nil || m == nil {
		t.Fatalf("port-forward (websockets %s): %q %v %s", websockets, line, err, stderr.String())
	}
	resp, err := http.Get("http://127.0.0.1:" + m[1] + "/passwd")
	if err != nil {
		t.Fatalf("through the port-forward (websockets %s): %v %s", websockets, err, stderr.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "root:x:0:0") {
		t.Errorf("through the port-forward: %d %q", resp.StatusCode, body)
	}
	cmd.Process.Kill()
	cmd.Wait()
	var opened, closed *audit.Event
	for deadline := time.Now().Add(10 * time.Second); closed == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n := 0
		for _, ev := range e.events() {
			if ev.Type != audit.TypeKubePortForward {
				continue
			}
			if n++; n <= before {
				continue
			}
			switch ev.Details["connection"] {
			case "opened":
				opened = ev
			case "closed":
				closed = ev
			}
		}
	}
	if opened == nil || closed == nil || opened.Details["port"] != "8080" || closed.Details["bytes_out"].(float64) < float64(len(body)) || closed.Details["bytes_in"].(float64) == 0 {
		t.Errorf("port-forward (websockets %s) recorded: opened %+v, closed %+v", websockets, opened, closed)
	}
}

// has reports whether the audit log holds an event of type whose action contains action.
func (e *env) has(typ, action string) bool {
	for _, ev := range e.events() {
		if ev.Type == typ && strings.Contains(ev.Action, action) {
			return true
		}
	}
	return false
}

// client is an HTTP client that trusts the front end's certificate.
func (e *env) client() *http.Client {
	ca, _ := e.srv.CAPEM()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
}

// kubeconfig writes a kubeconfig for user's Portcullis token against the front end.
func (e *env) kubeconfig(user string) string {
	ca, err := e.srv.CAPEM()
	if err != nil {
		e.t.Fatal(err)
	}
	caFile := filepath.Join(e.dir, "portcullis-ca.pem")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(e.dir, "kubeconfig-"+user)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: portcullis, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: %s, user: {token: %s-token}}]
contexts: [{name: portcullis, context: {cluster: portcullis, user: %s}}]
current-context: portcullis
`, e.url, caFile, user, user, user)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run runs kubectl with kubeconfig and stdin, failing the test if it fails.
func (e *env) run(kubeconfig, stdin string, args ...string) string {
	e.t.Helper()
	out, err := e.try(kubeconfig, stdin, args...)
	if err != nil {
		e.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs kubectl and returns its output and error.
func (e *env) try(kubeconfig, stdin string, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// as runs kubectl as user through Portcullis, expecting success.
func (e *env) as(user string, args ...string) string {
	e.t.Helper()
	return e.run(e.kubeconfig(user), "", args...)
}

// refused runs kubectl as user through Portcullis, expecting a refusal that says want.
func (e *env) refused(user, want string, args ...string) string {
	e.t.Helper()
	out, err := e.try(e.kubeconfig(user), "", args...)
	if err == nil || !strings.Contains(out, want) {
		e.t.Fatalf("kubectl %s as %s: %v, want a refusal with %q:\n%s", strings.Join(args, " "), user, err, want, out)
	}
	return out
}

// adminConfig is the cluster administrator's kubeconfig, directly to the API server.
func (e *env) adminConfig() string {
	cfg, err := e.kube.Kubeconfig("admin", devserver.KubeAdminToken)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// refusedIn is refused with stdin.
func (e *env) refusedIn(stdin, want, user string, args ...string) string {
	e.t.Helper()
	out, err := e.try(e.kubeconfig(user), stdin, args...)
	if err == nil || !strings.Contains(out, want) {
		e.t.Fatalf("kubectl %s as %s: %v, want a refusal with %q:\n%s", strings.Join(args, " "), user, err, want, out)
	}
	return out
}

// deployment is the orders Deployment in prod (the seed's: 2 replicas of busybox:1.36).
func deployment(replicas int, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: prod, labels: {app: orders}}
spec:
  replicas: %d
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec:
      containers:
      - {name: orders, image: %q, command: [sleep, infinity]}
`, replicas, image)
}

// admin runs kubectl with the cluster administrator's token, directly.
func (e *env) admin(args ...string) (string, error) { return e.try(e.adminConfig(), "", args...) }

// events reads the audit log.
func (e *env) events() []*audit.Event {
	var out []*audit.Event
	if err := audit.Scan(e.auditDir, audit.Filter{}, func(ev *audit.Event) error { out = append(out, ev); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

var requestID = regexp.MustCompile(`request (\S+),`)

// TestKubectlThroughPortcullis runs real kubectl against a real API server through the
// front end: reads pass as the caller; a prod delete is held, named in a Status kubectl
// prints, re-run while pending, approved, re-run to run once, and held again after; a
// kube-system write is denied naming the policy; the cluster's own RBAC still applies.
func TestKubectlThroughPortcullis(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// Reads run as the caller (impersonated): whoami shows alice and her team.
	who := e.as("alice", "auth", "whoami", "-o", "json")
	if !strings.Contains(who, `"username": "alice"`) || !strings.Contains(who, `"engineering"`) {
		t.Errorf("the API server did not see alice: %s", who)
	}
	if out := e.as("alice", "get", "configmaps", "-n", "prod"); !strings.Contains(out, "orders-config") {
		t.Errorf("get configmaps: %s", out)
	}

	// A prod delete is held: kubectl prints the Status naming the request and its link.
	out := e.refused("alice", "ApprovalRequired", "delete", "configmap", "orders-config", "-n", "prod")
	m := requestID.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "http://portcullis.test/requests/"+m[1]) || !strings.Contains(out, "sre") {
		t.Fatalf("the held answer does not name the request, its link and quorum:\n%s", out)
	}
	id := m[1]
	if out := e.refused("alice", "ApprovalPending", "delete", "configmap", "orders-config", "-n", "prod"); !strings.Contains(out, id) {
		t.Errorf("a re-run while pending should name the same request %s:\n%s", id, out)
	}
	if _, err := e.admin("get", "configmap", "orders-config", "-n", "prod"); err != nil {
		t.Fatalf("the held delete ran: %v", err)
	}
	// alice's own rights cannot delete it either: only an approved request can.
	req, err := e.approvals.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(req.Artifact.Statement, "DELETE /api/v1/namespaces/prod/configmaps/orders-config") || req.Artifact.Kind != "delete configmaps/orders-config in prod" {
		t.Errorf("artifact: %q / %q", req.Artifact.Statement, req.Artifact.Kind)
	}
	if p := req.Artifact.Preview; !strings.HasPrefix(p, "would delete:") || !strings.Contains(p, "mode: live") || strings.Contains(p, "resourceVersion") {
		t.Errorf("the approver should see the live object that would go:\n%s", p)
	}
	bob, _ := e.srv.Config.StaticSubject("bob")
	if _, err := e.approvals.Approve(ctx, id, bob, "ok"); err != nil {
		t.Fatal(err)
	}
	if out := e.as("alice", "delete", "configmap", "orders-config", "-n", "prod"); !strings.Contains(out, `"orders-config" deleted`) {
		t.Errorf("the approved re-run: %s", out)
	}
	if out, err := e.admin("get", "configmap", "orders-config", "-n", "prod"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("the approved delete did not run: %v %s", err, out)
	}
	if r, err := e.approvals.Get(ctx, id); err != nil || r.State != elevation.StateExecuted || r.Outcome == nil || r.Outcome.String() != "HTTP 200" {
		t.Errorf("the approved request's outcome: %v %+v", err, r)
	}
	// It ran once: the same command again is a new request.
	if out, err := e.admin("create", "configmap", "orders-config", "-n", "prod", "--from-literal=mode=live"); err != nil {
		t.Fatal(out)
	}
	out = e.refused("alice", "ApprovalRequired", "delete", "configmap", "orders-config", "-n", "prod")
	if m := requestID.FindStringSubmatch(out); m == nil || m[1] == id {
		t.Errorf("a second run of an approved request should be held anew:\n%s", out)
	}

	// A changed Deployment applied to prod is held with the API server's dry run of it as
	// a diff against the live object.
	e.refusedIn(deployment(3, "busybox:1.37"), "ApprovalRequired", "alice", "apply", "-f", "-")
	reqs, err := e.approvals.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var diff string
	for _, r := range reqs {
		if strings.Contains(r.Artifact.Statement, "/deployments/orders") {
			diff = r.Artifact.Preview
		}
	}
	for _, want := range []string{"--- live", "+++ after this request (dry run)", "-  replicas: 2", "+  replicas: 3", "-        image: busybox:1.36", "+        image: busybox:1.37"} {
		if !strings.Contains(diff, want) {
			t.Errorf("the dry-run diff lacks %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, "managedFields") || strings.Contains(diff, "resourceVersion") || strings.Contains(diff, "last-applied") {
		t.Errorf("the diff shows bookkeeping:\n%s", diff)
	}

	// kube-system writes are denied, naming the policy.
	out = e.refused("alice", "denied by Portcullis", "create", "configmap", "x", "-n", "kube-system")
	if !strings.Contains(out, "system-writes") {
		t.Errorf("the denial does not name the policy:\n%s", out)
	}
	// demo is free, and alice's RBAC lets her edit there.
	e.as("alice", "create", "configmap", "scratch", "-n", "demo", "--from-literal=a=b")
	// bob's team only reads: a write Portcullis allows is still refused by the cluster.
	if out := e.refused("bob", "forbidden", "create", "configmap", "bobs", "-n", "demo"); !strings.Contains(out, `User "bob" cannot create`) {
		t.Errorf("the cluster's own RBAC should refuse bob:\n%s", out)
	}
	// Acting as someone else through Portcullis is refused.
	e.refused("alice", "impersonation", "get", "pods", "-n", "prod", "--as", "bob")

	// The audit log has each decision before its run, and each run's result.
	var held, denied, results, closed int
	for _, ev := range e.events() {
		switch {
		case ev.Type == audit.TypeKubeRequest && ev.Result == "waiting":
			held++
		case ev.Type == audit.TypeKubeRequest && ev.Result == "denied":
			denied++
		case ev.Type == audit.TypeKubeResult:
			results++
		case ev.Type == audit.TypeKubeApprovalClosed && ev.Result == "approved":
			closed++
		}
	}
	if held != 3 || denied < 2 || results == 0 || closed != 1 {
		t.Errorf("audit: %d held, %d denied, %d results, %d approvals closed; want 3, ≥2, >0, 1", held, denied, results, closed)
	}
}

// TestWatchStreams: a watch through Portcullis sees a change as it happens.
func TestWatchStreams(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectl, "--kubeconfig", e.kubeconfig("alice"), "get", "configmaps", "-n", "demo", "--watch", "-o", "name")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The watch is open once the initial list (kube-root-ca.crt may or may not exist yet)
	// has come; create the object until it shows, as the watch may start a moment later.
	created := false
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the watch ended before the change arrived")
			}
			if strings.Contains(l, "configmap/watched") {
				return
			}
		case <-tick.C:
			if !created {
				if out, err := e.admin("create", "configmap", "watched", "-n", "demo"); err != nil {
					t.Fatal(out)
				}
				created = true
			}
		case <-ctx.Done():
			t.Fatal("the change never came through the watch")
		}
	}
}

// TestRefusedBeforeForwarding: what Portcullis cannot decide safely never reaches the API
// server — no token, an oversized body, a subresource it does not know (decided as
// unknown: here the default, deny), a stream it cannot record (a pod proxy's WebSocket).
func TestRefusedBeforeForwarding(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	do := func(method, path, token, body string, header ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &st)
		return resp.StatusCode, st
	}
	if code, st := do("GET", "/api/v1/namespaces", "", ""); code != 401 || st["kind"] != "Status" || st["reason"] != "Unauthorized" {
		t.Errorf("no token: %d %v", code, st)
	}
	if code, _ := do("GET", "/api/v1/namespaces", "kube-admin-token-guess", ""); code != 401 {
		t.Errorf("a token Portcullis does not know: %d", code)
	}
	big := `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", 70000) + `"}}`
	if code, st := do("POST", "/api/v1/namespaces/demo/configmaps", "alice-token", big, "Content-Type", "application/json"); code != 413 || st["reason"] != "RequestEntityTooLarge" {
		t.Errorf("oversized body: %d %v", code, st)
	}
	if code, st := do("POST", "/api/v1/namespaces/demo/pods/x/frobnicate", "alice-token", "{}", "Content-Type", "application/json"); code != 403 || !strings.Contains(fmt.Sprint(st["message"]), "denied by Portcullis") {
		t.Errorf("an unknown subresource: %d %v", code, st)
	}
	if code, st := do("GET", "/api/v1/namespaces/demo/pods/x/proxy/ws", "alice-token", "", "Connection", "Upgrade", "Upgrade", "websocket"); code != 403 || !strings.Contains(fmt.Sprint(st["message"]), "not recorded") {
		t.Errorf("an exec stream: %d %v", code, st)
	}
	var unknown, exec bool
	for _, ev := range e.events() {
		if ev.Type == audit.TypeKubeRequest && ev.Details["class"] == "unknown" && ev.Result == "denied" {
			unknown = true
		}
		if ev.Type == audit.TypeKubeRequest && ev.Details["subresource"] == "proxy" && ev.Result == "refused" {
			exec = true
		}
		if ev.Type == audit.TypeKubeResult {
			t.Errorf("something was forwarded: %+v", ev)
		}
	}
	if !unknown || !exec {
		t.Errorf("audit: unknown subresource denied %v, exec refused %v", unknown, exec)
	}
}

// TestHoldWaitAndKubectlFlavours: with hold: wait (for automations) a held delete stays
// open until it is approved, then runs; server-side apply, patch and auth can-i work
// through Portcullis unchanged.
func TestHoldWaitAndKubectlFlavours(t *testing.T) {
	e := newEnvWith(t, envOpts{mutate: func(_ *env, y string) string {
		return strings.Replace(y, "      max_request_bytes: 65536\n", "      max_request_bytes: 65536\n      hold: wait\n", 1)
	}})
	ctx := context.Background()
	done := make(chan string, 1)
	go func() {
		out, err := e.try(e.kubeconfig("alice"), "", "delete", "configmap", "orders-config", "-n", "prod")
		done <- fmt.Sprint(out, err)
	}()
	// The request appears, pending; kubectl is still waiting.
	var id string
	for deadline := time.Now().Add(20 * time.Second); id == ""; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no approval request appeared")
		}
		reqs, err := e.approvals.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reqs {
			if r.State == elevation.StatePending && strings.Contains(r.Artifact.Statement, "orders-config") {
				id = r.ID
			}
		}
	}
	select {
	case out := <-done:
		t.Fatalf("kubectl returned before the approval: %s", out)
	case <-time.After(500 * time.Millisecond):
	}
	bob, _ := e.cfg.StaticSubject("bob")
	if _, err := e.approvals.Approve(ctx, id, bob, "ok"); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-done:
		if !strings.Contains(out, `"orders-config" deleted`) {
			t.Fatalf("the waiting delete after approval: %s", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting delete did not run after the approval")
	}

	// Server-side apply and patch in demo (free), and auth can-i, as kubectl sends them.
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: demo}\ndata: {a: b}\n"
	if out := e.run(e.kubeconfig("alice"), cm, "apply", "--server-side", "-f", "-"); !strings.Contains(out, "serverside-applied") {
		t.Errorf("server-side apply: %s", out)
	}
	if out := e.as("alice", "patch", "configmap", "ssa", "-n", "demo", "--type=merge", "-p", `{"data":{"a":"c"}}`); !strings.Contains(out, "patched") {
		t.Errorf("patch: %s", out)
	}
	if out := e.as("alice", "auth", "can-i", "create", "configmaps", "-n", "demo"); strings.TrimSpace(out) != "yes" {
		t.Errorf("auth can-i in demo: %q", out)
	}
	if out, _ := e.try(e.kubeconfig("alice"), "", "auth", "can-i", "delete", "configmaps", "-n", "prod"); strings.TrimSpace(out) != "no" {
		t.Errorf("auth can-i delete in prod (alice's own rights, without an approval): %q", out)
	}
}

// TestExecRecorded runs kubectl exec through Portcullis into pods on a real node (kubelet
// and containerd): a free exec in demo runs with stdin, output and exit code passed
// through, and is recorded in the audit log (input, output, the exit code); an exec in
// prod is held, approved, and runs once; streams Portcullis cannot record (SPDY,
// port-forward) are refused before anything reaches the cluster.
func TestExecRecorded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := testenv.Node(t, e.kube)
	for _, pod := range []struct {
		ns, name string
		cmd      []string
	}{{"demo", "box", nil}, {"prod", "orders-0", nil}, {"demo", "web", []string{"httpd", "-f", "-p", "8080", "-h", "/etc"}}} {
		if out, err := e.kube.Kubectl(ctx, n.PodManifest(pod.ns, pod.name, pod.cmd...), "apply", "-f", "-"); err != nil {
			t.Fatalf("create pod: %v\n%s", err, out)
		}
		if out, err := e.kube.Kubectl(ctx, "", "wait", "-n", pod.ns, "--for=condition=Ready", "pod/"+pod.name, "--timeout=60s"); err != nil {
			t.Fatalf("pod %s not ready: %v\n%s", pod.name, err, out)
		}
	}

	out, err := e.try(e.kubeconfig("alice"), "typed by alice\n", "exec", "-i", "-n", "demo", "box", "--", "sh", "-c", "cat; echo done; exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "typed by alice") || !strings.Contains(out, "done") {
		t.Fatalf("exec through Portcullis: %v\n%s", err, out)
	}
	var input, output string
	var result *audit.Event
	// The result is written as the session ends, maybe just after kubectl exits.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !e.has(audit.TypeKubeResult, "/exec"); {
		time.Sleep(50 * time.Millisecond)
	}
	for _, ev := range e.events() {
		switch {
		case ev.Type == audit.TypeKubeStream:
			frames, _ := ev.Details["frames"].([]any)
			for _, f := range frames {
				fr := f.([]any)
				switch fr[1] {
				case "i":
					input += fr[2].(string)
				case "o":
					output += fr[2].(string)
				}
			}
		case ev.Type == audit.TypeKubeResult && strings.Contains(ev.Action, "/exec"):
			result = ev
		}
	}
	if input != "typed by alice\n" || !strings.Contains(output, "typed by alice\ndone\n") {
		t.Errorf("recording: input %q, output %q", input, output)
	}
	if result == nil || result.Details["recorded"] != true || result.Details["exit_code"] != float64(3) || result.Details["status"] != float64(101) {
		t.Errorf("exec result event: %+v", result)
	}

	// An exec in prod is held; approved, it runs once.
	// kubectl prints an upgrade's refusal by its message (from its SPDY fallback, which finds
	// the same request pending).
	out = e.refused("alice", "pods/orders-0 (exec) in prod", "exec", "-n", "prod", "orders-0", "--", "echo", "in prod")
	m := requestID.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no request named:\n%s", out)
	}
	req, err := e.approvals.Get(ctx, m[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(req.Artifact.Statement, "/namespaces/prod/pods/orders-0/exec") || !strings.Contains(req.Artifact.Statement, "command=echo") {
		t.Errorf("the approver should see the pod and command: %q", req.Artifact.Statement)
	}
	if want := "would run in pod orders-0 in prod, container main:\n  echo 'in prod'\nstdin: no, terminal: no; the session is recorded\n"; req.Artifact.Preview != want {
		t.Errorf("exec preview:\n%s\nwant:\n%s", req.Artifact.Preview, want)
	}
	bob, _ := e.srv.Config.StaticSubject("bob")
	if _, err := e.approvals.Approve(ctx, m[1], bob, "ok"); err != nil {
		t.Fatal(err)
	}
	if out := e.as("alice", "exec", "-n", "prod", "orders-0", "--", "echo", "in prod"); !strings.Contains(out, "in prod") {
		t.Errorf("the approved exec: %s", out)
	}
	e.refused("alice", "approval", "exec", "-n", "prod", "orders-0", "--", "echo", "in prod")

	// kubectl before 1.30 speaks SPDY: recorded the same way.
	spdy := exec.Command(e.kubectl, "--kubeconfig", e.kubeconfig("alice"), "exec", "-i", "-n", "demo", "box", "--", "sh", "-c", "cat; exit 4")
	spdy.Env = append(os.Environ(), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
	spdy.Stdin = strings.NewReader("over spdy\n")
	out2, err := spdy.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(out2), "over spdy") {
		t.Fatalf("SPDY exec through Portcullis: %v\n%s", err, out2)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !e.has(audit.TypeKubeResult, "cat%3B+exit+4"); {
		time.Sleep(50 * time.Millisecond)
	}
	input, output = "", ""
	result = nil
	for _, ev := range e.events() {
		if !strings.Contains(ev.Action, "cat%3B+exit+4") {
			continue
		}
		switch ev.Type {
		case audit.TypeKubeStream:
			for _, f := range ev.Details["frames"].([]any) {
				if fr := f.([]any); fr[1] == "i" {
					input += fr[2].(string)
				} else if fr[1] == "o" {
					output += fr[2].(string)
				}
			}
		case audit.TypeKubeResult:
			result = ev
		}
	}
	if input != "over spdy\n" || output != "over spdy\n" || result == nil || result.Details["exit_code"] != float64(4) {
		t.Errorf("SPDY recording: input %q, output %q, result %+v", input, output, result)
	}

	// port-forward, over a WebSocket tunnel (kubectl's default) and over SPDY: each
	// connection is recorded as it opens, and with its bytes as it closes.
	for _, websockets := range []string{"true", "false"} {
		e.portForward(websockets)
	}

	// Streams Portcullis does not record are refused before anything reaches the cluster.
	for _, tc := range []struct{ path, upgrade, protocol, want string }{
		{"/api/v1/namespaces/demo/pods/box/exec?command=id&stdout=true", "websocket", "base64.channel.k8s.io", "no stream protocol Portcullis records"},
		{"/api/v1/namespaces/demo/pods/box/portforward?ports=80", "websocket", "v5.channel.k8s.io", "no stream protocol Portcullis records"},
	} {
		req, _ := http.NewRequest("GET", e.url+tc.path, nil)
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", tc.upgrade)
		req.Header.Set("Sec-WebSocket-Protocol", tc.protocol)
		resp, err := e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s over %s: %d %s", tc.path, tc.upgrade, resp.StatusCode, b)
		}
	}

	// No recording, no session: once the audit log cannot be written, the next input
	// ends the session instead of reaching the container. (Last: the log stays closed.)
	sess := exec.Command(e.kubectl, "--kubeconfig", e.kubeconfig("alice"), "exec", "-i", "-n", "demo", "box", "--", "sh", "-c", "cat > /tmp/typed")
	stdin, _ := sess.StdinPipe()
	var sessOut strings.Builder
	sess.Stdout, sess.Stderr = &sessOut, &sessOut
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "recorded\n")
	for deadline := time.Now().Add(10 * time.Second); !e.has(audit.TypeKubeStream, "cat+%3E+%2Ftmp%2Ftyped"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first input was not recorded")
		}
	}
	e.srv.Audit.Close()
	io.WriteString(stdin, "never recorded\n")
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Errorf("the session went on without its recording: %s", sessOut.String())
		}
	case <-time.After(20 * time.Second):
		sess.Process.Kill()
		t.Fatal("the session went on without its recording")
	}
	stdin.Close()
	if out, _ := e.kube.Kubectl(ctx, "", "exec", "-n", "demo", "box", "--", "cat", "/tmp/typed"); strings.Contains(out, "never recorded") {
		t.Errorf("input reached the container unrecorded: %q", out)
	}
}
