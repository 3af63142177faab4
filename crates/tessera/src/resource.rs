//! Verifying Tessera access tokens in a resource server.
