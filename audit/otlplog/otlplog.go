// Package otlplog mirrors the audit log to an OpenTelemetry Collector as OTLP logs (over
// HTTP), one log record per event, in order.
//
// Each record's body is the event's JSON exactly as the segment stores it, so a receiver
// can check the chain (prev_hash, hash) itself; the attributes carry the fields security
// tools map. Delivery goes through an audit.Outbox: a batch the Collector refuses or the
// log drops is sent again from the segments, and a restart carries on where the last
// process stopped.
package otlplog

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/portcullis/portcullis/audit"
)

// Scope is the instrumentation scope of the records.
const Scope = "github.com/portcullis/portcullis/audit"

// Options configure a Sink.
type Options struct {
	// Endpoint is the Collector's OTLP/HTTP base URL (http://host:4318); records go to
	// its /v1/logs.
	Endpoint string
	Headers  map[string]string
	TLS      *tls.Config
	// Want selects the events sent; nil: all.
	Want func(*audit.Event) bool
	// Replica is service.instance.id, and Version service.version.
	Replica, Version string
	// Outbox is the audit log's directory (see audit.Outbox); empty: best effort.
	Outbox string
}

// Sink is an audit.Sink that exports events as OTLP log records.
type Sink struct {
	opts     Options
	exporter *otlploghttp.Exporter
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	taken    *take
	box      audit.Outbox
}

var _ audit.Sink = (*Sink)(nil)

// New returns a sink exporting to opts.Endpoint. Nothing is sent until events come.
func New(ctx context.Context, opts Options) (*Sink, error) {
	eo := []otlploghttp.Option{
		otlploghttp.WithEndpointURL(strings.TrimSuffix(opts.Endpoint, "/") + "/v1/logs"),
		otlploghttp.WithTimeout(10 * time.Second),
		// The outbox retries a refused batch from the log; the exporter's own retries
		// bridge a short outage without reading the segments again.
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: true, InitialInterval: 200 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: 10 * time.Second}),
	}
	if len(opts.Headers) > 0 {
		eo = append(eo, otlploghttp.WithHeaders(opts.Headers))
	}
	if opts.TLS != nil {
		eo = append(eo, otlploghttp.WithTLSClientConfig(opts.TLS))
	}
	exp, err := otlploghttp.New(ctx, eo...)
	if err != nil {
		return nil, fmt.Errorf("OTLP log exporter for %s: %w", opts.Endpoint, err)
	}
	res, err := Resource(opts.Replica, opts.Version)
	if err != nil {
		return nil, err
	}
	s := &Sink{opts: opts, exporter: exp, taken: &take{}}
	// The provider stamps each record with the resource and scope; the sink exports what
	// it emitted itself, so that a failure reaches the outbox.
	s.provider = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(s.taken))
	s.logger = s.provider.Logger(Scope)
	sum := sha256.Sum256([]byte(opts.Endpoint))
	s.box = audit.Outbox{Dir: opts.Outbox, Name: "otlp-" + hex.EncodeToString(sum[:6]) + ".cursor", Batch: 256}
	return s, nil
}

// Resource describes this Portcullis process to OpenTelemetry: the service, its version
// and the replica (service.instance.id, the audit log's replica name).
func Resource(replica, version string) (*resource.Resource, error) {
	return resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("portcullis"), semconv.ServiceVersion(version), semconv.ServiceInstanceID(replica)))
}

// Name identifies the sink in logs.
func (s *Sink) Name() string { return "otlp " + s.opts.Endpoint }

// Wants reports whether the sink takes ev.
func (s *Sink) Wants(ev *audit.Event) bool { return s.opts.Want == nil || s.opts.Want(ev) }

// Write exports a batch the log committed (and, first, what the outbox says was missed).
func (s *Sink) Write(ctx context.Context, events []audit.Event) error {
	return s.box.Deliver(ctx, events, s.Wants, s.send)
}

// Missed is told by the log that a batch was dropped: it is sent from the log later.
func (s *Sink) Missed() { s.box.Missed() }

// Resume sends what the last process committed and did not deliver.
func (s *Sink) Resume(ctx context.Context) error { return s.box.Resume(ctx, s.Wants, s.send) }

// Close shuts the exporter down.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.provider.Shutdown(ctx)
}

// send exports events as one request; the outbox calls it with its lock held.
func (s *Sink) send(ctx context.Context, events []*audit.Event) error {
	for _, ev := range events {
		body, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		var r otellog.Record
		r.SetTimestamp(ev.Time)
		r.SetObservedTimestamp(time.Now())
		r.SetEventName(ev.Type)
		sev, text := otellog.SeverityInfo, "INFO"
		if ev.BreakGlass != "" || ev.Alert != "" || ev.Result == "error" {
			sev, text = otellog.SeverityWarn, "WARN"
		}
		r.SetSeverity(sev)
		r.SetSeverityText(text)
		r.SetBody(attribute.StringValue(string(body)))
		r.AddAttributes(
			attribute.Int64("portcullis.seq", int64(ev.Seq)),
			attribute.String("portcullis.hash", ev.Hash),
			attribute.String("portcullis.prev_hash", ev.PrevHash),
			attribute.String("portcullis.replica", ev.Replica),
			attribute.String("portcullis.event_type", ev.Type),
			attribute.String("portcullis.result", ev.Result),
			attribute.String("enduser.id", ev.Actor),
		)
		for _, kv := range []struct{ k, v string }{
			{"portcullis.resource", ev.Resource}, {"portcullis.session", ev.Session}, {"portcullis.subject", ev.Subject},
			{"portcullis.breakglass", ev.BreakGlass}, {"portcullis.alert", ev.Alert}, {"portcullis.reason", ev.Reason},
		} {
			if kv.v != "" {
				r.AddAttributes(attribute.String(kv.k, kv.v))
			}
		}
		s.logger.Emit(ctx, r)
	}
	records := s.taken.drain()
	if len(records) != len(events) {
		return fmt.Errorf("OTLP log records: %d of %d events were emitted", len(records), len(events))
	}
	return s.exporter.Export(ctx, records)
}

// take is a log processor that keeps what is emitted for the sink to export itself.
type take struct {
	mu      sync.Mutex
	records []sdklog.Record
}

func (t *take) OnEmit(_ context.Context, r *sdklog.Record) error {
	t.mu.Lock()
	t.records = append(t.records, r.Clone())
	t.mu.Unlock()
	return nil
}

func (t *take) drain() []sdklog.Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.records
	t.records = nil
	return out
}

func (t *take) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (t *take) Shutdown(context.Context) error                         { return nil }
func (t *take) ForceFlush(context.Context) error                       { return nil }
