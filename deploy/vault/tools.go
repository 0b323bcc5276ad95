//go:build tools

// Package vaultwrap pins the HashiCorp Vault server that the test harness and the demo run.
// It is its own module so that Portcullis's go.mod stays small; see ../../Makefile (target tools).
package vaultwrap

import (
	_ "github.com/hashicorp/vault"
	_ "github.com/hashicorp/vault-plugin-secrets-kubernetes/cmd/vault-plugin-secrets-kubernetes"
)
