//go:build tools

// Package etcdwrap pins the etcd server the Kubernetes API server of the test harness and the
// demo stores its state in. `go install go.etcd.io/etcd/server/v3@v3.6.8` refuses (its go.mod
// has replace directives), so this module requires etcd's modules at one version and builds
// the server's main package. See ../../Makefile (target kubernetes).
package etcdwrap

import _ "go.etcd.io/etcd/server/v3"
