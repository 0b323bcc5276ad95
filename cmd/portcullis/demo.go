package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
)

// Demo defaults; configs/demo.yaml reads the same environment variables.
const (
	demoPGPort     = 55432
	demoPGPassword = "portcullis-demo-upstream"
)

var demoUsers = []struct{ name, team string }{
	{"alice", "engineering"}, {"bob", "sre"}, {"carol", "security"}, {"dave", "engineering, group oncall"},
}

func demoCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo: a seeded PostgreSQL and Portcullis with configs/demo.yaml",
		Long: "Demo starts a local PostgreSQL holding the orders database (created and seeded on first\n" +
			"run), then Portcullis with the demo configuration, and prints how to connect as each demo\n" +
			"user. State lives in $DEMO_DIR (default ./.demo). It runs until interrupted, then stops\n" +
			"everything it started.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), cfgPath)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration (default configs/demo.yaml, or the built-in copy)")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, cfgPath string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := envOr("DEMO_DIR", ".demo")
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	port := demoPGPort
	if p := os.Getenv("DEMO_PG_PORT"); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return fmt.Errorf("DEMO_PG_PORT: %w", err)
		}
	}
	password := envOr("DEMO_PG_PASSWORD", demoPGPassword)
	os.Setenv("DEMO_DIR", dir)
	os.Setenv("DEMO_PG_PORT", strconv.Itoa(port))
	os.Setenv("DEMO_PG_PASSWORD", password)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if cfgPath == "" {
		if cfgPath, err = demoConfig(dir); err != nil {
			return err
		}
	}
	// Vault first, when this machine has it (make tools builds it): the configuration
	// names its address.
	v, vaultErr := devserver.StartVault(mkdir(filepath.Join(dir, "vault")))
	if vaultErr == nil {
		defer v.Stop()
		os.Setenv("DEMO_VAULT_ADDR", v.Address())
		os.Setenv("DEMO_VAULT_TOKEN", devserver.VaultRootToken)
	}
	cfg, err := configs.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo configuration %s:\n%w", cfgPath, err)
	}

	pgDir := demoPGDir(dir)
	if pgDir != filepath.Join(dir, "pg") {
		fmt.Fprintf(out, "The postgres user cannot reach %s; keeping the demo database in %s instead.\n", dir, pgDir)
	}
	fmt.Fprintf(out, "Starting PostgreSQL for the orders database on 127.0.0.1:%d (data in %s) ...\n", port, pgDir)
	pg, err := devserver.StartPostgres(devserver.PostgresOptions{Dir: pgDir, Port: port, Durable: true})
	if err != nil {
		return fmt.Errorf("could not start the demo PostgreSQL (is port %d free? set DEMO_PG_PORT to move it): %w", port, err)
	}
	defer func() {
		pg.Stop()
		fmt.Fprintln(out, "Stopped PostgreSQL.")
	}()
	if err := seedOrders(ctx, pg, password); err != nil {
		return fmt.Errorf("could not seed the orders database: %w", err)
	}
	started := []string{fmt.Sprintf("PostgreSQL (orders, 127.0.0.1:%d)", port)}
	adminAddr, adminKey, err := startOrdersAdmin(ctx, fmt.Sprintf("postgres://portcullis:%s@127.0.0.1:%d/orders?sslmode=disable", password, port))
	if err != nil {
		return fmt.Errorf("could not start the orders admin API: %w", err)
	}
	for i := range cfg.Resources {
		if r := &cfg.Resources[i]; r.Name == "orders-admin" {
			r.Upstream = "http://" + adminAddr
			r.Credentials.Static.Value = adminKey
		}
	}
	started = append(started, "the orders admin API ("+adminAddr+", behind orders-admin.localhost)")
	var notStarted []string

	// Redis and Vault when this machine has them (make tools builds Vault).
	if r, err := devserver.StartRedis(mkdir(filepath.Join(dir, "redis"))); err == nil {
		defer r.Stop()
		cfg.Store.Redis = r.URL()
		started = append(started, "Redis ("+r.Addr()+", approvals and grants)")
	} else {
		notStarted = append(notStarted, "Redis ("+firstLine(err)+"; the embedded store holds approvals)")
	}
	if vaultErr == nil {
		if err := demoVault(ctx, cfg, v, pg); err != nil {
			return fmt.Errorf("could not set up Vault for the demo: %w", err)
		}
		started = append(started, "Vault ("+v.Address()+", orders credentials from its database engine; its own API behind vault.localhost)")
	} else {
		// Without Vault: static orders credentials, and no vault resource.
		cfg.Vault = configs.Vault{}
		cfg.Resources = slices.DeleteFunc(cfg.Resources, func(r configs.Resource) bool { return r.Credentials.Vault != nil })
		notStarted = append(notStarted, "Vault ("+firstLine(vaultErr)+"; static orders credentials, no vault resource)")
	}

	// A Kubernetes control plane when this machine has one (make tools builds it).
	node := false
	if k, err := startDemoKube(ctx, cfg, mkdir(filepath.Join(dir, "kube"))); err == nil {
		defer k.Stop()
		started = append(started, "Kubernetes (etcd and kube-apiserver "+k.URL()+", behind resource cluster)")
		// A node for exec, when this machine can run one (root, make tools).
		if n, err := startDemoNode(ctx, k); err == nil {
			defer n.Stop()
			node = true
			started = append(started, "a Kubernetes node (containerd and kubelet; pods prod/orders-0 and demo/shell)")
		} else {
			notStarted = append(notStarted, "a Kubernetes node ("+firstLine(err)+"; no pods to exec into)")
		}
	} else {
		cfg.Resources = slices.DeleteFunc(cfg.Resources, func(r configs.Resource) bool { return r.Kind == "kubernetes" })
		notStarted = append(notStarted, "Kubernetes ("+firstLine(err)+"; no cluster resource)")
	}

	return serve(ctx, cfg, logger, func(a listening) {
		printDemo(out, cfg, a, node)
		fmt.Fprintf(out, "Started: %s, Portcullis (API %s, PostgreSQL %s).\n", strings.Join(started, ", "), a.api, a.postgres)
		if len(notStarted) > 0 {
			fmt.Fprintf(out, "Not started: %s.\n", strings.Join(notStarted, "; "))
		}
	})
}

