//! `[dbsc]`: Device Bound Session Credentials (SPEC §4.5).

use serde::{Deserialize, Serialize};
use tessera_core::dbsc::DbscPolicy;

use super::Config;

/// `[dbsc]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbscConfig {
    /// Serve `/auth/dbsc/*` and honour `"dbsc": true` on `POST /v1/sessions`.
    pub enabled: bool,
    /// The short-lived bound cookie.
    pub cookie_name: String,
    /// Lifetime of a bound cookie; the browser renews it with a proof.
    pub cookie_ttl_secs: i64,
    /// How long a registration or refresh challenge is accepted.
    pub challenge_ttl_secs: i64,
    /// Step-up to this level or above only from a device-bound session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_level: Option<u8>,
}

impl Default for DbscConfig {
    fn default() -> Self {
        let p = DbscPolicy::default();
        DbscConfig {
            enabled: false,
            cookie_name: String::from("__Host-tessera-dbsc"),
            cookie_ttl_secs: p.cookie_ttl_secs,
            challenge_ttl_secs: p.challenge_ttl_secs,
            required_level: None,
        }
    }
}

impl Config {
    pub fn dbsc_policy(&self) -> DbscPolicy {
        DbscPolicy {
            cookie_ttl_secs: self.dbsc.cookie_ttl_secs,
            challenge_ttl_secs: self.dbsc.challenge_ttl_secs,
            required_level: self.dbsc.required_level,
            ..DbscPolicy::default()
        }
    }

    pub(super) fn validate_dbsc(&self) -> Result<(), String> {
        let d = &self.dbsc;
        if !(10..=86_400).contains(&d.cookie_ttl_secs) {
            return Err("[dbsc] cookie_ttl_secs must be between 10 and 86400".into());
        }
        if !(10..=3600).contains(&d.challenge_ttl_secs) {
            return Err("[dbsc] challenge_ttl_secs must be between 10 and 3600".into());
        }
        let n = &d.cookie_name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err("[dbsc] cookie_name must be 1-64 letters, digits, '-', '_' or '.'".into());
        }
        if n == self.cookie.effective_name() {
            return Err("[dbsc] cookie_name must differ from the session cookie's".into());
        }
        if d.required_level == Some(0) {
            return Err("[dbsc] required_level must be at least 1".into());
        }
        Ok(())
    }
}
