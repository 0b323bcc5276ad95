package httpfront

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/portcullis/portcullis/proxy/httpx"
)

// BenchmarkExchange measures one allowed GET through Portcullis's handler — decided,
// audited (the event written to a real segment before forwarding, the result after),
// forwarded to a real upstream over loopback — beside a bare httputil.ReverseProxy with the
// same transport and buffers. The difference is what Portcullis adds per request, without a
// client's or a listener's cost; run with -benchmem for its allocations.
func BenchmarkExchange(b *testing.B) {
	e := newBenchEnv(b)
	up, _ := url.Parse(e.upstream)
	bare := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() },
		Transport: UpstreamTransport(), BufferPool: httpx.CopyBuffers}
	for _, tc := range []struct {
		name string
		h    http.Handler
		auth string
	}{{"bare proxy", bare, ""}, {"portcullis", e.srv, "Bearer alice-token"}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/bench/item", nil)
			req.Host = "admin.test"
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := &discardWriter{h: http.Header{}}
				tc.h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// discardWriter is the least a ResponseWriter can be.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
