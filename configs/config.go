package configs

import (
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/human"
	"github.com/portcullis/portcullis/policy"
)

// Config is a whole Portcullis configuration file.
type Config struct {
	Version     int             `yaml:"version"`
	Server      Server          `yaml:"server"`
	Identity    Identity        `yaml:"identity"`
	Teams       []Team          `yaml:"teams"`
	OrgRoles    []OrgRole       `yaml:"org_roles"`
	Resources   []Resource      `yaml:"resources"`
	Roles       []Role          `yaml:"roles"`
	Defaults    policy.Defaults `yaml:"defaults"`
	Policies    []policy.Policy `yaml:"policies"`
	PolicyFiles []string        `yaml:"policy_files"`
	BreakGlass  BreakGlass      `yaml:"breakglass"`
	Notify      Notify          `yaml:"notify"`
	Store       Store           `yaml:"store"`
	Vault       Vault           `yaml:"vault"`
	Audit       Audit           `yaml:"audit"`
	Console     Console         `yaml:"console"`
	Telemetry   Telemetry       `yaml:"telemetry"`

	// Path is the file the configuration was loaded from.
	Path string `yaml:"-"`
	// Engine is the compiled policy set.
	Engine *policy.Engine `yaml:"-"`
}

// RequestURL is the console page of an approval request, elevation or break-glass
// session: the link every notice, notification and CLI message gives.
func (s *Server) RequestURL(id string) string {
	return strings.TrimRight(s.PublicURL, "/") + "/requests/" + url.PathEscape(id)
}

// Server configures the listeners.
type Server struct {
	// Listen is the address of the console and API.
	Listen string `yaml:"listen"`
	// PostgresListen is the address of the PostgreSQL front end; empty disables it.
	PostgresListen string `yaml:"postgres_listen"`
	// HTTPListen is the address of the HTTP front end, shared by every resource of kind
	// http and routed by the request's Host; empty disables it.
	HTTPListen string `yaml:"http_listen"`
	// PublicURL is how users reach the console; links in notices and notifications use it.
	PublicURL string `yaml:"public_url"`
	TLS       TLS    `yaml:"tls"`
	// MaxMessageBytes bounds one PostgreSQL protocol message (default 64 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// StartupTimeout bounds a PostgreSQL client's startup (default 10s).
	StartupTimeout Duration `yaml:"startup_timeout"`
	// ShutdownTimeout bounds the drain on SIGTERM (default 30s): sessions end as they
	// become idle; those still busy then are cut.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// SelfSigned makes Portcullis generate a throwaway certificate when no files are given.
	SelfSigned bool `yaml:"self_signed"`
}

// Identity configures how tokens become identities.
type Identity struct {
	OIDC         *OIDC         `yaml:"oidc"`
	StaticTokens []StaticToken `yaml:"static_tokens"`
}

