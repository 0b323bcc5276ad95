package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// cluster is Portcullis run as users run it in production: `portcullis serve` processes
// (replicas) built from this package, over one Redis, one PostgreSQL and one Vault, each
// with its own audit log, configured from configs/demo.yaml.
type cluster struct {
	t        *testing.T
	bin, dir string
	pg       *devserver.Postgres
	replicas []*replica
}

// replica is one `portcullis serve` process of a cluster.
type replica struct {
	name, api, pg string
	audit, log    string
	config        string
	cmd           *exec.Cmd
}

// startCluster builds the binary and starts n replicas (a, b, …), ready when it returns.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: filepath.Join(t.TempDir(), "portcullis")}
	if out, err := exec.Command("go", "build", "-o", c.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	redis, vault := testenv.Redis(t), testenv.Vault(t)
	t.Setenv("DEMO_VAULT_ADDR", vault.Address())
	t.Setenv("DEMO_VAULT_TOKEN", devserver.VaultRootToken)
	cfgPath, dir, demo, pg := demoFilesOn(t)
	os.Remove(cfgPath)
	c.dir, c.pg = dir, pg
	for i := range n {
		name := string(rune('a' + i))
		apiPort, _ := devserver.FreePort()
		pgPort, _ := devserver.FreePort()
		r := &replica{name: name, api: fmt.Sprintf("127.0.0.1:%d", apiPort), pg: fmt.Sprintf("127.0.0.1:%d", pgPort),
			audit: filepath.Join(dir, "audit-"+name), log: filepath.Join(dir, "replica-"+name+".log"), config: filepath.Join(dir, "replica-"+name+".yaml")}
		cfg := string(demo)
		cfg = strings.Replace(cfg, "listen: 127.0.0.1:0", "listen: "+r.api, 1)
		cfg = strings.Replace(cfg, "postgres_listen: 127.0.0.1:0", "postgres_listen: "+r.pg, 1)
		cfg = strings.Replace(cfg, "http_listen: 127.0.0.1:0", "http_listen: ''", 1)
		if err := os.WriteFile(r.config, []byte(dropKeys(cfg, "store", "audit")+fmt.Sprintf("\nstore:\n  redis: %s\naudit:\n  dir: %s\n  replica: %s\n  readers: {teams: [security]}\n", redis.URL(), r.audit, name)), 0o644); err != nil {
			t.Fatal(err)
		}
		c.replicas = append(c.replicas, r)
		c.start(r)
		t.Cleanup(func() {
			r.kill()
			if t.Failed() { // keep the replica's log beside the test's output
				b, _ := os.ReadFile(r.log)
				os.WriteFile(filepath.Join(os.TempDir(), t.Name()+"-replica-"+name+".log"), b, 0o644)
			}
		})
	}
	for _, r := range c.replicas {
		waitReady(t, r.api, r.log)
	}
	return c
}

// start starts (or restarts) r's process, its output appended to its log.
func (c *cluster) start(r *replica) {
	c.t.Helper()
	r.cmd = exec.Command(c.bin, "serve", "--config", r.config)
	r.cmd.Env = os.Environ()
	logf, err := os.OpenFile(r.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// kill ends r's process at once (SIGKILL): nothing of it runs after.
func (r *replica) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		r.cmd.Wait()
	}
}

// dsn is alice's connection string to r's PostgreSQL listener.
func (r *replica) dsn() string {
	return "postgres://alice:alice-demo-token@" + r.pg + "/orders?sslmode=disable"
}

// dropKeys removes the top-level keys named from a YAML document (their whole blocks).
func dropKeys(doc string, keys ...string) string {
	var out []string
	skip := false
	for _, line := range strings.Split(doc, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '#' {
			skip = false
			for _, k := range keys {
				if strings.HasPrefix(line, k+":") {
					skip = true
				}
			}
		}
		if !skip {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func waitReady(t *testing.T, api, logPath string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	out, _ := os.ReadFile(logPath)
	t.Fatalf("replica %s not ready:\n%s", api, out)
}

func scrape(t *testing.T, api string) string {
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

func metricSample(text, name string) float64 {
	m := regexp.MustCompile("(?m)^" + name + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func approveAt(api, id string) {
	req, _ := http.NewRequest("POST", "http://"+api+"/api/v1/approvals/"+id+"/approve", nil)
	req.Header.Set("Authorization", "Bearer bob-demo-token")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}
