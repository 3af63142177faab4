//! Verifying Tessera access tokens in a resource server (SPEC §1, §4.4, §5).
//!
//! A [`Verifier`] checks the RFC 9068 access tokens (`typ: at+jwt`) that the
//! `tessera` service mints, against the service's JWKS, and refuses tokens of
//! revoked sessions by following the service's revocation feed
//! (`GET /v1/revocations`). Verification itself is local: a signature check
//! and a few claim comparisons, with a cache of already-verified tokens.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera::resource::{Verifier, VerifierConfig};
//!
//! let mut config = VerifierConfig::new(
//!     "http://127.0.0.1:8080",
//!     "tessera",
//!     "http://127.0.0.1:8080/.well-known/jwks.json".parse()?,
//! );
//! config.revocations_url = Some("http://127.0.0.1:8080/v1/revocations".parse()?);
//! // A key with only the `revocations` scope (least privilege):
//! // `tessera api-keys create --name rs --scope revocations`.
//! config.api_key = Some(std::env::var("TESSERA_RS_API_KEY")?);
//! let verifier = Verifier::new(config)?;
//! verifier.refresh_jwks().await?;
//! let _feed = verifier.spawn_feed();
//! let _jwks = verifier.spawn_jwks_refresh();
//! // Tokens are refused until the first snapshot of the feed is in.
//! verifier.feed_synced().await;
//! let token = verifier.verify("eyJ…").await?;
//! println!("{} {:?}", token.claims.sub, token.scopes);
//! # Ok(()) }
//! ```
//!
//! In axum, put the `Verifier` in the state and take [`Authenticated`] as an
//! argument; see [`extract`](Authenticated) and `examples/resource_server.rs`.
//!
//! # What is checked, in order
//!
//! Before anything, when a feed is configured: the revocation set must be
//! current (see below), or every token is refused with
//! [`VerifyError::RevocationStatusUnavailable`]. Then every token check is
//! core's shared access-token verifier, the one `/auth/verify` and
//! introspection in the service use too
//! ([`tessera_core::access::verify`], whose docs list the checks in order:
//! length and form, header — `crit`, `jwk`/`jku`/`x5u`/`x5c`, `typ`, `kid` —,
//! the key from this verifier's JWKS with the algorithm **of the key**, the
//! signature, then `iss`, `aud` (must contain [`VerifierConfig::audience`]),
//! `exp`/`nbf`/`iat` with [`VerifierConfig::leeway_secs`], required claims,
//! and `cnf`: [`Verifier::verify`] refuses a sender-constrained token, which
//! only [`Verifier::verify_request`] accepts, see below).
//! Finally the session (`sid`) must not be in the revocation set; for a
//! token without `sid` (a service client's own, `client_credentials`), its
//! client (`client:<client_id>`, which `tessera clients revoke` puts in the
//! feed). An unknown
//! `kid` triggers at most one JWKS refetch per
//! [`VerifierConfig::jwks_min_refetch_interval`], single-flight.
//!
//! Every failure is a [`VerifyError`] (core's, the same for every face),
//! which the axum extractor answers with `401` and
//! `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750; `DPoP
//! error=…` for a token sent with the DPoP scheme), except
//! `RevocationStatusUnavailable`: `503` with `Retry-After`.
//!
//! # DPoP and certificate-bound tokens
//!
//! The service binds tokens to a client's DPoP key (RFC 9449, `cnf.jkt`) or
//! TLS client certificate (RFC 8705, `cnf.x5t#S256`). The [`Authenticated`]
//! extractor (and [`Verifier::verify_request`], which it calls) accepts
//! them as core's `check_presentation` rules, the ones `/auth/verify`
//! applies:
//!
//! - a DPoP-bound token only as `Authorization: DPoP <token>` with exactly
//!   one `DPoP` proof, signed by the bound key, for this method and URI, with
//!   `ath` the token's hash, `iat` within [`VerifierConfig::dpop`]'s window,
//!   and a `jti` not seen before. `Bearer <token>` is a downgrade: 401
//!   `invalid_token`. The token is cached like any other; the proof is
//!   checked on every request.
//! - a certificate-bound token only as `Bearer`, over a connection whose
//!   [`ClientCertThumbprint`] (a request extension the TLS layer inserts)
//!   is the bound one.
//! - an unbound token only as `Bearer`.
//!
//! **`htu`.** A proof names the URI the client sent it to. It is compared
//! (after RFC 3986 normalisation: case, default port; the query ignored)
//! with [`VerifierConfig::public_base_url`] followed by the request's path
//! (the whole path, also inside nested routers). Without a base URL it is
//! `https://` + the `Host` header + path, which is only right when clients
//! connect to this process over TLS directly: **behind a reverse proxy or
//! load balancer, set `public_base_url`** to the URL clients use
//! (RFC 9449 §4.3, checklist DP-08; `X-Forwarded-*` headers are never
//! trusted).
//!
//! **Replay.** Each proof's `jti` is remembered in this process until the
//! proof is too old anyway (`max_age_secs` + 1 s, 61 s by default), in a
//! cache of at most [`VerifierConfig::dpop_replay_capacity`] proofs (about
//! 80 bytes each: 1 000 000 by default, ~80 MB when full, which takes 16 000
//! proofs a second). When it is full of unexpired proofs, DPoP requests get
//! 503 with `Retry-After` rather than being accepted unchecked. Each
//! instance keeps its own cache, so a proof replayed to *another* instance
//! within its window is not caught there: keep `max_age_secs` short (the
//! proof is still bound to this token, method and URI).
//!
//! **Nonces** (RFC 9449 §9) are off by default. With
//! [`VerifierConfig::dpop_nonces`], a proof without a fresh nonce gets 401
//! `DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` header to retry with.
//! Nonces are stateless (the issue time, sealed): give every instance
//! behind one load balancer the same [`VerifierConfig::dpop_nonce_key`]. The
//! service's token-endpoint nonces are never accepted here.
//!
//! ```no_run
//! # fn run(mut config: tessera::resource::VerifierConfig) -> Result<(), Box<dyn std::error::Error>> {
//! config.public_base_url = Some("https://api.example.com".parse()?);
//! config.dpop_nonces = true;
//! config.dpop_nonce_key = Some([0x42; 32]); // the same on every instance; keep it secret
//! # Ok(()) }
//! ```
//!
//! # Cache
//!
//! Verified tokens are cached (key: the full token string, compared in full;
//! bounded, [`VerifierConfig::cache_capacity`]). A hit re-checks `exp`
//! against the clock and the revocation set, so the cache never extends a
//! token's life or hides a revocation. The cache is emptied whenever a key
//! disappears from the JWKS or a `kid` comes back with other key material,
//! and every entry remembers the key-removal generation it was verified
//! under: an entry added by a verification that raced with the removal (it
//! read the old keys, and inserted after the cache was emptied) is never
//! answered from, so a withdrawn key stops verifying at the install.
//!
//! # When a signing key is withdrawn
//!
//! `tessera keys revoke KID` removes the key from the service's JWKS at once
//! (running service processes sharing the store follow within their key
//! reload, 30 s). This verifier refetches the JWKS every
//! [`VerifierConfig::jwks_refresh_interval`] (default 60 s), and also on the
//! first token signed by an unknown `kid` (the fresh key that replaces a
//! revoked signer is one, at most once per
//! [`VerifierConfig::jwks_min_refetch_interval`]); the install drops the
//! withdrawn key and every cached token it verified. So tokens of a revoked
//! key are refused here at most about `jwks_refresh_interval` + 30 s after
//! the revocation. A failed refetch keeps the previous keys (logged).
//!
//! Each installed key set also remembers a few encoded protected headers of
//! tokens whose signature verified with it, and the key each one selected: a
//! new token with a byte-identical header (every token of one issuer key has
//! the same one) skips decoding and parsing the header again. The header
//! checks depend only on those bytes and on the key set, so the outcome is the
//! same; forged headers never get in (no verified signature), and any JWKS
//! install starts with an empty memo.
//!
//! # When the revocation feed is down: fail closed
//!
//! Verification is local, but a token is only as good as the revocation set
//! it is checked against (SPEC §3: verification fails closed). With a
//! `revocations_url` configured, the verifier therefore refuses every token
//! with [`VerifyError::RevocationStatusUnavailable`] (the extractor answers
//! `503`, `Retry-After: 5`, `{"error":"temporarily_unavailable"}`: an
//! outage, not a bad token, so clients retry rather than discard their
//! tokens):
//!
//! - until the follower has read the feed's **first complete snapshot** (every
//!   page of it; [`Verifier::feed_synced`] waits for that);
//! - once the feed has not been in sync for longer than
//!   [`VerifierConfig::feed_max_staleness`] (default 75 s, three times the
//!   25 s long-poll, so a healthy feed, which answers at least once per
//!   long-poll, never comes near it; the follower retries failed polls with
//!   a backoff of at most 10 s and resumes from its cursor, so no revocation
//!   is lost once the service is reachable again);
//! - **at once** when the feed answers `401` or `403`: the API key is wrong,
//!   revoked, or lacks the `revocations` scope. That is a configuration error,
//!   logged at `error` when it starts, and waiting for the staleness bound
//!   would only hide it. The follower keeps retrying (every 10 s) and
//!   serves again as soon as the key is accepted.
//!
//! Each refusal is counted in the `metrics` facade as
//! `tessera_resource_feed_refusals_total{reason="not_synced"|"stale"|"unauthorized"}`
//! (install any `metrics` recorder to export it), failed polls as
//! `tessera_resource_feed_errors_total{kind=…}`, and the start of each refusing
//! period is logged at `error`. [`Verifier::feed_status`] tells where the
//! feed stands (for a readiness probe).
//!
//! Deployments that prefer availability over revocation set
//! [`VerifierConfig::accept_when_feed_stale`]: tokens are then accepted with
//! the last known revocation set however old it is (before the first
//! snapshot too), with the same logs and a warning. It does not cover a
//! `401`/`403`, which is refused either way. A verifier without a
//! `revocations_url` does not check revocation at all (a warning is logged
//! when [`Verifier::spawn_feed`] is called without one).

