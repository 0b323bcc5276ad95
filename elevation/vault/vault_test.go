package vault

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestVaultTokenIsRenewed: a broker holding a 3-second token keeps working past it.
func TestVaultTokenIsRenewed(t *testing.T) {
	v := testenv.Vault(t)
	vc, _ := vaultapi.NewClient(&vaultapi.Config{Address: v.Address()})
	vc.SetToken(devserver.VaultRootToken)
	ctx := context.Background()
	tok, err := vc.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{TTL: "3s", ExplicitMaxTTL: "1m", Policies: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vc.KVv2("secret").Put(ctx, "orders", map[string]any{"username": "u", "password": "p"}); err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Vault: configs.Vault{Address: v.Address(), Token: tok.Auth.ClientToken, Timeout: configs.Duration(5 * time.Second)},
		Resources: []configs.Resource{{Name: "orders", Kind: "postgres", Credentials: configs.Credentials{Vault: &configs.VaultCredentials{Path: "secret/data/orders"}}}}}
	b, err := NewBroker(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	time.Sleep(5 * time.Second) // past the token's first TTL
	s, err := b.client.Logical().ReadWithContext(ctx, "secret/data/orders")
	if err != nil || s == nil {
		t.Fatalf("the broker's token lapsed: %v", err)
	}
}

// TestVaultAppRoleLogin: the broker logs in with AppRole and reads credentials.
func TestVaultAppRoleLogin(t *testing.T) {
	v := testenv.Vault(t)
	vc, _ := vaultapi.NewClient(&vaultapi.Config{Address: v.Address()})
	vc.SetToken(devserver.VaultRootToken)
	ctx := context.Background()
	if err := vc.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().PutPolicyWithContext(ctx, "portcullis", `path "secret/data/orders" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/approle/role/portcullis", map[string]any{"token_policies": "portcullis", "token_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	rid, _ := vc.Logical().ReadWithContext(ctx, "auth/approle/role/portcullis/role-id")
	sid, _ := vc.Logical().WriteWithContext(ctx, "auth/approle/role/portcullis/secret-id", nil)
	vc.KVv2("secret").Put(ctx, "orders", map[string]any{"username": "svc", "password": "pw"})

	cfg := &configs.Config{Vault: configs.Vault{Address: v.Address(), Timeout: configs.Duration(5 * time.Second),
		AppRole: &configs.AppRole{RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string), Mount: "approle"}},
		Resources: []configs.Resource{{Name: "orders", Kind: "postgres", Credentials: configs.Credentials{Vault: &configs.VaultCredentials{Path: "secret/data/orders"}}}}}
	b, err := NewBroker(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.client.Logical().ReadWithContext(ctx, "secret/data/orders"); err != nil {
		t.Fatalf("read with the AppRole token: %v", err)
	}
	cfg.Vault.AppRole.SecretID = "wrong"
	if _, err := NewBroker(ctx, cfg, nil); !errors.Is(err, elevation.ErrVaultUnavailable) {
		t.Errorf("a wrong secret id: %v", err)
	}
}

// TestVaultKubernetesLogin: on Kubernetes, Portcullis logs in to Vault with its pod's
// service account token (Vault's Kubernetes auth method, which asks the real
// kube-apiserver's TokenReview), reads credentials with the token it gets, and reads the
// token file again at each login; another service account's token is refused.
func TestVaultKubernetesLogin(t *testing.T) {
	k, v := testenv.Kube(t), testenv.Vault(t)
	ctx := context.Background()
	token := func(sa string) string {
		t.Helper()
		if out, err := k.Kubectl(ctx, "", "create", "serviceaccount", sa, "-n", "default"); err != nil {
			t.Fatal(out)
		}
		out, err := k.Kubectl(ctx, "", "create", "token", sa, "-n", "default", "--duration", "1h")
		if err != nil {
			t.Fatal(out)
		}
		return strings.TrimSpace(out)
	}
	vc, _ := vaultapi.NewClient(&vaultapi.Config{Address: v.Address()})
	vc.SetToken(devserver.VaultRootToken)
	if err := vc.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes", &vaultapi.EnableAuthOptions{Type: "vault-plugin-auth-kubernetes"}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().PutPolicyWithContext(ctx, "portcullis", `path "secret/data/orders" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]map[string]any{
		"auth/kubernetes/config": {"kubernetes_host": k.URL(), "kubernetes_ca_cert": string(k.CA), "token_reviewer_jwt": devserver.KubeAdminToken, "disable_local_ca_jwt": true},
		"auth/kubernetes/role/portcullis": {"bound_service_account_names": "portcullis", "bound_service_account_namespaces": "default",
			"token_policies": "portcullis", "token_ttl": "1h", "audience": "https://kubernetes.default.svc"},
	} {
		if _, err := vc.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("vault %s: %v", path, err)
		}
	}
	vc.KVv2("secret").Put(ctx, "orders", map[string]any{"username": "svc", "password": "pw"})

	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token("portcullis")+"\n"), 0o600)
	cfg := &configs.Config{Vault: configs.Vault{Address: v.Address(), Timeout: configs.Duration(5 * time.Second),
		Kubernetes: &configs.VaultKubernetes{Role: "portcullis", Mount: "kubernetes", TokenFile: tokenFile}},
		Resources: []configs.Resource{{Name: "orders", Kind: "postgres", Credentials: configs.Credentials{Vault: &configs.VaultCredentials{Path: "secret/data/orders"}}}}}
	b, err := NewBroker(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Health(ctx); err != nil {
		t.Fatalf("health with the Kubernetes-auth token: %v", err)
	}
	if s, err := b.client.Logical().ReadWithContext(ctx, "secret/data/orders"); err != nil || s == nil {
		t.Fatalf("read with the Kubernetes-auth token: %v", err)
	}
	// The token file is read at each login: a rotated token is used, a wrong one refused.
	os.WriteFile(tokenFile, []byte(token("intruder")), 0o600)
	if _, err := NewBroker(ctx, cfg, nil); !errors.Is(err, elevation.ErrVaultUnavailable) {
		t.Errorf("another service account's token: %v, want refused", err)
	}
	os.Remove(tokenFile)
	if _, err := NewBroker(ctx, cfg, nil); !errors.Is(err, elevation.ErrVaultUnavailable) {
		t.Errorf("no token file: %v, want refused", err)
	}
}
