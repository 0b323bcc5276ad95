package configs

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// BreakGlassCredentials is the key of resources[].credentials.vault.roles whose path
// break-glass sessions use.
const BreakGlassCredentials = "breakglass"

// Defaults applied by applyDefaults; docs/config.md lists them.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultGroupsClaim     = "groups"
	DefaultUserClaim       = "email"
	DefaultAuditDir        = "portcullis-data/audit"
	DefaultStorePath       = "portcullis-data/state"
	DefaultSegmentMaxBytes = 64 << 20
	DefaultVaultTimeout    = 10 * time.Second
	DefaultMaxMessageBytes = 64 << 20
	DefaultStartupTimeout  = 10 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	// An http resource's limits when it sets none.
	DefaultHTTPMaxRequestBytes = 1 << 20
	DefaultHTTPTimeout         = 30 * time.Second
	DefaultHTTPRecordBytes     = 64 << 10
	// A kubernetes resource's request body limit, as the API server's.
	DefaultKubeMaxRequestBytes = 3 << 20
	DefaultVaultCacheTTL       = time.Minute
	DefaultVaultTokenTTL       = 5 * time.Minute
)

func (c *Config) applyDefaults() {
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Server.PublicURL == "" {
		c.Server.PublicURL = "http://" + c.Server.Listen
	}
	if c.Server.MaxMessageBytes == 0 {
		c.Server.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Server.ShutdownTimeout == 0 {
		c.Server.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.Server.StartupTimeout == 0 {
		c.Server.StartupTimeout = Duration(DefaultStartupTimeout)
	}
	if o := c.Identity.OIDC; o != nil {
		if o.GroupsClaim == "" {
			o.GroupsClaim = DefaultGroupsClaim
		}
		if o.UserClaim == "" {
			o.UserClaim = DefaultUserClaim
		}
		if len(o.Scopes) == 0 {
			o.Scopes = []string{"openid", "email", "profile", "groups"}
		}
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		if r.Kind == "postgres" && r.Database == "" {
			r.Database = r.Name
		}
		if r.Kind == "kubernetes" {
			k := &r.Kubernetes
			if k.Access == "" {
				k.Access = KubeImpersonate
			}
			if k.Hold == "" {
				k.Hold = KubeHoldAnswer
			}
			if k.HoldTimeout == 0 {
				k.HoldTimeout = Duration(15 * time.Minute)
			}
			if k.MaxRequestBytes == 0 {
				k.MaxRequestBytes = DefaultKubeMaxRequestBytes
			}
		}
		if r.Kind == "http" {
			if r.HTTP.MaxRequestBytes == 0 {
				r.HTTP.MaxRequestBytes = DefaultHTTPMaxRequestBytes
			}
			if r.HTTP.Record.MaxBytes == 0 {
				r.HTTP.Record.MaxBytes = DefaultHTTPRecordBytes
			}
			if v := r.Credentials.Vault; v != nil {
				if v.Header == "" {
					v.Header = "Authorization"
					if v.Token != nil {
						v.Header = "X-Vault-Token"
					}
				}
				if v.CacheTTL == 0 {
					v.CacheTTL = Duration(DefaultVaultCacheTTL)
				}
				if v.Token != nil && v.Token.TTL == 0 {
					v.Token.TTL = Duration(DefaultVaultTokenTTL)
				}
			}
			if r.HTTP.Timeout == 0 {
				r.HTTP.Timeout = Duration(DefaultHTTPTimeout)
			}
		}
	}
	if c.Audit.Dir == "" {
		c.Audit.Dir = DefaultAuditDir
	}
	if c.Audit.SegmentMaxBytes == 0 {
		c.Audit.SegmentMaxBytes = DefaultSegmentMaxBytes
	}
	if c.Store.Path == "" {
		c.Store.Path = DefaultStorePath
	}
	if len(c.BreakGlass.Durations) == 0 {
		c.BreakGlass.Durations = []Duration{Duration(30 * time.Minute), Duration(time.Hour), Duration(4 * time.Hour)}
	}
	if c.BreakGlass.MinReason == 0 {
		c.BreakGlass.MinReason = 20
	}
	if c.BreakGlass.ReviewSLA == 0 {
		c.BreakGlass.ReviewSLA = Duration(7 * 24 * time.Hour)
	}
	for i := range c.Notify.Webhooks {
		if c.Notify.Webhooks[i].Format == "" {
			c.Notify.Webhooks[i].Format = "json"
		}
	}
	if c.Vault.AppRole != nil && c.Vault.AppRole.Mount == "" {
		c.Vault.AppRole.Mount = "approle"
	}
	if k := c.Vault.Kubernetes; k != nil {
		if k.Mount == "" {
			k.Mount = "kubernetes"
		}
		if k.TokenFile == "" {
			k.TokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
		}
	}
	if c.Console.SessionTTL == 0 {
		c.Console.SessionTTL = Duration(8 * time.Hour)
	}
	if c.Vault.Timeout == 0 {
		c.Vault.Timeout = Duration(DefaultVaultTimeout)
	}
}

// names checks that every name in a list is present and unique, and returns the names.
func names[T any](errs *Error, o origin, section string, items []T, name func(*T) string) []string {
	out := make([]string, 0, len(items))
	for i := range items {
		n := name(&items[i])
		switch {
		case n == "":
			errs.add(o.file, o.line(section, i), "%s[%d]: name is required", section, i)
		case slices.Contains(out, n):
			errs.add(o.file, o.line(section, i, "name"), "%s: duplicate name %q", section, n)
		}
		out = append(out, n)
	}
	return out
}

func (c *Config) validate(o origin, errs *Error) {
	if c.Version != 1 {
		errs.add(o.file, o.line("version"), "version: want 1, got %d (is this a Portcullis configuration?)", c.Version)
	}

	if c.Server.MaxMessageBytes < 8192 {
		errs.add(o.file, o.line("server", "max_message_bytes"), "server.max_message_bytes: want at least 8192")
	}

	// Identities.
	if oc := c.Identity.OIDC; oc != nil {
		if u, err := url.Parse(oc.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
			errs.add(o.file, o.line("identity", "oidc", "issuer"), "identity.oidc.issuer: want an https:// URL, got %q", oc.Issuer)
		}
		if oc.ClientID == "" {
			errs.add(o.file, o.line("identity", "oidc"), "identity.oidc.client_id is required")
		}
	}
	if k := c.Console.SessionKey; k != "" && len(k) < 32 {
		errs.add(o.file, o.line("console", "session_key"), "console.session_key: want at least 32 bytes, got %d", len(k))
	}
	names(errs, o.at("identity"), "static_tokens", c.Identity.StaticTokens, func(t *StaticToken) string { return t.Subject })
	for i, t := range c.Identity.StaticTokens {
		if b, err := hex.DecodeString(t.TokenSHA256); err != nil || len(b) != 32 {
			errs.add(o.file, o.line("identity", "static_tokens", i, "token_sha256"), "identity.static_tokens[%d].token_sha256: want 64 hex digits (sha256sum of the token)", i)
		}
	}

	teams := names(errs, o, "teams", c.Teams, func(t *Team) string { return t.Name })
	orgRoles := names(errs, o, "org_roles", c.OrgRoles, func(r *OrgRole) string { return r.Name })
	for i, r := range c.OrgRoles {
		for j, t := range r.Teams {
			if !slices.Contains(teams, t) {
				errs.add(o.file, o.line("org_roles", i, "teams", j), "org_roles[%d].teams: unknown team %q", i, t)
			}
		}
	}
	roles := names(errs, o, "roles", c.Roles, func(r *Role) string { return r.Name })
	if i := slices.Index(roles, BreakGlassCredentials); i >= 0 {
		errs.add(o.file, o.line("roles", i, "name"), "roles: %q is reserved for break-glass credentials", BreakGlassCredentials)
	}
	for i, r := range roles {
		if slices.Contains(orgRoles, r) {
			errs.add(o.file, o.line("roles", i, "name"), "roles: %q is also an org role; give them different names", r)
		}
	}

	// Resources.
	resources := names(errs, o, "resources", c.Resources, func(r *Resource) string { return r.Name })
	usesVault := false
	hosts := map[string]string{} // host -> resource, for kind http
	kubeListens := map[string]string{}
	for i, r := range c.Resources {
		at := func(path ...any) int { return o.line(append([]any{"resources", i}, path...)...) }
		if !slices.Contains(policy.ResourceKinds, r.Kind) {
			errs.add(o.file, at("kind"), "resources[%d].kind: want one of %s, got %q", i, strings.Join(policy.ResourceKinds, ", "), r.Kind)
		}
		switch {
		case r.Upstream == "":
			errs.add(o.file, at(), "resources[%d] (%s): upstream is required", i, r.Name)
		case r.Kind == "http" || r.Kind == "kubernetes":
			if u, err := url.Parse(r.Upstream); err != nil || u.Scheme == "" || u.Host == "" {
				errs.add(o.file, at("upstream"), "resources[%d].upstream: want a URL, got %q", i, r.Upstream)
			}
		case r.Kind == "postgres" && !strings.Contains(r.Upstream, ":"):
			errs.add(o.file, at("upstream"), "resources[%d].upstream: want host:port, got %q", i, r.Upstream)
		}
		if r.Kind == "kubernetes" {
			validateKube(errs, o, i, &r)
			if prev, dup := kubeListens[r.Kubernetes.Listen]; dup && r.Kubernetes.Listen != "" {
				errs.add(o.file, at("kubernetes", "listen"), "resources[%d].kubernetes.listen: %s is also where %s is served", i, r.Kubernetes.Listen, prev)
			}
			kubeListens[r.Kubernetes.Listen] = r.Name
		}
		if r.Kind == "http" {
			if len(r.Hosts) == 0 {
				errs.add(o.file, at(), "resources[%d] (%s): hosts is required for kind http (the host names it is served on)", i, r.Name)
			}
			for j, h := range r.Hosts {
				h = strings.ToLower(h)
				if prev, dup := hosts[h]; dup {
					errs.add(o.file, at("hosts", j), "resources[%d].hosts: %q is also a host of %s", i, h, prev)
				}
				hosts[h] = r.Name
			}
			if st := r.Credentials.Static; st != nil && (st.Header == "") != (st.Value == "") {
				errs.add(o.file, at("credentials", "static"), "resources[%d].credentials.static: give header and value together", i)
			}
			if r.HTTP.MaxRequestBytes < 0 || r.HTTP.MaxResponseBytes < 0 || r.HTTP.Timeout < 0 || r.HTTP.Record.MaxBytes < 0 {
				errs.add(o.file, at("http"), "resources[%d].http: limits must not be negative", i)
			}
			for j, c := range r.HTTP.Classes {
				if _, err := policy.ParseClass(c.Class); err != nil {
					errs.add(o.file, at("http", "classes", j, "class"), "resources[%d].http.classes[%d]: %v", i, j, err)
				}
				for k, p := range c.Paths {
					if _, err := policy.CompilePath(p); err != nil {
						errs.add(o.file, at("http", "classes", j, "paths", k), "resources[%d].http.classes[%d].paths: %v", i, j, err)
					}
				}
				if len(c.Methods) == 0 && len(c.Paths) == 0 {
					errs.add(o.file, at("http", "classes", j), "resources[%d].http.classes[%d]: give methods, paths or both", i, j)
				}
			}
			if t := r.HTTP.TLS; (t.CertFile == "") != (t.KeyFile == "") {
				errs.add(o.file, at("http", "tls"), "resources[%d].http.tls: give cert_file and key_file together", i)
			}
			if t := r.HTTP.ServerTLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
				errs.add(o.file, at("http", "server_tls"), "resources[%d].http.server_tls: cert_file and key_file are required", i)
			}
			if v := r.Credentials.Vault; v != nil {
				switch {
				case v.Token != nil && (v.Path != "" || v.Field != ""):
					errs.add(o.file, at("credentials", "vault"), "resources[%d].credentials.vault: give token, or path with field, not both", i)
				case v.Token != nil && len(v.Token.Policies) == 0:
					errs.add(o.file, at("credentials", "vault", "token"), "resources[%d].credentials.vault.token.policies is required", i)
				case v.Token == nil && v.Field == "":
					errs.add(o.file, at("credentials", "vault"), "resources[%d].credentials.vault: give token, or path with field (the secret's field that holds the credential)", i)
				}
				if v.Token != nil {
					for role := range v.Token.RolePolicies {
						if role != BreakGlassCredentials && !slices.Contains(roles, role) {
							errs.add(o.file, at("credentials", "vault", "token", "role_policies", role), "resources[%d].credentials.vault.token.role_policies: unknown role %q", i, role)
						}
					}
				}
			}
		}
		cr := r.Credentials
		if cr.Static != nil && cr.Vault != nil && r.Kind != "kubernetes" {
			errs.add(o.file, at("credentials"), "resources[%d].credentials: give static or vault, not both", i)
		}
		if v := cr.Vault; v != nil {
			usesVault = true
			if v.Path == "" && v.Token == nil && r.Kind != "kubernetes" {
				errs.add(o.file, at("credentials", "vault"), "resources[%d].credentials.vault.path is required", i)
			}
			for role := range v.Roles {
				if role != BreakGlassCredentials && !slices.Contains(roles, role) {
					errs.add(o.file, at("credentials", "vault", "roles", role), "resources[%d].credentials.vault.roles: unknown role %q", i, role)
				}
			}
		}
	}

	// Elevation roles.
	for i, r := range c.Roles {
		at := func(path ...any) int { return o.line(append([]any{"roles", i}, path...)...) }
		if len(r.Grants) == 0 {
			errs.add(o.file, at(), "roles[%d] (%s): grants is required", i, r.Name)
		}
		for j, g := range r.Grants {
			for k, res := range g.Resources {
				if !slices.Contains(resources, res) {
					errs.add(o.file, at("grants", j, "resources", k), "roles[%d].grants[%d]: unknown resource %q", i, j, res)
				}
			}
			if len(g.Actions) == 0 {
				errs.add(o.file, at("grants", j), "roles[%d].grants[%d]: actions is required", i, j)
			}
			for k, a := range g.Actions {
				if _, err := policy.ParseClass(a); err != nil {
					errs.add(o.file, at("grants", j, "actions", k), "roles[%d].grants[%d]: %v", i, j, err)
				}
			}
		}
		if r.MaxDuration <= 0 {
			errs.add(o.file, at("max_duration"), "roles[%d] (%s): max_duration is required", i, r.Name)
		}
		for j, d := range r.Durations {
			if d <= 0 || d > r.MaxDuration {
				errs.add(o.file, at("durations", j), "roles[%d].durations: %s is not between 0 and max_duration %s", i, d, r.MaxDuration)
			}
		}
		if r.Quorum == nil {
			errs.add(o.file, at(), "roles[%d] (%s): quorum is required", i, r.Name)
		} else {
			if _, err := policy.CompileQuorum(r.Quorum); err != nil {
				errs.add(o.file, at("quorum"), "roles[%d].quorum: %v", i, err)
			}
			check := func(list []string, known []string, what string, path ...any) {
				for k, n := range list {
					if !slices.Contains(known, n) {
						errs.add(o.file, at(append(path, k)...), "roles[%d].%s: unknown %s %q", i, strings.Join(strs(path), "."), what, n)
					}
				}
			}
			check(r.Quorum.RequiredTeams, teams, "team", "quorum", "required_teams")
			check(r.Quorum.Approvers.Teams, teams, "team", "quorum", "approvers", "teams")
			check(r.Quorum.RequiredRoles, orgRoles, "org role", "quorum", "required_roles")
		}
	}

	if c.Store.Redis != "" {
		if u, err := url.Parse(c.Store.Redis); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			errs.add(o.file, o.line("store", "redis"), "store.redis: want a redis:// or rediss:// URL")
		}
	}
	for i := range c.Audit.Sinks {
		sk := &c.Audit.Sinks[i]
		at := o.line("audit", "sinks", i)
		switch sk.Kind {
		case "syslog":
			u, err := url.Parse(sk.Address)
			if err != nil || (u.Scheme != "tcp" && u.Scheme != "tls" && u.Scheme != "udp") || u.Port() == "" {
				errs.add(o.file, at, "audit.sinks[%d].address: want tcp://, tls:// or udp://host:port", i)
			}
		case "jsonl":
			if sk.Path == "" {
				errs.add(o.file, at, "audit.sinks[%d].path: a file, or - for standard output", i)
			}
		case "otlp":
			if !httpURL(sk.Endpoint) {
				errs.add(o.file, at, "audit.sinks[%d].endpoint: want the Collector's OTLP/HTTP URL, such as http://otel-collector:4318", i)
			}
		default:
			errs.add(o.file, at, "audit.sinks[%d].kind: want syslog, jsonl or otlp", i)
		}
		switch sk.Events {
		case "":
			sk.Events = "all"
		case "all", "loud":
		default:
			errs.add(o.file, at, "audit.sinks[%d].events: want all or loud", i)
		}
		if sk.AppName == "" {
			sk.AppName = "portcullis"
		}
	}
	if tr := c.Telemetry.Traces; tr != nil {
		if !httpURL(tr.Endpoint) {
			errs.add(o.file, o.line("telemetry", "traces", "endpoint"), "telemetry.traces.endpoint: want the Collector's OTLP/HTTP URL, such as http://otel-collector:4318")
		}
		if r := tr.SampleRatio; r != nil && (*r < 0 || *r > 1) {
			errs.add(o.file, o.line("telemetry", "traces", "sample_ratio"), "telemetry.traces.sample_ratio: want a share from 0 to 1")
		}
	}
	if btoi(c.Store.Redis != "")+btoi(c.Store.Sentinel != nil)+btoi(c.Store.Cluster != nil) > 1 {
		errs.add(o.file, o.line("store"), "store: set one of redis, sentinel and cluster")
	}
	if cl := c.Store.Cluster; cl != nil {
		if len(cl.Addrs) == 0 {
			errs.add(o.file, o.line("store", "cluster"), "store.cluster.addrs: at least one node's host:port is required")
		}
		for i, a := range cl.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs.add(o.file, o.line("store", "cluster", "addrs", i), "store.cluster.addrs: %q is not host:port", a)
			}
		}
	}
	if sn := c.Store.Sentinel; sn != nil {
		if sn.Master == "" || len(sn.Addrs) == 0 {
			errs.add(o.file, o.line("store", "sentinel"), "store.sentinel: master and addrs (the sentinels' host:port) are required")
		}
		for i, a := range sn.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs.add(o.file, o.line("store", "sentinel", "addrs", i), "store.sentinel.addrs: %q is not host:port", a)
			}
		}
	}
	if usesVault && c.Vault.Address == "" {
		errs.add(o.file, o.line("vault"), "vault.address is required: resources take credentials from Vault")
	}
	if n := btoi(c.Vault.Token != "") + btoi(c.Vault.AppRole != nil) + btoi(c.Vault.Kubernetes != nil); n > 1 {
		errs.add(o.file, o.line("vault"), "vault: give one of token, approle and kubernetes")
	}
	if k := c.Vault.Kubernetes; k != nil && k.Role == "" {
		errs.add(o.file, o.line("vault", "kubernetes"), "vault.kubernetes.role: the Vault role bound to Portcullis's service account is required")
	}
	bg := c.BreakGlass
	for i, sc := range bg.Scopes {
		for k, res := range sc.Resources {
			if !slices.Contains(resources, res) {
				errs.add(o.file, o.line("breakglass", "scopes", i, "resources", k), "breakglass.scopes[%d]: unknown resource %q", i, res)
			}
		}
		for k, a := range sc.Actions {
			if _, err := policy.ParseClass(a); err != nil {
				errs.add(o.file, o.line("breakglass", "scopes", i, "actions", k), "breakglass.scopes[%d]: %v", i, err)
			}
		}
	}
	for _, l := range []struct {
		path  string
		teams []string
	}{{"who", bg.Who.Teams}, {"reviewers", bg.Reviewers.Teams}} {
		for k, t := range l.teams {
			if !slices.Contains(teams, t) {
				errs.add(o.file, o.line("breakglass", l.path, "teams", k), "breakglass.%s.teams: unknown team %q", l.path, t)
			}
		}
	}
	if h := bg.EmergencyCredentialSHA256; h != "" {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			errs.add(o.file, o.line("breakglass", "emergency_credential_sha256"), "breakglass.emergency_credential_sha256: want 64 hex digits")
		}
	}
	for team := range bg.Budgets {
		if !slices.Contains(teams, team) {
			errs.add(o.file, o.line("breakglass", "budgets", team), "breakglass.budgets: unknown team %q", team)
		}
	}
	for i, w := range c.Notify.Webhooks {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			errs.add(o.file, o.line("notify", "webhooks", i, "url"), "notify.webhooks[%d].url: want an http(s) URL", i)
		}
		if w.Format != "json" && w.Format != "slack" {
			errs.add(o.file, o.line("notify", "webhooks", i, "format"), "notify.webhooks[%d].format: want json or slack", i)
		}
	}
	for i, t := range c.Audit.Readers.Teams {
		if !slices.Contains(teams, t) {
			errs.add(o.file, o.line("audit", "readers", "teams", i), "audit.readers.teams: unknown team %q", t)
		}
	}
	if c.Audit.SegmentMaxBytes < 4096 {
		errs.add(o.file, o.line("audit", "segment_max_bytes"), "audit.segment_max_bytes: want at least 4096")
	}
}

