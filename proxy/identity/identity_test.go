package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/testenv"
)

func demoConfig(t *testing.T, issuer string) *configs.Config {
	t.Helper()
	cfg, err := configs.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if issuer != "" {
		cfg.Identity.OIDC = &configs.OIDC{Issuer: issuer, ClientID: "portcullis", GroupsClaim: "groups", UserClaim: "email"}
	}
	return cfg
}

func TestStaticTokens(t *testing.T) {
	a, err := New(demoConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct{ token, user, team string }{
		{"alice-demo-token", "alice", "engineering"},
		{"bob-demo-token", "bob", "sre"},
		{"carol-demo-token", "carol", "security"},
		{" dave-demo-token\n", "dave", "engineering"},
	} {
		id, err := a.Authenticate(ctx, tc.token)
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		if id.User != tc.user || !id.InTeam(tc.team) || id.Source != SourceStatic {
			t.Errorf("%q -> %+v", tc.token, id)
		}
	}
	for _, bad := range []string{"", "alice-demo-tokeN", "alice", "a.b.c"} {
		_, err := a.Authenticate(ctx, bad)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("token %q: err = %v, want ErrInvalidToken", bad, err)
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error %q repeats the token", err)
		}
	}
}

// TestSignInNonceAndCLIAudience: the console's own sign-in needs the nonce it sent; the
// CLI's client is an accepted audience, other clients are not.
func TestSignInNonceAndCLIAudience(t *testing.T) {
	iss := testenv.NewIssuer(t)
	cfg := demoConfig(t, iss.URL)
	cfg.Identity.OIDC.CLIClientID = "portcullis-cli"
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := iss.Token(t, map[string]any{"sub": "u", "aud": "portcullis", "email": "erin@example.com", "nonce": "n-1"})
	if _, err := a.AuthenticateIDToken(ctx, tok, "n-1"); err != nil {
		t.Errorf("right nonce: %v", err)
	}
	for _, n := range []string{"n-2", "n-10"} {
		if _, err := a.AuthenticateIDToken(ctx, tok, n); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "nonce") {
			t.Errorf("nonce %s: %v", n, err)
		}
	}
	if _, err := a.AuthenticateIDToken(ctx, iss.Token(t, map[string]any{"sub": "u", "aud": "portcullis", "email": "e@x"}), "n-1"); err == nil {
		t.Error("a token without a nonce passes the sign-in")
	}
	if _, err := a.Authenticate(ctx, iss.Token(t, map[string]any{"sub": "u", "aud": "portcullis-cli", "email": "e@x"})); err != nil {
		t.Errorf("the CLI's audience: %v", err)
	}
	if _, err := a.Authenticate(ctx, iss.Token(t, map[string]any{"sub": "u", "aud": []string{"other", "third"}, "email": "e@x"})); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("another client's token: %v", err)
	}
}

func TestOIDC(t *testing.T) {
	iss := testenv.NewIssuer(t)
	now := time.Now()
	a, err := New(demoConfig(t, iss.URL), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := iss.Token(t, map[string]any{"sub": "u-1", "aud": "portcullis", "email": "erin@example.com", "groups": []string{"sre", "oncall"}})
	id, err := a.Authenticate(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "erin@example.com" || !slices.Equal(id.Teams, []string{"sre"}) || !id.InGroup("oncall") || id.Source != SourceOIDC || id.Expiry.IsZero() {
		t.Errorf("identity %+v", id)
	}

	foreign, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name  string
		token string
		why   string
	}{
		{"wrong audience", iss.Token(t, map[string]any{"sub": "u", "aud": "someone-else", "email": "e@x"}), "audience"},
		{"expired", iss.Token(t, map[string]any{"sub": "u", "aud": "portcullis", "email": "e@x", "exp": now.Add(-time.Minute).Unix()}), "expired"},
		{"wrong issuer", iss.Token(t, map[string]any{"iss": "https://evil.example", "aud": "portcullis", "email": "e@x"}), "different provider"},
		{"foreign key", testenv.SignToken(t, foreign, "test-key", iss.URL, map[string]any{"aud": "portcullis", "email": "e@x"}), "signature"},
		{"no user claim", iss.Token(t, map[string]any{"sub": "u", "aud": "portcullis"}), "no email claim"},
		{"tampered", good[:len(good)-4] + "AAAA", "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(ctx, tt.token)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("err = %v, want ErrInvalidToken saying %q", err, tt.why)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Error("the error repeats the token")
			}
		})
	}
}

func TestOIDCProviderDown(t *testing.T) {
	a, err := New(demoConfig(t, "http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(context.Background(), "x.y.z")
	if !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("err = %v, want ErrProviderUnavailable", err)
	}
}

// TestAccessTokenIsNotAnIDToken: a JWT access token from the real provider, signed by it,
// issued for the console's audience and carrying a user's claims, is still refused: bearer
// tokens must be ID tokens.
func TestAccessTokenIsNotAnIDToken(t *testing.T) {
	idp := testenv.StartOIDCProvider(t, "http://127.0.0.1:1/auth/callback")
	cfg := demoConfig(t, idp.Issuer)
	cfg.Identity.OIDC.ClientID, cfg.Identity.OIDC.UserClaim = "portcullis-console", "preferred_username"
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"api"}}
	req, _ := http.NewRequest("POST", idp.Issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("portcullis-machine", "machine-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != 200 || strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("no JWT access token from the provider: %d %q %q", resp.StatusCode, tok.Error, tok.AccessToken)
	}
	_, err = a.Authenticate(context.Background(), tok.AccessToken)
	if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "not an ID token") {
		t.Fatalf("an access token authenticated: %v", err)
	}
}
