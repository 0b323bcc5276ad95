package configs

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

const minimal = `version: 1
teams:
  - name: sre
    groups: [sre]
resources:
  - name: orders
    kind: postgres
    upstream: 127.0.0.1:5432
    labels: {env: production}
`

func TestShippedConfigsLoad(t *testing.T) {
	for _, f := range []string{"demo.yaml", "example.yaml"} {
		t.Run(f, func(t *testing.T) {
			c, err := Load(f, AllowUnsetEnv())
			if err != nil {
				t.Fatalf("Load(%s):\n%v", f, err)
			}
			if c.Engine == nil || c.Engine.Snapshot() == "" || len(c.Policies) == 0 {
				t.Fatalf("Load(%s) gave no compiled policies", f)
			}
		})
	}
}

func TestDemoNames(t *testing.T) {
	c, err := Load("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != "127.0.0.1:8080" || c.Server.PostgresListen != "127.0.0.1:6432" {
		t.Errorf("demo listeners moved: %q %q", c.Server.Listen, c.Server.PostgresListen)
	}
	if r := c.Engine.Resource("orders"); r == nil || !r.IsProduction() {
		t.Errorf("demo resource orders missing or not production: %+v", r)
	}
	want := map[string][]string{"alice": {"engineering"}, "bob": {"sre"}, "carol": {"security"}, "dave": {"engineering"}}
	for user, teams := range want {
		s, ok := c.StaticSubject(user)
		if !ok || !slices.Equal(s.Teams, teams) {
			t.Errorf("%s: teams %v, want %v", user, s, teams)
		}
	}
	if s, _ := c.StaticSubject("dave"); !s.InGroup("oncall") {
		t.Error("dave is not in group oncall")
	}
	if s, _ := c.StaticSubject("carol"); !s.HasRole("security-reviewer") {
		t.Error("carol does not hold security-reviewer")
	}
}

