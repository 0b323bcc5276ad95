package elevation

import (
	"context"
	"errors"
	"fmt"
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

// StaticBroker serves the static credentials of the configuration's resources.
type StaticBroker struct {
	creds map[string]Credentials
}

var _ CredentialBroker = (*StaticBroker)(nil)

// NewStaticBroker returns a broker for every resource of cfg with static credentials.
func NewStaticBroker(cfg *configs.Config) *StaticBroker {
	b := &StaticBroker{creds: map[string]Credentials{}}
	for _, r := range cfg.Resources {
		if s := r.Credentials.Static; s != nil {
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
