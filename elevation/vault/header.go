package vault

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
)

var _ elevation.HeaderBroker = (*Broker)(nil)

// headerCache holds the credentials of http resources that are reused across requests:
// each caller's token (per policy set), and each secret read from a path.
type headerCache struct {
	mu      sync.Mutex
	entries map[string]elevation.HeaderCredential // key: resource, user and policies, or resource and path
	minting map[string]*sync.Mutex                // one mint at a time per key
}

// HeaderCredential returns the credential of one request to an http resource. A resource
// with credentials.vault.token gets a Vault token made for the caller (their name in its
// metadata): reused while more than half of its TTL is left, and, for an approved request,
// made for that request alone (one use, revoked by ReleaseHeader). One with a path gets
// the secret's field, reused up to cache_ttl. Others get their static header.
func (b *Broker) HeaderCredential(ctx context.Context, resource, user, role string, approved bool) (elevation.HeaderCredential, error) {
	res := b.resource(resource)
	if res == nil || res.Credentials.Vault == nil || res.Kind == "kubernetes" {
		// A kubernetes resource's Vault roles mint grant tokens (KubeToken); its ordinary
		// requests use its static credential.
		return b.static.HeaderCredential(ctx, resource, user, role, approved)
	}
	v := res.Credentials.Vault
	if t := v.Token; t != nil {
		policies := t.Policies
		if p, ok := t.RolePolicies[role]; ok && role != "" {
			policies = p
		} else if approved && len(t.ApprovedPolicies) > 0 {
			policies = t.ApprovedPolicies
		}
		if approved {
			// The approved request's own token: one use, and no longer than the request may take.
			return b.mintToken(ctx, res, user, policies, 1, res.HTTP.Timeout.D()+30*time.Second)
		}
		key := resource + "\x00" + user + "\x00" + strings.Join(policies, ",")
		return b.cached(key, func() (elevation.HeaderCredential, error) {
			return b.mintToken(ctx, res, user, policies, 0, t.TTL.D())
		}, t.TTL.D()/2)
	}
	path := v.Path
	if p, ok := v.Roles[role]; ok && role != "" {
		path = p
	} else if approved && v.ApprovedPath != "" {
		path = v.ApprovedPath
	}
	return b.cached(resource+"\x00\x00"+path, func() (elevation.HeaderCredential, error) {
		return b.readField(ctx, res, path)
	}, 0)
}

// cached returns the credential under key while it has more than keep left before it
// expires (or, for one without expiry, until it does), minting a new one otherwise.
func (b *Broker) cached(key string, mint func() (elevation.HeaderCredential, error), keep time.Duration) (elevation.HeaderCredential, error) {
	c := &b.headers
	c.mu.Lock()
	if c.entries == nil {
		c.entries, c.minting = map[string]elevation.HeaderCredential{}, map[string]*sync.Mutex{}
	}
	m := c.minting[key]
	if m == nil {
		m = &sync.Mutex{}
		c.minting[key] = m
	}
	c.mu.Unlock()
	m.Lock() // callers of one key wait for one mint, not one each
	defer m.Unlock()
	c.mu.Lock()
	cred, ok := c.entries[key]
	c.mu.Unlock()
	if ok && b.now().Add(keep).Before(cred.Expiry) {
		return cred, nil
	}
	cred, err := mint()
	if err != nil {
		return cred, err
	}
	c.mu.Lock()
	c.entries[key] = cred
	c.mu.Unlock()
	return cred, nil
}