// TestErrorsNameTheLine checks that each kind of mistake is refused with the file and line.
func TestErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		msg  string
	}{
		{"unknown key", minimal + "servr:\n  listen: x\n", 10, "field servr not found"},
		{"unknown nested key", minimal + "audit:\n  dir: /tmp\n  fsync: true\n", 12, "field fsync not found"},
		{"wrong type", minimal + "audit:\n  segment_max_bytes: lots\n", 11, "cannot unmarshal"},
		{"bad version", strings.Replace(minimal, "version: 1", "version: 2", 1), 1, "want 1"},
		{"duplicate resource", minimal + "  - name: orders\n    kind: postgres\n    upstream: x:1\n", 10, `duplicate name "orders"`},
		{"bad kind", strings.Replace(minimal, "kind: postgres", "kind: mysql", 1), 7, "kind: want one of"},
		{"bad CEL", minimal + "policies:\n  - name: p\n    effect: deny\n    when: action.rows > 10\n", 13, "undefined field 'rows'"},
		{"CEL syntax", minimal + "policies:\n  - name: p\n    effect: deny\n    when: 'action.tables.exists(t,'\n", 13, "Syntax error"},
		{"unknown team", minimal + "policies:\n  - name: p\n    effect: allow\n    match:\n      principals:\n        teams: [sre, dba]\n", 15, `unknown team "dba"`},
		{"unknown resource", minimal + "policies:\n  - name: p\n    effect: allow\n    match:\n      resources: {names: [payments]}\n", 14, `unknown resource "payments"`},
		{"missing quorum", minimal + "policies:\n  - name: p\n    effect: require_approval\n", 11, "needs a quorum"},
		{"invalid duration", minimal + "roles:\n  - name: w\n    grants: [{resources: [orders], actions: [write]}]\n    max_duration: forever\n    quorum: {}\n", 13, "invalid duration"},
		{"duration over max", minimal + "roles:\n  - name: w\n    grants: [{resources: [orders], actions: [write]}]\n    max_duration: 1h\n    durations: [30m, 2h]\n    quorum: {}\n", 14, "not between"},
		{"role unknown resource", minimal + "roles:\n  - name: w\n    grants: [{resources: [nope], actions: [write]}]\n    max_duration: 1h\n    quorum: {}\n", 12, `unknown resource "nope"`},
		{"bad token hash", minimal + "identity:\n  static_tokens:\n    - subject: a\n      token_sha256: abc\n", 13, "64 hex digits"},
		{"unset env", minimal + "vault:\n  address: ${PORTCULLIS_TEST_UNSET_VAR}\n", 11, "PORTCULLIS_TEST_UNSET_VAR is not set"},
		{"kube listen", minimal + "  - name: c\n    kind: kubernetes\n    upstream: https://k:6443\n    credentials: {static: {header: Authorization, value: Bearer x}}\n", 10, "kubernetes.listen is required"},
		{"kube http upstream", minimal + "  - name: c\n    kind: kubernetes\n    upstream: http://k:6443\n    kubernetes: {listen: 127.0.0.1:8443}\n    credentials: {static: {header: Authorization, value: Bearer x}}\n", 12, "over https"},
		{"kube access", minimal + "  - name: c\n    kind: kubernetes\n    upstream: https://k:6443\n    kubernetes: {listen: 127.0.0.1:8443, access: admin}\n    credentials: {static: {header: Authorization, value: Bearer x}}\n", 13, "want impersonate or fixed"},
		{"kube credential", minimal + "  - name: c\n    kind: kubernetes\n    upstream: https://k:6443\n    kubernetes: {listen: 127.0.0.1:8443}\n", 10, "its own credential"},
		{"kube match", minimal + "policies:\n  - name: p\n    effect: allow\n    match:\n      kubernetes: {namespaces: [\"[x\"]}\n", 14, "syntax error in pattern"},
		{"redis and sentinel", minimal + "store:\n  redis: redis://r:6379/0\n  sentinel:\n    master: m\n    addrs: [s:26379]\n", 11, "one of redis, sentinel and cluster"},
		{"cluster addrs", minimal + "store:\n  cluster:\n    addrs: [r1:6379, nohost]\n", 12, `"nohost" is not host:port`},
		{"vault kubernetes role", minimal + "vault:\n  address: http://v:8200\n  kubernetes: {mount: k8s}\n", 12, "vault.kubernetes.role"},
		{"sentinel addrs", minimal + "store:\n  sentinel:\n    master: m\n    addrs: [s:26379, nohost]\n", 13, `"nohost" is not host:port`},
		{"sentinel master", minimal + "store:\n  sentinel:\n    addrs: [s:26379]\n", 12, "master and addrs"},
		{"syslog address", minimal + "audit:\n  sinks:\n    - kind: syslog\n      address: localhost:514\n", 12, "want tcp://, tls:// or udp://host:port"},
		{"sink kind", minimal + "audit:\n  sinks:\n    - kind: kafka\n", 12, "want syslog, jsonl or otlp"},
		{"otlp endpoint", minimal + "audit:\n  sinks:\n    - kind: otlp\n      endpoint: collector:4318\n", 12, "want the Collector's OTLP/HTTP URL"},
		{"traces endpoint", minimal + "telemetry:\n  traces:\n    endpoint: grpc://c:4317\n", 12, "telemetry.traces.endpoint"},
		{"traces ratio", minimal + "telemetry:\n  traces:\n    endpoint: http://c:4318\n    sample_ratio: 2\n", 13, "from 0 to 1"},
		{"sink events", minimal + "audit:\n  sinks:\n    - kind: jsonl\n      path: '-'\n      events: some\n", 12, "want all or loud"},
		{"vault needed", strings.Replace(minimal, "labels:", "credentials: {vault: {path: database/creds/x}}\n    labels:", 1), 1, "vault.address is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error at line %d", tt.line)
			}
			want := "test.yaml:" + strconv.Itoa(tt.line) + ": "
			for _, l := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(l, want) && strings.Contains(l, tt.msg) {
					return
				}
			}
			t.Errorf("error does not say %q%q:\n%v", want, tt.msg, err)
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("PC_TEST_PG", "10.0.0.1:5433")
	t.Setenv("PC_TEST_PW", "hunter2")
	yaml := strings.Replace(minimal, "upstream: 127.0.0.1:5432", "upstream: ${PC_TEST_PG}\n    credentials: {static: {username: u, password: \"${PC_TEST_PW}$${literal}\"}}", 1) +
		"store:\n  path: ${PC_TEST_NOT_SET:-/var/lib/portcullis}\n"
	c, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Resources[0]
	if r.Upstream != "10.0.0.1:5433" || r.Credentials.Static.Password != "hunter2${literal}" || c.Store.Path != "/var/lib/portcullis" {
		t.Errorf("expansion: upstream %q password %q store %q", r.Upstream, r.Credentials.Static.Password, c.Store.Path)
	}
}

func TestPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("name: a\neffect: allow\n---\nname: b\neffect: deny\nmatch: {actions: [ddl]}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("name: c\neffect: allow\n---\nname: d\neffect: deny\nmatch:\n  actions: [dll]\n"), 0o644)
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfgPath, []byte(minimal+"policy_files: [a.yaml]\n"), 0o644)
	c, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Policies) != 2 {
		t.Errorf("loaded %d policies, want 2", len(c.Policies))
	}
	os.WriteFile(cfgPath, []byte(minimal+"policy_files: ['*.yaml']\n"), 0o644)
	_, err = Load(cfgPath)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "bad.yaml")+":7: ") || !strings.Contains(err.Error(), `unknown action class "dll"`) {
		t.Errorf("error in second document of a policy file: %v", err)
	}
	os.WriteFile(cfgPath, []byte(minimal+"policy_files: [missing/*.yaml]\n"), 0o644)
	if _, err = Load(cfgPath); err == nil || !strings.Contains(err.Error(), "matches no file") {
		t.Errorf("missing policy files: %v", err)
	}
}

func TestDefaultsApplied(t *testing.T) {
	c, err := Parse("test.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != DefaultListen || c.Audit.Dir != DefaultAuditDir || c.Resources[0].Database != "orders" {
		t.Errorf("defaults not applied: %+v", c)
	}
	var d policy.Decision
	c.Engine.Evaluate(&policy.Request{Resource: "orders", Action: &policy.Action{Class: policy.ClassWrite}}, &d)
	if d.Effect != policy.Deny || !d.Default {
		t.Errorf("no policy on a production resource: %v, want the default deny", d.String())
	}
}
