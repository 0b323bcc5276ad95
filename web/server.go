package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// Authenticator turns a bearer token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*identity.Identity, error)
}

// Server serves the API.
type Server struct {
	Config    *configs.Config
	Auth      Authenticator
	Approvals *elevation.Approvals
	Audit     *audit.Log
	Log       *slog.Logger
	Now       func() time.Time
	// ClassifySQL decides what sql does on a PostgreSQL resource as the proxy does (what
	// the upstream declares about its functions, the row estimate); nil classifies the
	// text alone. ok is false when the proxy has no such resource.
	ClassifySQL func(resource, sql string) (act *policy.Action, ok bool)
	// Keys sign the console's cookies and the tickets that sign a browser in to an admin
	// API on the HTTP front end (shared with it); nil: from console.session_key.
	Keys *signed.Signer
	// KubeCA returns the certificate authority (PEM) of a kubernetes resource's listener,
	// for kubeconfigs; nil when no Kubernetes front end runs.
	KubeCA func(resource string) ([]byte, error)

	// Metrics, when set, are the audit log's event counts /metrics serves with the rest.
	Metrics *EventMetrics

	// Ready are the checks /readyz runs: the replica takes traffic only while each passes
	// (the shared store, Vault, the audit log). None: always ready once serving.
	Ready []ReadyCheck

	// svc is the approvals service layer both the API and the console call.
	svc       *elevation.Service
	templates map[string]*template.Template
	cookies   *signer
}

// Handler returns the HTTP handler with every route.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	r := mux.NewRouter()
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet)
	api := r.PathPrefix("/api/v1").Subrouter()
	api.Handle("/whoami", s.authed(s.whoami)).Methods(http.MethodGet)
	api.Handle("/login-config", s.handle(s.loginConfig)).Methods(http.MethodGet)
	api.Handle("/decisions", s.authed(s.decide)).Methods(http.MethodPost)
	api.Handle("/sessions", s.authed(s.sessions)).Methods(http.MethodGet)
	if s.Approvals != nil {
		api.Handle("/breakglass/stats", s.authed(s.breakGlassStats)).Methods(http.MethodGet)
		r.Handle("/metrics", s.metricsHandler()).Methods(http.MethodGet)
	}
	api.Handle("/sessions/{id}/recording", s.authed(s.recording)).Methods(http.MethodGet)
	api.Handle("/sessions/{id}/cast", s.authed(s.cast)).Methods(http.MethodGet)
	api.Handle("/resources/{name}/kubeconfig", s.authed(s.kubeconfig)).Methods(http.MethodGet)
	if s.Approvals != nil {
		s.svc = &elevation.Service{Approvals: s.Approvals, Config: s.Config, Audit: s.Audit, Log: s.Log, Admin: s.isAdmin}
		s.registerApprovals(api)
	}
	s.registerConsole(r)
	r.NotFoundHandler = s.handle(func(http.ResponseWriter, *http.Request) error { return errNotFound })
	return r
}

// httpError is an error with the status and message a client may see.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errStatus(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