// mintToken creates a Vault token for user with policies: not renewable, its TTL fixed,
// uses bounded when uses > 0. The token's metadata names the caller and the resource, so
// Vault's own audit log shows who acted through Portcullis.
func (b *Broker) mintToken(ctx context.Context, res *configs.Resource, user string, policies []string, uses int, ttl time.Duration) (elevation.HeaderCredential, error) {
	v := res.Credentials.Vault
	no := false
	req := &vaultapi.TokenCreateRequest{
		Policies: policies, TTL: ttl.String(), ExplicitMaxTTL: ttl.String(), Renewable: &no, NumUses: uses,
		DisplayName: "portcullis-" + user,
		Metadata:    map[string]string{"portcullis_user": user, "portcullis_resource": res.Name},
	}
	var s *vaultapi.Secret
	var err error
	if v.Token.Role != "" {
		s, err = b.client.Auth().Token().CreateWithRoleWithContext(ctx, req, v.Token.Role)
	} else {
		s, err = b.client.Auth().Token().CreateWithContext(ctx, req)
	}
	if err != nil || s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		b.log.Warn("vault token creation failed", "resource", res.Name, "user", user, "policies", policies, "err", err)
		return elevation.HeaderCredential{}, fmt.Errorf("%w: could not create a token for %s", elevation.ErrVaultUnavailable, res.Name)
	}
	if extra := slices.DeleteFunc(slices.Clone(s.Auth.Policies), func(p string) bool { return p == "default" || slices.Contains(policies, p) }); len(extra) > 0 {
		// A token role may add policies; the request decided on these, so refuse more.
		b.revokeAccessor(s.Auth.Accessor)
		return elevation.HeaderCredential{}, fmt.Errorf("vault gave the token for %s policies it was not asked for (%s); check the token role", res.Name, strings.Join(extra, ", "))
	}
	tok := s.Auth.ClientToken
	c := elevation.HeaderCredential{Header: v.Header, Value: v.Prefix + tok, Secret: tok,
		Accessor: s.Auth.Accessor, Once: uses > 0, Expiry: b.now().Add(time.Duration(s.Auth.LeaseDuration) * time.Second)}
	return c, nil
}

// readField reads the secret at path (KV version 2 data is under "data") and returns its
// field as the credential.
func (b *Broker) readField(ctx context.Context, res *configs.Resource, path string) (elevation.HeaderCredential, error) {
	v := res.Credentials.Vault
	s, err := b.client.Logical().ReadWithContext(ctx, path)
	if err != nil || s == nil {
		b.log.Warn("vault read failed", "resource", res.Name, "path", path, "err", err)
		return elevation.HeaderCredential{}, fmt.Errorf("%w: could not read the credential of %s", elevation.ErrVaultUnavailable, res.Name)
	}
	data := s.Data
	if inner, ok := data["data"].(map[string]any); ok {
		data = inner
	}
	val, _ := data[v.Field].(string)
	if val == "" {
		return elevation.HeaderCredential{}, fmt.Errorf("vault path %s has no field %q for %s", path, v.Field, res.Name)
	}
	ttl := v.CacheTTL.D()
	if s.LeaseDuration > 0 {
		ttl = min(ttl, time.Duration(s.LeaseDuration)*time.Second)
	}
	return elevation.HeaderCredential{Header: v.Header, Value: v.Prefix + val, Secret: val, Expiry: b.now().Add(ttl)}, nil
}

// ReleaseHeader revokes a credential made for one request.
func (b *Broker) ReleaseHeader(ctx context.Context, c elevation.HeaderCredential) error {
	if !c.Once || c.Accessor == "" {
		return nil
	}
	if _, err := b.client.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": c.Accessor}); err != nil {
		return fmt.Errorf("%w: could not revoke a one-use token: %v", elevation.ErrVaultUnavailable, err)
	}
	return nil
}

func (b *Broker) revokeAccessor(accessor string) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Vault.Timeout.D())
	defer cancel()
	if err := b.ReleaseHeader(ctx, elevation.HeaderCredential{Accessor: accessor, Once: true}); err != nil {
		b.log.Error("could not revoke a token", "err", err)
	}
}

func (b *Broker) resource(name string) *configs.Resource {
	for i := range b.cfg.Resources {
		if b.cfg.Resources[i].Name == name {
			return &b.cfg.Resources[i]
		}
	}
	return nil
}

// revokeCached revokes the tokens kept for callers (at Close; they would expire anyway).
func (b *Broker) revokeCached() {
	c := &b.headers
	c.mu.Lock()
	var accessors []string
	for k, cred := range c.entries {
		if cred.Accessor != "" {
			accessors = append(accessors, cred.Accessor)
		}
		delete(c.entries, k)
	}
	c.mu.Unlock()
	for _, a := range accessors {
		b.revokeAccessor(a)
	}
}