// OIDC configures an OpenID Connect provider whose ID tokens Portcullis accepts.
type OIDC struct {
	Issuer       string `yaml:"issuer"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// CLIClientID is the public client `portcullis login` uses (loopback redirect with
	// PKCE, or the device flow); its ID tokens are accepted too.
	CLIClientID string   `yaml:"cli_client_id"`
	GroupsClaim string   `yaml:"groups_claim"`
	UserClaim   string   `yaml:"user_claim"`
	Scopes      []string `yaml:"scopes"`
}

// StaticToken is a long-lived token for a service identity or a demo user. Only the
// token's SHA-256 is stored.
type StaticToken struct {
	Subject     string   `yaml:"subject"`
	Email       string   `yaml:"email"`
	Groups      []string `yaml:"groups"`
	TokenSHA256 string   `yaml:"token_sha256"`
}

// Team is a set of users, by name or identity-provider group.
type Team struct {
	Name   string   `yaml:"name"`
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
}

// OrgRole is a standing role (for example security-reviewer) held by users, groups or
// whole teams.
type OrgRole struct {
	Name   string   `yaml:"name"`
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
	Teams  []string `yaml:"teams"`
}

// Resource is an upstream system reached through Portcullis.
type Resource struct {
	Name string `yaml:"name"`
	// Kind is postgres, http or kubernetes.
	Kind string `yaml:"kind"`
	// Upstream is host:port for postgres and a URL for http and kubernetes.
	Upstream string `yaml:"upstream"`
	// Database is the upstream database name for postgres (default: the resource name).
	Database      string            `yaml:"database"`
	Labels        map[string]string `yaml:"labels"`
	DefaultEffect string            `yaml:"default_effect"`
	Credentials   Credentials       `yaml:"credentials"`
	// AuditParams records statement parameter values in the audit log (off: only the
	// statement text and a digest of the parameters).
	AuditParams bool `yaml:"audit_params"`
	// Hosts are the host names an http resource is served on (the HTTP front end routes
	// by Host); HTTP sets its limits.
	Hosts []string     `yaml:"hosts"`
	HTTP  HTTPResource `yaml:"http"`
	// Kubernetes configures a kubernetes resource (its API server is Upstream).
	Kubernetes KubeResource `yaml:"kubernetes"`
}

// Ways a kubernetes resource reaches its API server for ordinary requests.
const (
	// KubeImpersonate: as the caller, by impersonation (Impersonate-User and -Group) with
	// Portcullis's own credential; the cluster's RBAC for the caller applies too.
	KubeImpersonate = "impersonate"
	// KubeFixed: with Portcullis's own credential as is (give it read-only rights).
	KubeFixed = "fixed"
)

// Ways a kubernetes resource answers a request that needs approval.
const (
	// KubeHoldAnswer answers at once with a Status naming the approval request; the
	// caller re-runs the identical request once it is approved.
	KubeHoldAnswer = "answer"
	// KubeHoldWait keeps the request open until it is decided (or hold_timeout passes),
	// for automations that cannot re-run.
	KubeHoldWait = "wait"
)

// KubeResource configures how a Kubernetes API server is fronted.
type KubeResource struct {
	// Listen is the address Portcullis serves this cluster's API on, over https.
	Listen string `yaml:"listen"`
	// PublicURL is how kubeconfigs reach Listen (default https://<listen>).
	PublicURL string `yaml:"public_url"`
	// ServerTLS is the listener's certificate; without it Portcullis generates a
	// self-signed one at start (kubeconfigs written by `portcullis kubeconfig` carry it).
	ServerTLS *ServerCert `yaml:"server_tls"`
	// TLS is how Portcullis verifies the API server (ca_file) and may authenticate to it
	// (a client certificate) besides credentials.
	TLS UpstreamTLS `yaml:"tls"`
	// Access is impersonate (default) or fixed.
	Access string `yaml:"access"`
	// ApprovedGroups are the groups an approved request runs in, besides the caller's
	// (impersonated): the cluster's RBAC grants them what approvals may allow, for that
	// request only. BreakGlassGroups are those of a break-glass session's requests.
	ApprovedGroups   []string `yaml:"approved_groups"`
	BreakGlassGroups []string `yaml:"break_glass_groups"`
	// Hold is answer (default) or wait; HoldTimeout bounds wait (default 15m).
	Hold        string   `yaml:"hold"`
	HoldTimeout Duration `yaml:"hold_timeout"`
	// MaxRequestBytes bounds a request body (default 3 MiB, as the API server's).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
}

// KubePublicURL is the URL kubeconfigs use for r.
func (r *Resource) KubePublicURL() string {
	if u := r.Kubernetes.PublicURL; u != "" {
		return strings.TrimSuffix(u, "/")
	}
	return "https://" + r.Kubernetes.Listen
}

// HTTPResource sets the limits of an http resource.
type HTTPResource struct {
	// MaxRequestBytes bounds a request body (default 1 MiB); larger ones get 413.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxResponseBytes bounds a response body (default 0: no bound): a larger declared
	// length gets 502, and a stream that runs past it is cut.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// Timeout bounds a request to the upstream, response included (default 30s).
	Timeout Duration `yaml:"timeout"`
	// Classes overrides the class a method gives a request, per route: for example
	// Vault's LIST, or a POST that only reads. The first route that matches decides.
	Classes []HTTPClass `yaml:"classes"`
	// TLS configures how Portcullis verifies an https upstream and authenticates to it.
	TLS UpstreamTLS `yaml:"tls"`
	// ServerTLS, when set, serves this resource's hosts over TLS on the HTTP listener
	// with this certificate (chosen by SNI).
	ServerTLS *ServerCert `yaml:"server_tls"`
	// Record keeps request and response bodies in the session recording (off: only their
	// digest and size), with the named JSON fields and headers redacted.
	Record HTTPRecord `yaml:"record"`
}

// HTTPClass gives requests that match methods and paths (policy path patterns) a class.
type HTTPClass struct {
	Methods []string `yaml:"methods"`
	Paths   []string `yaml:"paths"`
	Class   string   `yaml:"class"`
}

// UpstreamTLS is how Portcullis connects to an https upstream.
type UpstreamTLS struct {
	// CAFile is a PEM bundle of the CAs the upstream's certificate must chain to
	// (default: the system's).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate Portcullis presents.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name the certificate is checked against.
	ServerName string `yaml:"server_name"`
}

// ServerCert is a certificate and key in PEM files.
type ServerCert struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// HTTPRecord says what of an exchange's bodies is recorded.
type HTTPRecord struct {
	// Bodies records request and response bodies up to MaxBytes each (default 64 KiB;
	// longer ones are cut, and marked so).
	Bodies   bool  `yaml:"bodies"`
	MaxBytes int64 `yaml:"max_bytes"`
	// RedactFields are JSON object keys whose values are replaced by "[redacted]" at any
	// depth (in addition to password, token, secret and key-like names always redacted).
	RedactFields []string `yaml:"redact_fields"`
	// Headers are request and response headers recorded (never Authorization, Cookie
	// or the injected credential).
	Headers []string `yaml:"headers"`
}

// Credentials says where the upstream credentials of a resource come from.
type Credentials struct {
	Static *StaticCredentials `yaml:"static"`
	Vault  *VaultCredentials  `yaml:"vault"`
}

// HasRole reports whether the credentials differ under an elevation role (or
// BreakGlassCredentials).
func (c Credentials) HasRole(role string) bool {
	v := c.Vault
	if v == nil {
		return false
	}
	if _, ok := v.Roles[role]; ok {
		return true
	}
	if v.Token != nil {
		_, ok := v.Token.RolePolicies[role]
		return ok
	}
	return false
}

// StaticCredentials are fixed upstream credentials held in the configuration: a user name
// and password (postgres), or a header Portcullis adds to each request (http).
type StaticCredentials struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Header and Value: for http, the header the upstream authenticates by (for example
	// Authorization with "Bearer ...", or X-Api-Key), never shown to clients.
	Header string `yaml:"header"`
	Value  string `yaml:"value"`
}

// VaultCredentials names the Vault secret that mints upstream credentials.
type VaultCredentials struct {
	Path string `yaml:"path"`
	// Roles maps an elevation role to the path used while it is active.
	Roles map[string]string `yaml:"roles"`
	// ApprovedRole is a database role the credentials of Path are a NOINHERIT member of:
	// Portcullis switches to it (SET LOCAL ROLE) for exactly the execution of an approved
	// statement and back after it, so that the session's own credential stays least
	// privilege. Empty: approved statements run with the session's credential.
	ApprovedRole string `yaml:"approved_role"`

	// For http resources, the credential is either a Vault token Portcullis creates per
	// caller (Token; for Vault's own API), or a field of the secret read at Path (Field;
	// KV version 1 or 2). It is sent in Header (default X-Vault-Token for a token,
	// Authorization for a field), after Prefix (for example "Bearer ").
	Token  *VaultToken `yaml:"token"`
	Field  string      `yaml:"field"`
	Header string      `yaml:"header"`
	Prefix string      `yaml:"prefix"`
	// ApprovedPath is the secret an approved request runs with, for that request only
	// (default: Path).
	ApprovedPath string `yaml:"approved_path"`
	// CacheTTL bounds how long a secret read at Path is reused (default 1m).
	CacheTTL Duration `yaml:"cache_ttl"`

	// For kubernetes resources, Roles name paths of Vault's Kubernetes secrets engine
	// (kubernetes/creds/<role>): while an elevation grant of the role (or break-glass) is
	// what allows a request, it runs with a service-account token minted there, lasting
	// until the grant ends. KubernetesNamespace is where Vault makes the service account;
	// ClusterRoleBinding binds its role cluster-wide.
	KubernetesNamespace string `yaml:"kubernetes_namespace"`
	ClusterRoleBinding  bool   `yaml:"cluster_role_binding"`
}

// VaultToken is a Vault token Portcullis creates for each caller of an http resource,
// with the caller's name in its metadata (so Vault's own audit log names them).
type VaultToken struct {
	// Policies are the ordinary requests' token policies: keep them to what policy allows
	// without approval.
	Policies []string `yaml:"policies"`
	// ApprovedPolicies are those of the token an approved request runs with: created for
	// that request alone (one use), revoked after it.
	ApprovedPolicies []string `yaml:"approved_policies"`
	// RolePolicies maps an elevation role (or breakglass) to the policies its holders'
	// requests run with while the grant is active.
	RolePolicies map[string][]string `yaml:"role_policies"`
	// TTL of a caller's token (default 5m); it is reused until half of it is left.
	TTL Duration `yaml:"ttl"`
	// Role is the token role to create tokens with (auth/token/create/<role>); with none,
	// Portcullis's own token must be allowed to create children with these policies.
	Role string `yaml:"role"`
}

// Role is an elevation role that can be requested for a time.
type Role struct {
	Name          string             `yaml:"name"`
	Description   string             `yaml:"description"`
	Grants        []Grant            `yaml:"grants"`
	MaxDuration   Duration           `yaml:"max_duration"`
	Durations     []Duration         `yaml:"durations"`
	RequireReason bool               `yaml:"require_reason"`
	RequireTicket bool               `yaml:"require_ticket"`
	Quorum        *policy.QuorumSpec `yaml:"quorum"`
}

// Grant is what an elevation role gives: action classes on resources.
type Grant struct {
	Resources []string `yaml:"resources"`
	Actions   []string `yaml:"actions"`
}

// BreakGlass configures emergency access: who may break glass into what, for how long,
// and who reviews it afterwards.
type BreakGlass struct {
	// Who may break glass (principals); nobody when empty.
	Who policy.Principals `yaml:"who"`
	// Scopes are what they may break into: action classes on resources.
	Scopes []Grant `yaml:"scopes"`
	// Durations may be asked for (default 30m, 1h, 4h).
	Durations []Duration `yaml:"durations"`
	// MinReason is the shortest reason accepted, in characters (default 20).
	MinReason int `yaml:"min_reason"`
	// Reviewers review ended sessions (never the responder).
	Reviewers policy.Principals `yaml:"reviewers"`
	// ReviewSLA flags reviews not done within it (default 168h).
	ReviewSLA Duration `yaml:"review_sla"`
	// Budgets are break-glass sessions per team per quarter; over budget still grants,
	// and escalates.
	Budgets map[string]int `yaml:"budgets"`
	// EmergencyCredentialSHA256 is the SHA-256 of a sealed emergency credential: presented
	// with a request, it grants at any tier without approvers, and fires every alarm.
	EmergencyCredentialSHA256 string `yaml:"emergency_credential_sha256"`
}

// Notify configures where loud events (break-glass) are sent.
type Notify struct {
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is an HTTP endpoint that receives events, signed with HMAC-SHA256.
type Webhook struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
	// Format is json (default) or slack (an incoming-webhook message).
	Format string `yaml:"format"`
}

// Store says where approvals and grants live.
type Store struct {
	// Redis, when set, is a redis:// or rediss:// URL; otherwise the embedded store is used.
	Redis string `yaml:"redis"`
	// Sentinel, instead of Redis, finds the Redis primary through Redis Sentinel and
	// follows it across failovers.
	Sentinel *RedisSentinel `yaml:"sentinel"`
	// Cluster, instead of Redis or Sentinel, uses a Redis Cluster.
	Cluster *RedisCluster `yaml:"cluster"`
	// Path is the embedded store's directory.
	Path string `yaml:"path"`
}

// RedisCluster is a Redis Cluster, found through any of its nodes.
type RedisCluster struct {
	// Addrs are some of the cluster's nodes (host:port); the client learns the rest.
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	// TLS connects over TLS, verified with the system's roots.
	TLS bool `yaml:"tls"`
}

// RedisSentinel is a Redis primary found through Sentinel.
type RedisSentinel struct {
	// Master is the name the sentinels monitor the primary under.
	Master string `yaml:"master"`
	// Addrs are sentinels' host:port addresses.
	Addrs []string `yaml:"addrs"`
	// Username and Password authenticate to the Redis servers; SentinelUsername and
	// SentinelPassword to the sentinels.
	Username         string `yaml:"username"`
	Password         string `yaml:"password"`
	SentinelUsername string `yaml:"sentinel_username"`
	SentinelPassword string `yaml:"sentinel_password"`
	DB               int    `yaml:"db"`
	// TLS connects to the servers and sentinels over TLS, verified with the system's roots.
	TLS bool `yaml:"tls"`
}

// Vault configures the connection to HashiCorp Vault.
type Vault struct {
	Address string   `yaml:"address"`
	Token   string   `yaml:"token"`
	AppRole *AppRole `yaml:"approle"`
	// Kubernetes logs in with the pod's service account token (Vault's Kubernetes auth
	// method), for Portcullis running on Kubernetes.
	Kubernetes *VaultKubernetes `yaml:"kubernetes"`
	Timeout    Duration         `yaml:"timeout"`
}

// VaultKubernetes is Vault Kubernetes auth login material.
type VaultKubernetes struct {
	// Role is the Vault role bound to Portcullis's service account.
	Role string `yaml:"role"`
	// Mount is where the auth method is enabled (default kubernetes).
	Mount string `yaml:"mount"`
	// TokenFile is the service account token, read again at each login (projected tokens
	// rotate); default /var/run/secrets/kubernetes.io/serviceaccount/token.
	TokenFile string `yaml:"token_file"`
}

// AppRole is Vault AppRole login material.
type AppRole struct {
	RoleID   string `yaml:"role_id"`
	SecretID string `yaml:"secret_id"`
	Mount    string `yaml:"mount"`
}

// Audit configures the audit log.
type Audit struct {
	// Dir is where segment files are written.
	Dir string `yaml:"dir"`
	// SegmentMaxBytes rotates to a new segment when one grows past it.
	SegmentMaxBytes int64 `yaml:"segment_max_bytes"`
	// NoSync turns off fsync; only for throwaway demos.
	NoSync bool `yaml:"no_sync"`
	// Replica names this Portcullis in every event it writes; default: the host name
	// (the pod's name on Kubernetes).
	Replica string `yaml:"replica"`
	// Sinks mirror committed events to where security looks (a syslog collector, a JSON
	// lines file or standard output); the segments stay the record.
	Sinks []AuditSink `yaml:"sinks"`
	// Readers may read every session recording through the API; everyone may read
	// their own.
	Readers policy.Principals `yaml:"readers"`
}

// AuditSink is one place committed events are mirrored to.
type AuditSink struct {
	// Kind is syslog (RFC 5424, each event's JSON as the message) or jsonl (one event's
	// JSON per line, as stored).
	Kind string `yaml:"kind"`
	// Address is a syslog collector: tcp://host:port, tls://host:port or udp://host:port.
	Address string `yaml:"address"`
	// CAFile verifies a tls:// collector (default: the system's roots).
	CAFile string `yaml:"ca_file"`
	// Path is the jsonl file, appended to; "-" is standard output.
	Path string `yaml:"path"`
	// Events is all (default) or loud: break-glass and alert events only.
	Events string `yaml:"events"`
	// AppName is syslog's APP-NAME (default portcullis).
	AppName string `yaml:"app_name"`
	// Endpoint is an OpenTelemetry Collector's OTLP/HTTP base URL (kind otlp), such as
	// http://otel-collector:4318; events go to its /v1/logs.
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with each OTLP request (kind otlp), such as an API key.
	Headers map[string]string `yaml:"headers"`
}

// Telemetry configures what Portcullis exports about its own work.
type Telemetry struct {
	// Traces, when set, exports OpenTelemetry traces: a span per session, statement or
	// request, decision, approval wait and upstream call.
	Traces *Traces `yaml:"traces"`
}

// Traces is an OTLP/HTTP trace exporter.
type Traces struct {
	// Endpoint is the Collector's OTLP/HTTP base URL (http://host:4318); spans go to its
	// /v1/traces.
	Endpoint string            `yaml:"endpoint"`
	Headers  map[string]string `yaml:"headers"`
	// CAFile verifies an https:// endpoint (default: the system's roots).
	CAFile string `yaml:"ca_file"`
	// SampleRatio is the share of traces kept, 0 to 1 (default 1); a request that comes
	// with a sampled W3C traceparent is kept either way.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// Console configures the web console's sessions and sign-in.
type Console struct {
	// DevLogin shows a dev-only form at /login that signs in with a static token. Off
	// unless set; never for production.
	DevLogin bool `yaml:"dev_login"`
	// SessionTTL bounds a console session (default 8h); an OIDC session also ends when
	// its ID token expires, whichever is first.
	SessionTTL Duration `yaml:"session_ttl"`
	// SessionKey signs console session cookies (at least 32 bytes). Replicas behind one
	// address must share it; when empty each process picks a random key, and its
	// sessions end when it restarts.
	SessionKey string `yaml:"session_key"`
}

// Duration is a time.Duration written as a Go duration string ("15m", "1h30m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return human.Duration(time.Duration(d)) }

// Resource returns the resource named name, or nil.
func (c *Config) Resource(name string) *Resource {
	for i := range c.Resources {
		if c.Resources[i].Name == name {
			return &c.Resources[i]
		}
	}
	return nil
}
