//go:build benchk8s

package kubefront

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/httpx"
)

// TestBenchK8s is `make bench-k8s`: wrk lists the ConfigMaps of a namespace (what
// `kubectl get configmaps -n prod -o json` asks) at 1, 8 and 32 connections from the API
// server directly, through a bare httputil.ReverseProxy, and through Portcullis,
// interleaved, in one run. The bare proxy does what Portcullis's forwarding does — the same
// TLS to the API server, Portcullis's credential and the caller impersonated — so the
// API server works the same for both; Portcullis adds authentication, classification, the
// decision and the audit event. The API server, etcd, wrk and both proxies share the
// machine's cores.
func TestBenchK8s(t *testing.T) {
	wrk := testenv.Wrk(t)
	seconds, rounds := testenv.BenchSettings()
	e := newEnv(t)
	// Twenty ConfigMaps in prod: a list answer of a realistic size (about 20 KiB).
	for i := range 20 {
		if out, err := e.admin("create", "configmap", fmt.Sprintf("bench-%02d", i), "-n", "prod", "--from-literal=k="+strings.Repeat("v", 512)); err != nil {
			t.Fatal(out)
		}
	}
	up, _ := url.Parse(e.kube.URL())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.kube.CA)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 64
	bare := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(up)
		pr.Out.Header.Set("Authorization", "Bearer "+devserver.KubePortcullisToken)
		pr.Out.Header.Set("Impersonate-User", "alice")
		pr.Out.Header.Set("Impersonate-Group", "engineering")
	}, Transport: tr, BufferPool: httpx.CopyBuffers, FlushInterval: -1})
	t.Cleanup(bare.Close)

	type target struct{ name, base, token string }
	targets := []target{{"direct", e.kube.URL(), devserver.KubeAdminToken}, {"bare proxy", bare.URL, ""}, {"portcullis", e.url, "alice-token"}}
	if only := os.Getenv("BENCH_ONLY"); only != "" {
		targets = slices.DeleteFunc(targets, func(tg target) bool { return tg.name != only })
	}
	conns := []int{1, 8, 32}
	type result struct {
		n        int
		dur, cpu time.Duration
		p50, p99 []float64
	}
	res := map[int]map[string]*result{}
	for round := range rounds {
		for _, c := range conns {
			order := slices.Clone(targets)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, tg := range order {
				if res[c] == nil {
					res[c] = map[string]*result{}
				}
				r := res[c][tg.name]
				if r == nil {
					r = &result{}
					res[c][tg.name] = r
				}
				var headers []string
				if tg.token != "" {
					headers = append(headers, "Authorization: Bearer "+tg.token)
				}
				before := testenv.CPUTime()
				got := testenv.RunWrk(t, wrk, "GET", 0, c, seconds, tg.base+"/api/v1/namespaces/prod/configmaps?limit=500", append(headers, "Accept: application/json")...)
				r.cpu += testenv.CPUTime() - before
				r.n += got.Requests
				r.dur += got.Duration
				r.p50, r.p99 = append(r.p50, float64(got.P50.Microseconds())/1000), append(r.p99, float64(got.P99.Microseconds())/1000)
			}
		}
	}
	rps := func(r *result) float64 { return float64(r.n) / r.dur.Seconds() }
	var b strings.Builder
	fmt.Fprintf(&b, "\nKubernetes list (GET /api/v1/namespaces/prod/configmaps, 20 objects) via wrk, %d s per run, %d interleaved rounds; CPU is this test process's (the proxies), per request\n\n", seconds, rounds)
	fmt.Fprintf(&b, "| connections | target | req/s | p50 ms | p99 ms | proxy CPU µs/req |\n|---|---|---:|---:|---:|---:|\n")
	for _, c := range conns {
		for _, tg := range targets {
			r := res[c][tg.name]
			cpu := "-"
			if tg.name != "direct" {
				cpu = fmt.Sprintf("%.1f", float64(r.cpu.Microseconds())/float64(r.n))
			}
			fmt.Fprintf(&b, "| %d | %s | %.0f | %.2f | %.2f | %s |\n", c, tg.name, rps(r), testenv.Median(r.p50), testenv.Median(r.p99), cpu)
		}
	}
	if len(targets) == 3 {
		fmt.Fprintf(&b, "\n| connections | Portcullis / direct | Portcullis / bare proxy (req/s) | p99 Portcullis / bare proxy |\n|---|---:|---:|---:|\n")
		for _, c := range conns {
			p, d, bp := res[c]["portcullis"], res[c]["direct"], res[c]["bare proxy"]
			fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.2f |\n", c, rps(p)/rps(d), rps(p)/rps(bp), testenv.Median(p.p99)/testenv.Median(bp.p99))
		}
	}
	t.Log(b.String())
}
