// Package smart is mediflow's SMART Backend Services client: it discovers an
// EHR's token endpoint, signs JWT client assertions (RS384 or ES384), obtains
// and caches access tokens, and understands SMART v1 and v2 scope syntax. It
// also manages the key material a client registers with an EHR (key
// generation, PEM files, RFC 7638 key ids and public JWKS documents).
//
// The server side used by the EHR simulator lives in the authserver
// sub-package.
//
// Nothing in this package logs or puts into an error an access token or a
// signed assertion.
package smart
