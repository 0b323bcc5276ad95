package devserver

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// VaultVersion is the Vault release `make tools` builds; see deploy/vault.
const VaultVersion = "1.21.1"

// VaultRootToken is the dev server's root token.
const VaultRootToken = "root"

// Vault is a running Vault dev server (in-memory storage, unsealed, root token "root").
type Vault struct {
	Port int
	proc *process
}

// VaultBinary returns the Vault binary: $PORTCULLIS_VAULT, or the one `make tools` caches
// under ~/.cache/portcullis/vault-VERSION/.
func VaultBinary() (string, error) {
	return cachedBinary("PORTCULLIS_VAULT", "vault-"+VaultVersion, "vault", "make tools")
}

// cachedBinary returns the program name that a make target caches under
// ~/.cache/portcullis/dir/, or the path in the environment variable env when it is set.
func cachedBinary(env, dir, name, target string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "portcullis", dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `%s` to build it", name, p, target)
	}
	return p, nil
}

// StartVault starts a Vault dev server on 127.0.0.1 with its log in dir. The database
// plugin built beside the binary is registered as postgresql-database-plugin.
func StartVault(dir string) (*Vault, error) {
	bin, err := VaultBinary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"server", "-dev", "-dev-root-token-id=" + VaultRootToken, "-dev-listen-address=" + addr(port), "-dev-no-store-token"}
	if plugins := filepath.Join(filepath.Dir(bin), "plugins"); dirExists(plugins) {
		args = append(args, "-dev-plugin-dir="+plugins)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	proc, err := start("vault", cmd, filepath.Join(dir, "vault.log"))
	if err != nil {
		return nil, err
	}
	v := &Vault{Port: port, proc: proc}
	if err := proc.waitReady(30*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.Address()+"/v1/sys/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return v, nil
}

// Address returns the server's http:// address.
func (v *Vault) Address() string { return "http://" + addr(v.Port) }

// Stop shuts the server down.
func (v *Vault) Stop() error { return v.proc.stop(syscall.SIGTERM, 5*time.Second) }

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
