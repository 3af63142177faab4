//! Cookie and CSRF configuration.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `SameSite` attribute of the session cookie. `None` is deliberately
/// not offered: a session cookie sent on cross-site requests is what CSRF
/// feeds on (SC-08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on top-level cross-site navigations (links), not on cross-site
    /// subrequests or form POSTs. The default.
    #[default]
    Lax,
    /// Never sent cross-site; a user following a link from another site
    /// arrives signed out.
    Strict,
}

/// The session cookie (SPEC §4.2).
///
/// The default is `__Host-tessera=<token>; Secure; HttpOnly; SameSite=Lax;
/// Path=/` with `Max-Age` equal to the time left until the session's
/// absolute expiry, and never a `Domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The name as configured; see [`CookieConfig::effective_name`].
    pub name: String,
    /// `false` drops `Secure` and the `__Host-`/`__Secure-` prefix: for
    /// plain-HTTP development only (a warning is logged once).
    pub secure: bool,
    pub same_site: SameSite,
    /// `Max-Age` = seconds left until the absolute expiry; `false` makes a
    /// browser-session cookie without `Max-Age`.
    pub persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: String::from("__Host-tessera"),
            secure: true,
            same_site: SameSite::Lax,
            persistent: true,
        }
    }
}

impl CookieConfig {
    /// The defaults without `Secure` and without the `__Host-` prefix, for
    /// plain HTTP on a development machine. Note that Chromium accepts
    /// `__Host-`/`Secure` cookies over plain HTTP on `localhost` and
    /// `127.0.0.1`, so local tests rarely need this.
    pub fn insecure_dev() -> Self {
        Self {
            secure: false,
            ..Self::default()
        }
    }

    /// The cookie name actually used: without `secure` the `__Host-` or
    /// `__Secure-` prefix is dropped, since browsers refuse such cookies
    /// without `Secure`.
    pub fn effective_name(&self) -> &str {
        if self.secure {
            return &self.name;
        }
        self.name
            .strip_prefix("__Host-")
            .or_else(|| self.name.strip_prefix("__Secure-"))
            .unwrap_or(&self.name)
    }

    /// The name of the pre-session CSRF nonce cookie: the session cookie's
    /// name plus `-csrf` (so `__Host-tessera-csrf` by default).
    pub fn csrf_nonce_name(&self) -> String {
        format!("{}-csrf", self.effective_name())
    }

    /// Checks the name: an RFC 6265 token, at most 64 bytes, and with
    /// `secure` either unprefixed or `__Host-`/`__Secure-` prefixed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.name;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if n.is_empty() || n.len() > 64 || !n.bytes().all(token) {
            return Err(ConfigError::CookieName(n.clone()));
        }
        if self.effective_name().is_empty() {
            return Err(ConfigError::CookieName(n.clone()));
        }
        Ok(())
    }
}

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
        tessera_core::token::fill_random(&mut b);
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
        match URL_SAFE_NO_PAD.decode_slice(s.trim().as_bytes(), &mut b) {
            Ok(32) => {
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

/// Cross-site request forgery defences for state-changing methods (everything but
/// GET, HEAD, OPTIONS and TRACE), in this order:
///
/// 1. `Sec-Fetch-Site`: `cross-site` is refused; `same-site` is refused
///    unless [`CsrfConfig::allow_same_site`]; `same-origin` and `none` pass.
/// 2. Without it, `Origin` (or, if `Origin` is absent or `null`, the origin
///    of `Referer`) must be one of the allowed origins. With no origin
///    configured, its host and port must equal the request's `Host`.
/// 3. A request with none of these headers must carry a token
///    (`X-CSRF-Token` header or `csrf_token` form field) bound to its
///    session, or, before login, to its nonce cookie.
///
/// A presented `X-CSRF-Token` header is always checked.
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) allow_same_site: bool,
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
            key: CsrfKey::random(),
            token_policy: TokenPolicy::default(),
            max_form_bytes: 64 * 1024,
            pre_session_ttl_secs: 2 * 3600,
        }
    }

    /// Adds an origin (`https://app.example`, `http://127.0.0.1:3000`).
    /// Paths, queries and default ports are normalised away.
    pub fn allowed_origin(mut self, origin: &str) -> Result<Self, ConfigError> {
        let o = parse_origin(origin).ok_or_else(|| ConfigError::Origin(origin.to_owned()))?;
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
}

/// The ASCII serialisation of a URL's origin (`scheme://host[:port]`), or
/// `None` for opaque origins and unparsable input.
pub(crate) fn parse_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s.trim()).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0:?} is not a usable cookie name (RFC 6265 token, 1 to 64 bytes)")]
    CookieName(String),
    #[error("{0:?} is not an origin such as https://app.example")]
    Origin(String),
    #[error("the CSRF key must be 32 bytes written as unpadded base64url (43 characters)")]
    CsrfKey,
    #[error("{0}")]
    StoreUrl(String),
    #[error("cannot open the store: {0}")]
    Store(String),
    #[error("invalid session policy: {0}")]
    Policy(String),
}
