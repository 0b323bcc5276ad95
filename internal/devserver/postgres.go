package devserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions configures StartPostgres.
type PostgresOptions struct {
	// Dir holds the cluster (created with initdb if it has none yet), its socket and log.
	Dir string
	// Port to listen on; 0 picks a free one.
	Port int
	// Durable keeps fsync on; tests turn it off for speed.
	Durable bool
}

// Postgres is a running PostgreSQL server. Its superuser is "postgres" with Password.
type Postgres struct {
	Host     string
	Port     int
	User     string
	Password string
	Dir      string
	proc     *process
}

const pgSuperPassword = "portcullis-test-superuser"

// pgBin finds a PostgreSQL server program; Debian keeps them out of PATH.
func pgBin(name string) (string, error) {
	if dir := os.Getenv("PORTCULLIS_PG_BINDIR"); dir != "" {
		return filepath.Join(dir, name), nil
	}
	return lookBin(name, "/usr/lib/postgresql/*/bin/"+name)
}

// PGProgram finds a PostgreSQL client program (psql, pg_dump) of the installed version.
func PGProgram(name string) (string, error) { return pgBin(name) }

// StartPostgres starts PostgreSQL on 127.0.0.1, creating the cluster first if opts.Dir has
// none. PostgreSQL refuses to run as root, so as root the server runs as the system's
// postgres user, which then owns opts.Dir.
func StartPostgres(opts PostgresOptions) (*Postgres, error) {
	initdb, err := pgBin("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := pgBin("postgres")
	if err != nil {
		return nil, err
	}
	if opts.Port == 0 {
		if opts.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	data, sock := filepath.Join(opts.Dir, "data"), filepath.Join(opts.Dir, "sock")
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := chownTree(opts.Dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		pw := filepath.Join(opts.Dir, "pwfile")
		if err := os.WriteFile(pw, []byte(pgSuperPassword+"\n"), 0o600); err != nil {
			return nil, err
		}
		if cred != nil {
			os.Chown(pw, int(cred.Uid), int(cred.Gid))
		}
		cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--pwfile", pw, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		os.Remove(pw)
		if err != nil {
			return nil, fmt.Errorf("initdb failed: %v\n%s", err, out)
		}
	}
	args := []string{"-D", data, "-p", strconv.Itoa(opts.Port), "-k", sock, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(postgres, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	proc, err := start("postgres", cmd, filepath.Join(opts.Dir, "postgres.log"))
	if err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", Port: opts.Port, User: "postgres", Password: pgSuperPassword, Dir: opts.Dir, proc: proc}
	if err := proc.waitReady(30*time.Second, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, p.DSN("postgres"))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// DSN returns a connection string for the superuser to database db.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", p.User, p.Password, p.Host, p.Port, db)
}

// Addr returns host:port.
func (p *Postgres) Addr() string { return addr(p.Port) }

// Stop shuts the server down (fast shutdown), killing it if it does not stop in time.
func (p *Postgres) Stop() error { return p.proc.stop(syscall.SIGINT, 10*time.Second) }

// pgCredential returns the postgres user's credential when running as root, else nil.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres system user: %w (install the postgresql package)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// PostgresCanReach reports whether the user PostgreSQL runs as can reach dir (or where dir
// will be created): every existing directory on the way must be searchable by it. It is
// always true when not running as root.
func PostgresCanReach(dir string) bool {
	cred, err := pgCredential()
	if err != nil || cred == nil {
		return err == nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			mode := fi.Mode().Perm()
			ok := mode&0o001 != 0 || (st.Uid == cred.Uid && mode&0o100 != 0) || (st.Gid == cred.Gid && mode&0o010 != 0)
			if !ok && p != abs {
				return false
			}
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}
