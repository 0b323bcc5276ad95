package httpfront

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/vault"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// vaultConfig fronts a real Vault's own API (resource vault) and an admin API whose key
// is kept in Vault's KV store (resource kvapi). Portcullis's own Vault token is not root:
// it may only create tokens through the portcullis-http token role and revoke them.
const vaultConfig = `version: 1
server: {public_url: http://portcullis.test}
vault: {address: %s, token: %s}
identity:
  static_tokens:
    - {subject: alice, groups: [engineering], token_sha256: %x}
    - {subject: carol, groups: [security], token_sha256: %x}
    - {subject: erin, groups: [engineering], token_sha256: %x}
teams:
  - {name: engineering, groups: [engineering]}
  - {name: security, groups: [security]}
resources:
  - name: vault
    kind: http
    upstream: %s
    hosts: [vault.test]
    http:
      classes: [{methods: [LIST], class: read}]
    credentials:
      vault:
        token: {policies: [demo-sys-read], approved_policies: [demo-sys-admin], ttl: 2m, role: portcullis-http}
  - name: kvapi
    kind: http
    upstream: %s
    hosts: [kvapi.test]
    credentials:
      vault: {path: secret/data/kvapi, field: api_key, header: X-Api-Key}
policies:
  - name: vault-sys-read
    match: {resources: {names: [vault, kvapi]}, actions: [read], principals: {teams: [engineering]}}
    effect: allow
  - name: vault-write
    description: changes to Vault need security
    match: {resources: {names: [vault]}, actions: [write, delete]}
    effect: require_approval
    quorum: {required_teams: [security], timeout: 1m}
`

type vaultEnv struct {
	t         *testing.T
	v         *devserver.Vault
	root      *vaultapi.Client
	front     *front
	approvals *elevation.Approvals
	cfg       *configs.Config
	broker    *vault.Broker
	kvSaw     chan string
}

func newVaultEnv(t *testing.T) *vaultEnv {
	ctx := context.Background()
	e := &vaultEnv{t: t, v: testenv.Vault(t), kvSaw: make(chan string, 10)}
	e.root, _ = vaultapi.NewClient(&vaultapi.Config{Address: e.v.Address()})
	e.root.SetToken(devserver.VaultRootToken)
	for name, hcl := range map[string]string{
		"demo-sys-read":  `path "sys/*" { capabilities = ["read", "list"] }`,
		"demo-sys-admin": `path "sys/policies/acl/*" { capabilities = ["create", "update", "delete", "read", "list"] }`,
		"portcullis": `path "auth/token/create/portcullis-http" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }
path "secret/data/kvapi" { capabilities = ["read"] }`,
	} {
		if err := e.root.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.root.Logical().WriteWithContext(ctx, "auth/token/roles/portcullis-http", map[string]any{
		"allowed_policies": "demo-sys-read,demo-sys-admin", "orphan": true, "token_explicit_max_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	own, err := e.root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"portcullis"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.root.KVv2("secret").Put(ctx, "kvapi", map[string]any{"api_key": "kv-key-5f3a9c1e"}); err != nil {
		t.Fatal(err)
	}
	kv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.kvSaw <- r.Header.Get("X-Api-Key")
		fmt.Fprintf(w, `{"your_key": %q}`, r.Header.Get("X-Api-Key")) // an upstream that echoes the key
	}))
	t.Cleanup(kv.Close)
	tok := func(u string) [32]byte { return sha256.Sum256([]byte(u + "-token")) }
	y := fmt.Sprintf(vaultConfig, e.v.Address(), own.Auth.ClientToken, tok("alice"), tok("carol"), tok("erin"), e.v.Address(), kv.URL)
	if e.cfg, err = configs.Parse("vault.yaml", []byte(y)); err != nil {
		t.Fatal(err)
	}
	if e.broker, err = vault.NewBroker(ctx, e.cfg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.broker.Close)
	s := newServer(t, e.cfg, e.broker)
	e.approvals = s.Gate.Approvals
	e.front = serveFront(t, s)
	return e
}

