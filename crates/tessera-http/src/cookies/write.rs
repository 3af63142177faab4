//! `Set-Cookie` values. Setting and removing go through one builder, so a
//! removal carries exactly the attributes the cookie was set with (EX-12):
//! a browser only drops a cookie whose name, `Path` and `Domain` match, and
//! refuses a prefixed one without `Secure`.

use cookie::{Cookie, CookieBuilder};
use tessera_core::Timestamp;

use super::{CookieConfig, SameSite};

fn build<'c>(cfg: &CookieConfig, name: &str, value: &str) -> CookieBuilder<'c> {
    let mut c = Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(match cfg.same_site {
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::Strict => cookie::SameSite::Strict,
        });
    if cfg.secure {
        c = c.secure(true);
    }
    if cfg.partitioned {
        c = c.partitioned(true);
    }
    if let Some(d) = &cfg.domain {
        c = c.domain(d.clone());
    }
    c
}

/// A cookie `name` with the configured attributes, and `Max-Age` when
/// `max_age_secs` is given.
pub fn set_cookie(cfg: &CookieConfig, name: &str, value: &str, max_age_secs: Option<i64>) -> String {
    let mut c = build(cfg, name, value);
    if let Some(secs) = max_age_secs {
        c = c.max_age(cookie::time::Duration::seconds(secs.max(0)));
    }
    c.build().to_string()
}

/// The removal of cookie `name`: the same attributes, an empty value and
/// `Max-Age=0`.
pub fn removal(cfg: &CookieConfig, name: &str) -> String {
    set_cookie(cfg, name, "", Some(0))
}

/// `__Host-tessera=<token>; HttpOnly; SameSite=Lax; Secure; Path=/;
/// Max-Age=<n>` (SC-05…SC-10). With `persistent`, `Max-Age` is the whole
/// seconds left until the absolute expiry, never beyond it; otherwise it is
/// a browser-session cookie.
pub fn session_cookie(
    cfg: &CookieConfig,
    token: &str,
    absolute_expires_at: Timestamp,
    now: Timestamp,
) -> String {
    let max_age = cfg
        .persistent
        .then(|| absolute_expires_at.millis_since(now).max(0) / 1000);
    set_cookie(cfg, cfg.effective_name(), token, max_age)
}

/// The session cookie's removal (logout, a refused cookie).
pub fn session_removal(cfg: &CookieConfig) -> String {
    removal(cfg, cfg.effective_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(s: &str) -> Vec<String> {
        let mut v: Vec<String> = s.split("; ").map(str::to_owned).collect();
        v.sort();
        v
    }

    /// Every attribute but the value and `Max-Age`.
    fn shape(s: &str) -> Vec<String> {
        let mut v: Vec<String> = s
            .split("; ")
            .skip(1)
            .filter(|a| !a.starts_with("Max-Age="))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sc_06_default_cookie_has_the_host_prefix_attributes() {
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
    fn insecure_and_browser_session_cookies() {
        let now = Timestamp::from_unix_secs(1000);
        let cfg = CookieConfig {
            secure: false,
            persistent: false,
            same_site: SameSite::Strict,
            ..CookieConfig::default()
        };
        let c = session_cookie(&cfg, "tss_x", now.plus_secs(60), now);
        assert_eq!(
            attrs(&c),
            attrs("tessera=tss_x; HttpOnly; SameSite=Strict; Path=/")
        );
        // Past the absolute expiry the cookie is already gone, never negative.
        let c = session_cookie(&CookieConfig::default(), "t", now, now.plus_secs(5));
        assert!(c.contains("Max-Age=0"), "{c}");
    }

    #[test]
    fn ex_12_removal_mirrors_every_configured_attribute() {
        let now = Timestamp::from_unix_secs(1000);
        for secure in [true, false] {
            for same_site in [SameSite::Lax, SameSite::Strict] {
                for persistent in [true, false] {
                    for domain in [None, Some("app.example")] {
                        for partitioned in [false, true] {
                            let cfg = CookieConfig {
                                name: if domain.is_some() {
                                    "__Secure-s"
                                } else {
                                    "__Host-s"
                                }
                                .into(),
                                secure,
                                same_site,
                                persistent,
                                domain: domain.map(str::to_owned),
                                partitioned: partitioned && secure,
                            };
                            cfg.validate().unwrap();
                            let set = session_cookie(&cfg, "tss_x", now.plus_secs(60), now);
                            let gone = session_removal(&cfg);
                            assert_eq!(shape(&set), shape(&gone), "{set} vs {gone}");
                            assert!(gone.starts_with(&format!("{}=;", cfg.effective_name())), "{gone}");
                            assert!(gone.contains("Max-Age=0"), "{gone}");
                            assert_eq!(set.contains("Domain=app.example"), domain.is_some());
                            assert_eq!(set.contains("Partitioned"), partitioned && secure);
                        }
                    }
                }
            }
        }
    }
}
