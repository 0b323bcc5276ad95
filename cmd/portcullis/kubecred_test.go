package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestMain lets a test run this package's CLI as a program (kubectl runs exec plugins as
// processes): with PORTCULLIS_TEST_RUN_CLI=1 the test binary is `portcullis`.
func TestMain(m *testing.M) {
	if os.Getenv("PORTCULLIS_TEST_RUN_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestKubeCredential: real kubectl runs `portcullis kube-credential` as its exec credential
// plugin and a real API server accepts what it hands over — $PORTCULLIS_TOKEN, or the token
// `portcullis login` keeps (with its expiry); without either, kubectl says to sign in.
func TestKubeCredential(t *testing.T) {
	kubectl, err := devserver.KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	k := testenv.Kube(t, devserver.KubeUser{Token: "alice-static-token", Name: "alice", Groups: []string{"system:masters"}},
		devserver.KubeUser{Token: "alice-login-token", Name: "alice-login", Groups: []string{"system:masters"}})
	dir := t.TempDir()
	self, _ := os.Executable()
	const server = "http://portcullis.test:8080"
	cfg := filepath.Join(dir, "kubeconfig")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority: %q}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %q
      args: [kube-credential, --server, %q]
      env: [{name: PORTCULLIS_TEST_RUN_CLI, value: "1"}]
      interactiveMode: Never
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`, k.URL(), k.CAFile, self, server)), 0o600)
	tokenFile := filepath.Join(dir, "token.json")
	whoami := func(env ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", cfg, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		cmd.Env = append(os.Environ(), append([]string{"PORTCULLIS_TOKEN=", "PORTCULLIS_TOKEN_FILE=" + tokenFile}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := whoami("PORTCULLIS_TOKEN=alice-static-token"); err != nil || out != "alice" {
		t.Errorf("with PORTCULLIS_TOKEN: %v %q", err, out)
	}
	if out, err := whoami(); err == nil || !strings.Contains(out, "portcullis login") {
		t.Errorf("without a token kubectl should say to sign in: %v %q", err, out)
	}
	t.Setenv("PORTCULLIS_TOKEN_FILE", tokenFile)
	if err := saveToken(server, cachedToken{IDToken: "alice-login-token", Expiry: time.Now().Add(time.Hour), User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if out, err := whoami(); err != nil || out != "alice-login" {
		t.Errorf("with the kept sign-in: %v %q", err, out)
	}
	// What kubectl reads: the v1 ExecCredential with the sign-in's expiry.
	t.Setenv("PORTCULLIS_TOKEN", "")
	code, out := runCLI(t, "kube-credential", "--server", server)
	var cred struct {
		APIVersion, Kind string
		Status           struct{ Token, ExpirationTimestamp string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &cred) != nil || cred.APIVersion != "client.authentication.k8s.io/v1" ||
		cred.Kind != "ExecCredential" || cred.Status.Token != "alice-login-token" || cred.Status.ExpirationTimestamp == "" {
		t.Errorf("kube-credential printed (exit %d) %s", code, out)
	}
}