// do sends a request through Portcullis and returns the status and the raw body.
func (e *vaultEnv) do(host, user, method, path, body string, header ...string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.front.URL+path, strings.NewReader(body))
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+user+"-token")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tokens returns the policies of every token Vault holds that Portcullis made for callers
// (by their metadata), keyed by accessor.
func (e *vaultEnv) tokens() map[string][]string {
	ctx := context.Background()
	s, err := e.root.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil || s == nil {
		e.t.Fatalf("listing tokens: %v", err)
	}
	out := map[string][]string{}
	for _, a := range s.Data["keys"].([]any) {
		l, err := e.root.Auth().Token().LookupAccessorWithContext(ctx, a.(string))
		if err != nil || l == nil {
			continue // revoked meanwhile
		}
		if meta, _ := l.Data["meta"].(map[string]any); meta["portcullis_user"] != nil {
			var pols []string
			for _, p := range l.Data["policies"].([]any) {
				pols = append(pols, p.(string))
			}
			out[a.(string)] = pols
		}
	}
	return out
}

// TestVaultAPIThroughPortcullis drives Vault's own HTTP API through the front end with
// per-caller tokens Portcullis mints: reads run with a read-only token named after the
// caller, which never reaches the client; a write is held, approved by security, runs
// once with a one-use token of the approved policies, and that token is gone after.
func TestVaultAPIThroughPortcullis(t *testing.T) {
	e := newVaultEnv(t)
	ctx := context.Background()

	code, body := e.do("vault.test", "alice", "GET", "/v1/sys/mounts", "")
	if code != 200 || !strings.Contains(body, `"secret/"`) {
		t.Fatalf("read of sys/mounts: %d %s", code, body)
	}
	if code, body := e.do("vault.test", "alice", "LIST", "/v1/sys/policies/acl", ""); code != 200 || !strings.Contains(body, "demo-sys-read") {
		t.Errorf("LIST (a read by the resource's classes): %d %s", code, body)
	}
	// lookup-self shows the token it was called with: masked on the way back.
	code, body = e.do("vault.test", "alice", "GET", "/v1/auth/token/lookup-self", "")
	if code != 200 {
		t.Fatalf("lookup-self: %d %s", code, body)
	}
	var raw map[string]map[string]any
	json.Unmarshal([]byte(body), &raw)
	id, _ := raw["data"]["id"].(string)
	if id == "" || strings.Trim(id, "*") != "" || strings.Contains(body, "hvs.") {
		t.Errorf("the caller's token came back unmasked: id %q", id)
	}
	acc, _ := raw["data"]["accessor"].(string)
	l, err := e.root.Auth().Token().LookupAccessorWithContext(ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := l.Data["meta"].(map[string]any)
	if meta["portcullis_user"] != "alice" || meta["portcullis_resource"] != "vault" || !strings.Contains(fmt.Sprint(l.Data["policies"]), "demo-sys-read") ||
		strings.Contains(fmt.Sprint(l.Data["policies"]), "admin") {
		t.Errorf("alice's token: meta %v, policies %v", meta, l.Data["policies"])
	}
	if ttl, _ := l.Data["ttl"].(json.Number).Int64(); ttl <= 0 || ttl > 120 {
		t.Errorf("alice's token TTL %d s, want at most the configured 2m", ttl)
	}
	// The same token serves alice's next read; another caller gets their own.
	e.do("vault.test", "alice", "GET", "/v1/sys/health", "")
	e.do("vault.test", "erin", "GET", "/v1/sys/health", "")
	if toks := e.tokens(); len(toks) != 2 {
		t.Errorf("tokens made for callers: %v, want one each for alice and erin", toks)
	}
	// Defence in depth: alice's ordinary token cannot write even if policy were wrong.
	cred, err := e.broker.HeaderCredential(ctx, "vault", "alice", "", false)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := vaultapi.NewClient(&vaultapi.Config{Address: e.v.Address()})
	direct.SetToken(cred.Secret)
	if err := direct.Sys().PutPolicyWithContext(ctx, "sneaky", `path "*" { capabilities = ["sudo"] }`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("an ordinary caller's token wrote a policy: %v", err)
	}

	// A write: held, approved by security (not by alice), re-sent, run once.
	const policyBody = `{"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}`
	code, body = e.do("vault.test", "alice", "PUT", "/v1/sys/policies/acl/app-read", policyBody, "Content-Type", "application/json")
	var held map[string]any
	json.Unmarshal([]byte(body), &held)
	if code != http.StatusAccepted || held["approval"] == nil {
		t.Fatalf("write: %d %s", code, body)
	}
	id = held["approval"].(string)
	if p, _ := e.root.Sys().GetPolicyWithContext(ctx, "app-read"); p != "" {
		t.Fatal("a held write reached Vault")
	}
	alice, _ := e.cfg.StaticSubject("alice")
	if _, err := e.approvals.Approve(ctx, id, alice, ""); err == nil {
		t.Fatal("self-approval accepted")
	}
	carol, _ := e.cfg.StaticSubject("carol")
	if _, err := e.approvals.Approve(ctx, id, carol, "ok"); err != nil {
		t.Fatal(err)
	}
	if code, body := e.do("vault.test", "alice", "PUT", "/v1/sys/policies/acl/app-read", policyBody, "Content-Type", "application/json", ApprovalHeader, id); code != http.StatusNoContent {
		t.Fatalf("approved write: %d %s", code, body)
	}
	if p, _ := e.root.Sys().GetPolicyWithContext(ctx, "app-read"); !strings.Contains(p, "secret/data/app") {
		t.Errorf("the approved write did not happen: %q", p)
	}
	if code, _ := e.do("vault.test", "alice", "PUT", "/v1/sys/policies/acl/app-read", policyBody, "Content-Type", "application/json", ApprovalHeader, id); code != http.StatusConflict {
		t.Errorf("re-sent a second time: %d, want 409", code)
	}
	for acc, pols := range e.tokens() {
		if strings.Contains(strings.Join(pols, ","), "demo-sys-admin") {
			t.Errorf("the approved request's token %s outlived its request (policies %v)", acc, pols)
		}
	}
}

// TestVaultKVCredential: an admin API whose key lives in Vault's KV store gets it injected;
// an upstream that echoes it gives the client only stars.
func TestVaultKVCredential(t *testing.T) {
	e := newVaultEnv(t)
	code, body := e.do("kvapi.test", "alice", "GET", "/things", "")
	if code != 200 || strings.Contains(body, "kv-key-5f3a9c1e") || !strings.Contains(body, `"***************"`) {
		t.Errorf("kv read: %d %s", code, body)
	}
	if got := <-e.kvSaw; got != "kv-key-5f3a9c1e" {
		t.Errorf("the upstream got key %q", got)
	}
}

// TestVaultOutage: when Vault cannot mint a caller's credential the request is not sent
// (503, nothing upstream); a caller whose token is still fresh goes on until it expires.
func TestVaultOutage(t *testing.T) {
	e := newVaultEnv(t)
	if code, body := e.do("kvapi.test", "alice", "GET", "/warm", ""); code != 200 {
		t.Fatalf("before the outage: %d %s", code, body)
	}
	<-e.kvSaw
	e.v.Stop()
	if code, body := e.do("vault.test", "erin", "GET", "/v1/sys/health", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "credential-unavailable") {
		t.Errorf("no token can be made: %d %s", code, body)
	}
	if code, _ := e.do("kvapi.test", "erin", "GET", "/again", ""); code != 200 {
		t.Errorf("the KV secret read a moment ago (cached up to cache_ttl): %d", code)
	}
	select {
	case <-e.kvSaw:
	case <-time.After(time.Second):
		t.Error("the cached KV credential was not used")
	}
}
