//! `[dpop]`: RFC 9449 proofs at the token endpoint and at `/auth/verify`.

use serde::{Deserialize, Serialize};
use tessera_core::dpop::{BoundedReplayCache, DpopAlg, DpopPolicy};

use super::Config;

/// `[dpop]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Accepted proof algorithms (`dpop_signing_alg_values_supported`):
    /// any of `ES256`, `EdDSA`, `ES384`, `RS256`.
    pub algs: Vec<String>,
    /// Oldest proof `iat` accepted, in seconds; the `jti` replay cache
    /// covers this window.
    pub max_age_secs: i64,
    /// Furthest proof `iat` accepted ahead of the clock (client skew).
    pub max_future_secs: i64,
    /// Require a server nonce (`use_dpop_nonce` + `DPoP-Nonce`) in proofs
    /// at the token endpoint.
    pub token_nonce: bool,
    /// Require a server nonce in proofs at `/auth/verify`.
    pub resource_nonce: bool,
    /// How long an issued nonce is accepted.
    pub nonce_lifetime_secs: i64,
    /// Entries of `/auth/verify`'s in-memory `jti` replay cache (about 80
    /// bytes each); when full of unexpired entries, DPoP requests get 503.
    pub resource_replay_cache_size: usize,
}

impl Default for DpopConfig {
    fn default() -> Self {
        let p = DpopPolicy::default();
        DpopConfig {
            algs: p.algs.iter().map(|a| a.name().to_owned()).collect(),
            max_age_secs: p.max_age_secs,
            max_future_secs: p.max_future_secs,
            token_nonce: false,
            resource_nonce: false,
            nonce_lifetime_secs: 300,
            resource_replay_cache_size: BoundedReplayCache::DEFAULT_CAPACITY,
        }
    }
}

impl Config {
    /// The proof policy `[dpop]` describes (valid after
    /// [`Config::validate`]; unknown names are skipped here).
    pub fn dpop_policy(&self) -> DpopPolicy {
        DpopPolicy {
            algs: self
                .dpop
                .algs
                .iter()
                .filter_map(|a| DpopAlg::from_name(a))
                .collect(),
            max_age_secs: self.dpop.max_age_secs,
            max_future_secs: self.dpop.max_future_secs,
        }
    }

    pub(super) fn validate_dpop(&self) -> Result<(), String> {
        let d = &self.dpop;
        if d.algs.is_empty() {
            return Err("[dpop] algs must name at least one algorithm".into());
        }
        if let Some(a) = d.algs.iter().find(|a| DpopAlg::from_name(a).is_none()) {
            return Err(format!(
                "[dpop] algs: {a:?} is not one of ES256, EdDSA, ES384, RS256"
            ));
        }
        if !(1..=300).contains(&d.max_age_secs) {
            return Err("[dpop] max_age_secs must be between 1 and 300".into());
        }
        if !(0..=60).contains(&d.max_future_secs) {
            return Err("[dpop] max_future_secs must be between 0 and 60".into());
        }
        if !(10..=3600).contains(&d.nonce_lifetime_secs) {
            return Err("[dpop] nonce_lifetime_secs must be between 10 and 3600".into());
        }
        if d.resource_replay_cache_size < 1000 {
            return Err("[dpop] resource_replay_cache_size must be at least 1000".into());
        }
        Ok(())
    }
}
