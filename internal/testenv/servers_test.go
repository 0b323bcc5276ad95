package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/devserver"
)

func TestPostgres(t *testing.T) {
	t.Parallel()
	p := Postgres(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil || v == "" {
		t.Fatalf("server_version %q: %v", v, err)
	}
	// Password authentication is enforced on TCP.
	if _, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres:wrong@%s/postgres?sslmode=disable", p.Addr())); err == nil {
		t.Error("a wrong password was accepted")
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	r := Redis(t)
	opt, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "grant:1", "x", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, "grant:1").Val(); ttl <= 0 || ttl > 200*time.Millisecond {
		t.Errorf("TTL %v", ttl)
	}
}

// TestVaultMintsPostgresCredentials runs the whole credential path the elevation issue
// builds on: Vault's database engine mints a PostgreSQL user that can log in, and a
// synchronous lease revocation removes it.
func TestVaultMintsPostgresCredentials(t *testing.T) {
	t.Parallel()
	v, p := Vault(t), Postgres(t)
	cfg := vault.DefaultConfig()
	cfg.Address = v.Address()
	vc, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(devserver.VaultRootToken)
	ctx := context.Background()
	if _, err := vc.KVv2("secret").Put(ctx, "portcullis", map[string]any{"k": "v"}); err != nil {
		t.Fatalf("kv put: %v", err)
	}
	if err := vc.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	_, err = vc.Logical().Write("database/config/orders", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/postgres?sslmode=disable", p.Addr()),
		"username":       p.User, "password": p.Password, "allowed_roles": "reader", "verify_connection": true,
	})
	if err != nil {
		t.Fatalf("database config: %v", err)
	}
	_, err = vc.Logical().Write("database/roles/reader", map[string]any{
		"db_name":             "orders",
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
		"default_ttl":         "5m", "max_ttl": "10m",
	})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := vc.Logical().Read("database/creds/reader")
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable", secret.Data["username"], secret.Data["password"], p.Addr())
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("minted credentials do not log in: %v", err)
	}
	c.Close(ctx)
	if _, err := vc.Logical().Write("sys/leases/revoke", map[string]any{"lease_id": secret.LeaseID, "sync": true}); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Error("revoked credentials still log in")
	}
}
