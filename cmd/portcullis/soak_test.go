//go:build soak

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	cl := startCluster(t, 2)
	replicas, pg := cl.replicas, cl.pg

	sample := func(r *replica) (goroutines, rss float64) {
		m := scrape(t, r.api)
		return metricSample(m, "go_goroutines"), metricSample(m, "process_resident_memory_bytes")
	}
	var baseG [2]float64
	for i, r := range replicas {
		baseG[i], _ = sample(r)
	}

	const rampStep = 10 * time.Millisecond
	ctx, stop := context.WithTimeout(context.Background(), duration+time.Duration(sessions)*rampStep)
	defer stop()
	var sent, reads, writes, failed atomic.Int64
	var latMu sync.Mutex
	var readLat, approvalLat []time.Duration
	var wg sync.WaitGroup
	for i := range sessions {
		r := replicas[i%2]
		// Sessions come up over the first seconds, as clients and pools do, not in one
		// instant: 200 PostgreSQL connections set up at once take a 2-core machine longer
		// than the startup timeout (that storm is its own test: TestSlowUpstreamStartup…).
		time.Sleep(rampStep)
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
		for _, r := range replicas {
			r.cmd.Process.Signal(syscall.SIGQUIT) // its goroutines go to its log, kept as the test fails
		}
		time.Sleep(time.Second)
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