mod cache;
mod config;
mod error;
mod extract;
mod feed;
mod feed_status;
mod jwks;
mod verify;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub use config::VerifierConfig;
pub use error::{ConfigError, JwksError, RequestError, VerifyError};
pub use extract::{AuthRejection, Authenticated, ClientCertThumbprint, RejectionReason, require_scope};
pub use feed_status::{FEED_ERRORS, FEED_REFUSALS, FeedStatus};
pub use tessera_core::access::{AccessClaims, Audience, MAX_KID_BYTES, MAX_LEEWAY_SECS, MAX_TOKEN_BYTES};
/// DPoP (RFC 9449) as core checks it, for every face.
pub use tessera_core::dpop::{
    BoundedReplayCache, DpopAlg, DpopPolicy, PresentationError, ProofHeader, Scheme,
};
/// The clock is core's, the one every crate reads (tests pin a
/// [`ManualClock`]).
pub use tessera_core::{Clock, ManualClock, SystemClock, Timestamp};
pub use url::Url;
pub use verify::{ResourceRequest, VerifiedToken};

use cache::TokenCache;
use feed::RevocationSet;
use feed_status::FeedState;
use tessera_core::Sealer;
use tessera_core::access::{AudienceRule, Expected, KeySet};
use tessera_core::dpop::{DpopVerifier, NonceIssuer, NonceUse, Presentation, check_presentation};

