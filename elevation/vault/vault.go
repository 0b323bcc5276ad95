// Package vault is the credential broker that mints upstream credentials from HashiCorp
// Vault (the database secrets engine, or any secret with a username and password), with
// leases renewed no further than a session needs and revoked when it ends.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
)

// Broker mints upstream credentials from Vault's database secrets engine (or any
// secret with username and password), falling back to the configuration's static
// credentials for resources without a vault path. Leases are renewed no further than the
// deadline the caller gives, and revoked (synchronously) on Release.
type Broker struct {
	client *vaultapi.Client
	cfg    *configs.Config
	static *elevation.StaticBroker
	log    *slog.Logger
	now    func() time.Time

	headers headerCache

	mu        sync.Mutex
	renew     map[string]context.CancelFunc // lease id -> stop renewing
	closed    bool
	stopToken context.CancelFunc
}

var _ elevation.CredentialBroker = (*Broker)(nil)

// NewBroker logs in to Vault (token, or AppRole) as cfg.vault says.
func NewBroker(ctx context.Context, cfg *configs.Config, log *slog.Logger) (*Broker, error) {
	vc := vaultapi.DefaultConfig()
	vc.Address = cfg.Vault.Address
	vc.Timeout = cfg.Vault.Timeout.D()
	vc.MaxRetries = 1
	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	client.SetToken(cfg.Vault.Token)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{client: client, cfg: cfg, static: elevation.NewStaticBroker(cfg), log: log, now: time.Now, renew: map[string]context.CancelFunc{}}
	if err := b.login(ctx); err != nil {
		return nil, err
	}
	tctx, cancel := context.WithCancel(context.Background())
	b.stopToken = cancel
	go b.keepToken(tctx)
	return b, nil
}

// login gets Portcullis's own token with AppRole or the pod's service account token
// (Kubernetes auth); with a static token there is nothing to do.
func (b *Broker) login(ctx context.Context) error {
	var path, method string
	var data map[string]any
	switch v := b.cfg.Vault; {
	case v.AppRole != nil:
		path, method, data = "auth/"+v.AppRole.Mount+"/login", "AppRole", map[string]any{"role_id": v.AppRole.RoleID, "secret_id": v.AppRole.SecretID}
	case v.Kubernetes != nil:
		jwt, err := os.ReadFile(v.Kubernetes.TokenFile) // again at each login: projected tokens rotate
		if err != nil {
			return fmt.Errorf("%w: Kubernetes login: the service account token: %v", elevation.ErrVaultUnavailable, err)
		}
		path, method, data = "auth/"+v.Kubernetes.Mount+"/login", "Kubernetes", map[string]any{"role": v.Kubernetes.Role, "jwt": strings.TrimSpace(string(jwt))}
	default:
		return nil
	}
	s, err := b.client.Logical().WriteWithContext(ctx, path, data)
	if err != nil || s == nil || s.Auth == nil {
		return fmt.Errorf("%w: %s login failed: %v", elevation.ErrVaultUnavailable, method, err)
	}
	b.client.SetToken(s.Auth.ClientToken)
	return nil
}

// keepToken renews Portcullis's own Vault token at half its TTL; for AppRole and
// Kubernetes auth, it logs in again when renewal fails (past the token's max TTL). A non-expiring token (TTL 0) needs nothing.
func (b *Broker) keepToken(ctx context.Context) {
	for {
		s, err := b.client.Auth().Token().LookupSelfWithContext(ctx)
		wait := time.Minute
		if err == nil && s != nil {
			ttl, _ := s.TokenTTL()
			if ttl == 0 {
				return // does not expire
			}
			wait = max(ttl/2, time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := b.client.Auth().Token().RenewSelfWithContext(ctx, 0); err != nil {
			b.log.Warn("vault token renewal failed", "err", err)
			if err := b.login(ctx); err != nil {
				b.log.Error("vault login failed", "err", err)
			}
		}
	}
}

// Health reports whether Vault answers, initialized and unsealed, and still accepts
// Portcullis's own token.
func (b *Broker) Health(ctx context.Context) error {
	h, err := b.client.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return err
	case !h.Initialized:
		return errors.New("vault is not initialized")
	case h.Sealed:
		return errors.New("vault is sealed")
	}
	if _, err := b.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return fmt.Errorf("portcullis's vault token: %w", err)
	}
	return nil
}

