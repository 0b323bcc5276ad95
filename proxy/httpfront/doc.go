// Package httpfront is the HTTP front end: internal admin APIs (resources of kind http)
// reached through Portcullis on server.http_listen, routed by Host. Each request is
// authenticated with a Portcullis token, classified (the method gives the class; policies
// match the method and path), and decided by the shared gate. An allowed request is
// audited, then forwarded with the resource's own credential (the caller's never is);
// a denied one gets 403 with an RFC 9457 problem body; a held one gets 202 with its
// approval request — once approved, the caller re-sends the identical request with
// Portcullis-Approval: <id> and it runs exactly once — or, with Prefer: wait=N (RFC 7240),
// is held until the decision, as psql is.
package httpfront
