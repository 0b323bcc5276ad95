package testenv

import (
	"os"
	"strconv"
	"testing"

	"github.com/portcullis/portcullis/internal/devserver"
)

// tempDir makes a directory under the system temp dir (not t.TempDir, whose parents are
// private to root and so closed to the postgres user) and removes it when the test ends.
func tempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("could not make a directory for %s: %v", prefix, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Postgres starts a fresh PostgreSQL cluster on a free loopback port and stops it when
// the test ends. The superuser is postgres; connect with DSN. It runs without fsync, for
// speed; DurablePostgres keeps it.
func Postgres(t testing.TB) *devserver.Postgres { return startPostgres(t, false) }

// DurablePostgres is Postgres with fsync on, as production runs it: for benchmarks whose
// commits should cost what they cost there.
func DurablePostgres(t testing.TB) *devserver.Postgres { return startPostgres(t, true) }

func startPostgres(t testing.TB, durable bool) *devserver.Postgres {
	t.Helper()
	p, err := devserver.StartPostgres(devserver.PostgresOptions{Dir: tempDir(t, "portcullis-pg-"), Durable: durable})
	if err != nil {
		t.Fatalf("could not start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// Redis starts redis-server on a free loopback port, without persistence, and stops it
// when the test ends.
func Redis(t testing.TB) *devserver.Redis {
	t.Helper()
	r, err := devserver.StartRedis(tempDir(t, "portcullis-redis-"))
	if err != nil {
		t.Fatalf("could not start Redis: %v", err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

// RedisSentinel starts a Redis primary, a replica of it, and a sentinel monitoring them
// (devserver.SentinelMaster), all on loopback, and stops them when the test ends.
func RedisSentinel(t testing.TB) (primary, replica *devserver.Redis, sentinel *devserver.Sentinel) {
	t.Helper()
	dir := tempDir(t, "portcullis-sentinel-")
	primary, err := devserver.StartRedis(dir)
	if err != nil {
		t.Fatalf("could not start Redis: %v", err)
	}
	t.Cleanup(func() { primary.Stop() })
	if replica, err = devserver.StartRedisReplica(dir, primary); err != nil {
		t.Fatalf("could not start a Redis replica: %v", err)
	}
	t.Cleanup(func() { replica.Stop() })
	if sentinel, err = devserver.StartSentinel(dir, primary); err != nil {
		t.Fatalf("could not start Redis Sentinel: %v", err)
	}
	t.Cleanup(func() { sentinel.Stop() })
	return primary, replica, sentinel
}

// RedisCluster starts a Redis Cluster of three primaries on loopback and stops it when
// the test ends.
func RedisCluster(t testing.TB) *devserver.RedisCluster {
	t.Helper()
	c, err := devserver.StartRedisCluster(tempDir(t, "portcullis-redis-cluster-"))
	if err != nil {
		t.Fatalf("could not start a Redis Cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Rsyslog starts rsyslogd collecting syslog on loopback ports into r.File, and stops it
// when the test ends.
func Rsyslog(t testing.TB) *devserver.Rsyslog {
	t.Helper()
	r, err := devserver.StartRsyslog(tempDir(t, "portcullis-rsyslog-"))
	if err != nil {
		t.Fatalf("could not start rsyslogd: %v", err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

// Vault starts a Vault dev server (root token devserver.VaultRootToken) on a free
// loopback port and stops it when the test ends.
func Vault(t testing.TB) *devserver.Vault {
	t.Helper()
	v, err := devserver.StartVault(tempDir(t, "portcullis-vault-"))
	if err != nil {
		t.Fatalf("could not start Vault: %v", err)
	}
	t.Cleanup(func() { v.Stop() })
	return v
}

// Kube starts a Kubernetes control plane (etcd and kube-apiserver) for the test; users are
// static tokens it accepts besides the administrator's (devserver.KubeAdminToken).
func Kube(t testing.TB, users ...devserver.KubeUser) *devserver.Kube {
	t.Helper()
	k, err := devserver.StartKube(tempDir(t, "portcullis-kube-"), users...)
	if err != nil {
		t.Fatalf("could not start Kubernetes: %v", err)
	}
	t.Cleanup(func() { k.Stop() })
	return k
}

// Node starts a real Kubernetes node (containerd and a kubelet) for k, for exec and
// attach, and stops it when the test ends. It waits while another test binary's node runs.
func Node(t testing.TB, k *devserver.Kube) *devserver.Node {
	t.Helper()
	n, err := devserver.StartNode(k)
	if err != nil {
		t.Fatalf("could not start a Kubernetes node: %v", err)
	}
	t.Cleanup(func() { n.Stop() })
	return n
}

// BenchSettings returns how long each benchmark run lasts and how many interleaved rounds
// the end-to-end benchmarks make: BENCH_SECONDS (default 5) and BENCH_ROUNDS (default 2).
func BenchSettings() (seconds, rounds int) {
	seconds, rounds = 5, 2
	if n, err := strconv.Atoi(os.Getenv("BENCH_SECONDS")); err == nil && n > 0 {
		seconds = n
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	return seconds, rounds
}

// Otelcol starts an OpenTelemetry Collector (OTLP/HTTP receiver to a file) on a free
// loopback port and stops it when the test ends.
func Otelcol(t testing.TB) *devserver.Otelcol {
	t.Helper()
	o, err := devserver.StartOtelcol(tempDir(t, "portcullis-otelcol-"))
	if err != nil {
		t.Fatalf("could not start the OpenTelemetry Collector: %v", err)
	}
	t.Cleanup(func() { o.Stop() })
	return o
}
