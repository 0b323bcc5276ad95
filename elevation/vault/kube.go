package vault

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/elevation"
)

// minKubeTTL is the shortest token Kubernetes issues (TokenRequest refuses less).
const minKubeTTL = 10 * time.Minute

// KubeToken mints a service-account token for a kubernetes resource under role (an
// elevation role, or break-glass) from Vault's Kubernetes secrets engine, at the role's
// path in credentials.vault.roles. It asks for a lifetime until notAfter, but never less
// than Kubernetes allows: the caller revokes the lease (Release) when the grant ends, and
// Vault then deletes the service account it made, which ends the token with it. The
// credential's Username is the service account, Password its token.
func (b *Broker) KubeToken(ctx context.Context, resource, role string, notAfter time.Time) (elevation.Credentials, error) {
	res := b.resource(resource)
	if res == nil || res.Credentials.Vault == nil {
		return elevation.Credentials{}, fmt.Errorf("resource %s has no Vault roles", resource)
	}
	v := res.Credentials.Vault
	path, ok := v.Roles[role]
	if !ok || role == "" {
		return elevation.Credentials{}, fmt.Errorf("resource %s has no Vault path for role %q", resource, role)
	}
	ttl := max(time.Until(notAfter), minKubeTTL)
	s, err := b.client.Logical().WriteWithContext(ctx, path, map[string]any{
		"kubernetes_namespace": v.KubernetesNamespace, "cluster_role_binding": v.ClusterRoleBinding, "ttl": fmt.Sprintf("%ds", int(ttl.Seconds()))})
	if err != nil || s == nil {
		b.log.Warn("vault kubernetes token failed", "path", path, "err", err)
		return elevation.Credentials{}, fmt.Errorf("%w: could not mint a service-account token for %s: %v", elevation.ErrVaultUnavailable, resource, err)
	}
	token, _ := s.Data["service_account_token"].(string)
	sa, _ := s.Data["service_account_name"].(string)
	ns, _ := s.Data["service_account_namespace"].(string)
	if token == "" {
		return elevation.Credentials{}, fmt.Errorf("vault path %s gave no service_account_token", path)
	}
	c := elevation.Credentials{Username: "system:serviceaccount:" + ns + ":" + sa, Password: token, LeaseID: s.LeaseID}
	if s.LeaseDuration > 0 {
		c.Expiry = b.now().Add(time.Duration(s.LeaseDuration) * time.Second)
	}
	return c, nil
}
