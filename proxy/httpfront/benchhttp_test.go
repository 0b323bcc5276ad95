//go:build benchhttp

package httpfront

import (
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/httpx"
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
	wrk := testenv.Wrk(t)
	seconds, rounds := testenv.BenchSettings()
	e := newBenchEnv(t)
	upURL, _ := url.Parse(e.upstream)
	// The bare proxy gets the same transport (its idle pool) and copy buffers as Portcullis.
	bare := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upURL); pr.SetXForwarded() },
		Transport: UpstreamTransport(), BufferPool: httpx.CopyBuffers})
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
	// BENCH_ONLY narrows the run to the targets and workloads it names, comma-separated
	// (BENCH_ONLY=portcullis, BENCH_ONLY="POST 16KiB c=16,portcullis"), for profiling one of
	// them (go test -cpuprofile); the ratios then need all three targets.
	if only := os.Getenv("BENCH_ONLY"); only != "" {
		names := strings.Split(only, ",")
		if slices.ContainsFunc(workloads, func(w workload) bool { return slices.Contains(names, w.name) }) {
			workloads = slices.DeleteFunc(workloads, func(w workload) bool { return !slices.Contains(names, w.name) })
		}
		if slices.ContainsFunc(targets, func(tg target) bool { return slices.Contains(names, tg.name) }) {
			targets = slices.DeleteFunc(targets, func(tg target) bool { return !slices.Contains(names, tg.name) })
		}
	}
	res := map[string]map[string]*result{}
	for round := range rounds {
		for _, w := range workloads {
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
				var headers []string
				if tg.host != "" {
					headers = []string{"Host: " + tg.host, "Authorization: Bearer " + tg.token}
				}
				before := testenv.CPUTime()
				got := testenv.RunWrk(t, wrk, w.method, w.body, w.c, seconds, tg.base+"/bench/item", headers...)
				r.cpu += testenv.CPUTime() - before
				r.n += got.Requests
				r.dur += got.Duration
				r.p50, r.p99 = append(r.p50, float64(got.P50.Microseconds())/1000), append(r.p99, float64(got.P99.Microseconds())/1000)
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
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.3f | %.1f | %s |\n", w.name, tg.name, rps(r), testenv.Median(r.p50), testenv.Median(r.p99), perReq(r), proxyCPU)
		}
	}
	if len(targets) < 3 {
		t.Log(b.String())
		return
	}
	fmt.Fprintf(&b, "\n| workload | Portcullis / direct | Portcullis / bare proxy (req/s) | p99 Portcullis / bare proxy | proxy CPU per request, Portcullis / bare proxy |\n|---|---:|---:|---:|---:|\n")
	for _, w := range workloads {
		p, d, bp := res[w.name]["portcullis"], res[w.name]["direct"], res[w.name]["bare proxy"]
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f |\n", w.name, rps(p)/rps(d), rps(p)/rps(bp), testenv.Median(p.p99)/testenv.Median(bp.p99),
			(perReq(p)-perReq(d))/(perReq(bp)-perReq(d)))
	}
	t.Log(b.String())
	if out := os.Getenv("BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}