func mkdir(p string) string {
	os.MkdirAll(p, 0o755)
	return p
}

func firstLine(err error) string { return strings.SplitN(err.Error(), "\n", 2)[0] }

// demoVault configures Vault's database engine against the demo PostgreSQL — a reader
// role for every session, a writer role for sessions under an orders-writer grant, and an
// owner-member role for break-glass — and points the orders resource at it.
func demoVault(ctx context.Context, cfg *configs.Config, v *devserver.Vault, pg *devserver.Postgres) error {
	vc, err := vault.NewClient(&vault.Config{Address: v.Address()})
	if err != nil {
		return err
	}
	vc.SetToken(devserver.VaultRootToken)
	if err := vc.Sys().MountWithContext(ctx, "database", &vault.MountInput{Type: "database"}); err != nil {
		return err
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "database/config/orders", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/orders?sslmode=disable", pg.Addr()),
		"username":       pg.User, "password": pg.Password, "allowed_roles": "orders-reader,orders-writer,orders-breakglass", "verify_connection": true,
	}); err != nil {
		return err
	}
	// Approved statements run under orders_approved, for their execution alone: the
	// reader is a NOINHERIT member of it, so the reader's own credential cannot write.
	admin, err := pgx.Connect(ctx, pg.DSN("orders"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE ROLE orders_approved NOLOGIN;
		GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO orders_approved;
		GRANT USAGE ON SEQUENCE orders_id_seq TO orders_approved`); err != nil {
		return fmt.Errorf("could not create the approved role: %w", err)
	}
	inherit := map[string]string{"orders-reader": "NOINHERIT", "orders-writer": "INHERIT", "orders-breakglass": "INHERIT"}
	for role, grant := range map[string]string{
		"orders-reader": "GRANT SELECT ON orders TO \"{{name}}\"; GRANT orders_approved TO \"{{name}}\";",
		"orders-writer": "GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO \"{{name}}\"; GRANT USAGE ON SEQUENCE orders_id_seq TO \"{{name}}\";",
		// Break-glass may change the schema: a member of the owner role.
		"orders-breakglass": "GRANT portcullis TO \"{{name}}\";",
	} {
		if _, err := vc.Logical().WriteWithContext(ctx, "database/roles/"+role, map[string]any{
			"db_name":               "orders",
			"creation_statements":   `CREATE ROLE "{{name}}" WITH LOGIN ` + inherit[role] + ` PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; ` + grant,
			"revocation_statements": `REASSIGN OWNED BY "{{name}}" TO portcullis; DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`,
			"default_ttl":           "15m", "max_ttl": "4h",
		}); err != nil {
			return err
		}
	}
	// Vault's own API behind the vault resource: each caller gets a token of demo-sys-read
	// (what policy allows without approval); an approved request, one of demo-sys-admin
	// for that request alone. Portcullis makes them through a token role.
	for name, hcl := range map[string]string{
		"demo-sys-read": `path "sys/*" { capabilities = ["read", "list"] }`,
		"demo-sys-admin": `path "sys/policies/acl/*" { capabilities = ["create", "update", "delete", "read", "list"] }
path "sys/mounts/*" { capabilities = ["create", "update", "delete", "read"] }`,
	} {
		if err := vc.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
			return err
		}
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/token/roles/portcullis-http", map[string]any{
		"allowed_policies": "demo-sys-read,demo-sys-admin", "orphan": true, "token_explicit_max_ttl": "1h"}); err != nil {
		return err
	}
	cfg.Vault.Address, cfg.Vault.Token = v.Address(), devserver.VaultRootToken
	for i := range cfg.Resources {
		if r := &cfg.Resources[i]; r.Name == "orders" {
			r.Credentials = configs.Credentials{Vault: &configs.VaultCredentials{
				Path: "database/creds/orders-reader", ApprovedRole: "orders_approved", Roles: map[string]string{
					"orders-writer": "database/creds/orders-writer", configs.BreakGlassCredentials: "database/creds/orders-breakglass"},
			}}
		}
	}
	return nil
}

// startDemoKube starts etcd and kube-apiserver with their state in dir (fresh each run),
// seeds them (RBAC, namespaces prod and demo, the orders ConfigMap and Deployment) and
// points the cluster resource at the API server.
func startDemoKube(ctx context.Context, cfg *configs.Config, dir string) (*devserver.Kube, error) {
	res := cfg.Resource("cluster")
	if res == nil {
		return nil, errors.New("the configuration has no cluster resource")
	}
	os.RemoveAll(dir) // etcd's data from an earlier run: the seed makes it anew
	k, err := devserver.StartKube(mkdir(dir), devserver.KubeUser{Token: devserver.KubePortcullisToken, Name: devserver.KubePortcullisUser})
	if err != nil {
		return nil, err
	}
	if err := k.Seed(ctx); err != nil {
		k.Stop()
		return nil, err
	}
	res.Upstream = k.URL()
	res.Kubernetes.TLS.CAFile = k.CAFile
	res.Credentials.Static = &configs.StaticCredentials{Header: "Authorization", Value: "Bearer " + devserver.KubePortcullisToken}
	return k, nil
}

// demoPGDir returns where the demo keeps PostgreSQL's data: dir/pg, or, when running as
// root and the postgres user cannot enter a parent of dir (such as /root), a directory
// under the system temp dir named after dir.
func demoPGDir(dir string) string {
	pgDir := filepath.Join(dir, "pg")
	if devserver.PostgresCanReach(pgDir) {
		return pgDir
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), "portcullis-demo-pg-"+hex.EncodeToString(sum[:6]))
}

// demoConfig returns configs/demo.yaml when run from the repository, or else writes the
// built-in copy under dir.
func demoConfig(dir string) (string, error) {
	if _, err := os.Stat("configs/demo.yaml"); err == nil {
		return "configs/demo.yaml", nil
	}
	dst := filepath.Join(dir, "config")
	err := fs.WalkDir(configs.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := configs.Files.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, p), b, 0o644)
	})
	return filepath.Join(dst, "demo.yaml"), err
}

// seedOrders creates the upstream role Portcullis logs in as and the orders table, once.
func seedOrders(ctx context.Context, pg *devserver.Postgres, password string) error {
	admin, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'orders')").Scan(&exists); err != nil {
		return err
	}
	if !exists {
		for _, q := range []string{
			fmt.Sprintf("CREATE ROLE portcullis LOGIN PASSWORD '%s'", password),
			"CREATE DATABASE orders OWNER portcullis",
		} {
			if _, err := admin.Exec(ctx, q); err != nil {
				return err
			}
		}
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER ROLE portcullis PASSWORD '%s'", password)); err != nil {
		return err
	}
	err = execOn(ctx, fmt.Sprintf("postgres://portcullis:%s@%s/orders?sslmode=disable", password, pg.Addr()), `
CREATE TABLE IF NOT EXISTS orders (
	id         bigserial PRIMARY KEY,
	customer   text        NOT NULL,
	item       text        NOT NULL,
	quantity   int         NOT NULL CHECK (quantity > 0),
	total      numeric(10,2) NOT NULL,
	status     text        NOT NULL DEFAULT 'new',
	created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (customer, item, quantity, total, status)
SELECT c, i, q, q * p, s FROM (VALUES
	('acme',    'widget',   3,  9.99, 'paid'),
	('acme',    'gadget',   1, 24.50, 'new'),
	('globex',  'widget',  10,  9.99, 'shipped'),
	('initech', 'stapler',  2, 12.00, 'new'),
	('umbrella','gadget',   5, 24.50, 'paid')
) AS seed(c, i, q, p, s)
WHERE NOT EXISTS (SELECT 1 FROM orders);`)
	if err != nil {
		return err
	}
	// The ledger belongs to finance: everyone may read it, nobody writes it through
	// Portcullis. An approved UPDATE of it still fails, with PostgreSQL's 42501: an approval
	// decides whether a statement may run, never what the database lets it do.
	return execOn(ctx, pg.DSN("orders"), `
CREATE TABLE IF NOT EXISTS ledger (
	id        bigserial PRIMARY KEY,
	order_id  bigint        NOT NULL,
	amount    numeric(10,2) NOT NULL,
	booked_at timestamptz   NOT NULL DEFAULT now()
);
GRANT SELECT ON ledger TO PUBLIC;
INSERT INTO ledger (order_id, amount) SELECT id, total FROM orders WHERE status <> 'new' AND NOT EXISTS (SELECT 1 FROM ledger);`)
}

// execOn runs sql on a connection of its own to dsn.
func execOn(ctx context.Context, dsn, sql string) error {
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	_, err = db.Exec(ctx, sql)
	return err
}

func printDemo(out io.Writer, cfg *configs.Config, a listening, node bool) {
	pgHost, pgPort, _ := net.SplitHostPort(a.postgres)
	fmt.Fprintf(out, `
Portcullis demo is running (Ctrl-C stops everything).

  Console           http://%[5]s  (sign in on the dev-only token form with <name>-demo-token)
  API               http://%[5]s  (under /api/v1)
  PostgreSQL proxy  %[1]s (database orders; password = your token)
  Audit log         %[2]s  (bin/portcullis audit verify --dir %[3]s)
  Policy snapshot   %[4]s

Demo users (static tokens, demo only):
`, a.postgres, cfg.Audit.Dir, cfg.Audit.Dir, cfg.Engine.Snapshot(), a.api)
	for _, u := range demoUsers {
		fmt.Fprintf(out, "  %-6s %-28s PGPASSWORD=%s-demo-token psql -h %s -p %s -U %s orders\n", u.name, "("+u.team+")", u.name, pgHost, pgPort, u.name)
	}
	fmt.Fprintf(out, `
Try, as alice:
  SELECT * FROM orders;                                  -- allowed
  UPDATE orders SET status = 'paid' WHERE id = 2;        -- waits for an SRE: sign in to the console as bob
      (bob-demo-token) and approve it in the inbox, or in another shell:
      PORTCULLIS_TOKEN=bob-demo-token bin/portcullis approvals list
      PORTCULLIS_TOKEN=bob-demo-token bin/portcullis approve <id>
  ALTER TABLE orders ADD COLUMN note text;               -- denied (break-glass only)
  SET portcullis.reason = 'refund order 3, TICKET-12';   -- approvers see it with the statements that wait
  UPDATE ledger SET amount = 0 WHERE order_id = 1;       -- approved, then refused by PostgreSQL (42501):
      the request page says "failed: 42501 permission denied for table ledger"
  \d orders                                              -- psql's catalog queries run at once

Elevation: alice asks for orders-writer, bob approves, alice's writes run directly:
  PORTCULLIS_TOKEN=alice-demo-token bin/portcullis request orders-writer --for 15m --reason "fix order 2"
  PORTCULLIS_TOKEN=bob-demo-token bin/portcullis approve <id>
  then, in a new psql session as alice:
    SELECT current_user;                                 -- with Vault: the writer role's own short-lived user
    UPDATE orders SET status = 'paid' WHERE id = 2;      -- runs at once, until the grant ends
  PORTCULLIS_TOKEN=alice-demo-token bin/portcullis revoke <id>   -- ends it early; the session is cut

Break-glass: dave (oncall) in an emergency; DDL is denied by a medium-tier policy, so it is granted at once:
  PORTCULLIS_TOKEN=dave-demo-token bin/portcullis breakglass --scope orders:ddl --for 30m --incident INC-1 \
      --reason "orders needs an index now, INC-1"
  then, as dave: ALTER TABLE orders ADD COLUMN note text;   -- runs, flagged in the audit log
  or in the console's Break glass page; carol (security) reviews it once it ends at
    http://%[1]s/reviews, and replays any session at http://%[1]s/sessions

Admin HTTP API (orders-admin, through Portcullis; it never sees your token, you never see its key):
  curl -s -H 'Authorization: Bearer alice-demo-token' http://orders-admin.localhost:%[2]s/orders          -- allowed
  curl -s -H 'Authorization: Bearer alice-demo-token' -X POST http://orders-admin.localhost:%[2]s/orders/3/refund
      -- 202 with an approval id: bob approves, then alice sends it again with -H 'Portcullis-Approval: <id>'
      (or adds -H 'Prefer: wait=60' to wait for the approval), and it runs once
  curl -s -H 'Authorization: Bearer alice-demo-token' -X DELETE http://orders-admin.localhost:%[2]s/orders/3  -- 403
%[3]s%[4]s
API:
  curl -s -H 'Authorization: Bearer alice-demo-token' http://%[1]s/api/v1/whoami
  curl -s -H 'Authorization: Bearer bob-demo-token' http://%[1]s/api/v1/approvals
  curl -s -H 'Authorization: Bearer carol-demo-token' http://%[1]s/api/v1/sessions

`, a.api, httpPort(a.http), vaultDemo(cfg, httpPort(a.http)), kubeDemo(cfg, a, node))
}

// vaultDemo is the banner's part for the vault resource, when the demo runs Vault.
func vaultDemo(cfg *configs.Config, port string) string {
	if !slices.ContainsFunc(cfg.Resources, func(r configs.Resource) bool { return r.Name == "vault" }) {
		return ""
	}
	return fmt.Sprintf(`
Vault's own API (resource vault; Portcullis makes each caller a 5-minute token of demo-sys-read):
  curl -s -H 'Authorization: Bearer alice-demo-token' http://vault.localhost:%[1]s/v1/sys/mounts       -- allowed (engineering)
  curl -s -H 'Authorization: Bearer alice-demo-token' -X PUT http://vault.localhost:%[1]s/v1/sys/policies/acl/app \
      -d '{"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}'
      -- 202: carol (security) approves; re-sent with -H 'Portcullis-Approval: <id>', it runs once with a
      one-use token of demo-sys-admin
`, port)
}

// startDemoNode starts a node for the demo's cluster and runs its pods: orders-0 in prod
// (exec needs an SRE's approval) and shell in demo (free), both recorded when exec'd into.
func startDemoNode(ctx context.Context, k *devserver.Kube) (*devserver.Node, error) {
	n, err := devserver.StartNode(k)
	if err != nil {
		return nil, err
	}
	for _, pod := range []struct{ ns, name string }{{"prod", "orders-0"}, {"demo", "shell"}} {
		if out, err := k.Kubectl(ctx, n.PodManifest(pod.ns, pod.name), "apply", "-f", "-"); err != nil {
			n.Stop()
			return nil, fmt.Errorf("could not create pod %s: %v: %s", pod.name, err, out)
		}
	}
	for _, pod := range []string{"prod/orders-0", "demo/shell"} {
		ns, name, _ := strings.Cut(pod, "/")
		if out, err := k.Kubectl(ctx, "", "wait", "-n", ns, "--for=condition=Ready", "pod/"+name, "--timeout=60s"); err != nil {
			n.Stop()
			return nil, fmt.Errorf("pod %s did not start: %v: %s", pod, err, out)
		}
	}
	return n, nil
}

// kubeDemo is the banner's part for the cluster resource, when the demo runs Kubernetes.
func kubeDemo(cfg *configs.Config, a listening, node bool) string {
	if cfg.Resource("cluster") == nil || len(a.kube) == 0 {
		return ""
	}
	kubectl := "kubectl"
	if _, err := exec.LookPath("kubectl"); err != nil {
		if p, err := devserver.KubeBinary("kubectl"); err == nil {
			kubectl = p
		}
	}
	b := fmt.Sprintf(`
Kubernetes (resource cluster, through Portcullis on https://%[1]s; kubectl as is):
  bin/portcullis kubeconfig --resource cluster --server http://%[2]s --token alice-demo-token --kubeconfig %[4]s
  export KUBECONFIG=%[4]s PORTCULLIS_TOKEN=alice-demo-token   # kubectl runs portcullis kube-credential
  %[3]s get configmaps,deployments -n prod                       -- allowed, as alice (impersonated)
  %[3]s delete configmap orders-config -n prod                   -- held: kubectl prints the request; bob approves
      (PORTCULLIS_TOKEN=bob-demo-token bin/portcullis approve <id>, or the console, which shows the object);
      the same command again runs once
  %[3]s scale deployment orders -n prod --replicas=3             -- held; the approver sees the API server's dry-run diff
  %[3]s create configmap scratch -n demo                         -- allowed: demo is free
  %[3]s create configmap x -n kube-system                        -- denied (cluster-system-writes)
`, a.kube[0], a.api, kubectl, filepath.Join(os.Getenv("DEMO_DIR"), "kubeconfig"))
	if node {
		b += fmt.Sprintf(`  %[1]s exec -n demo shell -- sh -c 'echo hello; id'      -- allowed, recorded: replay it in the console (Sessions)
  %[1]s exec -it -n prod orders-0 -- sh                          -- held; once approved, the same command opens the shell, recorded
`, kubectl)
	}
	return b
}

// httpPort is the port of the HTTP front end's address.
func httpPort(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