var errNotFound = errStatus(http.StatusNotFound, "not found")

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// writeError is the one place errors become API responses (statusOf maps them).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusOf(err)
	switch id := mux.Vars(r)["id"]; {
	case errors.Is(err, identity.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
		status, msg = http.StatusUnauthorized, "invalid or missing token"
	case errors.Is(err, identity.ErrProviderUnavailable):
		status, msg = http.StatusServiceUnavailable, "identity provider unavailable; try again"
	case errors.Is(err, elevation.ErrNotFound) && id != "":
		msg = fmt.Sprintf("no approval request %q that you may see; list those you may see with: portcullis approvals list --state all", id)
	case status == http.StatusInternalServerError:
		s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

type ctxKey struct{}

// authed requires a valid bearer token and puts the identity in the request context.
func (s *Server) authed(h handlerFunc) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return fmt.Errorf("%w: no bearer token", identity.ErrInvalidToken)
		}
		id, err := s.Auth.Authenticate(r.Context(), tok)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

func caller(r *http.Request) *identity.Identity {
	return r.Context().Value(ctxKey{}).(*identity.Identity)
}

// loginConfig tells the CLI how to sign in: the provider and the CLI's public client. It
// is public, as a provider's discovery document is.
func (s *Server) loginConfig(w http.ResponseWriter, _ *http.Request) error {
	oc := s.Config.Identity.OIDC
	if oc == nil || oc.CLIClientID == "" {
		return errStatus(http.StatusNotFound, "this server has no CLI sign-in (identity.oidc.cli_client_id); use a token")
	}
	return writeJSON(w, http.StatusOK, map[string]any{"issuer": oc.Issuer, "client_id": oc.CLIClientID, "scopes": oc.Scopes})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	id := caller(r)
	out := map[string]any{
		"user": id.User, "email": id.Email, "groups": id.Groups, "teams": id.Teams, "roles": id.Roles, "source": id.Source,
	}
	if !id.Expiry.IsZero() {
		out["expiry"] = id.Expiry
	}
	return writeJSON(w, http.StatusOK, out)
}

// decisionRequest asks what policy would decide for the caller; nothing is executed.
type decisionRequest struct {
	Resource string `json:"resource"`
	SQL      string `json:"sql"`
	Action   *struct {
		Class         string   `json:"class"`
		Tables        []string `json:"tables"`
		EstimatedRows *int64   `json:"estimated_rows"`
		Method        string   `json:"method"`
		Path          string   `json:"path"`
	} `json:"action"`
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request) error {
	var req decisionRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if s.Config.Engine.Resource(req.Resource) == nil {
		return errStatus(http.StatusNotFound, "no resource %q", req.Resource)
	}
	var act *policy.Action
	switch {
	case req.SQL != "" && req.Action != nil:
		return errStatus(http.StatusUnprocessableEntity, "give sql or action, not both")
	case req.SQL != "":
		act = pgsql.Classify(req.SQL)
		if s.ClassifySQL != nil {
			if a, ok := s.ClassifySQL(req.Resource, req.SQL); ok {
				act = a
			}
		}
	case req.Action != nil:
		c, err := policy.ParseClass(req.Action.Class)
		if err != nil {
			return errStatus(http.StatusUnprocessableEntity, "%v", err)
		}
		act = &policy.Action{Class: c, Tables: req.Action.Tables, EstimatedRows: -1, Method: req.Action.Method, Path: req.Action.Path}
		if req.Action.EstimatedRows != nil {
			act.EstimatedRows = *req.Action.EstimatedRows
		}
	default:
		return errStatus(http.StatusUnprocessableEntity, "give sql or action")
	}
	id := caller(r)
	var d policy.Decision
	// The gate the proxy decides through: grants' roles and break-glass included.
	v := (&gate.Gate{Config: s.Config, Approvals: s.Approvals, Log: s.Log}).Decide(r.Context(), &id.Subject, req.Resource, act, s.Now(), &d)
	rules := make([]map[string]string, len(d.Matched))
	for i, m := range d.Matched {
		rules[i] = map[string]string{"name": m.Name, "effect": m.Effect.String(), "tier": m.Tier.String(), "description": m.Description}
	}
	out := map[string]any{
		"effect": v.Effect, "reason": d.Reason(), "rules": rules, "quorum": d.Quorum, "default": d.Default,
		"tier": d.Tier.String(), "policy_snapshot": d.Snapshot, "roles": v.Subject.Roles,
		"action": map[string]any{"class": act.Class, "kind": act.Kind, "tables": act.Tables, "functions": act.Functions, "multi_statement": act.MultiStatement, "estimated_rows": act.EstimatedRows},
	}
	if bg := v.BreakGlass; bg != nil {
		out["policy_effect"] = d.Effect
		out["break_glass"] = map[string]any{"id": bg.ID, "not_after": bg.NotAfter}
		out["reason"] = "break-glass " + bg.ID + " bypasses: " + d.Reason()
	}
	return writeJSON(w, http.StatusOK, out)
}
