package devserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Redis is a running redis-server without persistence.
type Redis struct {
	Port int
	dir  string
	proc *process
}

// StartRedis starts redis-server on 127.0.0.1 with its log in dir.
func StartRedis(dir string) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return startRedis(dir, port)
}

// Restart starts a stopped server again on the same port (empty: it keeps no data).
func (r *Redis) Restart() error {
	r.Stop()
	n, err := startRedis(r.dir, r.Port)
	if err != nil {
		return err
	}
	r.proc = n.proc
	return nil
}

func startRedis(dir string, port int) (*Redis, error) {
	bin, err := lookBin("redis-server", "/usr/bin/redis-server")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", dir, "--notify-keyspace-events", "Ex")
	proc, err := start("redis-server", cmd, filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	r := &Redis{Port: port, dir: dir, proc: proc}
	if err := proc.waitReady(15*time.Second, func(ctx context.Context) error { return ping(ctx, r.Addr()) }); err != nil {
		return nil, err
	}
	return r, nil
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
