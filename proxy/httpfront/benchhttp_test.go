//go:build benchhttp

package httpfront

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testenv"
)

// TestBenchHTTP is `make bench-http`: a small GET and a 16 KiB PUT (both allowed by
// policy, so decided, audited and forwarded) at 1, 16 and 64 concurrent clients, against
// the upstream directly, a bare httputil.ReverseProxy and Portcullis, interleaved, in one
// run. It prints requests per second and p50/p99 latency, and Portcullis's ratios.
func TestBenchHTTP(t *testing.T) {
	seconds, rounds := testenv.BenchSettings()
	e := newBenchEnv(t)
	upURL, _ := url.Parse(e.upstream)
	bare := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upURL); pr.SetXForwarded() }})
	t.Cleanup(bare.Close)
	type target struct{ name, base, host, token string }
	targets := []target{{"direct", e.upstream, "", ""}, {"bare proxy", bare.URL, "", ""}, {"portcullis", e.front.URL, "admin.test", "alice-token"}}
	post := bytes.Repeat([]byte("x"), 16<<10)
	workloads := []struct {
		name   string
		method string
		body   []byte
		c      int
	}{
		{"GET small c=1", "GET", nil, 1}, {"GET small c=16", "GET", nil, 16}, {"GET small c=64", "GET", nil, 64},
		{"PUT 16KiB c=1", "PUT", post, 1}, {"PUT 16KiB c=16", "PUT", post, 16}, {"PUT 16KiB c=64", "PUT", post, 64},
	}
	type result struct {
		n   int
		lat []time.Duration
	}
	res := map[string]map[string]*result{}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
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
				var mu sync.Mutex
				var wg sync.WaitGroup
				deadline := time.Now().Add(time.Duration(seconds) * time.Second)
				for range w.c {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var lat []time.Duration
						for time.Now().Before(deadline) {
							req, _ := http.NewRequest(w.method, tg.base+"/bench/item", bytes.NewReader(w.body))
							if tg.host != "" {
								req.Host = tg.host
								req.Header.Set("Authorization", "Bearer "+tg.token)
							}
							start := time.Now()
							resp, err := client.Do(req)
							if err != nil {
								t.Error(err)
								return
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != 200 {
								t.Errorf("%s %s: %d", tg.name, w.name, resp.StatusCode)
								return
							}
							lat = append(lat, time.Since(start))
						}
						mu.Lock()
						r.n += len(lat)
						r.lat = append(r.lat, lat...)
						mu.Unlock()
					}()
				}
				wg.Wait()
			}
		}
	}
	total := time.Duration(seconds*rounds) * time.Second
	var b strings.Builder
	fmt.Fprintf(&b, "\nHTTP, %d s per run, %d interleaved rounds\n\n| workload | target | req/s | p50 ms | p99 ms |\n|---|---|---:|---:|---:|\n", seconds, rounds)
	rps := func(r *result) float64 { return float64(r.n) / total.Seconds() }
	pct := func(r *result, p float64) float64 {
		slices.Sort(r.lat)
		if len(r.lat) == 0 {
			return 0
		}
		return float64(r.lat[int(p*float64(len(r.lat)-1))].Microseconds()) / 1000
	}
	for _, w := range workloads {
		for _, tg := range targets {
			r := res[w.name][tg.name]
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.3f |\n", w.name, tg.name, rps(r), pct(r, .5), pct(r, .99))
		}
	}
	fmt.Fprintf(&b, "\n| workload | Portcullis / direct | Portcullis / bare proxy (req/s) | p99 Portcullis / bare proxy |\n|---|---:|---:|---:|\n")
	for _, w := range workloads {
		p, d, bp := res[w.name]["portcullis"], res[w.name]["direct"], res[w.name]["bare proxy"]
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f |\n", w.name, rps(p)/rps(d), rps(p)/rps(bp), pct(p, .99)/pct(bp, .99))
	}
	t.Log(b.String())
	if out := os.Getenv("BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}
