// Package policy is Portcullis's policy-as-code engine.
//
// Policies are YAML documents (see docs/policy.md) that select requests by resource, action
// class and principal, optionally narrow them with a CEL condition and a schedule, and give
// an effect: allow, deny or require_approval with a quorum. Compile turns a Set of policy
// documents and resource definitions into an Engine once, at load: every selector is
// indexed and every CEL expression type-checked, so that errors surface before anything
// serves traffic. Engine.Evaluate then decides one Request; every matching policy applies,
// any deny wins, and the quorums of all matching approval policies are combined.
//
// The package is pure: it does no I/O and keeps no global state. Front ends turn wire
// traffic into a Request; the configs package reads the documents from disk.
package policy
