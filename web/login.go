package web

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/proxy/identity"
)

// oidcSignIn is what the console needs of the authenticator for its own sign-in.
type oidcSignIn interface {
	Provider(ctx context.Context) (*oidc.Provider, error)
	AuthenticateIDToken(ctx context.Context, raw, nonce string) (*identity.Identity, error)
}

// loginTimeout bounds one sign-in round trip through the provider.
const loginTimeout = 10 * time.Minute

type loginData struct {
	Next     string
	OIDC     bool
	DevLogin bool
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	next := localPath(r.URL.Query().Get("next"))
	if c.me != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	p := s.newPage(c, "Sign in", "", &loginData{Next: next, OIDC: s.Config.Identity.OIDC != nil, DevLogin: s.Config.Console.DevLogin})
	return s.render(w, "login", p)
}

// localPath returns p if it is a path on this site, and "/" otherwise: the sign-in never
// sends anyone to another site.
func localPath(p string) string { return signed.LocalPath(p) }

func (s *Server) oauthConfig(ctx context.Context) (*oauth2.Config, oidcSignIn, error) {
	oc := s.Config.Identity.OIDC
	si, ok := s.Auth.(oidcSignIn)
	if oc == nil || !ok {
		return nil, nil, errStatus(http.StatusNotFound, "single sign-on is not configured")
	}
	p, err := si.Provider(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &oauth2.Config{
		ClientID: oc.ClientID, ClientSecret: oc.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: strings.TrimSuffix(s.Config.Server.PublicURL, "/") + "/auth/callback", Scopes: oc.Scopes,
	}, si, nil
}

// loginOIDC starts the authorization-code flow with PKCE, a state and a nonce, all kept in
// a short-lived signed cookie.
func (s *Server) loginOIDC(w http.ResponseWriter, r *http.Request, _ *consoleCtx) error {
	cfg, _, err := s.oauthConfig(r.Context())
	if err != nil {
		return err
	}
	st := &loginState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Next: localPath(r.URL.Query().Get("next")), Expires: s.Now().Add(loginTimeout)}
	s.setCookie(w, loginCookie, s.cookies.encode(loginCookie, st), st.Expires)
	http.Redirect(w, r, cfg.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
	return nil
}

// callback finishes the flow: state checked, code exchanged with the PKCE verifier, ID
// token verified (issuer, audience, expiry, signature, nonce).
func (s *Server) callback(w http.ResponseWriter, r *http.Request, _ *consoleCtx) error {
	var st loginState
	ck, err := r.Cookie(loginCookie)
	if err != nil || s.cookies.decode(loginCookie, ck.Value, &st) != nil || !s.Now().Before(st.Expires) {
		return errStatus(http.StatusBadRequest, "this sign-in expired or was started elsewhere; sign in again")
	}
	s.setCookie(w, loginCookie, "", time.Time{}) // one use
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		return errStatus(http.StatusBadRequest, "the sign-in state does not match; sign in again")
	}
	if e := q.Get("error"); e != "" {
		return errStatus(http.StatusUnauthorized, "the identity provider refused the sign-in: %s", e)
	}
	cfg, si, err := s.oauthConfig(r.Context())
	if err != nil {
		return err
	}
	tok, err := cfg.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		s.Log.Warn("console sign-in: code exchange failed", "err", err)
		return errStatus(http.StatusUnauthorized, "the identity provider did not accept the sign-in; sign in again")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return errStatus(http.StatusUnauthorized, "the identity provider returned no ID token")
	}
	id, err := si.AuthenticateIDToken(r.Context(), raw, st.Nonce)
	if err != nil {
		return err
	}
	if err := s.startSession(w, r, id); err != nil {
		return err
	}
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
	return nil
}

// loginToken signs in with a static token on the dev-only form.
func (s *Server) loginToken(w http.ResponseWriter, r *http.Request, _ *consoleCtx) error {
	if !s.Config.Console.DevLogin {
		return errStatus(http.StatusNotFound, "token sign-in is off (console.dev_login)")
	}
	id, err := s.Auth.Authenticate(r.Context(), r.PostForm.Get("token"))
	if err != nil {
		return err
	}
	if err := s.startSession(w, r, id); err != nil {
		return err
	}
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
	return nil
}

// startSession issues a new session (a new id, so a new form token) for id, once the
// sign-in is in the audit log: no audit event, no session.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, id *identity.Identity) error {
	sess := &session{ID: randomToken(), User: id.User, Email: id.Email, Groups: id.Groups, Source: id.Source,
		Expires: s.Now().Add(s.Config.Console.SessionTTL.D())}
	if !id.Expiry.IsZero() && id.Expiry.Before(sess.Expires) {
		sess.Expires = id.Expiry // a session never outlives the ID token it was made from
	}
	if s.Audit != nil {
		err := s.Audit.Append(r.Context(), &audit.Event{Type: audit.TypeConsoleSignIn, Actor: id.User, Result: "ok",
			Details: map[string]any{"source": id.Source, "client_addr": r.RemoteAddr, "teams": id.Teams}})
		if err != nil {
			s.Log.Error("console sign-in refused: the audit log cannot be written", "user", id.User, "err", err)
			return errStatus(http.StatusServiceUnavailable, "the audit log cannot be written; sign-in refused, try again")
		}
	}
	s.saveSession(w, sess)
	s.Log.Info("console sign-in", "user", id.User, "source", id.Source)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	if c.me != nil && s.Audit != nil {
		if err := s.Audit.Append(r.Context(), &audit.Event{Type: audit.TypeConsoleSignOut, Actor: c.me.User, Result: "ok"}); err != nil {
			s.Log.Error("audit write failed for a console sign-out", "user", c.me.User, "err", err)
		}
	}
	s.setCookie(w, sessionCookie, "", time.Time{})
	// Ended for every replica, so that a copy of the cookie is refused too.
	if c.me != nil {
		if err := s.Approvals.RevokeSession(r.Context(), c.sess.ID, c.sess.Expires); err != nil {
			s.Log.Error("could not end a console session in the store; its cookie stays valid until it expires", "user", c.me.User, "err", err)
			return errStatus(http.StatusServiceUnavailable, "signed out in this browser, but the session could not be ended everywhere: the approval store is unavailable; sign out again")
		}
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}
