package httpfront

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTraces: with a tracer, a request gets a server span that joins the caller's trace
// (a sampled traceparent), a decision span and an upstream client span under it, and the
// upstream gets a traceparent naming that upstream span; a caller's unsampled traceparent
// is not traced, and passes on untouched.
func TestTraces(t *testing.T) {
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	defer tp.Shutdown(t.Context())
	e.srv.Gate.Tracer = tp.Tracer("test")

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, _ := e.do("admin.test", "alice", "GET", "/orders/1", "", "Traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	spans := rec.Ended()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[strings.Fields(s.Name())[0]] = s
	}
	req, dec, up := byName["http.request"], byName["portcullis.decide"], byName["upstream"]
	if req == nil || dec == nil || up == nil {
		t.Fatalf("spans: %v, want http.request, portcullis.decide, upstream GET", names(spans))
	}
	if got := req.SpanContext().TraceID().String(); got != callerTrace {
		t.Errorf("request span in trace %s, want the caller's %s", got, callerTrace)
	}
	if req.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("request span's parent %s, want the caller's span", req.Parent().SpanID())
	}
	for _, s := range []sdktrace.ReadOnlySpan{dec, up} {
		if s.Parent().SpanID() != req.SpanContext().SpanID() {
			t.Errorf("%s is not under the request span", s.Name())
		}
	}
	saw := e.upstreamSaw()
	if want := "00-" + callerTrace + "-" + up.SpanContext().SpanID().String() + "-01"; len(saw) != 1 || saw[0].traceparent != want {
		t.Errorf("upstream saw traceparent %q, want %q", saw[len(saw)-1].traceparent, want)
	}

	// Unsampled by the caller: no spans, and its header goes on as it came.
	n := len(rec.Ended())
	unsampled := "00-" + callerTrace + "-00f067aa0ba902b7-00"
	e.do("admin.test", "alice", "GET", "/orders/2", "", "Traceparent", unsampled)
	if got := len(rec.Ended()); got != n {
		t.Errorf("%d spans for an unsampled request", got-n)
	}
	if saw := e.upstreamSaw(); saw[len(saw)-1].traceparent != unsampled {
		t.Errorf("upstream saw %q, want the caller's %q", saw[len(saw)-1].traceparent, unsampled)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
