package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// WrkResult is one wrk run: requests, how long, and the median and 99th percentile latency.
type WrkResult struct {
	Requests int
	Duration time.Duration
	P50, P99 time.Duration
}

// Wrk finds Debian's wrk, the load generator of the end-to-end HTTP benchmarks (a separate
// process, so it shares no Go runtime with what it measures).
func Wrk(t testing.TB) string {
	t.Helper()
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk is needed (Debian: apt-get install wrk; make bench-http installs it)")
	}
	return wrk
}

// RunWrk runs wrk for seconds over conns connections against url with method, a body of
// body bytes and headers ("Name: value"), and fails the test on any socket error or
// non-2xx answer.
func RunWrk(t testing.TB, wrk, method string, body, conns, seconds int, url string, headers ...string) WrkResult {
	t.Helper()
	script := filepath.Join(t.TempDir(), "bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript(method, body)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-t", strconv.Itoa(min(conns, 2)), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", seconds), "--timeout", "10s", "-s", script}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, err := exec.Command(wrk, append(args, url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk %s %s: %v\n%s", method, url, err, out)
	}
	i := strings.LastIndex(string(out), "BENCH ")
	if i < 0 {
		t.Fatalf("wrk %s %s: unreadable output\n%s", method, url, out)
	}
	var n, errs, bad int
	var us, p50, p99 float64
	if _, err := fmt.Sscanf(string(out[i:]), "BENCH %d %f %d %d %f %f", &n, &us, &bad, &errs, &p50, &p99); err != nil {
		t.Fatalf("wrk %s %s: unreadable output: %v\n%s", method, url, err, out)
	}
	if bad+errs > 0 {
		t.Fatalf("wrk %s %s: %d non-2xx answers, %d socket errors\n%s", method, url, bad, errs, out)
	}
	return WrkResult{Requests: n, Duration: time.Duration(us) * time.Microsecond, P50: time.Duration(p50) * time.Microsecond, P99: time.Duration(p99) * time.Microsecond}
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

// CPUTime is the CPU time this process has used, user and system.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median is the median of v (0 for none).
func Median(v []float64) float64 {
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
