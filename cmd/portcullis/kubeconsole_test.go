package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestKubeApprovalInTheConsole: alice scales the orders Deployment in prod with real
// kubectl through Portcullis; the request is held, and bob, in a real browser, sees on the
// request page the API server's dry run of it as a diff (replicas 2 → 3), and approves;
// alice runs the same command again and it runs, once.
func TestKubeApprovalInTheConsole(t *testing.T) {
	k := testenv.Kube(t, devserver.KubeUser{Token: devserver.KubePortcullisToken, Name: devserver.KubePortcullisUser})
	if err := k.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	e, kubectl := kubeConsole(t, k)
	scale := func() (string, error) {
		return kubectl("alice", "scale", "deployment", "orders", "-n", "prod", "--replicas=3")
	}
	out, err := scale()
	m := regexp.MustCompile(`request (apr_\w+), .*Approve at (\S+),`).FindStringSubmatch(out)
	if err == nil || m == nil {
		t.Fatalf("the scale should be held with the request and its link: %v\n%s", err, out)
	}
	if !strings.HasPrefix(m[2], e.web+"/requests/"+m[1]) {
		t.Errorf("the link %s is not the request page of %s", m[2], m[1])
	}

	bob := e.user(t, "bob")
	do(t, bob, chromedp.Navigate(e.web+"/requests/"+m[1]), chromedp.WaitVisible(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.ID("preview")))
	if st := text(t, bob, "#statement"); !strings.Contains(st, "PATCH /apis/apps/v1/namespaces/prod/deployments/orders/scale") {
		t.Errorf("the request page shows %q", st)
	}
	del, add := text(t, bob, "#preview .del"), text(t, bob, "#preview .add")
	if !strings.Contains(del, "replicas: 2") || !strings.Contains(add, "replicas: 3") {
		t.Errorf("the diff marks %q removed and %q added; want replicas 2 -> 3", del, add)
	}
	if body := text(t, bob, "main"); !strings.Contains(body, "cluster-prod-changes") || !strings.Contains(body, "patch deployments.apps/orders (scale) in prod") {
		t.Errorf("the request page does not name the policy and the request:\n%s", body)
	}
	e.shoot(t, bob, "kube-request")
	do(t, bob, chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.CSS(`#state.state-approved`)))

	if out, err := scale(); err != nil || !strings.Contains(out, "scaled") {
		t.Fatalf("the approved scale, run again: %v\n%s", err, out)
	}
	got, err := k.Kubectl(context.Background(), "", "get", "deployment", "orders", "-n", "prod", "-o", "jsonpath={.spec.replicas}")
	if err != nil || got != "3" {
		t.Errorf("replicas after the approved scale: %v %q", err, got)
	}
	// bob's page shows what became of it.
	do(t, bob, chromedp.Navigate(e.web+"/requests/"+m[1]), chromedp.WaitVisible(chromedp.CSS(`#state.state-executed`)))
	if st := text(t, bob, "#state"); !strings.Contains(fmt.Sprint(st), "HTTP 200") && !strings.Contains(st, "executed") && !strings.Contains(st, "ran") {
		t.Errorf("the request's state after the run: %q", st)
	}
}

// TestExecReplayInTheConsole: alice runs a command in a pod on a real node with kubectl
// exec through Portcullis; in a real browser she opens the session in the console and the
// terminal player replays what the command printed, from the recording in the audit log.
func TestExecReplayInTheConsole(t *testing.T) {
	k := testenv.Kube(t, devserver.KubeUser{Token: devserver.KubePortcullisToken, Name: devserver.KubePortcullisUser})
	ctx := context.Background()
	if err := k.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	n := testenv.Node(t, k)
	if out, err := k.Kubectl(ctx, n.PodManifest("demo", "box"), "apply", "-f", "-"); err != nil {
		t.Fatalf("create pod: %v\n%s", err, out)
	}
	if out, err := k.Kubectl(ctx, "", "wait", "-n", "demo", "--for=condition=Ready", "pod/box", "--timeout=60s"); err != nil {
		t.Fatalf("pod not ready: %v\n%s", err, out)
	}
	e, kubectl := kubeConsole(t, k)
	if out, err := kubectl("alice", "exec", "-n", "demo", "box", "--", "sh", "-c", "echo hello from the pod"); err != nil || !strings.Contains(out, "hello from the pod") {
		t.Fatalf("kubectl exec through Portcullis: %v\n%s", err, out)
	}

	// The session with the terminal recording: the one whose cast the API serves.
	var sessions struct{ Sessions []struct{ ID, Kind string } }
	if err := apiGet(e.web+"/api/v1/sessions", "alice-demo-token", &sessions); err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, s := range sessions.Sessions {
		var cast any // the header line decodes; a session without a recording is a 404
		if s.Kind == "kubernetes" && apiGet(e.web+"/api/v1/sessions/"+s.ID+"/cast", "alice-demo-token", &cast) == nil {
			id = s.ID
		}
	}
	if id == "" {
		t.Fatalf("no session has a terminal recording: %+v", sessions)
	}
	alice := e.user(t, "alice")
	do(t, alice, chromedp.Navigate(e.web+"/sessions/"+id), chromedp.WaitVisible(chromedp.CSS(`#terminal[data-ready]`)))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(text(t, alice, "#terminal"), "hello from the pod") {
		if time.Now().After(deadline) {
			t.Fatalf("the player never showed the output; the terminal reads %q", text(t, alice, "#terminal"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.shoot(t, alice, "exec-replay")
}

// kubeConsole starts the console environment (the demo's configuration) with its cluster
// resource on k, and returns it with alice's kubeconfig and a kubectl running as user
// through Portcullis (portcullis kube-credential with the demo token).
func kubeConsole(t *testing.T, k *devserver.Kube) (*consoleEnv, func(user string, args ...string) (string, error)) {
	t.Setenv("DEMO_KUBE_URL", k.URL())
	t.Setenv("DEMO_KUBE_CA", k.CAFile)
	t.Setenv("DEMO_KUBE_TOKEN", devserver.KubePortcullisToken)
	e := startConsoleEnv(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if code, out := runCLI(t, "kubeconfig", "--resource", "cluster", "--server", e.web, "--token", "alice-demo-token", "--kubeconfig", kubeconfig); code != 0 {
		t.Fatalf("portcullis kubeconfig: %d %s", code, out)
	}
	kubectlBin, err := devserver.KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	return e, func(user string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectlBin, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PORTCULLIS_TOKEN="+user+"-demo-token", "PORTCULLIS_TEST_RUN_CLI=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}
