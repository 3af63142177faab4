//! The public JSON view of a session (SPEC §4.1), the one shape every face
//! shows: `{handle, subject, created_at, last_seen_at, idle_expires_at,
//! absolute_expires_at, auth: {level, methods, time}, device: {user_agent,
//! ip, label, first_seen_at, last_seen_at}, binding, data}`. It has no
//! field for the token or its hash.

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_core::{AuthInfo, Binding, SessionRecord, Timestamp};

#[derive(Debug, Serialize)]
pub struct PublicSession<'a> {
    pub handle: &'a str,
    pub subject: &'a str,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub idle_expires_at: Timestamp,
    pub absolute_expires_at: Timestamp,
    pub auth: &'a AuthInfo,
    pub device: PublicDevice<'a>,
    pub binding: Option<&'a Binding>,
    pub data: &'a Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct PublicDevice<'a> {
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub label: &'a str,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
}

impl<'a> PublicSession<'a> {
    pub fn of(rec: &'a SessionRecord) -> Self {
        PublicSession {
            handle: &rec.handle,
            subject: &rec.subject,
            created_at: rec.created_at,
            last_seen_at: rec.last_seen_at,
            idle_expires_at: rec.idle_expires_at,
            absolute_expires_at: rec.absolute_expires_at,
            auth: &rec.auth,
            device: PublicDevice {
                user_agent: rec.device.user_agent.as_deref(),
                ip: rec.device.ip.as_deref(),
                label: &rec.device.label,
                first_seen_at: rec.created_at,
                last_seen_at: rec.last_seen_at,
            },
            binding: rec.binding.as_ref(),
            data: &rec.data,
        }
    }

    /// Appends the view as JSON to `out`: byte for byte what its `Serialize`
    /// gives (a property test checks that), written directly. It is the body
    /// of every verify answer, and through serde the field names and the
    /// seven timestamps went through string escaping they never need.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"handle\":");
        json_str(out, self.handle)?;
        out.extend_from_slice(b",\"subject\":");
        json_str(out, self.subject)?;
        out.extend_from_slice(b",\"created_at\":");
        json_time(out, self.created_at)?;
        out.extend_from_slice(b",\"last_seen_at\":");
        json_time(out, self.last_seen_at)?;
        out.extend_from_slice(b",\"idle_expires_at\":");
        json_time(out, self.idle_expires_at)?;
        out.extend_from_slice(b",\"absolute_expires_at\":");
        json_time(out, self.absolute_expires_at)?;
        out.extend_from_slice(b",\"auth\":{\"level\":");
        json_u8(out, self.auth.level);
        out.extend_from_slice(b",\"methods\":[");
        for (i, m) in self.auth.methods.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, m)?;
        }
        out.extend_from_slice(b"],\"time\":");
        json_time(out, self.auth.time)?;
        out.extend_from_slice(b"},\"device\":{\"user_agent\":");
        json_opt_str(out, self.device.user_agent)?;
        out.extend_from_slice(b",\"ip\":");
        json_opt_str(out, self.device.ip)?;
        out.extend_from_slice(b",\"label\":");
        json_str(out, self.device.label)?;
        out.extend_from_slice(b",\"first_seen_at\":");
        json_time(out, self.device.first_seen_at)?;
        out.extend_from_slice(b",\"last_seen_at\":");
        json_time(out, self.device.last_seen_at)?;
        out.extend_from_slice(b"},\"binding\":");
        serde_json::to_writer(&mut *out, &self.binding)?;
        out.extend_from_slice(b",\"data\":");
        serde_json::to_writer(&mut *out, self.data)?;
        out.push(b'}');
        Ok(())
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, s)
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) -> serde_json::Result<()> {
    match s {
        Some(s) => json_str(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn json_time(out: &mut Vec<u8>, t: Timestamp) -> serde_json::Result<()> {
    out.push(b'"');
    // Digits, '-', ':', 'T', '.', 'Z': nothing to escape.
    if t.append_rfc3339(out) {
        out.push(b'"');
        Ok(())
    } else {
        out.pop();
        serde_json::to_writer(&mut *out, &t)
    }
}

fn json_u8(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tessera_core::{DeviceInfo, TokenHash};

    use super::*;

    fn any_binding() -> impl Strategy<Value = Option<Binding>> {
        prop_oneof![
            Just(None),
            ".{0,8}".prop_map(|jkt| Some(Binding::Dpop { jkt })),
            ".{0,8}".prop_map(|x5t_s256| Some(Binding::Mtls { x5t_s256 })),
            (".{0,8}", ".{0,8}").prop_map(|(session_id, jkt)| Some(Binding::Dbsc { session_id, jkt })),
        ]
    }

    proptest! {
        #[test]
        fn session_view_writer_is_exactly_serde(
            handle in ".{0,12}",
            subject in "(.|\\PC|[\\x00-\\x1f\"\\\\]){0,16}",
            times in proptest::array::uniform5(prop_oneof![
                0i64..253_402_300_800_000,
                Just(-1i64),
                Just(i64::MAX),
            ]),
            level in any::<u8>(),
            methods in proptest::collection::vec("[a-z\"\\\\\u{7f}-\u{a0}]{0,6}", 0..4),
            user_agent in proptest::option::of(".{0,20}"),
            ip in proptest::option::of("[0-9.:a-f]{0,15}"),
            label in ".{0,10}",
            data in proptest::collection::btree_map("[a-z\"]{0,4}", any::<i32>(), 0..3),
            binding in any_binding(),
        ) {
            let rec = SessionRecord {
                handle,
                token_hash: TokenHash::of_secret(b"x"),
                subject,
                version: 1,
                created_at: Timestamp::from_unix_millis(times[0]),
                last_seen_at: Timestamp::from_unix_millis(times[1]),
                idle_timeout_ms: 1,
                idle_expires_at: Timestamp::from_unix_millis(times[2]),
                absolute_expires_at: Timestamp::from_unix_millis(times[3]),
                auth: AuthInfo { level, methods, time: Timestamp::from_unix_millis(times[4]) },
                device: DeviceInfo { user_agent, ip, label },
                data: data.into_iter().map(|(k, v)| (k, Value::from(v))).collect(),
                binding,
                revoked: None,
            };
            let view = PublicSession::of(&rec);
            let mut fast = Vec::new();
            view.write_json(&mut fast).unwrap();
            prop_assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&view).unwrap());
        }
    }
}
