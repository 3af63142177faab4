//! The session cookie (SPEC §4.2): its configuration here, reading it from
//! `Cookie` request headers in [`header`] and [`read`], writing `Set-Cookie`
//! in [`write`](mod@write).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod header;
pub mod read;
pub mod write;

pub use read::{SessionValue, logout_values, session_value, session_values};
pub use write::{removal, session_cookie, session_removal, set_cookie};

/// Longest cookie name accepted: with the value (47 bytes for a session
/// token) it stays far below the 4096 bytes browsers keep (SC-09).
pub const MAX_NAME_LEN: usize = 64;

/// The `SameSite` attribute. `None` is deliberately not offered: a session
/// cookie sent on cross-site requests is what CSRF feeds on (SC-08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent on top-level cross-site navigations (links), not on cross-site
    /// subrequests or form POSTs.
    #[default]
    Lax,
    /// Never sent cross-site; a user following a link from another site
    /// arrives signed out.
    Strict,
}

impl SameSite {
    pub const NAMES: &'static [&'static str] = &["lax", "strict"];

    pub const fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "lax",
            SameSite::Strict => "strict",
        }
    }
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SameSite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lax" => Ok(SameSite::Lax),
            "strict" => Ok(SameSite::Strict),
            _ => Err(format!("expected one of {}, got {s:?}", Self::NAMES.join(", "))),
        }
    }
}

/// The session cookie's configuration: the service's `[cookie]` section and
/// the library's `CookieConfig` are this one type.
///
/// The default is `__Host-tessera=<token>; HttpOnly; SameSite=Lax; Secure;
/// Path=/` with `Max-Age` equal to the time left until the session's
/// absolute expiry. `Path` is always `/`: the session covers the whole
/// site, and the `__Host-` prefix requires it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieConfig {
    /// The name as configured; see [`CookieConfig::effective_name`].
    pub name: String,
    /// `false` drops `Secure` and the `__Host-`/`__Secure-` prefix: for
    /// plain-HTTP development only (both faces warn at start).
    pub secure: bool,
    pub same_site: SameSite,
    /// `Max-Age` = whole seconds left until the absolute expiry; `false`
    /// makes a browser-session cookie without `Max-Age`.
    pub persistent: bool,
    /// A `Domain` attribute, shared with the subdomains. Not allowed with a
    /// `__Host-` name (browsers drop such a cookie); the default has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The `Partitioned` attribute (CHIPS), for an application embedded in
    /// other sites' frames. Requires `secure`.
    pub partitioned: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: String::from("__Host-tessera"),
            secure: true,
            same_site: SameSite::Lax,
            persistent: true,
            domain: None,
            partitioned: false,
        }
    }
}

impl CookieConfig {
    /// The defaults without `Secure` and without the `__Host-` prefix, for
    /// plain HTTP on a development machine. Chromium accepts
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

    /// Checks what browsers would otherwise silently refuse: the name is an
    /// RFC 6265 token of 1 to [`MAX_NAME_LEN`] bytes and not only a prefix;
    /// a `__Host-` cookie has no `Domain`; `Partitioned` comes with
    /// `Secure`; a `Domain` is a host name.
    pub fn validate(&self) -> Result<(), CookieConfigError> {
        let n = &self.name;
        if n.is_empty() || n.len() > MAX_NAME_LEN || !n.bytes().all(is_token_byte) {
            return Err(CookieConfigError::Name(n.clone()));
        }
        if self.effective_name().is_empty() {
            return Err(CookieConfigError::Name(n.clone()));
        }
        if let Some(d) = &self.domain {
            if self.secure && n.starts_with("__Host-") {
                return Err(CookieConfigError::HostPrefixWithDomain);
            }
            if !matches!(url::Host::parse(d), Ok(url::Host::Domain(_))) || !d.bytes().all(is_token_byte) {
                return Err(CookieConfigError::Domain(d.clone()));
            }
        }
        if self.partitioned && !self.secure {
            return Err(CookieConfigError::PartitionedWithoutSecure);
        }
        Ok(())
    }
}

/// RFC 6265 `token` characters (RFC 9110 tchar).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A cookie configuration browsers would not keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieConfigError {
    #[error(
        "{0:?} is not a usable cookie name (RFC 6265 token characters, 1 to 64 bytes, not only a prefix)"
    )]
    Name(String),
    #[error("a __Host- cookie cannot have a Domain: drop the domain, or use the __Secure- prefix")]
    HostPrefixWithDomain,
    #[error("{0:?} is not a domain name")]
    Domain(String),
    #[error("a Partitioned cookie must be Secure")]
    PartitionedWithoutSecure,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefixes_and_attributes_are_checked() {
        assert_eq!(CookieConfig::default().validate(), Ok(()));
        assert_eq!(CookieConfig::insecure_dev().effective_name(), "tessera");
        let with = |f: fn(&mut CookieConfig)| {
            let mut c = CookieConfig::default();
            f(&mut c);
            c.validate()
        };
        for bad in ["", "bad name", "a;b", "é", &"n".repeat(65)] {
            let c = CookieConfig {
                name: bad.to_owned(),
                ..CookieConfig::default()
            };
            assert!(matches!(c.validate(), Err(CookieConfigError::Name(_))), "{bad:?}");
        }
        assert!(with(|c| c.name = "n".repeat(64)).is_ok());
        // Only a prefix: nothing is left once `secure = false` drops it.
        assert!(
            with(|c| {
                c.name = "__Host-".into();
                c.secure = false;
            })
            .is_err()
        );
        assert_eq!(
            with(|c| c.domain = Some("app.example".into())),
            Err(CookieConfigError::HostPrefixWithDomain)
        );
        assert!(
            with(|c| {
                c.name = "__Secure-s".into();
                c.domain = Some("app.example".into());
            })
            .is_ok()
        );
        for bad in ["", "a b", "127.0.0.1", "app.example;x", "[::1]"] {
            let c = CookieConfig {
                name: "s".into(),
                domain: Some(bad.to_owned()),
                ..CookieConfig::default()
            };
            assert!(
                matches!(c.validate(), Err(CookieConfigError::Domain(_))),
                "{bad:?}"
            );
        }
        assert!(with(|c| c.partitioned = true).is_ok());
        assert_eq!(
            with(|c| {
                c.partitioned = true;
                c.secure = false;
            }),
            Err(CookieConfigError::PartitionedWithoutSecure)
        );
    }

    #[test]
    fn same_site_reads_and_prints_its_name() {
        assert_eq!("strict".parse::<SameSite>(), Ok(SameSite::Strict));
        assert_eq!(SameSite::Lax.to_string(), "lax");
        let e = "none".parse::<SameSite>().unwrap_err();
        assert!(e.contains("expected one of lax, strict"), "{e}");
    }
}
