// Package portcullis is the root of the Portcullis module, an identity-aware access proxy
// with just-in-time elevation. It holds no code; see cmd/portcullis for the binary and
// README.md for the layout.
package portcullis
