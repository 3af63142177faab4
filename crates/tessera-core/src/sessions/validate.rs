//! Checks and normalisation of request inputs (subject, auth level and
//! methods, device, lifetimes, data size), the liveness check, and the
//! RFC 7396 merge patch.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{DeviceInput, Sessions, TtlInput};
use crate::error::{Error, Result};
use crate::model::{DeviceInfo, SessionRecord, device_label};
use crate::time::Timestamp;

/// Longest user agent kept; longer ones are cut (at a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 512;
pub const MAX_SUBJECT_BYTES: usize = 256;
const MAX_METHODS: usize = 16;
const MAX_METHOD_BYTES: usize = 32;

impl Sessions {
    pub(super) fn validate_ttl(&self, ttl: TtlInput) -> Result<(i64, i64)> {
        let p = &self.policy;
        let idle = ttl.idle_secs.unwrap_or(p.idle_timeout_secs);
        let abs = ttl.absolute_secs.unwrap_or(p.absolute_timeout_secs);
        if !(1..=p.max_idle_timeout_secs).contains(&idle) {
            return Err(Error::invalid(
                "ttl.idle_secs",
                format!("must be between 1 and {}", p.max_idle_timeout_secs),
            ));
        }
        if !(1..=p.max_absolute_timeout_secs).contains(&abs) {
            return Err(Error::invalid(
                "ttl.absolute_secs",
                format!("must be between 1 and {}", p.max_absolute_timeout_secs),
            ));
        }
        Ok((idle.min(abs), abs))
    }

    pub(super) fn check_data_size(&self, data: &Map<String, Value>) -> Result<()> {
        let mut counter = ByteCounter(0);
        // Writing into a counter cannot fail for a Map of Values.
        let _ = serde_json::to_writer(&mut counter, data);
        if counter.0 > self.policy.max_data_bytes {
            return Err(Error::DataTooLarge {
                limit: self.policy.max_data_bytes,
            });
        }
        Ok(())
    }
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn check_live(rec: &SessionRecord, now: Timestamp) -> Result<()> {
    if rec.revoked.is_some() {
        Err(Error::SessionRevoked)
    } else if rec.is_expired(now) {
        Err(Error::SessionExpired)
    } else {
        Ok(())
    }
}

/// Subjects are opaque UTF-8 chosen by the application, 1–256 bytes.
/// Control characters (NUL included) are refused: they are never part of a
/// real identifier and break logs and terminals.
pub fn validate_subject(s: &str) -> Result<&str> {
    if s.is_empty() || s.len() > MAX_SUBJECT_BYTES {
        return Err(Error::invalid(
            "subject",
            format!("must be 1 to {MAX_SUBJECT_BYTES} bytes"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid("subject", "must not contain control characters"));
    }
    Ok(s)
}

pub(super) fn validate_level(level: Option<u8>, max: u8) -> Result<u8> {
    let level = level.unwrap_or(1);
    if level == 0 || level > max {
        return Err(Error::invalid(
            "auth.level",
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(level)
}

/// `amr` values (RFC 8176 names or application tokens): short, printable
/// tokens. New ones are appended to `base` without duplicates.
pub(super) fn validate_methods(methods: &[String], mut base: Vec<String>) -> Result<Vec<String>> {
    for m in methods {
        let ok = !m.is_empty()
            && m.len() <= MAX_METHOD_BYTES
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(Error::invalid(
                "auth.methods",
                format!("each method must be 1 to {MAX_METHOD_BYTES} characters of [A-Za-z0-9_.-]"),
            ));
        }
        if !base.iter().any(|b| b == m) {
            base.push(m.clone());
        }
    }
    if base.len() > MAX_METHODS {
        return Err(Error::invalid(
            "auth.methods",
            format!("at most {MAX_METHODS} methods"),
        ));
    }
    Ok(base)
}

pub(super) fn validate_device(d: DeviceInput) -> Result<DeviceInfo> {
    let user_agent = match d.user_agent {
        Some(ua) if ua.chars().any(|c| c.is_control() && c != '\t') => {
            return Err(Error::invalid(
                "device.user_agent",
                "must not contain control characters",
            ));
        }
        Some(mut ua) => {
            if ua.len() > MAX_USER_AGENT_BYTES {
                let mut cut = MAX_USER_AGENT_BYTES;
                while !ua.is_char_boundary(cut) {
                    cut -= 1;
                }
                ua.truncate(cut);
            }
            Some(ua).filter(|s| !s.is_empty())
        }
        None => None,
    };
    let ip = match d.ip {
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| Error::invalid("device.ip", "must be an IPv4 or IPv6 address"))?
                .to_string(),
        ),
        None => None,
    };
    Ok(DeviceInfo {
        label: device_label(user_agent.as_deref()),
        user_agent,
        ip,
    })
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}
