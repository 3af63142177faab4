//! The store's options and their place in the store URL.

use std::path::PathBuf;
use std::time::Duration;

/// Options of a [`PostgresStore`](crate::PostgresStore). In a store URL they
/// are query parameters, taken out before the rest of the URL goes to the
/// driver: `postgres://tessera:pw@db:5432/tessera?statement_timeout_ms=2000&pool_size=32`.
///
/// The other query parameters the driver knows (`application_name`,
/// `options`, `keepalives`, `target_session_attrs`, several `host`s, …)
/// pass through unchanged.
///
/// `sslmode` is `disable`, `prefer` (the default: TLS if the server offers
/// it) or `require`; `verify-ca` and `verify-full` are taken as `require`.
/// Whenever TLS is used the server's certificate chain and name are
/// checked, against `tls_ca` or the system's trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Every statement this store runs is cancelled by the server after
    /// this (`statement_timeout_ms`, default 5000), lock waits included:
    /// a slow or locked database makes requests fail closed (503) in
    /// bounded time instead of piling up behind it.
    pub statement_timeout: Duration,
    /// How long making a connection may take before the call that needed
    /// it fails as unavailable (`connect_timeout_ms`, default 5000). Also
    /// the longest a call waits for a free pooled connection.
    pub connect_timeout: Duration,
    /// Connections kept per process (`pool_size`, default 16).
    pub pool_size: usize,
    /// The schema holding the tables (`schema`, default: the user's
    /// `search_path`, normally `public`); created if missing. Deployments
    /// sharing one database use different schemas.
    pub schema: Option<String>,
    /// A PEM file of the CA certificates to trust for TLS (`tls_ca`),
    /// instead of the system's (a private CA, a cloud provider's bundle).
    pub tls_ca: Option<PathBuf>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            pool_size: 16,
            schema: None,
            tls_ca: None,
        }
    }
}

/// A store URL the PostgreSQL store cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionsError(pub String);

/// Most connections one process may ask for: PostgreSQL's own default
/// `max_connections` is 100, shared by every node.
pub const MAX_POOL_SIZE: usize = 1000;

impl PostgresOptions {
    /// Splits a store URL into the driver's configuration (the URL without
    /// the store's options) and the store's options.
    pub fn from_url(url: &str) -> Result<(tokio_postgres::Config, PostgresOptions), OptionsError> {
        let mut parsed =
            url::Url::parse(url).map_err(|e| OptionsError(format!("bad PostgreSQL URL: {e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(OptionsError(format!(
                "{}:// is not a PostgreSQL URL (postgres:// or postgresql://)",
                parsed.scheme()
            )));
        }
        let mut options = PostgresOptions::default();
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "statement_timeout_ms" => options.statement_timeout = millis(&k, &v)?,
                "connect_timeout_ms" => options.connect_timeout = millis(&k, &v)?,
                "pool_size" => {
                    options.pool_size = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                        .ok_or_else(|| {
                            OptionsError(format!(
                                "pool_size {v:?}: a whole number from 1 to {MAX_POOL_SIZE}"
                            ))
                        })?;
                }
                "schema" => {
                    if !valid_schema(&v) {
                        return Err(OptionsError(format!(
                            "schema {v:?}: a plain identifier (letters, digits, _; not starting with a \
                             digit or pg_; at most 63 characters)"
                        )));
                    }
                    options.schema = Some(v.into_owned());
                }
                // The driver's own name for it takes seconds; one spelling
                // of one setting avoids two that disagree.
                "connect_timeout" => {
                    return Err(OptionsError(
                        "connect_timeout: use connect_timeout_ms (milliseconds)".into(),
                    ));
                }
                "tls_ca" => options.tls_ca = Some(PathBuf::from(v.as_ref())),
                // The driver knows three modes; certificates are always
                // checked in full, which is what these two ask for and more.
                "sslmode" if matches!(v.as_ref(), "verify-ca" | "verify-full") => {
                    rest.push(("sslmode".to_owned(), "require".to_owned()));
                }
                "sslmode" if !matches!(v.as_ref(), "disable" | "prefer" | "require") => {
                    return Err(OptionsError(format!(
                        "sslmode={v}: one of disable, prefer, require, verify-ca, verify-full"
                    )));
                }
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        let config: tokio_postgres::Config = parsed
            .as_str()
            .parse()
            .map_err(|e| OptionsError(format!("bad PostgreSQL URL: {e}")))?;
        if config.get_hosts().is_empty() {
            return Err(OptionsError(
                "a PostgreSQL URL needs a host, e.g. postgres://tessera@127.0.0.1:5432/tessera".into(),
            ));
        }
        Ok((config, options))
    }
}

fn millis(key: &str, v: &str) -> Result<Duration, OptionsError> {
    v.parse::<u64>()
        .ok()
        .filter(|ms| (1..=3_600_000).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| OptionsError(format!("{key} {v:?}: milliseconds from 1 to 3600000")))
}

/// A schema name that needs no quoting anywhere.
fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
        && !s.starts_with("pg_")
}

/// `url` with its password (in the user part or a `password` query
/// parameter) replaced by `***`, for logs and errors.
pub fn mask_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // Not a URL: nothing we can find a password in; say nothing of it.
        Err(_) => "(unparseable PostgreSQL URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_options_are_taken_out_of_the_url() {
        let (config, o) = PostgresOptions::from_url(
            "postgres://u:secret@db.example:6543/tessera?statement_timeout_ms=1500&application_name=t\
             &pool_size=4&schema=tenant_a&connect_timeout_ms=700",
        )
        .unwrap();
        assert_eq!(o.statement_timeout, Duration::from_millis(1500));
        assert_eq!(o.connect_timeout, Duration::from_millis(700));
        assert_eq!(o.pool_size, 4);
        assert_eq!(o.schema.as_deref(), Some("tenant_a"));
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_dbname(), Some("tessera"));
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_application_name(), Some("t"));
    }

    #[test]
    fn defaults_and_both_schemes() {
        for url in ["postgres://h/db", "postgresql://h/db"] {
            let (_, o) = PostgresOptions::from_url(url).unwrap();
            assert_eq!(o, PostgresOptions::default());
        }
        assert_eq!(
            PostgresOptions::default().statement_timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        for (url, says) in [
            ("postgres://h/db?pool_size=0", "pool_size"),
            ("postgres://h/db?statement_timeout_ms=x", "statement_timeout_ms"),
            ("postgres://h/db?schema=Bad-Name", "schema"),
            ("postgres://h/db?schema=pg_catalog", "schema"),
            ("postgres://h/db?connect_timeout=5", "connect_timeout_ms"),
            ("postgres://h/db?sslmode=allow", "sslmode"),
            ("redis://h/", "not a PostgreSQL URL"),
            ("postgres:///db", "needs a host"),
        ] {
            let e = PostgresOptions::from_url(url).unwrap_err();
            assert!(e.0.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn sslmode_and_tls_ca() {
        let (config, o) =
            PostgresOptions::from_url("postgres://h/db?sslmode=verify-full&tls_ca=/etc/ca.pem").unwrap();
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(o.tls_ca, Some(PathBuf::from("/etc/ca.pem")));
        let (config, _) = PostgresOptions::from_url("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn masked_urls_never_show_the_password() {
        let m = mask_password("postgres://u:hunter2@h:5432/db?pool_size=2");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("u:***@h:5432/db"), "{m}");
        assert!(!mask_password("not a url hunter2").contains("hunter2"));
        let m = mask_password("postgres://h/db?user=u&password=hunter2&pool_size=2");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("pool_size=2"), "{m}");
    }
}
