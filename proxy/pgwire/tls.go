package pgwire

import (
	"crypto/tls"
	"fmt"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/selfsigned"
)

// TLSConfig returns the listener's TLS configuration: the configured certificate, a
// freshly generated self-signed one when self_signed is set, or nil (TLS declined).
func TLSConfig(c configs.TLS, hosts ...string) (*tls.Config, error) {
	switch {
	case c.CertFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("could not load the TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	case c.SelfSigned:
		cert, err := selfsigned.Certificate(hosts...)
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	return nil, nil
}
