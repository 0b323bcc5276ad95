package pgwire_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
	"github.com/portcullis/portcullis/proxy/pgwire"
)

// setupVaultDatabase configures Vault's database secrets engine against the test
// PostgreSQL: orders-reader may read orders, orders-writer may also update it.
func setupVaultDatabase(t *testing.T, v *devserver.Vault, pg *devserver.Postgres) {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = v.Address()
	vc, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(devserver.VaultRootToken)
	if err := vc.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().Write("database/config/orders", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/orders?sslmode=disable", pg.Addr()),
		"username":       pg.User, "password": pg.Password, "allowed_roles": "orders-reader,orders-writer", "verify_connection": true,
	}); err != nil {
		t.Fatal(err)
	}
	for role, grant := range map[string]string{"orders-reader": "SELECT", "orders-writer": "SELECT, UPDATE"} {
		if _, err := vc.Logical().Write("database/roles/"+role, map[string]any{
			"db_name": "orders",
			"creation_statements": fmt.Sprintf(`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
				GRANT %s ON orders TO "{{name}}";`, grant),
			"revocation_statements": `REVOKE ALL ON orders FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`,
			"default_ttl":           "10m", "max_ttl": "1h",
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVaultCredentialsFollowTheGrant: sessions get their own short-lived upstream user from
// Vault; an elevated session gets the writer role's user, which is cut and revoked when
// the grant ends.
func TestVaultCredentialsFollowTheGrant(t *testing.T) {
	v := testenv.Vault(t)
	var vaultAddr string = v.Address()
	var broker *elevation.VaultBroker
	e := newEnvYAML(t, func(y string) string {
		y = strings.Replace(y, "resources:\n", `vault:
  address: `+vaultAddr+`
  token: `+devserver.VaultRootToken+`
resources:
  - name: vaulted
    kind: postgres
    upstream: 127.0.0.1:1
    database: orders
    labels: {env: production}
    credentials:
      vault:
        path: database/creds/orders-reader
        roles: {orders-writer: database/creds/orders-writer, breakglass: database/creds/orders-writer}
`, 1)
		y = strings.Replace(y, "- {resources: [orders], actions: [write, ddl, admin]}", "- {resources: [orders, vaulted], actions: [write, ddl, admin]}", 1)
		y = strings.Replace(y, "  - name: orders-read\n", `  - name: vaulted-read
    match: {resources: {names: [vaulted]}, actions: [read]}
    effect: allow
  - name: vaulted-writer
    match: {resources: {names: [vaulted]}, actions: [write], principals: {roles: [orders-writer]}}
    effect: allow
  - name: orders-read
`, 1)
		y = strings.Replace(y, "grants: [{resources: [orders], actions: [write]}]", "grants: [{resources: [orders, vaulted], actions: [write]}]", 1)
		return y
	}, func(s *pgwire.Server) {
		upstream := ""
		for _, r := range s.Config.Resources {
			if r.Name == "orders" {
				upstream = r.Upstream // the test PostgreSQL
			}
		}
		for i := range s.Config.Resources {
			if r := &s.Config.Resources[i]; r.Name == "vaulted" {
				r.Upstream = upstream
			}
		}
		var err error
		if broker, err = elevation.NewVaultBroker(context.Background(), s.Config, nil); err != nil {
			t.Fatal(err)
		}
		s.Broker = broker
	})
	setupVaultDatabase(t, v, e.pg)
	ctx := context.Background()
	admin := e.upstream(t)
	roleExists := func(name string) bool {
		var n int
		admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n)
		return n == 1
	}
	whoami := func(c *pgx.Conn) string {
		var u string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}

	// A plain session reads as a fresh reader user, revoked when the session ends.
	reader, err := pgx.Connect(ctx, e.dsn("alice", "vaulted"))
	if err != nil {
		t.Fatal(err)
	}
	readerUser := whoami(reader)
	if !strings.HasPrefix(readerUser, "v-token-orders-r") && !strings.Contains(readerUser, "orders-reader") {
		t.Errorf("reader session runs as %q", readerUser)
	}
	if _, err := reader.Exec(ctx, "UPDATE orders SET status = 'x' WHERE id = 1", pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Error("a write through the reader session ran")
	}
	reader.Close(ctx)
	time.Sleep(300 * time.Millisecond)
	if roleExists(readerUser) {
		t.Error("the reader's lease was not revoked when its session ended")
	}

	// Elevation: the writer's user, for the grant's life.
	_, body := e.get(t, "alice", "POST", "/api/v1/elevations", `{"role": "orders-writer", "duration": "2s", "reason": "fix order 1"}`)
	id, _ := body["id"].(string)
	if code := e.call(t, "bob", "POST", "/api/v1/approvals/"+id+"/approve", ""); code != 200 {
		t.Fatalf("approve the elevation: %d", code)
	}
	grant, _ := e.approvals.Get(ctx, id)
	w, err := pgx.Connect(ctx, e.dsn("alice", "vaulted"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	writerUser := whoami(w)
	if writerUser == readerUser || !roleExists(writerUser) {
		t.Errorf("elevated session runs as %q", writerUser)
	}
	if _, err := w.Exec(ctx, "UPDATE orders SET status = 'vault' WHERE id = 1"); err != nil {
		t.Fatalf("a write under the grant: %v", err)
	}
	// At not_after the session is cut and the lease revoked, with no one doing anything.
	var cut time.Time
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := w.Exec(ctx, "SELECT 1"); err != nil {
			cut = time.Now()
			if !strings.Contains(err.Error(), "57P01") && !strings.Contains(err.Error(), "ended") && !errors.Is(err, context.DeadlineExceeded) && !w.IsClosed() {
				t.Logf("session ended with: %v", err)
			}
			break
		}
	}
	if cut.IsZero() {
		t.Fatal("the elevated session was not cut at the grant's end")
	}
	revoked := time.Time{}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !roleExists(writerUser) {
			revoked = time.Now()
			break
		}
	}
	if revoked.IsZero() {
		t.Fatal("the writer's lease was not revoked after the grant ended")
	}
	t.Logf("grant end to session cut: %v; to lease revoked: %v", cut.Sub(grant.NotAfter), revoked.Sub(grant.NotAfter))
	if d := revoked.Sub(grant.NotAfter); d > 2*time.Second {
		t.Errorf("revocation took %v after the grant ended", d)
	}

	// Break-glass: the scope's own credentials, revoked when the break-glass ends.
	_, bgBody := e.get(t, "dave", "POST", "/api/v1/breakglass", `{"scope": {"resources": ["vaulted"], "actions": ["write"]}, "duration": "2s", "reason": "INC-7 fix order 2 now", "incident": "INC-7"}`)
	if bgBody["state"] != "approved" {
		t.Fatalf("break-glass on vaulted: %v", bgBody)
	}
	bgc, err := pgx.Connect(ctx, e.dsn("dave", "vaulted"))
	if err != nil {
		t.Fatal(err)
	}
	defer bgc.Close(ctx)
	bgUser := whoami(bgc)
	if _, err := bgc.Exec(ctx, "UPDATE orders SET status = 'bg-vault' WHERE id = 2"); err != nil {
		t.Fatalf("a write under break-glass with the scope's credentials (%s): %v", bgUser, err)
	}
	for deadline := time.Now().Add(10 * time.Second); roleExists(bgUser) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
	}
	if roleExists(bgUser) {
		t.Error("the break-glass lease outlived the break-glass session")
	}

	// A Vault outage: sessions already open carry on; new ones fail with a clear error.
	open, err := pgx.Connect(ctx, e.dsn("alice", "vaulted"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	v.Stop()
	if _, err := pgx.Connect(ctx, e.dsn("alice", "vaulted")); pgCode(err) != "08006" || !strings.Contains(err.Error(), "secrets backend is unavailable") {
		t.Errorf("a new session during a Vault outage: %v", err)
	}
	if whoami(open) == "" {
		t.Error("an open session stopped during the Vault outage")
	}
}