/// Verifies Tessera access tokens. Cheap to clone (shared state); put one in
/// the axum state and extract [`Authenticated`].
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &&*self.inner.issuer)
            .field("audience", &&*self.inner.audience)
            .field("keys", &read(&self.inner.keys).len())
            .field("feed_status", &self.feed_status())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) issuer: Box<str>,
    pub(crate) audience: Box<str>,
    pub(crate) leeway: i64,
    pub(crate) clock: Arc<dyn Clock>,
    /// `None` for a verifier built from a static JWKS: never fetches.
    pub(crate) jwks_url: Option<Url>,
    pub(crate) jwks_min_refetch_interval: Duration,
    pub(crate) jwks_refresh_interval: Duration,
    pub(crate) http_timeout: Duration,
    pub(crate) keys: RwLock<Arc<KeySet>>,
    /// Bumped on every JWKS install.
    pub(crate) keys_generation: AtomicU64,
    /// Bumped (after the new keys are in place) by every install that
    /// withdrew a key; cache entries verified under an older value are not
    /// answered from.
    pub(crate) keys_removed: AtomicU64,
    /// Single-flight guard and rate limit of JWKS fetches: the time of the
    /// last fetch attempt.
    pub(crate) refetch: tokio::sync::Mutex<Option<Instant>>,
    pub(crate) cache: TokenCache,
    pub(crate) revocations: RevocationSet,
    pub(crate) revocations_url: Option<Url>,
    pub(crate) api_key: Option<String>,
    pub(crate) feed_wait_secs: u64,
    pub(crate) feed: FeedState,
    pub(crate) http: reqwest::Client,
    /// Proof checks, the replay cache and the nonces (core's, shared with
    /// `/auth/verify`).
    pub(crate) dpop: DpopVerifier,
    /// `public_base_url` without its trailing `/`: the request path follows.
    pub(crate) public_base: Option<Box<str>>,
    /// The accepted proof algorithms, space-separated, for challenges.
    pub(crate) dpop_algs: Arc<str>,
    /// `VerifierConfig::client_cert_header`.
    pub(crate) client_cert_header: Option<axum::http::HeaderName>,
}

