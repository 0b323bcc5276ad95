package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/audit"
)

// ReadyCheck is one thing a replica needs to serve: a name for the probe's answer and a
// check that returns nil while it is usable.
type ReadyCheck struct {
	Name  string
	Check func(context.Context) error
}

// healthz answers a liveness probe: ok while the process serves, 503 once its audit log
// has failed (a full disk, an I/O error). Such a replica refuses every audited action and
// only a restart recovers it (the log is reopened from its last intact event), so the
// orchestrator should restart it.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.Audit != nil {
		if err := s.Audit.Err(); err != nil && !errors.Is(err, audit.ErrClosed) {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "audit log failed: restart to recover")
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// readyCheckTimeout bounds each check of one probe.
const readyCheckTimeout = 2 * time.Second

// readyz answers a readiness probe: 200 when every check passes, 503 naming those that
// fail. The checks run at once, each bounded; their errors (addresses, Vault's words) go
// to the log, not to the unauthenticated prober.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	errs := make([]error, len(s.Ready))
	var wg sync.WaitGroup
	for i, c := range s.Ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
			defer cancel()
			errs[i] = c.Check(ctx)
		})
	}
	wg.Wait()
	var failing []string
	for i, err := range errs {
		if err != nil {
			failing = append(failing, s.Ready[i].Name)
			s.Log.Warn("not ready", "component", s.Ready[i].Name, "err", err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(failing) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s unavailable\n", strings.Join(failing, ", "))
		return
	}
	fmt.Fprintln(w, "ready")
}
