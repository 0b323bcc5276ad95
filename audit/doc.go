// Package audit is Portcullis's tamper-evident audit log.
//
// The log is a directory of append-only segment files of JSON lines. Every event carries
// the SHA-256 of the event before it (prev_hash) and of itself (hash), computed over the
// exact bytes written, so editing, removing or reordering any event breaks the chain at
// that point; a small head record holds the last sequence number and hash so that cutting
// events off the end is caught too. Verify recomputes the chain.
//
// Log.Append returns only once the event is durable (written and fsynced). Concurrent
// appends are committed in groups that share one fsync, which keeps throughput up under
// load. A write that fails makes that append and every later one fail: callers treat the
// failure as a reason not to act (audit before act, fail closed).
//
// Committed events are also handed to Sinks, best effort, for export elsewhere.
package audit
