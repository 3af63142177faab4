//! The session cookie: the complete `Set-Cookie` value the application sends.

use cookie::{Cookie, SameSite};
use tessera_core::Timestamp;

use crate::config::{CookieConfig, SameSiteConfig};

/// `__Host-tessera=<token>; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=<n>`.
///
/// No `Domain` (so the `__Host-` prefix holds). With `persistent`, `Max-Age`
/// is the whole seconds left until the absolute expiry, never beyond it;
/// otherwise it is a browser-session cookie.
pub fn session_cookie(
    cfg: &CookieConfig,
    token: &str,
    absolute_expires_at: Timestamp,
    now: Timestamp,
) -> String {
    let mut c = Cookie::build((cfg.effective_name().to_owned(), token.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(match cfg.same_site {
            SameSiteConfig::Lax => SameSite::Lax,
            SameSiteConfig::Strict => SameSite::Strict,
        });
    if cfg.secure {
        c = c.secure(true);
    }
    if cfg.persistent {
        let secs = absolute_expires_at.millis_since(now).max(0) / 1000;
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    c.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(s: &str) -> Vec<String> {
        let mut v: Vec<String> = s.split("; ").map(str::to_owned).collect();
        v.sort();
        v
    }

    #[test]
    fn default_cookie_has_the_host_prefix_attributes() {
        let now = Timestamp::from_unix_secs(1000);
        let c = session_cookie(
            &CookieConfig::default(),
            "tss_x",
            now.plus_millis(28_800_999),
            now,
        );
        assert!(c.starts_with("__Host-tessera=tss_x; "), "{c}");
        assert_eq!(
            attrs(&c),
            attrs("__Host-tessera=tss_x; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=28800")
        );
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn insecure_and_session_cookies() {
        let now = Timestamp::from_unix_secs(1000);
        let cfg = CookieConfig {
            secure: false,
            persistent: false,
            same_site: SameSiteConfig::Strict,
            ..CookieConfig::default()
        };
        let c = session_cookie(&cfg, "tss_x", now.plus_secs(60), now);
        assert_eq!(
            attrs(&c),
            attrs("tessera=tss_x; HttpOnly; SameSite=Strict; Path=/")
        );
    }
}
