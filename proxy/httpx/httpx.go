// Package httpx holds what the HTTP-speaking front ends (httpfront, kubefront) share about
// proxying HTTP: bounded request bodies, media types, the client TLS of an https upstream,
// and pooled copy buffers for their reverse proxies.
package httpx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/portcullis/portcullis/configs"
)

// ErrTooLarge: the request body is over the limit ReadBody was given.
var ErrTooLarge = errors.New("request body too large")

// ReadBody reads a request body of at most limit bytes (ErrTooLarge beyond).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	switch {
	case r.ContentLength > limit:
		return nil, ErrTooLarge
	case r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		return nil, nil
	case r.ContentLength > 0:
		// Known length: one allocation of exactly that size (net/http enforces the length).
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, ErrTooLarge
	}
	return b, err
}

// MediaType returns a Content-Type's media type, in lower case, without parameters.
func MediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// UpstreamTLS is the client TLS configuration of an https upstream: the CAs its
// certificate must chain to, the name it is checked against, a client certificate.
func UpstreamTLS(t configs.UpstreamTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// CopyBuffers lends reverse proxies their 32 KiB copy buffers: without a pool each
// response allocates (and clears, and later collects) one.
var CopyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool keeps buffers behind pointers, as sync.Pool wants, and the pointers
// themselves in a pool of their own: putting a slice in a pool would allocate its header.
type bufferPool struct{ pool, boxes sync.Pool }

func (p *bufferPool) Get() []byte {
	box := p.pool.Get().(*[]byte)
	b := *box
	*box = nil
	p.boxes.Put(box)
	return b
}

func (p *bufferPool) Put(b []byte) {
	box, _ := p.boxes.Get().(*[]byte)
	if box == nil {
		box = new([]byte)
	}
	*box = b
	p.pool.Put(box)
}
