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
    pub binding: Option<PublicBinding<'a>>,
    pub data: &'a Map<String, Value>,
}

/// `binding` in the view: what the session is bound to, never key material
/// beyond its thumbprint.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PublicBinding<'a> {
    Dpop {
        jkt: &'a str,
    },
    Mtls {
        #[serde(rename = "x5t#S256")]
        x5t_s256: &'a str,
    },
    Dbsc {
        jkt: &'a str,
    },
}

impl<'a> PublicBinding<'a> {
    pub fn of(b: &'a Binding) -> Self {
        match b {
            Binding::Dpop { jkt } => PublicBinding::Dpop { jkt },
            Binding::Mtls { x5t_s256 } => PublicBinding::Mtls { x5t_s256 },
            Binding::Dbsc { jkt, .. } => PublicBinding::Dbsc { jkt },
        }
    }
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
            binding: rec.binding.as_ref().map(PublicBinding::of),
            data: &rec.data,
        }
    }
}
