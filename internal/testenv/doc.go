// Package testenv starts the real servers Portcullis's tests run against — PostgreSQL,
// Redis and Vault — on loopback with ephemeral ports, and stops them when the test ends.
// A server that cannot be started fails the test with the reason; it never skips. It also
// has a small OIDC issuer for unit tests of token verification.
package testenv
