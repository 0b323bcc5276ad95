// Package deploy_test checks the Helm chart: it lints, renders, and what it renders is
// accepted by a real Kubernetes API server (a server-side dry-run apply, schema-checked)
// and holds a configuration Portcullis loads.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

const chart = "helm/portcullis"

// rendered is the committed output of the chart with its default values, for people who
// do not use Helm (make chart writes it).
const rendered = "helm/rendered/portcullis.yaml"

func helm(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := devserver.HelmBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// objects splits a rendered stream into its objects, by kind and name.
func objects(t *testing.T, manifests string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if o == nil {
			continue
		}
		out[o["kind"].(string)] = o
	}
}

// at walks a decoded object by keys and list indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestChart renders the chart with its defaults and with the Sentinel + Vault example,
// checks what each renders, loads the configuration each carries as Portcullis would, and
// has a real API server accept every object (server-side dry-run apply).
func TestChart(t *testing.T) {
	kube := testenv.Kube(t)
	kubectl, err := devserver.KubeBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := kube.Kubeconfig("admin", devserver.KubeAdminToken)
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(t, "", "create", "namespace", "portcullis")

	for _, tc := range []struct {
		name   string
		values []string
		env    map[string]string
		check  func(t *testing.T, objs map[string]map[string]any, cfg *configs.Config)
	}{
		{"defaults", nil, map[string]string{"OIDC_CLIENT_SECRET": "s", "CONSOLE_SESSION_KEY": strings.Repeat("k", 32), "ORDERS_DB_PASSWORD": "p"},
			func(t *testing.T, objs map[string]map[string]any, cfg *configs.Config) {
				if cfg.Store.Redis == "" || cfg.Server.Listen != "0.0.0.0:8443" || cfg.Server.PostgresListen != "0.0.0.0:6432" || cfg.Server.HTTPListen != "0.0.0.0:9443" {
					t.Errorf("configuration: store %+v, server %+v", cfg.Store, cfg.Server)
				}
				if p := at(objs["Deployment"], "spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "scheme"); p != "HTTP" {
					t.Errorf("probe scheme %v without a certificate", p)
				}
				if at(objs["NetworkPolicy"], "spec", "egress") != nil {
					t.Error("egress restricted without egressTo")
				}
			}},
		{"sentinel-vault", []string{"helm/examples/sentinel-vault.yaml"},
			map[string]string{"OIDC_CLIENT_SECRET": "s", "CONSOLE_SESSION_KEY": strings.Repeat("k", 32), "REDIS_PASSWORD": "r", "CLUSTER_TOKEN": "t"},
			func(t *testing.T, objs map[string]map[string]any, cfg *configs.Config) {
				if cfg.Store.Sentinel == nil || cfg.Store.Sentinel.Master != "portcullis" || len(cfg.Store.Sentinel.Addrs) != 3 || cfg.Vault.Kubernetes == nil || cfg.Server.HTTPListen != "" {
					t.Errorf("configuration: store %+v, vault %+v, server %+v", cfg.Store, cfg.Vault, cfg.Server)
				}
				d := objs["Deployment"]
				if at(d, "spec", "replicas") != 3 || at(d, "spec", "template", "spec", "containers", 0, "envFrom", 0, "secretRef", "name") != "portcullis-secrets" {
					t.Errorf("deployment: %v", at(d, "spec"))
				}
				if p := at(d, "spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "scheme"); p != "HTTPS" {
					t.Errorf("probe scheme %v with a certificate", p)
				}
				if at(d, "spec", "template", "spec", "volumes", 1, "persistentVolumeClaim", "claimName") != "portcullis-audit" {
					t.Errorf("audit volume: %v", at(d, "spec", "template", "spec", "volumes"))
				}
				// Vault's Kubernetes auth reads the projected, audience-bound token the chart
				// mounts where the configuration says; the API token stays unmounted.
				if tf := cfg.Vault.Kubernetes.TokenFile; tf != "/var/run/secrets/portcullis/vault/token" {
					t.Errorf("vault.kubernetes.token_file %q", tf)
				}
				var projected any
				for _, v := range at(d, "spec", "template", "spec", "volumes").([]any) {
					if v.(map[string]any)["name"] == "vault-token" {
						projected = at(v, "projected", "sources", 0, "serviceAccountToken")
					}
				}
				if at(projected, "audience") != "vault" || at(projected, "path") != "token" {
					t.Errorf("the Vault token volume: %v", projected)
				}
				if at(d, "spec", "template", "spec", "automountServiceAccountToken") != false {
					t.Error("the API token is mounted")
				}
				if p := at(objs["Service"], "spec", "ports", 2, "port"); p != 6443 {
					t.Errorf("the Kubernetes front end's port: %v", at(objs["Service"], "spec", "ports"))
				}
				if at(objs["NetworkPolicy"], "spec", "egress", 0, "ports", 0, "port") != 53 {
					t.Errorf("egress: %v", at(objs["NetworkPolicy"], "spec", "egress"))
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var valueArgs []string
			for _, v := range tc.values {
				valueArgs = append(valueArgs, "-f", v)
			}
			if out := helm(t, append([]string{"lint", "--strict", chart}, valueArgs...)...); !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint:\n%s", out)
			}
			manifests := helm(t, append([]string{"template", "portcullis", chart, "--namespace", "portcullis"}, valueArgs...)...)
			if tc.values == nil {
				want, err := os.ReadFile(rendered)
				if err != nil || !bytes.Equal(want, renderedFile(manifests)) {
					t.Errorf("%s is not what the chart renders now: run `make chart` and commit it", rendered)
				}
			}
			objs := objects(t, manifests)
			for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"} {
				if objs[kind] == nil {
					t.Errorf("no %s rendered", kind)
				}
			}
			checkHardened(t, objs["Deployment"])

			// The configuration in the ConfigMap, with the policy files beside it, loads.
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "policies"), 0o755)
			for k, v := range at(objs["ConfigMap"], "data").(map[string]any) {
				name := k
				if p, ok := strings.CutPrefix(k, "policy-"); ok {
					name = filepath.Join("policies", p)
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(v.(string)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("POD_NAME", "portcullis-0")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := configs.Load(filepath.Join(dir, "portcullis.yaml"))
			if err != nil {
				t.Fatalf("the chart's configuration does not load:\n%v", err)
			}
			if cfg.Audit.Dir != "/var/lib/portcullis/audit/portcullis-0" {
				t.Errorf("audit dir %q: each replica should write its own chain", cfg.Audit.Dir)
			}
			tc.check(t, objs, cfg)

			out := run(t, manifests, "apply", "--server-side", "--dry-run=server", "--field-manager=portcullis-chart-test", "--namespace", "portcullis", "-f", "-")
			for kind := range objs {
				if !strings.Contains(strings.ToLower(out), strings.ToLower(kind)) {
					t.Errorf("the API server's answer does not mention the %s:\n%s", kind, out)
				}
			}
		})
	}
}

