package web

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/proxy/identity"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	cfg, err := configs.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&Server{Config: cfg, Auth: auth, Log: slog.New(slog.DiscardHandler)}).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return resp.StatusCode, out, resp.Header
}

func TestWhoami(t *testing.T) {
	srv := newTestServer(t)
	code, out, _ := call(t, srv, "GET", "/api/v1/whoami", "dave-demo-token", "")
	if code != 200 || out["user"] != "dave" || !strings.Contains(toJSON(out["groups"]), "oncall") {
		t.Errorf("whoami: %d %v", code, out)
	}
	for _, tok := range []string{"", "dave-demo-tokenx", "a.b.c"} {
		code, out, h := call(t, srv, "GET", "/api/v1/whoami", tok, "")
		if code != 401 || out["error"] != "invalid or missing token" || h.Get("WWW-Authenticate") == "" {
			t.Errorf("token %q: %d %v", tok, code, out)
		}
	}
}

func TestDecisions(t *testing.T) {
	srv := newTestServer(t)
	tests := []struct {
		token, body string
		code        int
		effect      string
	}{
		{"alice-demo-token", `{"resource":"orders","sql":"SELECT * FROM orders"}`, 200, "allow"},
		{"alice-demo-token", `{"resource":"orders","sql":"UPDATE orders SET status='x'"}`, 200, "require_approval"},
		{"bob-demo-token", `{"resource":"orders","sql":"DROP TABLE orders"}`, 200, "deny"},
		{"bob-demo-token", `{"resource":"orders","action":{"class":"delete","estimated_rows":5}}`, 200, "require_approval"},
		{"bob-demo-token", `{"resource":"orders","action":{"class":"fly"}}`, 422, ""},
		{"bob-demo-token", `{"resource":"payments","sql":"SELECT 1"}`, 404, ""},
		{"bob-demo-token", `{"resource":"orders","sql":"SELECT 1","extra":1}`, 400, ""},
		{"bob-demo-token", `{"resource":"orders"}`, 422, ""},
	}
	for _, tt := range tests {
		code, out, _ := call(t, srv, "POST", "/api/v1/decisions", tt.token, tt.body)
		if code != tt.code || (tt.effect != "" && out["effect"] != tt.effect) {
			t.Errorf("%s: %d %v; want %d %s", tt.body, code, out, tt.code, tt.effect)
		}
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
