package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
)

// Errors callers branch on.
var (
	// ErrInvalidToken means the token is not one Portcullis accepts: unknown, malformed,
	// expired, or signed by someone else. Clients get this error's text and nothing more.
	ErrInvalidToken = errors.New("invalid token")
	// ErrProviderUnavailable means the OIDC provider could not be reached to verify a token.
	ErrProviderUnavailable = errors.New("identity provider unavailable")
)

// Source says how an identity was established.
const (
	SourceStatic = "static"
	SourceOIDC   = "oidc"
)

// Identity is an authenticated user or service with the teams and roles the configuration
// gives it.
type Identity struct {
	policy.Subject
	Source string
	// Expiry is when the token stops being valid; zero for static tokens.
	Expiry time.Time
}

type staticEntry struct {
	hash [sha256.Size]byte
	// subject is the token's subject, worked out once: its slices are clipped, so that
	// an append to a copy's never writes into them.
	subject policy.Subject
}

// Authenticator verifies tokens. It is safe for concurrent use.
type Authenticator struct {
	cfg    *configs.Config
	static []staticEntry

	oidcCfg  *configs.OIDC
	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	now      func() time.Time
}

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithClock makes the Authenticator read time from now, for tests of expiry.
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// New returns an Authenticator for the identities in cfg. It does not contact the OIDC
// provider; discovery happens on the first OIDC token.
func New(cfg *configs.Config, opts ...Option) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, oidcCfg: cfg.Identity.OIDC, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	for i := range cfg.Identity.StaticTokens {
		t := &cfg.Identity.StaticTokens[i]
		b, err := hex.DecodeString(t.TokenSHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("static token of %s: token_sha256 is not a SHA-256", t.Subject)
		}
		e := staticEntry{subject: *cfg.Subject(t.Subject, t.Email, t.Groups)}
		e.subject.Groups, e.subject.Teams, e.subject.Roles = slices.Clip(e.subject.Groups), slices.Clip(e.subject.Teams), slices.Clip(e.subject.Roles)
		copy(e.hash[:], b)
		a.static = append(a.static, e)
	}
	return a, nil
}

// Authenticate returns the identity token stands for. It fails with an error wrapping
// ErrInvalidToken when the token is not valid, and ErrProviderUnavailable when the OIDC
// provider cannot be reached to tell.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*Identity, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, fmt.Errorf("%w: no token given", ErrInvalidToken)
	}
	if id := a.static1(token); id != nil {
		return id, nil
	}
	if a.oidcCfg == nil || strings.Count(token, ".") != 2 {
		return nil, fmt.Errorf("%w: unknown token", ErrInvalidToken)
	}
	return a.verifyOIDC(ctx, token, "")
}

// static1 looks the token up among the static tokens. Every configured hash is compared,
// in constant time, whatever matches, so timing says nothing about which entry matched.
func (a *Authenticator) static1(token string) *Identity {
	sum := sha256.Sum256([]byte(token))
	var found *staticEntry
	for i := range a.static {
		if subtle.ConstantTimeCompare(sum[:], a.static[i].hash[:]) == 1 {
			found = &a.static[i]
		}
	}
	if found == nil {
		return nil
	}
	return &Identity{Subject: found.subject, Source: SourceStatic}
}

// Provider returns the configured OIDC provider, discovering it on first use; nil and no
// error when no provider is configured.
func (a *Authenticator) Provider(ctx context.Context) (*oidc.Provider, error) {
	if a.oidcCfg == nil {
		return nil, nil
	}
	if _, err := a.oidcVerifier(ctx); err != nil {
		return nil, err
	}
	return a.provider, nil
}

func (a *Authenticator) oidcVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.verifier != nil {
		return a.verifier, nil
	}
	p, err := oidc.NewProvider(ctx, a.oidcCfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	// The audience is checked below: the console's client or the CLI's.
	a.provider, a.verifier = p, p.Verifier(&oidc.Config{SkipClientIDCheck: true, Now: a.now})
	return a.verifier, nil
}

// AuthenticateIDToken verifies an ID token from the console's own sign-in and checks that
// it carries nonce.
func (a *Authenticator) AuthenticateIDToken(ctx context.Context, raw, nonce string) (*Identity, error) {
	if a.oidcCfg == nil {
		return nil, fmt.Errorf("%w: no OIDC provider is configured", ErrInvalidToken)
	}
	return a.verifyOIDC(ctx, raw, nonce)
}

func (a *Authenticator) verifyOIDC(ctx context.Context, token, nonce string) (*Identity, error) {
	v, err := a.oidcVerifier(ctx)
	if err != nil {
		return nil, err
	}
	idt, err := v.Verify(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if !a.audienceOK(idt.Audience) {
		return nil, fmt.Errorf("%w: the audience is another client", ErrInvalidToken)
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("%w: the nonce does not match this sign-in", ErrInvalidToken)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: unreadable claims", ErrInvalidToken)
	}
	if why := notIDToken(token, claims, idt.Audience, a.oidcCfg.ClientID, a.oidcCfg.CLIClientID); why != "" {
		return nil, fmt.Errorf("%w: not an ID token (%s); present the ID token from portcullis login", ErrInvalidToken, why)
	}
	user, _ := claims[a.oidcCfg.UserClaim].(string)
	if user == "" {
		return nil, fmt.Errorf("%w: the token has no %s claim", ErrInvalidToken, a.oidcCfg.UserClaim)
	}
	email, _ := claims["email"].(string)
	var groups []string
	switch g := claims[a.oidcCfg.GroupsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	return &Identity{Subject: *a.cfg.Subject(user, email, groups), Source: SourceOIDC, Expiry: idt.Expiry}, nil
}

// audienceOK reports whether the token was issued to the console's client or the CLI's.
func (a *Authenticator) audienceOK(aud []string) bool {
	for _, x := range aud {
		if x == a.oidcCfg.ClientID || (a.oidcCfg.CLIClientID != "" && x == a.oidcCfg.CLIClientID) {
			return true
		}
	}
	return false
}

// notIDToken says why a token the provider signed for one of our audiences is not an ID
// token, or "" when it is one. Providers sign access tokens with the same keys: an access
// token is explicitly typed at+jwt (RFC 9068, RFC 8725) or carries what only access
// tokens carry (client_id, scope, Keycloak's typ claim other than ID); an ID token for
// several audiences names the client it was issued to in azp (OpenID Connect Core 3.1.3.7).
func notIDToken(raw string, claims map[string]any, aud []string, clients ...string) string {
	if head, _, ok := strings.Cut(raw, "."); ok {
		var h struct {
			Typ string `json:"typ"`
		}
		if b, err := base64.RawURLEncoding.DecodeString(head); err == nil && json.Unmarshal(b, &h) == nil {
			if strings.TrimPrefix(strings.ToLower(h.Typ), "application/") == "at+jwt" {
				return "its type is " + h.Typ
			}
		}
	}
	for _, c := range []string{"client_id", "scope", "scp", "cid"} {
		if _, ok := claims[c]; ok {
			return "it has a " + c + " claim, as access tokens do"
		}
	}
	if t, ok := claims["typ"].(string); ok && !strings.EqualFold(t, "ID") {
		return "its typ claim is " + t
	}
	if len(aud) > 1 {
		azp, _ := claims["azp"].(string)
		if !slices.Contains(clients, azp) || azp == "" {
			return "it has several audiences and was not issued to Portcullis (azp)"
		}
	}
	return ""
}
