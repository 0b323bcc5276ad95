//go:build benchpg

package pgwire_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testenv"
)

// TestBenchPG is `make bench-pg`: pgbench against the database directly, a bare relay,
// PgBouncer (session pooling) and Portcullis (policy and audit on), interleaved, in one
// run. It prints TPS and p50/p99 latency for each, the CPU each proxy spent per
// transaction, and Portcullis's ratios.
//
// PostgreSQL runs with fsync on, as in production (BENCH_PG_FSYNC=off turns it off).
//
// BENCH_PIN=1 pins the proxies (this process, which runs the relay and Portcullis, and
// PgBouncer) to CPU 0 and PostgreSQL and pgbench to the other CPUs, so that each proxy has
// one core to itself: its throughput is then its per-core efficiency, not its share of
// cores it competes for (`make bench-pg-pinned`).
func TestBenchPG(t *testing.T) {
	seconds, rounds := testenv.BenchSettings()
	// PostgreSQL fsyncs its WAL at every commit, as in production, so that a writing
	// transaction costs what it costs there on every target (BENCH_PG_FSYNC=off: not).
	pg, fsync := testenv.DurablePostgres(t), "on"
	if os.Getenv("BENCH_PG_FSYNC") == "off" {
		pg, fsync = testenv.Postgres(t), "off"
	}
	e := newEnvOn(t, pg, nil)
	pgbench := findBin(t, "pgbench", "/usr/lib/postgresql/*/bin/pgbench")
	host, pgPort, _ := net.SplitHostPort(e.pg.Addr())
	_, pcPort, _ := net.SplitHostPort(e.addr)

	type target struct {
		name, port, user, password, db string
	}
	relayPort := startRelay(t, e.pg.Addr())
	bouncerPort, bouncerPID := startPgBouncer(t, e.pg.Addr())
	var pgbenchPrefix []string
	layout := fmt.Sprintf("%d cores, shared by all", runtime.NumCPU())
	if os.Getenv("BENCH_PIN") != "" {
		if runtime.NumCPU() < 2 {
			t.Fatal("BENCH_PIN needs at least 2 CPUs")
		}
		proxyCPUs, loadCPUs := "0", fmt.Sprintf("1-%d", runtime.NumCPU()-1)
		if runtime.NumCPU() == 2 {
			loadCPUs = "1"
		}
		pin(t, os.Getpid(), proxyCPUs)
		pin(t, bouncerPID, proxyCPUs)
		pinPostgres(t, e.pg.Dir, loadCPUs)
		pgbenchPrefix = []string{"taskset", "-c", loadCPUs}
		layout = fmt.Sprintf("the proxies pinned to CPU %s, PostgreSQL and pgbench to CPU %s", proxyCPUs, loadCPUs)
	}
	targets := []target{
		{"direct", pgPort, "portcullis", upstreamPassword, "orders"},
		{"relay", relayPort, "portcullis", upstreamPassword, "orders"},
		{"pgbouncer", bouncerPort, "portcullis", "", "orders"},
		{"portcullis", pcPort, "alice", token("alice"), "bench"},
	}
	run := func(tg target, logDir string, args ...string) (string, error) {
		argv := append(append(slices.Clone(pgbenchPrefix), pgbench, "-h", host, "-p", tg.port, "-U", tg.user), append(args, tg.db)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+tg.password, "PGSSLMODE=disable")
		cmd.Dir = logDir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(targets[0], t.TempDir(), "-i", "-s", "10", "-q"); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	workloads := []struct {
		name string
		args []string
	}{
		{"select-only simple c=1", []string{"-S", "-M", "simple", "-c", "1", "-j", "1"}},
		{"select-only simple c=4", []string{"-S", "-M", "simple", "-c", "4", "-j", "2"}},
		{"select-only simple c=16", []string{"-S", "-M", "simple", "-c", "16", "-j", "2"}},
		{"select-only prepared c=1", []string{"-S", "-M", "prepared", "-c", "1", "-j", "1"}},
		{"select-only prepared c=4", []string{"-S", "-M", "prepared", "-c", "4", "-j", "2"}},
		{"select-only prepared c=16", []string{"-S", "-M", "prepared", "-c", "16", "-j", "2"}},
		{"tpcb-like c=1", []string{"-c", "1", "-j", "1"}},
		{"tpcb-like c=8", []string{"-c", "8", "-j", "2"}},
	}
	type result struct {
		tps       float64
		latencies []float64 // ms
		failed    int
		cpuUS     float64 // the proxy's CPU per transaction, µs: this process's for the relay and Portcullis, PgBouncer's own
	}
	results := map[string]map[string]*result{}
	tpsRe := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	only := os.Getenv("BENCH_ONLY") // a substring of the workloads to run
	workloads = slices.DeleteFunc(workloads, func(w struct {
		name string
		args []string
	}) bool {
		return !strings.Contains(w.name, only)
	})
	for round := range rounds {
		for _, w := range workloads {
			if results[w.name] == nil {
				results[w.name] = map[string]*result{}
			}
			// Interleave the targets, in a different order each round.
			order := slices.Clone(targets)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, tg := range order {
				if only := os.Getenv("BENCH_TARGETS"); only != "" && !strings.Contains(only, tg.name) {
					results[w.name][tg.name] = &result{tps: 1}
					continue
				}
				dir := t.TempDir()
				args := append(slices.Clone(w.args), "-T", strconv.Itoa(seconds), "--log", "--log-prefix=tx")
				cpuOf := processCPU
				if tg.name == "pgbouncer" {
					cpuOf = func() time.Duration { return pidCPU(t, bouncerPID) }
				}
				cpu0 := cpuOf()
				out, err := run(tg, dir, args...)
				cpu := cpuOf() - cpu0
				if err != nil {
					t.Fatalf("%s on %s: %v\n%s", w.name, tg.name, err, out)
				}
				m := tpsRe.FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("%s on %s: no tps in\n%s", w.name, tg.name, out)
				}
				r := results[w.name][tg.name]
				if r == nil {
					r = &result{}
					results[w.name][tg.name] = r
				}
				tps, _ := strconv.ParseFloat(m[1], 64)
				r.tps += tps / float64(rounds)
				if !strings.Contains(out, "number of failed transactions: 0") {
					r.failed++
				}
				lat := readLatencies(t, dir)
				r.latencies = append(r.latencies, lat...)
				if len(lat) > 0 {
					r.cpuUS += cpu.Seconds() * 1e6 / float64(len(lat)) / float64(rounds)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\npgbench, scale 10, %d s per run, %d interleaved rounds, %s, PostgreSQL fsync %s\n\n", seconds, rounds, layout, fsync)
	fmt.Fprintf(&b, "| workload | target | TPS | p50 ms | p99 ms | proxy CPU µs/tx | failed runs |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, w := range workloads {
		for _, tg := range targets {
			r := results[w.name][tg.name]
			cpu := "-"
			if tg.name != "direct" {
				cpu = fmt.Sprintf("%.1f", r.cpuUS)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.3f | %s | %d |\n", w.name, tg.name, r.tps, pct(r.latencies, 50), pct(r.latencies, 99), cpu, r.failed)
		}
	}
	fmt.Fprintf(&b, "\n| workload | Portcullis / direct | Portcullis / relay | Portcullis / PgBouncer | CPU per tx, Portcullis / relay | CPU per tx, PgBouncer / relay |\n|---|---:|---:|---:|---:|---:|\n")
	for _, w := range workloads {
		r := results[w.name]
		p := r["portcullis"].tps
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", w.name, p/r["direct"].tps, p/r["relay"].tps, p/r["pgbouncer"].tps,
			r["portcullis"].cpuUS/r["relay"].cpuUS, r["pgbouncer"].cpuUS/r["relay"].cpuUS)
	}
	fmt.Print(b.String())
	if out := os.Getenv("BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
	for _, w := range workloads {
		for _, tg := range targets {
			if results[w.name][tg.name].failed > 0 {
				t.Errorf("%s on %s had failed transactions", w.name, tg.name)
			}
		}
	}
}

// processCPU returns the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pidCPU returns the CPU time process pid has used (user and system), from /proc.
func pidCPU(t *testing.T, pid int) time.Duration {
	f := procStat(pid)
	if f == nil {
		t.Fatalf("process %d is gone", pid)
	}
	// utime and stime are the 14th and 15th fields, in clock ticks (100 per second here).
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procStat returns the fields of /proc/<pid>/stat after the command name (which is in
// parentheses and may hold spaces), from the state on; nil if the process is gone.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
}

// pin sets the CPUs every thread of process pid may run on.
func pin(t *testing.T, pid int, cpus string) {
	if out, err := exec.Command("taskset", "-a", "-cp", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("taskset %s %d: %v\n%s", cpus, pid, err, out)
	}
}

// pinPostgres pins the PostgreSQL server in dir — the postmaster, whose new backends
// inherit its CPUs, and the processes it already started.
func pinPostgres(t *testing.T, dir, cpus string) {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pm, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	pin(t, pm, cpus)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if f := procStat(pid); len(f) > 1 && f[1] == strconv.Itoa(pm) {
			exec.Command("taskset", "-a", "-cp", cpus, strconv.Itoa(pid)).Run() // it may have exited
		}
	}
}

func findBin(t *testing.T, name, glob string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	m, _ := filepath.Glob(glob)
	if len(m) == 0 {
		t.Fatalf("%s not found (make bench-pg installs it)", name)
	}
	return m[len(m)-1]
}

// readLatencies reads pgbench's per-transaction logs (column 3 is the latency in µs).
func readLatencies(t *testing.T, dir string) []float64 {
	files, _ := filepath.Glob(filepath.Join(dir, "tx.*"))
	var out []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 3 {
				if us, err := strconv.ParseFloat(fields[2], 64); err == nil {
					out = append(out, us/1000)
				}
			}
		}
		fh.Close()
	}
	return out
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[min(len(v)-1, int(float64(len(v))*p/100))]
}

// startRelay starts the physical floor for one extra hop: accept, dial, copy both ways.
func startRelay(t *testing.T, upstream string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startPgBouncer runs PgBouncer in session pooling mode in front of upstream and returns
// its port and process id.
func startPgBouncer(t *testing.T, upstream string) (string, int) {
	bin := findBin(t, "pgbouncer", "/usr/sbin/pgbouncer")
	dir, err := os.MkdirTemp("", "portcullis-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	host, pgPort, _ := net.SplitHostPort(upstream)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	ini := fmt.Sprintf(`[databases]
orders = host=%s port=%s dbname=orders user=portcullis password=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, host, pgPort, upstreamPassword, port, dir, dir, dir)
	os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644)
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(`"portcullis" ""`+"\n"), 0o644)
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 { // PgBouncer refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
	}
	out, _ := os.Create(filepath.Join(dir, "stdout"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return port, cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			s, _ := os.ReadFile(filepath.Join(dir, "stdout"))
			t.Fatalf("pgbouncer did not start:\n%s\n%s", b, s)
		}
	}
}
