//! [`KeyPolicy`]: how keys are generated, rotated and published, and the
//! checks that its numbers make a schedule.

use super::KeyError;
use crate::model::SigningAlg;

/// How signing keys are generated, rotated and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Algorithm of newly generated keys.
    pub alg: SigningAlg,
    /// How long a key signs before the next one takes over (default 30 days).
    pub rotation_interval_secs: i64,
    /// How long a new key is published before it signs (default 1 day). The
    /// JWKS `Cache-Control: max-age` must be shorter than this.
    pub prepublish_secs: i64,
    /// Lifetime of access tokens (default 300 s): how long a retired key must
    /// stay published.
    pub access_token_ttl_secs: i64,
    /// Clock-skew allowance of verifiers (default 60 s), added to the above.
    pub leeway_secs: i64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            alg: SigningAlg::EdDSA,
            rotation_interval_secs: 30 * 86_400,
            prepublish_secs: 86_400,
            access_token_ttl_secs: 300,
            leeway_secs: 60,
        }
    }
}

const TEN_YEARS_SECS: i64 = 10 * 366 * 86_400;

impl KeyPolicy {
    /// Checks the numbers make a schedule: `0 <= prepublish < rotation
    /// interval`, a TTL of 1 s – 1 day, a leeway of 0–60 s (JW-09).
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |m: &str| Err(KeyError::InvalidPolicy(m.to_owned()));
        if !(60..=TEN_YEARS_SECS).contains(&self.rotation_interval_secs) {
            return bad("rotation_interval_secs must be between 60 and 10 years");
        }
        if self.prepublish_secs < 0 || self.prepublish_secs >= self.rotation_interval_secs {
            return bad("prepublish_secs must be >= 0 and < rotation_interval_secs");
        }
        if !(1..=86_400).contains(&self.access_token_ttl_secs) {
            return bad("access_token_ttl_secs must be between 1 and 86400");
        }
        if !(0..=60).contains(&self.leeway_secs) {
            return bad("leeway_secs must be between 0 and 60");
        }
        Ok(())
    }

    /// How long a retired key stays published after its successor activates.
    pub fn retired_key_publish_secs(&self) -> i64 {
        self.access_token_ttl_secs.saturating_add(self.leeway_secs)
    }
}
