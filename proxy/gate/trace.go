package gate

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span starts a span named name under ctx's when the gate traces (Tracer is set) and
// ctx's span (ours, or a caller's from its traceparent) is sampled or ctx has none;
// otherwise it returns ctx and its span (a no-op one for a context without), which costs
// nothing. Front ends start their request and session spans with it.
func (g *Gate) Span(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if g == nil || g.Tracer == nil || parent.SpanContext().IsValid() && !parent.SpanContext().IsSampled() {
		return ctx, parent
	}
	return g.Tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// RequestSpan starts the server span of an HTTP request to a front end, joining the
// caller's trace when the request carries a W3C traceparent (a sampled one is traced
// whatever the sample ratio; an unsampled one is not). The returned request carries the
// span; without a tracer it is r. The caller ends the span.
func (g *Gate) RequestSpan(r *http.Request, name string, attrs ...attribute.KeyValue) (*http.Request, trace.Span) {
	if g == nil || g.Tracer == nil {
		return r, trace.SpanFromContext(r.Context())
	}
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := g.Span(ctx, name, trace.SpanKindServer)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
			attribute.String("client.address", r.RemoteAddr))
		span.SetAttributes(attrs...)
		r = r.WithContext(ctx)
	}
	return r, span
}

// child starts a span under ctx's only if that one is recorded: the gate's own spans
// never start a trace.
func (g *Gate) child(ctx context.Context, name string) (context.Context, trace.Span) {
	if g == nil || g.Tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return g.Tracer.Start(ctx, name)
}

// EndSpan ends span with err's status (nil: unset, which reads as OK).
func EndSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrs...)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Transport wraps a front end's upstream transport: when the request's span is recorded,
// each upstream call gets a client span of its own, and the upstream the W3C trace
// context (traceparent) to join the trace. Otherwise the call goes to rt as it is.
func (g *Gate) Transport(rt http.RoundTripper) http.RoundTripper {
	if g == nil {
		return rt
	}
	return tracedTransport{g: g, rt: rt}
}

type tracedTransport struct {
	g  *Gate
	rt http.RoundTripper
}

func (t tracedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := t.g.child(r.Context(), "upstream "+r.Method)
	if !span.IsRecording() {
		return t.rt.RoundTrip(r)
	}
	span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("server.address", r.URL.Host), attribute.String("url.path", r.URL.Path))
	r = r.Clone(ctx) // a RoundTripper must not change the request it was given
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		EndSpan(span, err)
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, resp.Status)
	}
	span.End()
	return resp, nil
}
