// Package elevation holds what changes who may do what, and with which upstream
// credentials: approval requests and their quorums, just-in-time role grants, break-glass
// sessions, their expiry, and the brokers that supply upstream credentials.
//
// A CredentialBroker hands a front end the credentials to open an upstream connection
// for a resource; engineers never see them. StaticBroker serves credentials written in the
// configuration; a Vault broker mints short-lived ones.
package elevation