func strs(path []any) []string {
	out := make([]string, len(path))
	for i, p := range path {
		out[i] = fmt.Sprint(p)
	}
	return out
}

// compile builds the policy engine, pointing each policy error at its line.
func (c *Config) compile(root origin, origins []origin, errs *Error) {
	set := &policy.Set{Policies: c.Policies, Defaults: c.Defaults}
	for _, r := range c.Resources {
		set.Resources = append(set.Resources, policy.Resource{Name: r.Name, Kind: r.Kind, Labels: r.Labels, DefaultEffect: r.DefaultEffect})
	}
	for _, t := range c.Teams {
		set.Teams = append(set.Teams, t.Name)
	}
	for _, r := range c.OrgRoles {
		set.Roles = append(set.Roles, r.Name)
	}
	for _, r := range c.Roles {
		set.Roles = append(set.Roles, r.Name)
	}
	engine, err := policy.Compile(set)
	if err == nil {
		c.Engine = engine
		return
	}
	for _, e := range unjoin(err) {
		var fe *policy.FieldError
		switch {
		case errors.As(e, &fe):
			o := origins[fe.Index]
			errs.add(o.file, o.line(fe.Path...), "%v", fe)
		case strings.HasPrefix(e.Error(), "defaults."):
			errs.add(root.file, root.line("defaults"), "%v", e)
		default:
			errs.add(root.file, root.line("resources"), "%v", e)
		}
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// validateKube checks a kubernetes resource's settings.
func validateKube(errs *Error, o origin, i int, r *Resource) {
	at := func(path ...any) int { return o.line(append([]any{"resources", i}, path...)...) }
	k := &r.Kubernetes
	if u, err := url.Parse(r.Upstream); err == nil && u.Scheme != "https" {
		errs.add(o.file, at("upstream"), "resources[%d].upstream: a Kubernetes API server is reached over https, got %q", i, r.Upstream)
	}
	if k.Listen == "" {
		errs.add(o.file, at("kubernetes"), "resources[%d].kubernetes.listen is required (the address Portcullis serves this cluster on, such as 127.0.0.1:8443)", i)
	} else if _, _, err := net.SplitHostPort(k.Listen); err != nil {
		errs.add(o.file, at("kubernetes", "listen"), "resources[%d].kubernetes.listen: want host:port, got %q", i, k.Listen)
	}
	if k.Access != KubeImpersonate && k.Access != KubeFixed {
		errs.add(o.file, at("kubernetes", "access"), "resources[%d].kubernetes.access: want %s or %s, got %q", i, KubeImpersonate, KubeFixed, k.Access)
	}
	if k.Hold != KubeHoldAnswer && k.Hold != KubeHoldWait {
		errs.add(o.file, at("kubernetes", "hold"), "resources[%d].kubernetes.hold: want %s or %s, got %q", i, KubeHoldAnswer, KubeHoldWait, k.Hold)
	}
	if k.MaxRequestBytes < 0 || k.HoldTimeout < 0 {
		errs.add(o.file, at("kubernetes"), "resources[%d].kubernetes: limits must not be negative", i)
	}
	if t := k.ServerTLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		errs.add(o.file, at("kubernetes", "server_tls"), "resources[%d].kubernetes.server_tls: cert_file and key_file are required", i)
	}
	if t := k.TLS; (t.CertFile == "") != (t.KeyFile == "") {
		errs.add(o.file, at("kubernetes", "tls"), "resources[%d].kubernetes.tls: give cert_file and key_file together", i)
	}
	if v := r.Credentials.Vault; v != nil {
		switch {
		case v.Path != "" || v.Token != nil || v.Field != "" || v.ApprovedPath != "":
			errs.add(o.file, at("credentials", "vault"), "resources[%d].credentials.vault: for kubernetes give roles (elevation role or breakglass -> kubernetes/creds/<role>) and kubernetes_namespace; ordinary requests use credentials.static", i)
		case len(v.Roles) == 0 || v.KubernetesNamespace == "":
			errs.add(o.file, at("credentials", "vault"), "resources[%d].credentials.vault: give roles and kubernetes_namespace (where Vault makes the service accounts)", i)
		}
	}
	switch st := r.Credentials.Static; {
	case st != nil && (st.Header == "") != (st.Value == ""):
		errs.add(o.file, at("credentials", "static"), "resources[%d].credentials.static: give header and value together", i)
	case (st == nil || st.Header == "") && k.TLS.CertFile == "":
		errs.add(o.file, at("credentials"), "resources[%d]: Portcullis needs its own credential for the API server: credentials.static (header: Authorization, value: Bearer <token>) or a client certificate in kubernetes.tls", i)
	}
}

// httpURL reports whether s is an http:// or https:// URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
