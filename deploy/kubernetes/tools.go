//go:build tools

// Package kubewrap pins the Kubernetes servers the test harness and the demo run (the API
// server, the kubelet and kubectl). It is its own module so that Portcullis's go.mod stays
// small; k8s.io/kubernetes lists its staging modules at v0.0.0, so each is replaced by its
// published release of the same minor version. See ../../Makefile (target kubernetes).
package kubewrap

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
