// Package identity turns bearer tokens into identities. A token is either a static token
// from the configuration (stored as its SHA-256, compared in constant time) or an OpenID
// Connect ID token verified against the configured issuer (signature, issuer, audience,
// expiry). The identity's teams and org roles come from the configuration.
//
// A token that fails verification yields an error wrapping ErrInvalidToken that says why
// without repeating the token; callers must not log tokens either.
package identity
