//! CSRF configuration. The cookie's is [`tessera_http::cookies::CookieConfig`],
//! the service's `[cookie]` section.

use std::fmt;

use aws_lc_rs::hmac;
use tessera_http::cookies::CookieConfigError;
use tessera_http::csrf::CsrfPolicy;

/// A 32-byte HMAC-SHA256 key for CSRF tokens.
///
/// If none is configured, [`CsrfConfig::new`] draws a random one per
/// process: fine for one process, but an application that runs several
/// processes or restarts behind users' open forms must configure the same
/// key everywhere ([`CsrfKey::from_bytes`] / [`CsrfKey::from_base64url`]),
/// or tokens minted by one process fail in another.
#[derive(Clone)]
pub struct CsrfKey(pub(crate) hmac::Key);

impl CsrfKey {
    /// A fresh key from the OS CSPRNG.
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        tessera_core::secret::fill_random(&mut b);
        let k = Self::from_bytes(&b);
        b.fill(0);
        k
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// 32 bytes written as unpadded base64url (43 characters).
    pub fn from_base64url(s: &str) -> Result<Self, ConfigError> {
        let mut b = [0u8; 32];
        match tessera_core::b64url::decode_into(s.trim().as_bytes(), &mut b).map(<[u8]>::len) {
            Some(32) => {
                let k = Self::from_bytes(&b);
                b.fill(0);
                Ok(k)
            }
            _ => Err(ConfigError::CsrfKey),
        }
    }
}

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(<redacted>)")
    }
}

/// When a state-changing request must carry a CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenPolicy {
    /// Only when the request has neither `Sec-Fetch-Site` nor a usable
    /// `Origin`/`Referer` (old browsers, privacy proxies). The default.
    #[default]
    WhenNoOriginHeaders,
    /// On every state-changing request, in addition to the header checks (defence
    /// in depth for server-rendered forms).
    Always,
}

/// Cross-site request forgery defences for state-changing methods
/// (everything but GET, HEAD and OPTIONS), in this order:
///
/// 1. The headers, judged by [`tessera_http::csrf::judge`], the rule the
///    service's forward auth applies too: `Sec-Fetch-Site` (`cross-site` is
///    refused; `same-site` unless [`CsrfConfig::allow_same_site`];
///    `same-origin` and `none` pass); without it `Origin` (`null` is
///    refused), else the origin of `Referer`, must be one of the allowed
///    origins or, with none configured, the request's own.
/// 2. A request with none of these headers must carry a token
///    (`X-CSRF-Token` header or `csrf_token` form field) bound to its
///    session, or, before login, to its nonce cookie.
///
/// A presented `X-CSRF-Token` header is always checked.
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) allow_same_site: bool,
    pub(crate) trust_forwarded_headers: bool,
    pub(crate) key: CsrfKey,
    pub(crate) token_policy: TokenPolicy,
    pub(crate) max_form_bytes: usize,
    pub(crate) pre_session_ttl_secs: i64,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl CsrfConfig {
    /// No allowed origins (the request's own `Host` is the origin), a random
    /// per-process key, tokens only when the origin headers are missing,
    /// form bodies read up to 64 KiB, pre-session tokens valid for 2 hours.
    pub fn new() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_same_site: false,
            trust_forwarded_headers: false,
            key: CsrfKey::random(),
            token_policy: TokenPolicy::default(),
            max_form_bytes: 64 * 1024,
            pre_session_ttl_secs: 2 * 3600,
        }
    }

    /// Adds an origin, written as browsers send it in `Origin`
    /// (`https://app.example`, `http://127.0.0.1:3000`: no path, no
    /// trailing slash, no default port). Once any is added, only the listed
    /// origins are accepted: list the application's own too.
    pub fn allowed_origin(mut self, origin: &str) -> Result<Self, ConfigError> {
        let o = tessera_http::origin::parse_allowed(origin)
            .map_err(|_| ConfigError::Origin(origin.to_owned()))?;
        if !self.allowed_origins.contains(&o) {
            self.allowed_origins.push(o);
        }
        Ok(self)
    }

    /// Trusts `Sec-Fetch-Site: same-site` (sibling subdomains). Off by
    /// default: a compromised sibling must not be able to act for users.
    pub fn allow_same_site(mut self, allow: bool) -> Self {
        self.allow_same_site = allow;
        self
    }

    /// Believes `X-Forwarded-Host` and `X-Forwarded-Proto` for the
    /// request's own origin. Only for an app reachable solely through a
    /// proxy that sets both itself (replacing any copy the client sent), as
    /// the service's forward auth assumes. Off by default.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> Self {
        self.trust_forwarded_headers = trust;
        self
    }

    pub fn key(mut self, key: CsrfKey) -> Self {
        self.key = key;
        self
    }

    pub fn token_policy(mut self, policy: TokenPolicy) -> Self {
        self.token_policy = policy;
        self
    }

    /// Largest form body read to find `csrf_token` (larger → 413).
    pub fn max_form_bytes(mut self, bytes: usize) -> Self {
        self.max_form_bytes = bytes;
        self
    }

    /// How long a pre-session (login form) token stays valid.
    pub fn pre_session_ttl_secs(mut self, secs: i64) -> Self {
        self.pre_session_ttl_secs = secs.max(1);
        self
    }

    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// The policy the shared rule judges requests by.
    pub(crate) fn policy(&self) -> CsrfPolicy<'_> {
        CsrfPolicy {
            allowed_origins: &self.allowed_origins,
            allow_same_site: self.allow_same_site,
            trust_forwarded_headers: self.trust_forwarded_headers,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    Cookie(#[from] CookieConfigError),
    #[error("{0:?} is not an origin as browsers send it, such as https://app.example")]
    Origin(String),
    #[error("the CSRF key must be 32 bytes written as unpadded base64url (43 characters)")]
    CsrfKey,
    #[error("{0}")]
    StoreUrl(String),
    #[error("cannot open the store: {0}")]
    Store(String),
    #[error("invalid session policy: {0}")]
    Policy(String),
    /// DBSC needs a store shared by the app's processes for its
    /// single-use challenge markers: the store a URL opened, or
    /// `DbscOptions::replay`.
    #[error("DBSC needs a replay store: use SessionLayer::from_store_url or set DbscOptions::replay")]
    DbscStore,
    #[error(
        "the DBSC cookie name must be 1-64 letters, digits, '-', '_' or '.' and differ from the session and CSRF cookies'"
    )]
    DbscCookieName,
}
