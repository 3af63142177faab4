//! Loading a configuration (file, then environment, then flags), what it
//! resolves to (store URL, session policy), its validation, and its masked
//! rendering.

use std::ffi::OsString;
use std::path::Path;

use tessera_core::SessionPolicy;

use super::{Config, ConfigError, MAX_HEADER_READ_TIMEOUT_SECS, MAX_RETENTION_DAYS, Overrides};

impl Config {
    /// Reads `file` (if any), overlays the `TESSERA_*` variables of `env`
    /// and then `flags`, and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.apply_overrides(flags);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    pub fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(l) = o.listen {
            self.listen = l;
        }
        if let Some(s) = &o.store {
            self.store = Some(s.clone());
        }
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(f) = o.log_format {
            self.log_format = f;
        }
    }

    /// The store URL in effect: `store`, or the SQLite file in `data_dir`.
    pub fn store_url(&self) -> String {
        match &self.store {
            Some(s) => s.clone(),
            None => format!("sqlite://{}", self.data_dir.join("tessera.db").display()),
        }
    }

    /// The session policy `[session]` describes.
    pub fn policy(&self) -> SessionPolicy {
        let s = &self.session;
        SessionPolicy {
            idle_timeout_secs: s.idle_timeout_secs,
            absolute_timeout_secs: s.absolute_timeout_secs,
            max_idle_timeout_secs: s.max_idle_timeout_secs,
            max_absolute_timeout_secs: s.max_absolute_timeout_secs,
            max_sessions_per_subject: (s.max_sessions_per_subject > 0).then_some(s.max_sessions_per_subject),
            max_data_bytes: s.max_data_bytes,
            touch_interval_secs: s.touch_interval_secs,
            max_auth_level: s.max_auth_level,
        }
    }

    /// Checks every rule a configuration must satisfy for the service to start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = self.policy().validate() {
            return bad(format!("[session] {e}"));
        }
        crate::open_store::parse(&self.store_url())
            .map_err(|e| ConfigError::Invalid(format!("store: {e}")))?;
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must not be empty".into());
        }
        if let Err(e) = self.cookie.validate() {
            return bad(format!("[cookie] {e}"));
        }
        let h = &self.http;
        if h.max_body_bytes < 2 {
            return bad("[http] max_body_bytes must be at least 2".into());
        }
        if h.max_header_bytes < 256 {
            return bad("[http] max_header_bytes must be at least 256".into());
        }
        if h.request_timeout_secs == 0 {
            return bad("[http] request_timeout_secs must be positive".into());
        }
        if !(1..=MAX_HEADER_READ_TIMEOUT_SECS).contains(&h.header_read_timeout_secs) {
            return bad(format!(
                "[http] header_read_timeout_secs must be from 1 to {MAX_HEADER_READ_TIMEOUT_SECS}"
            ));
        }
        if h.max_connections == 0 {
            return bad("[http] max_connections must be positive".into());
        }
        if h.max_in_flight == 0 {
            return bad("[http] max_in_flight must be positive".into());
        }
        if self.sweeper.interval_secs == 0 {
            return bad("[sweeper] interval_secs must be positive".into());
        }
        if self.sweeper.batch_size == 0 {
            return bad("[sweeper] batch_size must be positive".into());
        }
        if self.events.retention_days > MAX_RETENTION_DAYS {
            return bad(format!(
                "[events] retention_days must be at most {MAX_RETENTION_DAYS} (0 keeps events forever)"
            ));
        }
        for o in &self.forward_auth.allowed_origins {
            tessera_http::origin::parse_allowed(o)
                .map_err(|e| ConfigError::Invalid(format!("[forward_auth] allowed_origins: {e}")))?;
        }
        self.validate_tokens().map_err(ConfigError::Invalid)?;
        self.validate_dpop().map_err(ConfigError::Invalid)?;
        self.validate_tls().map_err(ConfigError::Invalid)?;
        self.validate_dbsc().map_err(ConfigError::Invalid)?;
        self.rate_limits.validate().map_err(ConfigError::Invalid)?;
        if let Some(h) = &self.forward_auth.client_cert_header
            && axum::http::HeaderName::try_from(h.as_str()).is_err()
        {
            return bad(format!(
                "[forward_auth] client_cert_header {h:?} is not a header name"
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, with the store resolved and any
    /// secret (a password in the store URL) masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store = Some(mask_url_password(&self.store_url()));
        self.mask_tokens(&mut shown);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// `scheme://user:secret@host` → `scheme://user:****@host`; a `password`
/// query parameter (which a `postgres://` URL may carry instead) is masked
/// too.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = mask_password_parameter(rest);
    let rest = rest.as_str();
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                String::from("****")
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

/// `…?a=1&password=secret&b=2` → `…?a=1&password=****&b=2`.
fn mask_password_parameter(rest: &str) -> String {
    let Some((head, query)) = rest.split_once('?') else {
        return rest.to_owned();
    };
    let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{head}?{}", masked.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}
