package devserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Redis is a running redis-server without persistence.
type Redis struct {
	Port  int
	dir   string
	extra []string // arguments beyond the defaults (a replica's --replicaof)
	proc  *process
}

// StartRedis starts redis-server on 127.0.0.1 with its log in dir.
func StartRedis(dir string) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return startRedis(dir, port)
}

// StartRedisReplica starts redis-server as a replica of primary, with its log in dir.
func StartRedisReplica(dir string, primary *Redis) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r, err := startRedis(dir, port, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	if err != nil {
		return nil, err
	}
	// In sync before it returns, so that a sentinel started next finds it at once.
	if err := r.proc.waitReady(15*time.Second, func(ctx context.Context) error {
		info, err := command(ctx, r.Addr(), "INFO replication")
		if err == nil && !strings.Contains(info, "master_link_status:up") {
			err = errors.New("the replica is not in sync yet")
		}
		return err
	}); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// Restart starts a stopped server again on the same port (empty: it keeps no data).
func (r *Redis) Restart() error {
	r.Stop()
	n, err := startRedis(r.dir, r.Port, r.extra...)
	if err != nil {
		return err
	}
	r.proc = n.proc
	return nil
}

func startRedis(dir string, port int, extra ...string) (*Redis, error) {
	bin, err := lookBin("redis-server", "/usr/bin/redis-server")
	if err != nil {
		return nil, err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", dir, "--notify-keyspace-events", "Ex"}, extra...)
	cmd := exec.Command(bin, args...)
	proc, err := start("redis-server", cmd, filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
	if err != nil {
		return nil, err
	}
	r := &Redis{Port: port, dir: dir, extra: extra, proc: proc}
	if err := proc.waitReady(15*time.Second, func(ctx context.Context) error { return ping(ctx, r.Addr()) }); err != nil {
		return nil, err
	}
	return r, nil
}

// command sends one inline command and returns its reply: a status line, or the body of
// a bulk string.
func command(ctx context.Context, address, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	}
	return line, nil
}

func ping(ctx context.Context, address string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr returns host:port.
func (r *Redis) Addr() string { return addr(r.Port) }

// URL returns a redis:// URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Stop shuts the server down.
func (r *Redis) Stop() error { return r.proc.stop(syscall.SIGTERM, 5*time.Second) }

// Kill ends the server at once (SIGKILL), as a crash would.
func (r *Redis) Kill() error { return r.proc.stop(syscall.SIGKILL, 5*time.Second) }

// SentinelMaster is the name Sentinel monitors the primary under.
const SentinelMaster = "portcullis"

// Sentinel is a running Redis Sentinel (redis-server --sentinel) monitoring one primary
// under SentinelMaster, quick to act: the primary is down after 1 s without an answer.
type Sentinel struct {
	Port int
	proc *process
}

// StartSentinel starts a sentinel on 127.0.0.1 monitoring primary, with a quorum of one,
// its configuration (which Sentinel rewrites) and log in dir.
func StartSentinel(dir string, primary *Redis) (*Sentinel, error) {
	bin, err := lookBin("redis-server", "/usr/bin/redis-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
	body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %[3]s 1000
sentinel failover-timeout %[3]s 5000
sentinel parallel-syncs %[3]s 1
`, port, dir, SentinelMaster, primary.Port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	proc, err := start("redis-sentinel", exec.Command(bin, conf, "--sentinel"), filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", port)))
	if err != nil {
		return nil, err
	}
	sn := &Sentinel{Port: port, proc: proc}
	if err := proc.waitReady(15*time.Second, func(ctx context.Context) error { return ping(ctx, sn.Addr()) }); err != nil {
		return nil, err
	}
	return sn, nil
}

// Addr returns host:port.
func (s *Sentinel) Addr() string { return addr(s.Port) }

// Stop shuts the sentinel down.
func (s *Sentinel) Stop() error { return s.proc.stop(syscall.SIGTERM, 5*time.Second) }

// RedisCluster is a Redis Cluster of three primaries on loopback, the 16384 hash slots
// split between them.
type RedisCluster struct {
	Nodes []*Redis
}

// StartRedisCluster starts three cluster-enabled redis-servers with their files in dir,
// joins them and assigns the slots; it returns once every node says the cluster is ok.
func StartRedisCluster(dir string) (*RedisCluster, error) {
	c := &RedisCluster{}
	for range 3 {
		port, err := FreePort()
		if err != nil {
			c.Stop()
			return nil, err
		}
		n, err := startRedis(dir, port, "--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
			"--cluster-node-timeout", "2000")
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const slots = 16384
	for i, n := range c.Nodes {
		from, to := i*slots/len(c.Nodes), (i+1)*slots/len(c.Nodes)-1
		if _, err := command(ctx, n.Addr(), fmt.Sprintf("CLUSTER ADDSLOTSRANGE %d %d", from, to)); err != nil {
			c.Stop()
			return nil, fmt.Errorf("cluster slots on %s: %w", n.Addr(), err)
		}
		if i > 0 {
			if _, err := command(ctx, c.Nodes[0].Addr(), fmt.Sprintf("CLUSTER MEET 127.0.0.1 %d", n.Port)); err != nil {
				c.Stop()
				return nil, fmt.Errorf("cluster meet: %w", err)
			}
		}
	}
	for _, n := range c.Nodes {
		if err := n.proc.waitReady(30*time.Second, func(ctx context.Context) error {
			info, err := command(ctx, n.Addr(), "CLUSTER INFO")
			if err == nil && !strings.Contains(info, "cluster_state:ok") {
				err = errors.New("the cluster is not ok yet")
			}
			return err
		}); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// Addrs returns every node's host:port.
func (c *RedisCluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// Stop stops every node.
func (c *RedisCluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}
