package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
)

// loginConfig is what GET /api/v1/login-config says about signing in from the CLI.
type loginConfig struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// cachedToken is a CLI sign-in kept for one server.
type cachedToken struct {
	IDToken string    `json:"id_token"`
	Expiry  time.Time `json:"expiry"`
	User    string    `json:"user"`
}

// tokenFile is where the CLI keeps its tokens: $PORTCULLIS_TOKEN_FILE, or token.json in
// the user's cache directory (~/.cache/portcullis), readable by the user only.
func tokenFile() (string, error) {
	if p := os.Getenv("PORTCULLIS_TOKEN_FILE"); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "portcullis", "token.json"), nil
}

func readTokens() (map[string]cachedToken, error) {
	p, err := tokenFile()
	if err != nil {
		return nil, err
	}
	out := map[string]cachedToken{}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); run portcullis login again", p, err)
	}
	return out, nil
}

func saveToken(server string, tok cachedToken) error {
	all, err := readTokens()
	if err != nil {
		all = map[string]cachedToken{}
	}
	all[serverKey(server)] = tok
	p, err := tokenFile()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(all, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func serverKey(server string) string { return strings.TrimRight(server, "/") }

// cachedFor returns the unexpired token kept for server, if any.
func cachedFor(server string, now time.Time) (cachedToken, bool) {
	all, err := readTokens()
	if err != nil {
		return cachedToken{}, false
	}
	t, ok := all[serverKey(server)]
	return t, ok && now.Add(30*time.Second).Before(t.Expiry)
}

// keptToken is the unexpired sign-in `portcullis login` keeps for server, or an error
// saying to sign in.
func keptToken(server string) (cachedToken, error) {
	t, ok := cachedFor(server, time.Now())
	if !ok {
		return t, fmt.Errorf("no unexpired sign-in for %s: run portcullis login --server %s", server, server)
	}
	return t, nil
}

func loginCmd() *cobra.Command {
	var server string
	var device, noBrowser bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in through the identity provider and keep a short-lived token for the CLI, psql and the API",
		Long: `Sign in through the server's OpenID Connect provider. By default a browser opens on the
provider's sign-in page and comes back to a one-time listener on 127.0.0.1 (authorization
code with PKCE); with --device, the provider's device flow is used instead (for machines
without a browser). The ID token is kept in ~/.cache/portcullis/token.json (or
$PORTCULLIS_TOKEN_FILE) until it expires; 'portcullis token' prints it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			lc, err := fetchLoginConfig(server)
			if err != nil {
				return err
			}
			provider, err := oidc.NewProvider(ctx, lc.Issuer)
			if err != nil {
				return fmt.Errorf("could not reach the identity provider %s: %w", lc.Issuer, err)
			}
			cfg := &oauth2.Config{ClientID: lc.ClientID, Endpoint: provider.Endpoint(), Scopes: lc.Scopes}
			out := cmd.OutOrStdout()
			var raw, nonce string
			if device {
				raw, err = deviceLogin(ctx, cfg, out)
			} else {
				nonce = rand.Text()
				raw, err = loopbackLogin(ctx, cfg, nonce, out, !noBrowser)
			}
			if err != nil {
				return err
			}
			idt, err := provider.Verifier(&oidc.Config{ClientID: lc.ClientID}).Verify(ctx, raw)
			if err != nil {
				return fmt.Errorf("the identity provider's token does not verify: %w", err)
			}
			if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
				return errors.New("the ID token is not for this sign-in (nonce mismatch)")
			}
			// Ask the server who this is: the token works, and the user sees their teams.
			var me struct {
				User  string   `json:"user"`
				Teams []string `json:"teams"`
			}
			if err := (&apiClient{server: server, token: raw}).do(http.MethodGet, "/whoami", nil, &me); err != nil {
				return fmt.Errorf("the server does not accept the new token: %w", err)
			}
			if err := saveToken(server, cachedToken{IDToken: raw, Expiry: idt.Expiry, User: me.User}); err != nil {
				return fmt.Errorf("could not keep the token: %w", err)
			}
			fmt.Fprintf(out, "Signed in to %s as %s (teams: %s) until %s.\n", server, me.User, strings.Join(me.Teams, ", "), idt.Expiry.Local().Format(time.RFC1123))
			fmt.Fprintf(out, "psql: PGPASSWORD=$(portcullis token) psql ...; API: Authorization: Bearer $(portcullis token)\n")
			return nil
		},
	}
	addServerFlag(cmd, &server)
	cmd.Flags().BoolVar(&device, "device", false, "use the provider's device flow instead of a browser on this machine")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the sign-in URL without opening a browser")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the sign-in")
	return cmd
}

func fetchLoginConfig(server string) (*loginConfig, error) {
	var lc loginConfig
	if err := (&apiClient{server: server}).send(http.MethodGet, "/login-config", "", nil, &lc); err != nil {
		return nil, fmt.Errorf("%s cannot sign in the CLI: %w", server, err)
	}
	return &lc, nil
}

// loopbackLogin runs the authorization-code flow with PKCE against a one-time listener on
// 127.0.0.1 (RFC 8252) and returns the ID token.
func loopbackLogin(ctx context.Context, cfg *oauth2.Config, nonce string, out io.Writer, openBrowser bool) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	cfg.RedirectURL = fmt.Sprintf("http://%s/callback", ln.Addr())
	state, verifier := rand.Text(), oauth2.GenerateVerifier()
	url := cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	type result struct {
		raw string
		err error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var res result
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			res.err = errors.New("the sign-in came back with another state; try again")
		case q.Get("error") != "":
			res.err = fmt.Errorf("the identity provider refused the sign-in: %s %s", q.Get("error"), q.Get("error_description"))
		default:
			tok, err := cfg.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				res.err = fmt.Errorf("the code exchange failed: %w", err)
			} else if res.raw, _ = tok.Extra("id_token").(string); res.raw == "" {
				res.err = errors.New("the identity provider returned no ID token")
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "Portcullis sign-in failed: %v\n", res.err)
		} else {
			fmt.Fprintln(w, "Signed in to Portcullis. You can close this tab.")
		}
		select {
		case done <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Fprintf(out, "Open this address to sign in:\n\n  %s\n\n", url)
	if openBrowser {
		if p, err := exec.LookPath("xdg-open"); err == nil {
			exec.Command(p, url).Start()
		}
	}
	select {
	case res := <-done:
		return res.raw, res.err
	case <-ctx.Done():
		return "", errors.New("timed out waiting for the sign-in")
	}
}

// deviceLogin runs the device authorization flow (RFC 8628) and returns the ID token.
func deviceLogin(ctx context.Context, cfg *oauth2.Config, out io.Writer) (string, error) {
	if cfg.Endpoint.DeviceAuthURL == "" {
		return "", errors.New("the identity provider does not offer the device flow; sign in without --device")
	}
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return "", fmt.Errorf("the device flow could not start: %w", err)
	}
	fmt.Fprintf(out, "On any device, open %s and enter the code %s", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "\n(or open %s)", da.VerificationURIComplete)
	}
	fmt.Fprintln(out)
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return "", fmt.Errorf("the device sign-in did not complete: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("the identity provider returned no ID token")
	}
	return raw, nil
}

func tokenCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print the token 'portcullis login' keeps for the server (for psql and the API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := keptToken(server)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.IDToken)
			return nil
		},
	}
	addServerFlag(cmd, &server)
	return cmd
}
