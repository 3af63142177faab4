//! What callers hand to [`Sessions`](super::Sessions) (login, device and
//! lifetime inputs) and what a login hands back.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::SessionRecord;
use crate::secret::SecretToken;

/// How the subject authenticated (`auth` in requests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    #[serde(default)]
    pub level: Option<u8>,
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Device facts the application passes on (`device` in requests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

/// Per-session lifetimes (`ttl` in requests); each bounded by the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlInput {
    #[serde(default)]
    pub idle_secs: Option<i64>,
    #[serde(default)]
    pub absolute_secs: Option<i64>,
}

/// A request to start a session (the body of `POST /v1/sessions`, less the
/// token options).
#[derive(Debug, Clone, Default)]
pub struct CreateSession {
    pub subject: String,
    pub auth: Option<AuthInput>,
    pub device: Option<DeviceInput>,
    pub data: Option<Map<String, Value>>,
    pub ttl: Option<TtlInput>,
    /// The pre-login session's token: it is revoked, and its data carried
    /// over only when it belongs to the same subject.
    pub previous_session_token: Option<String>,
}

/// A session together with its freshly issued token, the only time the
/// token exists outside its holder.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub session: Arc<SessionRecord>,
    pub token: SecretToken,
}
