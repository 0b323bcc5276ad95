package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/audit/otlplog"
	"github.com/portcullis/portcullis/configs"
)

// startTracing exports spans to telemetry.traces when it is set; otherwise the tracer is
// nil (no spans, no cost). stop flushes what is buffered, within a bound.
func startTracing(ctx context.Context, cfg *configs.Config, replica string, logger *slog.Logger) (tracer trace.Tracer, stop func(), err error) {
	tc := cfg.Telemetry.Traces
	if tc == nil {
		return nil, func() {}, nil
	}
	tlsCfg, err := clientTLS(tc.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry.traces: %w", err)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(strings.TrimSuffix(tc.Endpoint, "/") + "/v1/traces"), otlptracehttp.WithTimeout(10 * time.Second)}
	if len(tc.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(tc.Headers))
	}
	if tlsCfg != nil {
		opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsCfg))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry.traces: %w", err)
	}
	res, err := otlplog.Resource(replica, version)
	if err != nil {
		return nil, nil, err
	}
	ratio := 1.0
	if tc.SampleRatio != nil {
		ratio = *tc.SampleRatio
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
	// An export that fails is logged: spans are not the record (the audit log is), but
	// nobody should wonder why a trace is missing.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("OpenTelemetry export failed", "err", err) }))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			logger.Warn("could not flush the last spans", "err", err)
		}
	}
	return tp.Tracer("github.com/portcullis/portcullis"), stop, nil
}

// clientTLS verifies servers with the certificates in caFile; nil (the system's roots)
// when caFile is empty.
func clientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := caPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// caPool reads a PEM file of CA certificates.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + file)
	}
	return pool, nil
}
