package devserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// OtelcolVersion is the OpenTelemetry Collector `make otelcol` builds (internal/tools/otelcol).
const OtelcolVersion = "0.161.0"

// OtelcolBinary returns the collector `make otelcol` caches under
// ~/.cache/portcullis/otelcol-VERSION/, or $PORTCULLIS_OTELCOL.
func OtelcolBinary() (string, error) {
	return cachedBinary("PORTCULLIS_OTELCOL", "otelcol-"+OtelcolVersion, "otelcol", "make otelcol")
}

// Otelcol is a running OpenTelemetry Collector: an OTLP/HTTP receiver on loopback whose
// logs and traces the file exporter writes, one OTLP JSON export request a line, to a file
// per start (the exporter truncates its file when it starts).
type Otelcol struct {
	Port  int
	dir   string
	files []string
	proc  *process
}

// StartOtelcol starts the collector with its configuration, output and log in dir.
func StartOtelcol(dir string) (*Otelcol, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	o := &Otelcol{Port: port, dir: dir}
	return o, o.Start()
}

// Start starts the collector (again, after Stop) on the same port, writing a new file.
func (o *Otelcol) Start() error {
	bin, err := OtelcolBinary()
	if err != nil {
		return err
	}
	file := filepath.Join(o.dir, fmt.Sprintf("otlp-%d.jsonl", len(o.files)))
	conf := filepath.Join(o.dir, "otelcol.yaml")
	body := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
    traces:
      receivers: [otlp]
      exporters: [file]
`, addr(o.Port), file)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	o.files = append(o.files, file)
	cmd := exec.Command(bin, "--config", conf)
	if o.proc, err = start("otelcol", cmd, filepath.Join(o.dir, "otelcol.log")); err != nil {
		return err
	}
	return o.proc.waitReady(30*time.Second, func(ctx context.Context) error {
		// The receiver answers an empty export once its pipelines run.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, o.URL()+"/v1/logs", nil)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// URL is the OTLP/HTTP base URL to export to.
func (o *Otelcol) URL() string { return "http://" + addr(o.Port) }

// Stop shuts the collector down; the file exporter writes what it holds first.
func (o *Otelcol) Stop() error { return o.proc.stop(syscall.SIGTERM, 10*time.Second) }

// Export is one line of the file exporter's output: an OTLP JSON export request.
type Export struct {
	ResourceLogs []struct {
		Resource  OTLPResource `json:"resource"`
		ScopeLogs []struct {
			Scope      struct{ Name string } `json:"scope"`
			LogRecords []OTLPLog             `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
	ResourceSpans []struct {
		Resource   OTLPResource `json:"resource"`
		ScopeSpans []struct {
			Spans []OTLPSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

// OTLPResource is a resource's attributes.
type OTLPResource struct {
	Attributes []OTLPAttr `json:"attributes"`
}

// OTLPAttr is one attribute; only the value kinds Portcullis sends are read.
type OTLPAttr struct {
	Key   string `json:"key"`
	Value struct {
		String *string `json:"stringValue"`
		Int    *string `json:"intValue"` // OTLP JSON writes 64-bit integers as strings
		Bool   *bool   `json:"boolValue"`
	} `json:"value"`
}

// OTLPLog is a log record.
type OTLPLog struct {
	TimeUnixNano   string                       `json:"timeUnixNano"`
	SeverityNumber int                          `json:"severityNumber"`
	SeverityText   string                       `json:"severityText"`
	EventName      string                       `json:"eventName"`
	Body           struct{ StringValue string } `json:"body"`
	Attributes     []OTLPAttr                   `json:"attributes"`
}

// OTLPSpan is a span.
type OTLPSpan struct {
	TraceID      string     `json:"traceId"`
	SpanID       string     `json:"spanId"`
	ParentSpanID string     `json:"parentSpanId"`
	Name         string     `json:"name"`
	Kind         int        `json:"kind"`
	Attributes   []OTLPAttr `json:"attributes"`
	Status       struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
}

// Attr returns the attribute key's value as a string ("" when absent).
func Attr(attrs []OTLPAttr, key string) string {
	for _, a := range attrs {
		if a.Key != key {
			continue
		}
		switch {
		case a.Value.String != nil:
			return *a.Value.String
		case a.Value.Int != nil:
			return *a.Value.Int
		case a.Value.Bool != nil:
			return fmt.Sprint(*a.Value.Bool)
		}
	}
	return ""
}

// Exports reads what the collector wrote so far, in the order it was received.
func (o *Otelcol) Exports() ([]Export, error) {
	var out []Export
	for _, file := range o.files {
		b, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return out, err
		}
		for line := range bytes.Lines(b) {
			var e Export
			if json.Unmarshal(line, &e) == nil { // else a line being written
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// Logs returns every log record received, in the order received.
func (o *Otelcol) Logs() ([]OTLPLog, error) {
	exports, err := o.Exports()
	var out []OTLPLog
	for _, e := range exports {
		for _, rl := range e.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				out = append(out, sl.LogRecords...)
			}
		}
	}
	return out, err
}

// Spans returns every span received.
func (o *Otelcol) Spans() ([]OTLPSpan, error) {
	exports, err := o.Exports()
	var out []OTLPSpan
	for _, e := range exports {
		for _, rs := range e.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out, err
}
