//! The verifier's configuration, its defaults, and a `Debug` that redacts
//! the API key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
}

impl VerifierConfig {
    /// A configuration with the defaults: leeway 60 s, refetch interval 10 s,
    /// cache of 10 000 tokens, no feed.
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
            .finish_non_exhaustive()
    }
}
