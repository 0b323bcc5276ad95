// Package pgwire is Portcullis's PostgreSQL front end: a v3 protocol server that clients
// (psql, pgbench, libpq, pgx) connect to as if it were PostgreSQL.
//
// A session authenticates the client's password as a Portcullis token, opens its own
// upstream connection with credentials from the resource's broker, and then relays
// messages. Every statement — a simple Query, or the text of an extended-protocol Parse —
// is classified with the PostgreSQL parser and decided by policy when it would run: allowed
// statements are audited and forwarded untouched; denied ones get an ErrorResponse
// (SQLSTATE 42501) in their place; those needing approval wait, without blocking other
// sessions, until a quorum approves that exact statement. Upstream responses stream back
// as they arrive; nothing buffers a whole result.
//
// Two goroutines carry a session: the client loop reads, decides and forwards; the relay
// copies upstream responses to the client. Responses Portcullis makes up itself (errors,
// notices) go through the relay's queue so that they reach the client in protocol order.
package pgwire
