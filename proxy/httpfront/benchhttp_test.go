//go:build benchhttp

package httpfront

import (
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testenv"
)

// TestBenchHTTP is `make bench-http`: wrk sends a small GET and a 16 KiB POST (both
// allowed by policy, so decided, audited and forwarded) at 1, 16 and 64 connections to
// the upstream directly, to a bare httputil.ReverseProxy and to Portcullis, interleaved,
// in one run. It prints requests per second, p50/p99 latency, the CPU this process (the
// upstream, and the proxy under test) spent per request, and Portcullis's ratios.
//
// wrk is a separate process, so the load generator does not share the Go runtime, its
// scheduler or its garbage collector with what it measures; the upstream and both proxies
// run in this process, one target at a time.
func TestBenchHTTP(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk is needed (Debian: apt-get install wrk; make bench-http installs it)")
	}
	seconds, rounds := testenv.BenchSettings()
	e := newBenchEnv(t)
	upURL, _ := url.Parse(e.upstream)
	// The bare proxy gets the same transport (its idle pool) and copy buffers as Portcullis.
	bare := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upURL); pr.SetXForwarded() },
		Transport: UpstreamTransport(), BufferPool: copyBuffers})
	t.Cleanup(bare.Close)
	type target struct{ name, base, host, token string }
	targets := []target{{"direct", e.upstream, "", ""}, {"bare proxy", bare.URL, "", ""}, {"portcullis", e.front.URL, "admin.test", "alice-token"}}
	type workload struct {
		name   string
		method string
		body   int
		c      int
	}
	workloads := []workload{
		{"GET small c=1", "GET", 0, 1}, {"GET small c=16", "GET", 0, 16}, {"GET small c=64", "GET", 0, 64},
		{"POST 16KiB c=1", "POST", 16 << 10, 1}, {"POST 16KiB c=16", "POST", 16 << 10, 16}, {"POST 16KiB c=64", "POST", 16 << 10, 64},
	}
	type result struct {
		n        int
		dur      time.Duration
		p50, p99 []float64 // ms, one per round
		cpu      time.Duration
	}
	// BENCH_ONLY=portcullis (a target) or BENCH_ONLY="GET small c=1" (a workload) narrows the
	// run, for profiling one of them (go test -cpuprofile); the ratios then need all three.
	if only := os.Getenv("BENCH_ONLY"); only != "" {
		if slices.ContainsFunc(workloads, func(w workload) bool { return w.name == only }) {
			workloads = slices.DeleteFunc(workloads, func(w workload) bool { return w.name != only })
		} else {
			targets = slices.DeleteFunc(targets, func(tg target) bool { return tg.name != only })
		}
	}
	res := map[string]map[string]*result{}
	dir := t.TempDir()
	for round := range rounds {
		for _, w := range workloads {
			script := filepath.Join(dir, w.method+".lua")
			if err := os.WriteFile(script, []byte(wrkScript(w.method, w.body)), 0o600); err != nil {
				t.Fatal(err)
			}
			order := slices.Clone(targets)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, tg := range order {
				if res[w.name] == nil {
					res[w.name] = map[string]*result{}
				}
				r := res[w.name][tg.name]
				if r == nil {
					r = &result{}
					res[w.name][tg.name] = r
				}
				args := []string{"-t", strconv.Itoa(min(w.c, 2)), "-c", strconv.Itoa(w.c), "-d", fmt.Sprintf("%ds", seconds),
					"--timeout", "10s", "-s", script}
				if tg.host != "" {
					args = append(args, "-H", "Host: "+tg.host, "-H", "Authorization: Bearer "+tg.token)
				}
				args = append(args, tg.base+"/bench/item")
				before := cpuTime()
				out, err := exec.Command(wrk, args...).CombinedOutput()
				cpu := cpuTime() - before
				if err != nil {
					t.Fatalf("wrk %s %s: %v\n%s", tg.name, w.name, err, out)
				}
				var n, errs, bad int
				var us, p50, p99 float64
				line := out[strings.LastIndex(string(out), "BENCH "):]
				if _, err := fmt.Sscanf(string(line), "BENCH %d %f %d %d %f %f", &n, &us, &bad, &errs, &p50, &p99); err != nil {
					t.Fatalf("wrk %s %s: unreadable output: %v\n%s", tg.name, w.name, err, out)
				}
				if bad+errs > 0 {
					t.Fatalf("wrk %s %s: %d non-2xx answers, %d socket errors\n%s", tg.name, w.name, bad, errs, out)
				}
				r.n += n
				r.dur += time.Duration(us) * time.Microsecond
				r.p50, r.p99 = append(r.p50, p50/1000), append(r.p99, p99/1000)
				r.cpu += cpu
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nHTTP via wrk, %d s per run, %d interleaved rounds; p50/p99 are the median of the rounds'; CPU is this process's (upstream + proxy) per request\n\n", seconds, rounds)
	fmt.Fprintf(&b, "| workload | target | req/s | p50 ms | p99 ms | CPU µs/req | proxy CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|\n")
	rps := func(r *result) float64 { return float64(r.n) / r.dur.Seconds() }
	perReq := func(r *result) float64 { return float64(r.cpu.Microseconds()) / float64(r.n) }
	for _, w := range workloads {
		for _, tg := range targets {
			r := res[w.name][tg.name]
			proxyCPU := "-"
			if tg.name != "direct" && res[w.name]["direct"] != nil {
				proxyCPU = fmt.Sprintf("%.1f", perReq(r)-perReq(res[w.name]["direct"]))
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.3f | %.1f | %s |\n", w.name, tg.name, rps(r), median(r.p50), median(r.p99), perReq(r), proxyCPU)
		}
	}
	if len(targets) < 3 {
		t.Log(b.String())
		return
	}
	fmt.Fprintf(&b, "\n| workload | Portcullis / direct | Portcullis / bare proxy (req/s) | p99 Portcullis / bare proxy | proxy CPU per request, Portcullis / bare proxy |\n|---|---:|---:|---:|---:|\n")
	for _, w := range workloads {
		p, d, bp := res[w.name]["portcullis"], res[w.name]["direct"], res[w.name]["bare proxy"]
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f |\n", w.name, rps(p)/rps(d), rps(p)/rps(bp), median(p.p99)/median(bp.p99),
			(perReq(p)-perReq(d))/(perReq(bp)-perReq(d)))
	}
	t.Log(b.String())
	if out := os.Getenv("BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}

// wrkScript sets the method and body and prints one machine-readable line at the end:
// requests, duration µs, non-2xx answers, socket errors, p50 and p99 latency µs.
func wrkScript(method string, body int) string {
	s := fmt.Sprintf("wrk.method = %q\n", method)
	if body > 0 {
		s += fmt.Sprintf("wrk.body = string.rep(\"x\", %d)\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n", body)
	}
	return s + `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
`
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
