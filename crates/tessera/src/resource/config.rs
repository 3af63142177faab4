//! The verifier's configuration, its defaults, and a `Debug` that redacts
//! the API key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::dpop::{BoundedReplayCache, DpopPolicy};
use url::Url;

#[cfg(doc)]
use super::Verifier;
use super::{Clock, MAX_LEEWAY_SECS, SystemClock};

/// Configuration of a [`Verifier`]. Build it with [`VerifierConfig::new`] and
/// adjust the public fields.
#[derive(Clone)]
pub struct VerifierConfig {
    /// The issuer (`iss`), compared byte for byte: the service's
    /// `[oauth] issuer`, by default `http://<listen>` without a trailing slash.
    pub issuer: String,
    /// This resource server's identifier; `aud` must contain it.
    pub audience: String,
    /// The service's JWKS, `…/.well-known/jwks.json`.
    pub jwks_url: Url,
    /// The revocation feed, `…/v1/revocations`. `None`: no feed.
    pub revocations_url: Option<Url>,
    /// The API key (`tsk_…`) sent as `Authorization: Bearer` to the feed.
    pub api_key: Option<String>,
    /// Leeway for `exp`, `nbf` and `iat`, at most 60 s. Default 60.
    pub leeway_secs: u64,
    /// At most one JWKS fetch for unknown `kid`s per this interval. Default 10 s.
    pub jwks_min_refetch_interval: Duration,
    /// How often [`Verifier::spawn_jwks_refresh`] refetches the JWKS, so that
    /// removed (e.g. revoked) keys stop verifying. Default 60 s.
    pub jwks_refresh_interval: Duration,
    /// Verified tokens kept in the cache; 0 disables it. Default 10 000.
    pub cache_capacity: usize,
    /// `wait` of the long-poll, 1–30 s. Default 25.
    pub feed_wait_secs: u64,
    /// With a feed configured, every token is refused once the feed has not
    /// been in sync for longer than this (see "fail closed" in the module
    /// docs). At least `feed_wait_secs` + 5 s, or a healthy but quiet feed
    /// would trip it between two long-polls. Default 75 s (3 × the default
    /// `feed_wait_secs`).
    pub feed_max_staleness: Duration,
    /// Opt-in: accept tokens with the last known revocation set however long
    /// the feed has been out of sync (and before its first snapshot). A
    /// `401`/`403` from the feed is still refused. Default `false`.
    pub accept_when_feed_stale: bool,
    /// Timeout of a JWKS fetch (connect + body). Default 10 s.
    pub http_timeout: Duration,
    /// Where "now" comes from. Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// How DPoP proofs are judged (RFC 9449): accepted algorithms and the
    /// `iat` window. Use the same policy as the service. Empty `algs`
    /// turns DPoP off: no challenge offers it and every proof is refused.
    /// Default [`DpopPolicy::default`] (ES256, EdDSA, ES384; 60 s old, 5 s
    /// ahead).
    pub dpop: DpopPolicy,
    /// This resource server's externally visible base URL, e.g.
    /// `https://api.example.com` (a path prefix is kept: a proxy that
    /// strips `/api` before forwarding is configured as
    /// `https://example.com/api`). A proof's `htu` must name this base
    /// followed by the request's path (RFC 9449 §4.3 check 9, checklist
    /// DP-08). Unset: `https://` + the request's `Host` + path, which is
    /// only right when clients reach this process directly over TLS.
    /// **Behind a proxy or load balancer, set it**: the `Host` it forwards
    /// and the scheme it terminates are not what the client signed, and
    /// `X-Forwarded-*` headers are never read. Default `None`.
    pub public_base_url: Option<Url>,
    /// DPoP proofs remembered against replay (RFC 9449 §11.1), in this
    /// process: each `jti` is kept until its proof is too old anyway
    /// (`dpop.max_age_secs` + 1 s). About 80 bytes per proof at most; when
    /// full of unexpired proofs, DPoP requests are answered 503 rather
    /// than accepted unchecked. Default
    /// [`BoundedReplayCache::DEFAULT_CAPACITY`] (1 000 000: ~80 MB at most,
    /// 16 000 proofs a second over the default 61 s window).
    pub dpop_replay_capacity: usize,
    /// Require a fresh server nonce in every DPoP proof (RFC 9449 §9): a
    /// proof without one is answered 401 `use_dpop_nonce` with a
    /// `DPoP-Nonce` header. Default `false`.
    pub dpop_nonces: bool,
    /// The key that seals this resource server's nonces. `None`: a random
    /// key per process, so a nonce is only good at the process that issued
    /// it. Give several instances behind one load balancer the same key.
    /// Nonces of the service's token endpoint are never accepted here, even
    /// under the same key. Default `None`.
    pub dpop_nonce_key: Option<[u8; 32]>,
    /// How long a nonce stays fresh. Default 300 s.
    pub dpop_nonce_lifetime: Duration,
    /// Behind a TLS-terminating proxy: the header in which it forwards the
    /// client's certificate (PEM, URL-encoded or not; nginx
    /// `$ssl_client_escaped_cert`), read when no [`ClientCertThumbprint`]
    /// extension is present. Only for a proxy that overwrites the header on
    /// every request (RFC 8705 §6.4). Default `None`: certificate-bound
    /// tokens need the extension a TLS acceptor inserts.
    ///
    /// [`ClientCertThumbprint`]: super::ClientCertThumbprint
    pub client_cert_header: Option<axum::http::HeaderName>,
}

impl VerifierConfig {
    /// A configuration with the defaults: leeway 60 s, refetch interval 10 s,
    /// cache of 10 000 tokens, no feed; DPoP accepted with the default
    /// policy, no server nonces.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_url: Url) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url,
            revocations_url: None,
            api_key: None,
            leeway_secs: MAX_LEEWAY_SECS,
            jwks_min_refetch_interval: Duration::from_secs(10),
            jwks_refresh_interval: Duration::from_secs(60),
            cache_capacity: 10_000,
            feed_wait_secs: 25,
            feed_max_staleness: Duration::from_secs(75),
            accept_when_feed_stale: false,
            http_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            dpop: DpopPolicy::default(),
            public_base_url: None,
            dpop_replay_capacity: BoundedReplayCache::DEFAULT_CAPACITY,
            dpop_nonces: false,
            dpop_nonce_key: None,
            dpop_nonce_lifetime: Duration::from_secs(300),
            client_cert_header: None,
        }
    }
}

impl fmt::Debug for VerifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url.as_str())
            .field("revocations_url", &self.revocations_url.as_ref().map(Url::as_str))
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("leeway_secs", &self.leeway_secs)
            .field("jwks_min_refetch_interval", &self.jwks_min_refetch_interval)
            .field("jwks_refresh_interval", &self.jwks_refresh_interval)
            .field("cache_capacity", &self.cache_capacity)
            .field("feed_wait_secs", &self.feed_wait_secs)
            .field("feed_max_staleness", &self.feed_max_staleness)
            .field("accept_when_feed_stale", &self.accept_when_feed_stale)
            .field("http_timeout", &self.http_timeout)
            .field("dpop", &self.dpop)
            .field("public_base_url", &self.public_base_url.as_ref().map(Url::as_str))
            .field("dpop_replay_capacity", &self.dpop_replay_capacity)
            .field("dpop_nonces", &self.dpop_nonces)
            .field(
                "dpop_nonce_key",
                &self.dpop_nonce_key.as_ref().map(|_| "[redacted]"),
            )
            .field("dpop_nonce_lifetime", &self.dpop_nonce_lifetime)
            .finish_non_exhaustive()
    }
}