impl Verifier {
    /// A verifier that fetches the JWKS from `config.jwks_url` when it meets a
    /// `kid` it does not know (the first token triggers the first fetch; call
    /// [`Verifier::refresh_jwks`] at startup to fetch eagerly).
    pub fn new(config: VerifierConfig) -> Result<Self, ConfigError> {
        let url = config.jwks_url.clone();
        Self::build(config, KeySet::default(), Some(url))
    }

    /// A verifier with a fixed JWKS (a JSON object `{"keys": [...]}`), for
    /// tests and offline use. It never fetches keys; `config.jwks_url` is
    /// ignored.
    pub fn with_jwks(config: VerifierConfig, jwks: serde_json::Value) -> Result<Self, ConfigError> {
        let keys = KeySet::from_jwks(&jwks).map_err(JwksError::from)?;
        Self::build(config, keys, None)
    }

    fn build(config: VerifierConfig, keys: KeySet, jwks_url: Option<Url>) -> Result<Self, ConfigError> {
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::LeewayTooLarge(config.leeway_secs));
        }
        if config.issuer.is_empty() {
            return Err(ConfigError::Empty("issuer"));
        }
        if config.audience.is_empty() {
            return Err(ConfigError::Empty("audience"));
        }
        if config.feed_wait_secs > 30 {
            return Err(ConfigError::Invalid("feed_wait_secs must be at most 30"));
        }
        let wait = config.feed_wait_secs.max(1);
        if config.feed_max_staleness < Duration::from_secs(wait + 5) {
            return Err(ConfigError::Invalid(
                "feed_max_staleness must be at least feed_wait_secs + 5 s",
            ));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        let leeway = i64::try_from(config.leeway_secs).unwrap_or(60);
        let public_base = match &config.public_base_url {
            None => None,
            Some(u) => {
                if !matches!(u.scheme(), "http" | "https")
                    || u.cannot_be_a_base()
                    || u.host().is_none()
                    || u.query().is_some()
                    || u.fragment().is_some()
                    || !u.username().is_empty()
                    || u.password().is_some()
                {
                    return Err(ConfigError::Invalid(
                        "public_base_url must be an http(s) URL with a host and no query, fragment or user",
                    ));
                }
                Some(u.as_str().trim_end_matches('/').into())
            }
        };
        let dpop_algs: Arc<str> = config.dpop.algs_list().into();
        let replay = Arc::new(BoundedReplayCache::new(config.dpop_replay_capacity));
        let mut dpop = DpopVerifier::new(config.dpop, replay, Arc::clone(&config.clock));
        if config.dpop_nonces {
            let key = config.dpop_nonce_key.unwrap_or_else(|| {
                let mut key = [0u8; 32];
                tessera_core::secret::fill_random(&mut key);
                key
            });
            let lifetime = i64::try_from(config.dpop_nonce_lifetime.as_secs()).unwrap_or(i64::MAX);
            dpop = dpop.with_nonces(NonceIssuer::new(
                Arc::new(Sealer::new(&key)),
                NonceUse::Resource,
                lifetime,
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: config.issuer.into_boxed_str(),
                audience: config.audience.into_boxed_str(),
                leeway,
                clock: config.clock,
                jwks_url,
                jwks_min_refetch_interval: config.jwks_min_refetch_interval,
                jwks_refresh_interval: config.jwks_refresh_interval,
                http_timeout: config.http_timeout,
                keys: RwLock::new(Arc::new(keys)),
                keys_generation: AtomicU64::new(0),
                keys_removed: AtomicU64::new(0),
                refetch: tokio::sync::Mutex::new(None),
                cache: TokenCache::new(config.cache_capacity),
                revocations: RevocationSet::default(),
                feed: FeedState::new(
                    config.revocations_url.is_some(),
                    config.feed_max_staleness,
                    config.accept_when_feed_stale,
                ),
                revocations_url: config.revocations_url,
                api_key: config.api_key,
                feed_wait_secs: wait,
                http,
                dpop,
                public_base,
                dpop_algs,
                client_cert_header: config.client_cert_header,
            }),
        })
    }

    /// Verifies a compact JWS access token presented as a Bearer token (see
    /// the module docs for the checks): a sender-constrained token (`cnf`)
    /// is refused with [`VerifyError::SenderConstrained`], also when a
    /// [`Verifier::verify_request`] cached it. An unknown `kid` triggers at
    /// most one JWKS refetch per `jwks_min_refetch_interval`
    /// (single-flight) before the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
        self.verify_token(token, false).await
    }

    /// Verifies a token and how one request presents it (RFC 9449 §7, RFC
    /// 8705 §3), as the [`Authenticated`] extractor does: the token as in
    /// [`Verifier::verify`] but accepting `cnf` (the cache is used, and a
    /// hit still re-checks expiry and revocation), then core's
    /// [`check_presentation`] for
    /// this request, never cached: a DPoP-bound token only with the `DPoP`
    /// scheme and one fresh proof of its key for this method, URI (see
    /// [`VerifierConfig::public_base_url`]) and token, whose `jti` is then
    /// recorded; a certificate-bound token only with that client
    /// certificate; an unbound token only as `Bearer`.
    pub async fn verify_request(
        &self,
        token: &str,
        request: &ResourceRequest<'_>,
    ) -> Result<Arc<VerifiedToken>, RequestError> {
        let verified = self.verify_token(token, true).await?;
        let uri = if request.scheme == Scheme::Dpop {
            self.inner.request_uri(request.path, request.host)
        } else {
            String::new()
        };
        let presentation = Presentation {
            scheme: request.scheme,
            proof: request.proof,
            method: request.method,
            uri: &uri,
            client_cert: request.client_cert,
        };
        check_presentation(&self.inner.dpop, &verified.claims, token, &presentation).await?;
        Ok(verified)
    }

    /// A fresh resource-server nonce for a `DPoP-Nonce` header, when
    /// [`VerifierConfig::dpop_nonces`] is on (a handler may send one on a
    /// 200, with `Cache-Control: no-store`, RFC 9449 §8.2).
    pub fn fresh_dpop_nonce(&self) -> Option<String> {
        self.inner.dpop.fresh_nonce()
    }

    async fn verify_token(&self, token: &str, accept_bound: bool) -> Result<Arc<VerifiedToken>, VerifyError> {
        let generation = self.inner.keys_generation.load(Ordering::Acquire);
        match verify::verify(&self.inner, token, accept_bound) {
            Err(VerifyError::UnknownKid) if self.inner.jwks_url.is_some() => {
                if self.refetch_for_unknown_kid(generation).await {
                    verify::verify(&self.inner, token, accept_bound)
                } else {
                    Err(VerifyError::UnknownKid)
                }
            }
            other => other,
        }
    }

    /// Verifies without any I/O: an unknown `kid` is refused at once. Used by
    /// [`Verifier::verify`]; handy in synchronous code and benchmarks. Like
    /// `verify`, refuses sender-constrained tokens.
    pub fn verify_sync(&self, token: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
        verify::verify(&self.inner, token, false)
    }

    /// Fetches the JWKS now (single-flight, not rate-limited) and installs it.
    /// A verifier built with [`Verifier::with_jwks`] has nothing to fetch and
    /// returns `Ok`.
    pub async fn refresh_jwks(&self) -> Result<(), JwksError> {
        let Some(url) = self.inner.jwks_url.clone() else {
            return Ok(());
        };
        let mut last = self.inner.refetch.lock().await;
        *last = Some(Instant::now());
        let result = jwks::fetch(&self.inner.http, &url, self.inner.http_timeout).await;
        drop(last);
        let keys = result?;
        self.install_keys(keys);
        Ok(())
    }

    /// Refetches the JWKS every `jwks_refresh_interval`, so that keys removed
    /// by the issuer stop verifying. Errors are logged and the old keys kept.
    ///
    /// # Panics
    ///
    /// Like `tokio::spawn`, when called outside a Tokio runtime.
    pub fn spawn_jwks_refresh(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if this.inner.jwks_url.is_none() {
                return;
            }
            let period = this.inner.jwks_refresh_interval.max(Duration::from_secs(1));
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = this.refresh_jwks().await {
                    tracing::warn!(error = %e, "periodic JWKS refresh failed; keeping the current keys");
                }
            }
        })
    }

    /// Adds a revoked session handle by hand (e.g. from a webhook or a test);
    /// tokens with this `sid` are refused until `until_unix` has passed.
    pub fn insert_revocation(&self, sid: &str, until_unix: i64) {
        let now = self.inner.now();
        self.inner
            .revocations
            .insert_many(std::iter::once((sid.to_owned(), until_unix)), now);
    }

    /// Whether a session handle is in the revocation set.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.inner.revocations.is_revoked(sid)
    }

    /// The `kid`s currently known.
    pub fn key_ids(&self) -> Vec<String> {
        read(&self.inner.keys).kids().map(str::to_owned).collect()
    }

    /// Empties the cache of verified tokens.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    fn install_keys(&self, keys: KeySet) {
        install_keys(&self.inner, keys);
    }

    /// Called after a token had an unknown `kid`. Returns whether a retry is
    /// worth it: someone installed keys since `seen_generation`, or we just
    /// fetched them. At most one fetch per `jwks_min_refetch_interval`, and
    /// concurrent callers wait for the one fetch in flight.
    async fn refetch_for_unknown_kid(&self, seen_generation: u64) -> bool {
        let Some(url) = self.inner.jwks_url.clone() else {
            return false;
        };
        let mut last = self.inner.refetch.lock().await;
        if self.inner.keys_generation.load(Ordering::Acquire) != seen_generation {
            return true;
        }
        if let Some(at) = *last
            && at.elapsed() < self.inner.jwks_min_refetch_interval
        {
            return false;
        }
        *last = Some(Instant::now());
        match jwks::fetch(&self.inner.http, &url, self.inner.http_timeout).await {
            Ok(keys) => {
                self.install_keys(keys);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed; keeping the current keys");
                false
            }
        }
    }
}

