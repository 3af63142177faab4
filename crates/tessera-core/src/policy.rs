//! Session policy: lifetimes, limits and sizes. Set once from configuration.

/// Rules every session follows. Defaults follow the OWASP Session
/// Management Cheat Sheet for low-risk applications (30 min idle, 8 h
/// absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Idle timeout when a create request names none.
    pub idle_timeout_secs: i64,
    /// Absolute lifetime when a create request names none.
    pub absolute_timeout_secs: i64,
    /// Largest idle timeout a create request may ask for.
    pub max_idle_timeout_secs: i64,
    /// Largest absolute lifetime a create request may ask for.
    pub max_absolute_timeout_secs: i64,
    /// Active sessions a subject may hold; creating one more revokes the
    /// oldest (reason `session_limit`). `None` = unlimited.
    pub max_sessions_per_subject: Option<u32>,
    /// Largest serialized `data` object.
    pub max_data_bytes: usize,
    /// Verification writes the slid idle expiry at most this often per
    /// session (and at least every quarter of its idle window), so hot
    /// sessions do not turn every read into a write.
    pub touch_interval_secs: i64,
    /// Highest `auth.level` accepted.
    pub max_auth_level: u8,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 8 * 3600,
            max_idle_timeout_secs: 30 * 24 * 3600,
            max_absolute_timeout_secs: 400 * 24 * 3600,
            max_sessions_per_subject: Some(50),
            max_data_bytes: 16 * 1024,
            touch_interval_secs: 60,
            max_auth_level: 9,
        }
    }
}

impl SessionPolicy {
    /// Checks the policy itself; the service refuses to start on an error.
    pub fn validate(&self) -> Result<(), String> {
        let pos = |name: &str, v: i64| {
            if v <= 0 {
                Err(format!("{name} must be positive"))
            } else {
                Ok(())
            }
        };
        pos("idle_timeout_secs", self.idle_timeout_secs)?;
        pos("absolute_timeout_secs", self.absolute_timeout_secs)?;
        pos("max_idle_timeout_secs", self.max_idle_timeout_secs)?;
        pos("max_absolute_timeout_secs", self.max_absolute_timeout_secs)?;
        if self.touch_interval_secs < 0 {
            return Err("touch_interval_secs must not be negative".into());
        }
        if self.idle_timeout_secs > self.max_idle_timeout_secs {
            return Err("idle_timeout_secs exceeds max_idle_timeout_secs".into());
        }
        if self.absolute_timeout_secs > self.max_absolute_timeout_secs {
            return Err("absolute_timeout_secs exceeds max_absolute_timeout_secs".into());
        }
        if self.max_sessions_per_subject == Some(0) {
            return Err("max_sessions_per_subject must be at least 1 (omit it for no limit)".into());
        }
        if self.max_data_bytes < 2 {
            return Err("max_data_bytes must be at least 2 (an empty object)".into());
        }
        if self.max_auth_level == 0 {
            return Err("max_auth_level must be at least 1".into());
        }
        Ok(())
    }

    /// Milliseconds after the last write of `last_seen_at` before a verify
    /// writes it again.
    pub(crate) fn touch_after_ms(&self, idle_timeout_ms: i64) -> i64 {
        (self.touch_interval_secs.saturating_mul(1000)).min(idle_timeout_ms / 4)
    }
}
