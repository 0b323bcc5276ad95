package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ModuleRoot returns the directory of the project's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// OIDCProvider is a running OpenID Connect provider: the certified npm oidc-provider,
// configured by web/testdata/oidc/provider.mjs, on a loopback port.
type OIDCProvider struct {
	Issuer string
	// ConsoleSecret is the console client's (portcullis-console) secret.
	ConsoleSecret string
}

// StartOIDCProvider starts the provider with the console client redirecting to
// consoleRedirect, and stops it when the test ends. Its accounts are alice, bob, carol and
// dave (any password); make test installs its npm packages (npm ci in web/testdata/oidc).
func StartOIDCProvider(t testing.TB, consoleRedirect string) *OIDCProvider {
	t.Helper()
	dir := filepath.Join(ModuleRoot(t), "web", "testdata", "oidc")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatalf("the OIDC provider's packages are missing: run make test, or npm ci in %s", dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed for the OIDC provider: %v", err)
	}
	p := &OIDCProvider{ConsoleSecret: "console-secret-" + fmt.Sprint(time.Now().UnixNano())}
	cmd := exec.Command(node, "provider.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONSOLE_REDIRECT="+consoleRedirect, "CONSOLE_SECRET="+p.ConsoleSecret, "NODE_NO_WARNINGS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("could not start the OIDC provider: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if iss, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- iss
			}
		}
	}()
	select {
	case p.Issuer = <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("the OIDC provider did not start:\n%s", stderr.String())
	}
	return p
}

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Browser starts headless Chromium (Debian's package) with a fresh profile and returns
// its first context; each chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
// on it is a separate user with its own cookies. The browser ends with the test.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path := ChromiumPath
	if p := os.Getenv("PORTCULLIS_CHROMIUM"); p != "" {
		path = p
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Chromium is needed for the browser tests (make test installs Debian's chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(tempDir(t, "portcullis-chromium-")),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("could not start Chromium: %v", err)
	}
	return ctx
}
