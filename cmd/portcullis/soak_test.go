//go:build soak

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestSoak (make soak; not in make test): two Portcullis processes over one Redis and one
// PostgreSQL, SOAK_SESSIONS (200) SQL sessions spread over them for SOAK_DURATION (2m),
// reads allowed at once and a steady stream of writes held for approval, approved
// through the API of either replica. At the end every statement a client sent is
// accounted for in the two audit logs, each chain verifies, the replicas' goroutines and
// memory are flat, and the decision latency of reads and the approval round trip are
// reported.
func TestSoak(t *testing.T) {
	duration, sessions := 2*time.Minute, 200
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = d
	}
	if n, err := strconv.Atoi(os.Getenv("SOAK_SESSIONS")); err == nil {
		sessions = n
	}
	bin := filepath.Join(t.TempDir(), "portcullis")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	redis, vault := testenv.Redis(t), testenv.Vault(t)
	t.Setenv("DEMO_VAULT_ADDR", vault.Address())
	t.Setenv("DEMO_VAULT_TOKEN", devserver.VaultRootToken)
	cfgPath, dir, demo, pg := demoFilesOn(t)
	os.Remove(cfgPath)

	type replica struct {
		api, pg string
		audit   string
		cmd     *exec.Cmd
	}
	var replicas []*replica
	for _, name := range []string{"a", "b"} {
		apiPort, _ := devserver.FreePort()
		pgPort, _ := devserver.FreePort()
		r := &replica{api: fmt.Sprintf("127.0.0.1:%d", apiPort), pg: fmt.Sprintf("127.0.0.1:%d", pgPort), audit: filepath.Join(dir, "audit-"+name)}
		cfg := string(demo)
		cfg = strings.Replace(cfg, "listen: 127.0.0.1:0", "listen: "+r.api, 1)
		cfg = strings.Replace(cfg, "postgres_listen: 127.0.0.1:0", "postgres_listen: "+r.pg, 1)
		cfg = strings.Replace(cfg, "http_listen: 127.0.0.1:0", "http_listen: ''", 1)
		path := filepath.Join(dir, "replica-"+name+".yaml")
		if err := os.WriteFile(path, []byte(dropKeys(cfg, "store", "audit")+fmt.Sprintf("\nstore:\n  redis: %s\naudit:\n  dir: %s\n  replica: %s\n  readers: {teams: [security]}\n", redis.URL(), r.audit, name)), 0o644); err != nil {
			t.Fatal(err)
		}
		r.cmd = exec.Command(bin, "serve", "--config", path)
		r.cmd.Env = os.Environ()
		logf, _ := os.Create(filepath.Join(dir, "replica-"+name+".log"))
		r.cmd.Stdout, r.cmd.Stderr = logf, logf
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
		replicas = append(replicas, r)
	}
	for i, r := range replicas {
		waitReady(t, r.api, filepath.Join(dir, "replica-"+[]string{"a", "b"}[i]+".log"))
	}

	sample := func(r *replica) (goroutines, rss float64) {
		m := scrape(t, r.api)
		return metricSample(m, "go_goroutines"), metricSample(m, "process_resident_memory_bytes")
	}
	var baseG [2]float64
	for i, r := range replicas {
		baseG[i], _ = sample(r)
	}

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var sent, reads, writes, failed atomic.Int64
	var latMu sync.Mutex
	var readLat, approvalLat []time.Duration
	var wg sync.WaitGroup
	for i := range sessions {
		r := replicas[i%2]
		wg.Go(func() {
			c, err := pgx.Connect(context.Background(), "postgres://alice:alice-demo-token@"+r.pg+"/orders?sslmode=disable")
			if err != nil {
				t.Errorf("session %d: %v", i, err)
				return
			}
			defer c.Close(context.Background())
			for n := 0; ctx.Err() == nil; n++ {
				write := i%10 == 0 && n%5 == 4 // one session in ten writes now and then
				q := fmt.Sprintf("SELECT count(*) FROM orders WHERE id <> %d", n)
				if write {
					q = fmt.Sprintf("UPDATE orders SET status = 'soak-%d-%d' WHERE id = %d", i, n, 1+i%3)
				}
				sent.Add(1)
				start := time.Now()
				_, err := c.Exec(context.Background(), q)
				d := time.Since(start)
				if err != nil {
					failed.Add(1)
					t.Errorf("session %d statement %d: %v", i, n, err)
					return
				}
				latMu.Lock()
				if write {
					writes.Add(1)
					approvalLat = append(approvalLat, d)
				} else {
					reads.Add(1)
					readLat = append(readLat, d)
				}
				latMu.Unlock()
			}
		})
	}
	// The approvers: bob approves what is pending, through either replica's API.
	approved, sessionsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(approved)
		for k := 0; ; k++ {
			select {
			case <-sessionsDone: // the last held writes are through
				return
			default:
			}
			for _, id := range pendingIDs(t, replicas[k%2].api) {
				approveAt(replicas[(k+1)%2].api, id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var midRSS [2]float64
	go func() {
		time.Sleep(duration / 3)
		for i, r := range replicas {
			_, midRSS[i] = sample(r)
		}
	}()
	// A watchdog: sessions still waiting well after the end get the replicas' goroutines
	// dumped (SIGQUIT ends them) into their logs, kept beside the test's output.
	watchdog := time.AfterFunc(duration+30*time.Second, func() {
		t.Errorf("sessions still waiting 30 s after the end: dumping PostgreSQL's sessions and the replicas' goroutines")
		testenv.LogPostgres(t, pg, "orders")
		// And the clients' side: where each waiting session's pgx connection is.
		if f, err := os.Create(filepath.Join(os.TempDir(), "soak-clients.log")); err == nil {
			pprof.Lookup("goroutine").WriteTo(f, 2)
			f.Close()
		}
		for i, r := range replicas {
			r.cmd.Process.Signal(syscall.SIGQUIT)
			time.Sleep(time.Second)
			name := []string{"a", "b"}[i]
			b, _ := os.ReadFile(filepath.Join(dir, "replica-"+name+".log"))
			os.WriteFile(filepath.Join(os.TempDir(), "soak-replica-"+name+".log"), b, 0o644)
		}
	})
	wg.Wait()
	watchdog.Stop()
	close(sessionsDone)
	<-approved
	time.Sleep(2 * time.Second) // sessions closed; the replicas settle

	for i, r := range replicas {
		g, rss := sample(r)
		t.Logf("replica %d: goroutines %v at start, %v at the end; resident memory %.0f MiB a third in, %.0f MiB at the end",
			i, baseG[i], g, midRSS[i]/(1<<20), rss/(1<<20))
		if g > baseG[i]+20 {
			t.Errorf("replica %d: goroutines grew from %v to %v", i, baseG[i], g)
		}
		if midRSS[i] > 0 && rss > 1.5*midRSS[i]+64<<20 {
			t.Errorf("replica %d: resident memory grew from %.0f to %.0f MiB", i, midRSS[i]/(1<<20), rss/(1<<20))
		}
	}
	// Stop both (SIGTERM drains), then account for every statement.
	for _, r := range replicas {
		r.cmd.Process.Signal(syscall.SIGTERM)
		r.cmd.Wait()
	}
	audited := 0
	for _, r := range replicas {
		if _, err := audit.Verify(r.audit); err != nil {
			t.Errorf("the chain of %s: %v", r.audit, err)
		}
		audit.Scan(r.audit, audit.Filter{Type: audit.TypePGStatement}, func(ev *audit.Event) error {
			if strings.HasPrefix(ev.Action, "SELECT count(*) FROM orders WHERE id <> ") || strings.HasPrefix(ev.Action, "UPDATE orders SET status = 'soak-") {
				audited++
			}
			return nil
		})
	}
	slices.Sort(readLat)
	slices.Sort(approvalLat)
	pct := func(v []time.Duration, p float64) time.Duration {
		if len(v) == 0 {
			return 0
		}
		return v[int(float64(len(v)-1)*p)]
	}
	t.Logf("%d sessions for %v: %d statements sent, %d reads, %d approved writes, %d failed; %d audited",
		sessions, duration, sent.Load(), reads.Load(), writes.Load(), failed.Load(), audited)
	t.Logf("read round trip p50 %v, p99 %v; held write to result (approval included) p50 %v, p99 %v",
		pct(readLat, .5), pct(readLat, .99), pct(approvalLat, .5), pct(approvalLat, .99))
	if int64(audited) != sent.Load() {
		t.Errorf("%d statements sent, %d in the audit logs", sent.Load(), audited)
	}
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