// checkHardened: the pod runs as non-root with a read-only root file system and no
// privileges, with liveness on /healthz and readiness on /readyz.
func checkHardened(t *testing.T, d map[string]any) {
	t.Helper()
	pod := at(d, "spec", "template", "spec")
	c := at(pod, "containers", 0)
	for _, want := range []struct {
		path []any
		v    any
	}{
		{[]any{"securityContext", "runAsNonRoot"}, true},
		{[]any{"automountServiceAccountToken"}, false},
	} {
		if got := at(pod, want.path...); got != want.v {
			t.Errorf("pod %v = %v, want %v", want.path, got, want.v)
		}
	}
	for _, want := range []struct {
		path []any
		v    any
	}{
		{[]any{"securityContext", "readOnlyRootFilesystem"}, true},
		{[]any{"securityContext", "allowPrivilegeEscalation"}, false},
		{[]any{"securityContext", "capabilities", "drop", 0}, "ALL"},
		{[]any{"livenessProbe", "httpGet", "path"}, "/healthz"},
		{[]any{"readinessProbe", "httpGet", "path"}, "/readyz"},
		{[]any{"env", 0, "name"}, "POD_NAME"},
	} {
		if got := at(c, want.path...); got != want.v {
			t.Errorf("container %v = %v, want %v", want.path, got, want.v)
		}
	}
	if at(c, "resources", "requests") == nil {
		t.Error("no resource requests")
	}
}

// renderedFile is what make chart writes: a header, then the manifests.
func renderedFile(manifests string) []byte {
	return []byte("# Rendered from deploy/helm/portcullis with its default values (make chart); apply with\n" +
		"# kubectl apply -n NAMESPACE -f deploy/helm/rendered/portcullis.yaml after editing the ConfigMap.\n" + manifests)
}