impl Inner {
    /// What this resource server expects of a token; `accept_bound` when
    /// the caller checks the presentation of a bound token next.
    #[inline]
    pub(crate) fn expected(&self, accept_bound: bool) -> Expected<'_> {
        Expected {
            issuer: &self.issuer,
            audience: AudienceRule::Contains(&self.audience),
            leeway_secs: self.leeway.unsigned_abs(),
            accept_sender_constrained: accept_bound,
        }
    }

    /// The URI a DPoP proof's `htu` must name: the configured public base
    /// URL and the request path, or else `https://` + `Host` + path. Empty
    /// (so no `htu` matches) when neither is usable.
    fn request_uri(&self, path: &str, host: Option<&str>) -> String {
        if !path.starts_with('/') {
            return String::new();
        }
        match (&self.public_base, host) {
            (Some(base), _) => format!("{base}{path}"),
            (None, Some(host))
                if !host.contains('@') && host.parse::<axum::http::uri::Authority>().is_ok() =>
            {
                format!("https://{host}{path}")
            }
            _ => String::new(),
        }
    }

    /// Unix seconds, from the configured clock.
    #[inline]
    pub(crate) fn now(&self) -> i64 {
        self.clock.now().unix_secs()
    }
}

pub(crate) fn install_keys(inner: &Inner, keys: KeySet) {
    let mut current = write(&inner.keys);
    // A key withdrawn, or a kid now naming other key material.
    let removed = !current.is_subset_of(&keys);
    *current = Arc::new(keys);
    drop(current);
    if removed {
        // A key the issuer withdrew must stop verifying at once, also for
        // tokens verified earlier. The generation moves after the new keys
        // are visible, so an entry that a concurrent verification (still
        // with the old keys) inserts after the clear below carries the old
        // generation and is never answered from.
        inner.keys_removed.fetch_add(1, Ordering::AcqRel);
        inner.cache.clear();
    }
    inner.keys_generation.fetch_add(1, Ordering::AcqRel);
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
