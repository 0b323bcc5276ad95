package kubefront

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/vault"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// vaultKubeToken is the API server token Vault's Kubernetes engine manages service
// accounts with.
const vaultKubeToken = "vault-kube-token"

// keptTokens is the Vault broker, noting each token it mints (to check it dies).
type keptTokens struct {
	*vault.Broker
	mu     sync.Mutex
	minted []elevation.Credentials
}

func (k *keptTokens) KubeToken(ctx context.Context, resource, role string, notAfter time.Time) (elevation.Credentials, error) {
	c, err := k.Broker.KubeToken(ctx, resource, role, notAfter)
	k.mu.Lock()
	k.minted = append(k.minted, c)
	k.mu.Unlock()
	return c, err
}

// TestElevationRunsAsAVaultServiceAccount: while alice holds the cluster-admin grant, her
// requests run with a service-account token Vault's Kubernetes engine mints for the grant
// (the API server sees the service account, with the role Vault bound to it); when the
// grant is revoked, Portcullis revokes the lease, Vault deletes the service account, and
// the API server rejects the token.
func TestElevationRunsAsAVaultServiceAccount(t *testing.T) {
	v := testenv.Vault(t)
	var tokens *keptTokens
	e := newEnvWith(t, envOpts{
		users: []devserver.KubeUser{{Token: vaultKubeToken, Name: "vault", Groups: []string{"system:masters"}}},
		mutate: func(e *env, y string) string {
			setUpVaultKube(t, v, e.kube)
			y = strings.Replace(y, `    credentials: {static: {header: Authorization, value: "Bearer `+devserver.KubePortcullisToken+`"}}`,
				`    credentials:
      static: {header: Authorization, value: "Bearer `+devserver.KubePortcullisToken+`"}
      vault:
        roles: {cluster-admin: kubernetes/creds/prod-admin}
        kubernetes_namespace: portcullis
        cluster_role_binding: true`, 1)
			y = strings.Replace(y, "kubernetes: {namespaces: [prod]}}", "kubernetes: {namespaces: [prod]}, except: {roles: [cluster-admin]}}", 1)
			return y + `  - name: cluster-admins
    match: {resources: {names: [cluster]}, actions: [write, delete, exec], principals: {roles: [cluster-admin]}, kubernetes: {namespaces: [prod]}}
    effect: allow
roles:
  - name: cluster-admin
    grants: [{resources: [cluster], actions: [write, delete, exec]}]
    max_duration: 1h
    durations: [15m]
    quorum: {required_teams: [sre]}
vault: {address: ` + v.Address() + `, token: ` + devserver.VaultRootToken + `}
`
		},
		prepare: func(e *env) {
			b, err := vault.NewBroker(context.Background(), e.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			tokens = &keptTokens{Broker: b}
			e.srv.Tokens, e.srv.Credentials = tokens, b
		},
	})
	ctx := context.Background()

	// Without the grant: alice, impersonated, is held.
	e.refused("alice", "ApprovalRequired", "delete", "configmap", "orders-config", "-n", "prod")
	alice, _ := e.cfg.StaticSubject("alice")
	bob, _ := e.cfg.StaticSubject("bob")
	grant, err := e.approvals.RequestElevation(ctx, e.cfg, alice, elevation.ElevationRequest{Role: "cluster-admin", Duration: "15m", Reason: "rotate the orders config"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.approvals.Approve(ctx, grant.ID, bob, "ok"); err != nil {
		t.Fatal(err)
	}
	who := e.as("alice", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if !strings.HasPrefix(who, "system:serviceaccount:portcullis:") {
		t.Fatalf("under the grant the API server should see Vault's service account, saw %q", who)
	}
	if out := e.as("alice", "delete", "configmap", "orders-config", "-n", "prod"); !strings.Contains(out, "deleted") {
		t.Errorf("the delete under the grant: %s", out)
	}
	tokens.mu.Lock()
	minted := append([]elevation.Credentials(nil), tokens.minted...)
	tokens.mu.Unlock()
	if len(minted) != 1 || minted[0].Password == "" {
		t.Fatalf("want one token minted for the grant, got %d", len(minted))
	}
	token := minted[0].Password
	if code := apiStatus(t, e.kube, token); code != 200 {
		t.Fatalf("the grant's token before the end: %d", code)
	}

	// A watch and an exec session opened under the grant...
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	n := testenv.Node(t, e.kube)
	if out, err := e.kube.Kubectl(ctx, n.PodManifest("prod", "orders-0"), "apply", "-f", "-"); err != nil {
		t.Fatalf("create pod: %v\n%s", err, out)
	}
	if out, err := e.kube.Kubectl(ctx, "", "wait", "-n", "prod", "--for=condition=Ready", "pod/orders-0", "--timeout=60s"); err != nil {
		t.Fatalf("pod not ready: %v\n%s", err, out)
	}
	shell := exec.CommandContext(wctx, e.kubectl, "--kubeconfig", e.kubeconfig("alice"), "exec", "-i", "-n", "prod", "orders-0", "--", "cat")
	shellIn, _ := shell.StdinPipe()
	shellOut := &testenv.SyncBuffer{}
	shell.Stdout, shell.Stderr = shellOut, shellOut
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	defer shellIn.Close()
	io.WriteString(shellIn, "under the grant\n")
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(shellOut.String(), "under the grant"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the exec under the grant did not run:\n%s", shellOut)
		}
	}
	shellDone := make(chan error, 1)
	go func() { shellDone <- shell.Wait() }()
	watch := exec.CommandContext(wctx, e.kubectl, "--kubeconfig", e.kubeconfig("alice"), "get", "configmaps", "-n", "prod", "--watch")
	watchOut := &testenv.SyncBuffer{}
	watch.Stdout, watch.Stderr = watchOut, watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() { watchDone <- watch.Wait() }()
	watching := func() bool {
		for _, ev := range e.events() {
			if ev.Type == audit.TypeKubeRequest && strings.Contains(ev.Action, "watch=true") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(20 * time.Second); !watching(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not start:\n%s", watchOut)
		}
	}

	// The grant ends early: the token dies with it, and the watch is cut.
	if _, err := e.approvals.Revoke(ctx, grant.ID, alice, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watchDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("the watch opened under the grant still runs after the grant ended:\n%s", watchOut)
	}
	if !strings.Contains(watchOut.String(), "Portcullis ended this stream: elevation "+grant.ID+" ended") {
		t.Errorf("kubectl was not told why its watch ended:\n%s", watchOut)
	}
	select {
	case err := <-shellDone:
		if err == nil || !strings.Contains(shellOut.String(), "Portcullis ended this stream: elevation "+grant.ID+" ended") {
			t.Errorf("the exec under the grant ended with %v, and kubectl said:\n%s", err, shellOut)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the exec opened under the grant still runs after the grant ended:\n%s", shellOut)
	}
	deadline := time.Now().Add(20 * time.Second)
	for apiStatus(t, e.kube, token) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the grant's service-account token still works after the grant was revoked")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := e.kube.Kubectl(ctx, "", "get", "serviceaccounts", "-n", "portcullis", "-o", "name"); err != nil || strings.Contains(out, "serviceaccount/v-") {
		t.Errorf("Vault's service account is still there: %v %s", err, out)
	}
	// alice is impersonated again, and held again.
	if who := e.as("alice", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); who != "alice" {
		t.Errorf("after the grant: %q", who)
	}
	var minted_, revoked, cut bool
	for _, ev := range e.events() {
		switch ev.Type {
		case audit.TypeKubeResult:
			if ev.Result == "cut" && strings.Contains(ev.Reason, grant.ID+" ended") {
				cut = true
			}
		case audit.TypeKubeTokenMinted:
			minted_ = ev.Details["grant"] == grant.ID && strings.HasPrefix(ev.Details["service_account"].(string), "system:serviceaccount:portcullis:")
		case audit.TypeKubeTokenRevoked:
			revoked = ev.Details["grant"] == grant.ID && ev.Result == "ok"
		}
	}
	if !minted_ || !revoked || !cut {
		t.Errorf("audit: minted %v, revoked %v, watch cut %v", minted_, revoked, cut)
	}
}

// setUpVaultKube mounts Vault's Kubernetes secrets engine against the test cluster, with
// a role that makes a service account in namespace portcullis bound to the editor
// ClusterRole.
func setUpVaultKube(t *testing.T, v *devserver.Vault, k *devserver.Kube) {
	t.Helper()
	ctx := context.Background()
	if out, err := k.Kubectl(ctx, "", "create", "namespace", "portcullis"); err != nil {
		t.Fatal(out)
	}
	vc, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Address()})
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(devserver.VaultRootToken)
	if err := vc.Sys().MountWithContext(ctx, "kubernetes", &vaultapi.MountInput{Type: "vault-plugin-secrets-kubernetes"}); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]map[string]any{
		"kubernetes/config": {"kubernetes_host": k.URL(), "kubernetes_ca_cert": string(k.CA), "service_account_jwt": vaultKubeToken, "disable_local_ca_jwt": true},
		"kubernetes/roles/prod-admin": {"allowed_kubernetes_namespaces": []string{"portcullis"}, "kubernetes_role_type": "ClusterRole",
			"kubernetes_role_name": "editor", "token_default_ttl": "10m", "token_max_ttl": "2h"},
	} {
		if _, err := vc.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("vault %s: %v", path, err)
		}
	}
}

// apiStatus is the API server's answer to token on /api.
func apiStatus(t *testing.T, k *devserver.Kube, token string) int {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CA)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", k.URL()+"/api", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