// Close revokes the tokens made for callers of http resources and stops renewing
// Portcullis's own token and every lease.
func (b *Broker) Close() {
	b.revokeCached()
	b.stopToken()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for id, stop := range b.renew {
		stop()
		delete(b.renew, id)
	}
}

// Path returns the Vault path that mints credentials for resource under role ("" for the
// default connection), or "" when the resource does not use Vault.
func (b *Broker) Path(resource, role string) string {
	for _, r := range b.cfg.Resources {
		if r.Name != resource || r.Credentials.Vault == nil {
			continue
		}
		if p, ok := r.Credentials.Vault.Roles[role]; ok && role != "" {
			return p
		}
		return r.Credentials.Vault.Path
	}
	return ""
}

// Credentials reads fresh credentials for resource (under role, when the resource has a
// path for it).
func (b *Broker) Credentials(ctx context.Context, resource, role string) (elevation.Credentials, error) {
	path := b.Path(resource, role)
	if path == "" {
		return b.static.Credentials(ctx, resource, role)
	}
	s, err := b.client.Logical().ReadWithContext(ctx, path)
	if err != nil || s == nil {
		b.log.Warn("vault read failed", "path", path, "err", err)
		return elevation.Credentials{}, fmt.Errorf("%w: could not read credentials for %s", elevation.ErrVaultUnavailable, resource)
	}
	user, _ := s.Data["username"].(string)
	pass, _ := s.Data["password"].(string)
	if user == "" || pass == "" {
		return elevation.Credentials{}, fmt.Errorf("vault path %s gave no username and password", path)
	}
	c := elevation.Credentials{Username: user, Password: pass, LeaseID: s.LeaseID}
	if s.LeaseDuration > 0 {
		c.Expiry = b.now().Add(time.Duration(s.LeaseDuration) * time.Second)
	}
	return c, nil
}

// KeepAlive renews c's lease until deadline (never beyond it) or until Release, whichever
// comes first. Renewal failures are logged; the lease then ends at its own expiry.
func (b *Broker) KeepAlive(c elevation.Credentials, deadline time.Time) {
	if c.LeaseID == "" || c.Expiry.IsZero() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		return
	}
	b.renew[c.LeaseID] = cancel
	b.mu.Unlock()
	go func() {
		expiry := c.Expiry
		for {
			remaining := deadline.Sub(b.now())
			if remaining <= 0 || !expiry.Before(deadline) {
				return // the lease already lasts to the deadline
			}
			wait := max(time.Until(expiry)/2, time.Second)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			inc := int(min(time.Until(deadline), 24*time.Hour).Seconds())
			if inc <= 0 {
				return
			}
			s, err := b.client.Sys().RenewWithContext(ctx, c.LeaseID, inc)
			if err != nil || s == nil {
				b.log.Warn("vault lease renewal failed", "err", err)
				return
			}
			expiry = b.now().Add(time.Duration(s.LeaseDuration) * time.Second)
		}
	}()
}

// Release revokes c's lease in Vault and waits until Vault has acted on it (for the
// database engine: the upstream role is dropped).
func (b *Broker) Release(ctx context.Context, c elevation.Credentials) error {
	if c.LeaseID == "" {
		return nil
	}
	b.mu.Lock()
	if stop := b.renew[c.LeaseID]; stop != nil {
		stop()
		delete(b.renew, c.LeaseID)
	}
	b.mu.Unlock()
	if _, err := b.client.Logical().WriteWithContext(ctx, "sys/leases/revoke", map[string]any{"lease_id": c.LeaseID, "sync": true}); err != nil {
		return fmt.Errorf("%w: could not revoke a lease: %v", elevation.ErrVaultUnavailable, err)
	}
	return nil
}
