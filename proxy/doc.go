// Package proxy holds Portcullis's protocol front ends. Each front end (pgwire for
// PostgreSQL, later httpapi and kube) accepts wire traffic, authenticates it with the
// identity package, turns each request into a policy.Action, and enforces the decision.
package proxy
