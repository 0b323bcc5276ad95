package elevation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis/portcullis/configs"
)

// ErrNoCredentials means the broker has no credentials for the resource (or role).
var ErrNoCredentials = errors.New("no upstream credentials configured")

// Credentials open one upstream connection. They must never reach a client or a log.
type Credentials struct {
	Username string
	Password string
	// LeaseID and Expiry are set for credentials that expire (Vault); zero for static ones.
	LeaseID string
	Expiry  time.Time
}

// String hides the secret so that credentials printed by mistake give nothing away.
func (c Credentials) String() string {
	return fmt.Sprintf("credentials for %s (password hidden)", c.Username)
}

// GoString hides the secret from %#v as well.
func (c Credentials) GoString() string { return c.String() }

// CredentialBroker supplies upstream credentials for a resource, for the default
// connection (role "") or for an elevated role. KeepAlive keeps expiring credentials valid
// up to a deadline, never beyond; Release ends them (for Vault: revokes the lease) when the
// connection they opened is done.
type CredentialBroker interface {
	Credentials(ctx context.Context, resource, role string) (Credentials, error)
	KeepAlive(c Credentials, deadline time.Time)
	Release(ctx context.Context, c Credentials) error
}

// HeaderCredential is the credential of one request to an http upstream: a header and
// its value. Secret is the part of Value that must never reach a client or a log (the value
// without its prefix); the front end strips it from responses.
type HeaderCredential struct {
	Header string
	Value  string
	Secret string
	// Once marks a credential made for one request alone: ReleaseHeader revokes it once
	// the request is done.
	Once bool
	// Accessor names a Vault token (to revoke it without holding it).
	Accessor string
	Expiry   time.Time
}

// String hides the secret.
func (c HeaderCredential) String() string {
	return "credential in header " + c.Header + " (value hidden)"
}

// GoString hides the secret from %#v as well.
func (c HeaderCredential) GoString() string { return c.String() }

// HeaderBroker supplies the credential each request to an http resource is sent with: for
// user, under role (an elevation grant's role, BreakGlassCredentials, or "" for an
// ordinary request), or, when approved is set, for the one approved request.
type HeaderBroker interface {
	HeaderCredential(ctx context.Context, resource, user, role string, approved bool) (HeaderCredential, error)
	ReleaseHeader(ctx context.Context, c HeaderCredential) error
}

// StaticBroker serves the static credentials of the configuration's resources.
type StaticBroker struct {
	creds   map[string]Credentials
	headers map[string]HeaderCredential
}

var _ HeaderBroker = (*StaticBroker)(nil)

// HeaderCredential returns the resource's static header; the same for every request.
// A resource without one gets no credential (an upstream that needs none).
func (b *StaticBroker) HeaderCredential(_ context.Context, resource, _, _ string, _ bool) (HeaderCredential, error) {
	return b.headers[resource], nil
}

// ReleaseHeader does nothing: static credentials outlive requests.
func (b *StaticBroker) ReleaseHeader(context.Context, HeaderCredential) error { return nil }

var _ CredentialBroker = (*StaticBroker)(nil)

// NewStaticBroker returns a broker for every resource of cfg with static credentials.
func NewStaticBroker(cfg *configs.Config) *StaticBroker {
	b := &StaticBroker{creds: map[string]Credentials{}, headers: map[string]HeaderCredential{}}
	for _, r := range cfg.Resources {
		s := r.Credentials.Static
		switch {
		case s == nil:
		case (r.Kind == "http" || r.Kind == "kubernetes") && s.Header != "":
			b.headers[r.Name] = HeaderCredential{Header: s.Header, Value: s.Value, Secret: secretOf(s.Value)}
		default:
			b.creds[r.Name] = Credentials{Username: s.Username, Password: s.Password}
		}
	}
	return b
}

// KeepAlive does nothing: static credentials do not expire.
func (b *StaticBroker) KeepAlive(Credentials, time.Time) {}

// Release does nothing: static credentials outlive connections.
func (b *StaticBroker) Release(context.Context, Credentials) error { return nil }

// Credentials returns the resource's static credentials. Static credentials do not change
// with the role: an elevated session uses the same upstream user.
func (b *StaticBroker) Credentials(_ context.Context, resource, _ string) (Credentials, error) {
	c, ok := b.creds[resource]
	if !ok {
		return Credentials{}, fmt.Errorf("%w for resource %s", ErrNoCredentials, resource)
	}
	return c, nil
}

// ErrVaultUnavailable means Vault could not be reached or refused: new sessions that
// need credentials from it fail; open ones keep theirs until they end.
var ErrVaultUnavailable = errors.New("vault unavailable")

// secretOf returns the part of a header value that is secret: the value without an
// authorization scheme such as "Bearer " or "Basic ".
func secretOf(value string) string {
	if scheme, rest, ok := strings.Cut(value, " "); ok && rest != "" && !strings.ContainsAny(scheme, "=:") {
		return rest
	}
	return value
}
