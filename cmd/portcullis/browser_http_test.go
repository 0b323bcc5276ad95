package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserUsesAnAdminAPI: a browser signed in to the console opens an admin API
// through the HTTP front end without any token: it is sent to the console, comes back
// with a ticket, and gets a session cookie for that host. Its page can then read, and its
// write is held for approval like any other; the upstream sees the resource's key and its
// own cookie, never Portcullis's cookies.
func TestBrowserUsesAnAdminAPI(t *testing.T) {
	var mu sync.Mutex
	var saw []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		saw = append(saw, fmt.Sprintf("%s %s key=%s cookie=%q", r.Method, r.URL.Path, r.Header.Get("X-Api-Key"), r.Header.Get("Cookie")))
		mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "admin_ui", Value: "1", Path: "/"})
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><title>orders admin</title><h1 id="orders">orders admin</h1>`)
	}))
	t.Cleanup(up.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	t.Setenv("DEMO_ADMIN_PORT", port)
	t.Setenv("DEMO_ADMIN_KEY", "admin-key-7c1d")
	e := startConsoleEnv(t)
	ctx := e.user(t, "alice")
	_, httpPort, _ := net.SplitHostPort(e.http)
	admin := "http://orders-admin.localhost:" + httpPort
	do(t, ctx,
		chromedp.Navigate(admin+"/orders"),
		chromedp.WaitVisible(chromedp.ID("orders")),
	)
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != admin+"/orders" {
		t.Errorf("after sign-in the browser is at %s, want %s/orders", loc, admin)
	}
	// A write from the page: held for an SRE's approval, answered 202.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`fetch("/orders/3/refund", {method: "POST"}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != 202 {
		t.Errorf("a write from the page: %v %v, want 202", status, err)
	}
	// The page reloads with its own cookie (admin_ui) now set: it goes upstream, Portcullis's does not.
	do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("orders")))
	mu.Lock()
	defer mu.Unlock()
	if len(saw) != 2 {
		t.Fatalf("the upstream saw %v, want the two page loads (the write is held)", saw)
	}
	if saw[0] != `GET /orders key=admin-key-7c1d cookie=""` || saw[1] != `GET /orders key=admin-key-7c1d cookie="admin_ui=1"` {
		t.Errorf("the upstream saw %v", saw)
	}
}
