package devserver

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestKube starts the real control plane (etcd and kube-apiserver, as `make kubernetes`
// builds them) and drives it with the real kubectl: the administrator creates a namespace,
// a user RBAC has granted nothing is refused, and the TokenRequest API mints a token (what
// Vault's Kubernetes secrets engine calls).
func TestKube(t *testing.T) {
	kubectl, err := KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	k, err := StartKube(t.TempDir(), KubeUser{Token: "nobody-token", Name: "nobody", Groups: []string{"engineering"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Stop() })
	run := func(user, token string, args ...string) (string, error) {
		t.Helper()
		cfg, err := k.Kubeconfig(user, token)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", cfg}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("admin", KubeAdminToken, "create", "namespace", "prod"); err != nil {
		t.Fatalf("kubectl create namespace: %v\n%s", err, out)
	}
	out, err := run("admin", KubeAdminToken, "get", "namespaces", "-o", "name")
	if err != nil || !strings.Contains(out, "namespace/prod") {
		t.Fatalf("kubectl get namespaces: %v\n%s", err, out)
	}
	if out, err := run("nobody", "nobody-token", "get", "pods", "-n", "prod"); err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("a user without RBAC grants listed pods: %v\n%s", err, out)
	}
	if out, err := run("admin", KubeAdminToken, "create", "serviceaccount", "deployer", "-n", "prod"); err != nil {
		t.Fatalf("kubectl create serviceaccount: %v\n%s", err, out)
	}
	out, err = run("admin", KubeAdminToken, "create", "token", "deployer", "-n", "prod", "--duration", "10m")
	if err != nil || strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Fatalf("TokenRequest: %v\n%s", err, out)
	}
	if who, err := run("deployer", strings.TrimSpace(out), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || who != "system:serviceaccount:prod:deployer" {
		t.Errorf("the minted token is not the service account's: %v %q", err, who)
	}
}

// TestNode registers a real node (containerd and a kubelet) with the control plane, runs a
// pod of the locally built busybox image on it, and execs into it with kubectl: stdin in,
// stdout out, the exit code back.
func TestNode(t *testing.T) {
	kubectl, err := KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	k, err := StartKube(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Stop() })
	n, err := StartNode(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	cfg, err := k.Kubeconfig("admin", KubeAdminToken)
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", cfg}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(n.PodManifest("default", "box"), "apply", "-f", "-"); err != nil {
		t.Fatalf("create pod: %v\n%s", err, out)
	}
	if out, err := run("", "wait", "--for=condition=Ready", "pod/box", "--timeout=60s"); err != nil {
		t.Fatalf("pod not ready: %v\n%s", err, out)
	}
	out, err := run("hello from stdin\n", "exec", "-i", "box", "--", "sh", "-c", "cat; echo out; exit 3")
	if !strings.Contains(out, "hello from stdin") || !strings.Contains(out, "out") {
		t.Errorf("exec output %q", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exec exit: %v, want code 3", err)
	}
}
