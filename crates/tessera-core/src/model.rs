//! The records the core keeps and the stores persist.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::TokenHash;
use crate::time::Timestamp;

/// One logged-in device or browser of a subject (SPEC §1).
///
/// `version` increases with every change made through
/// [`SessionStore::update`](crate::store::SessionStore::update), which is a
/// compare-and-swap on it. Sliding the idle expiry (`touch`) deliberately
/// does not bump it: it commutes with every other change.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub handle: String,
    pub token_hash: TokenHash,
    pub subject: String,
    pub version: u64,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Length of the sliding idle window, fixed when the session is created.
    pub idle_timeout_ms: i64,
    pub idle_expires_at: Timestamp,
    pub absolute_expires_at: Timestamp,
    pub auth: AuthInfo,
    pub device: DeviceInfo,
    pub data: Map<String, Value>,
    pub binding: Option<Binding>,
    pub revoked: Option<Revocation>,
}

impl SessionRecord {
    /// The earlier of the two expiries: after it the session is dead and the
    /// sweeper may delete the record. Stores index this.
    pub fn expires_at(&self) -> Timestamp {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }

    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && !self.is_expired(now)
    }
}

/// How and when the subject last authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// 1 = single factor, 2 = multi-factor, higher as the application defines.
    pub level: u8,
    /// RFC 8176 `amr` values, in the order they were first used.
    pub methods: Vec<String>,
    /// Time of the last authentication.
    pub time: Timestamp,
}

/// What the session knows about the device it was created on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// A human label derived from the user agent, e.g. "Chrome on Linux".
    pub label: String,
}

/// What a session is bound to, if anything (filled by the DPoP, mTLS and DBSC
/// features; stored as JSON so later kinds need no schema change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Binding {
    /// RFC 9449: the JWK SHA-256 thumbprint of the client's key.
    Dpop { jkt: String },
    /// RFC 8705: the SHA-256 thumbprint of the client certificate.
    Mtls {
        #[serde(rename = "x5t#S256")]
        x5t_s256: String,
    },
    /// DBSC: the registered device key. `jwk` is the public key (RFC 7638
    /// members, JSON) refresh proofs are verified with.
    Dbsc {
        session_id: String,
        jkt: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        jwk: String,
    },
}

impl Binding {
    /// A DPoP binding to the key with this RFC 7638 thumbprint
    /// (`tokens.dpop_jkt`, a proof's key): base64url of a SHA-256 digest.
    pub fn dpop(jkt: &str) -> Result<Binding, &'static str> {
        if crate::b64url::is_sha256_digest(jkt) {
            Ok(Binding::Dpop { jkt: jkt.to_owned() })
        } else {
            Err("dpop_jkt must be a JWK SHA-256 thumbprint (43 base64url characters)")
        }
    }

    /// The `cnf` claim of an access token bound to this (RFC 9449 §6.1,
    /// RFC 8705 §3.1); `None` for a DBSC binding, which binds cookies.
    pub fn cnf(&self) -> Option<serde_json::Value> {
        match self {
            Binding::Dpop { jkt } => Some(serde_json::json!({ "jkt": jkt })),
            Binding::Mtls { x5t_s256 } => Some(serde_json::json!({ "x5t#S256": x5t_s256 })),
            Binding::Dbsc { .. } => None,
        }
    }

    /// The binding a token's `cnf` claim names, if one Tessera knows.
    pub fn from_cnf(cnf: &serde_json::Value) -> Option<Binding> {
        if let Some(jkt) = cnf.get("jkt").and_then(serde_json::Value::as_str) {
            return Some(Binding::Dpop { jkt: jkt.to_owned() });
        }
        cnf.get("x5t#S256")
            .and_then(serde_json::Value::as_str)
            .map(|x| Binding::Mtls {
                x5t_s256: x.to_owned(),
            })
    }

    /// `token_type` of the tokens issued under this binding: `DPoP` for a
    /// DPoP key (RFC 9449 §5), `Bearer` otherwise (RFC 8705 keeps it).
    pub fn token_type(binding: Option<&Binding>) -> &'static str {
        match binding {
            Some(Binding::Dpop { .. }) => "DPoP",
            _ => "Bearer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: Timestamp,
    pub reason: RevokeReason,
}

/// Why a session ended early. Recorded in events; never contains a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The holder logged out with its token.
    Logout,
    /// The backend revoked it by handle.
    Revoked,
    /// A login presented it as `previous_session_token`; a new session took over.
    Replaced,
    /// The subject went over its concurrent-session limit; the oldest went.
    SessionLimit,
    /// All of the subject's sessions were revoked ("sign out everywhere").
    RevokeAll,
    /// A consumed refresh token was presented again outside the grace window.
    RefreshTokenReuse,
    /// Revoked by an operator through the CLI.
    Operator,
}

impl RevokeReason {
    pub const ALL: [RevokeReason; 7] = [
        RevokeReason::Logout,
        RevokeReason::Revoked,
        RevokeReason::Replaced,
        RevokeReason::SessionLimit,
        RevokeReason::RevokeAll,
        RevokeReason::RefreshTokenReuse,
        RevokeReason::Operator,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Revoked => "revoked",
            RevokeReason::Replaced => "replaced",
            RevokeReason::SessionLimit => "session_limit",
            RevokeReason::RevokeAll => "revoke_all",
            RevokeReason::RefreshTokenReuse => "refresh_token_reuse",
            RevokeReason::Operator => "operator",
        }
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevokeReason {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

/// Kinds of audit event (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Refreshed,
    Elevated,
    Revoked,
    Expired,
    RefreshTokenReuse,
    BindingFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Created,
        EventKind::Refreshed,
        EventKind::Elevated,
        EventKind::Revoked,
        EventKind::Expired,
        EventKind::RefreshTokenReuse,
        EventKind::BindingFailed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Refreshed => "refreshed",
            EventKind::Elevated => "elevated",
            EventKind::Revoked => "revoked",
            EventKind::Expired => "expired",
            EventKind::RefreshTokenReuse => "refresh_token_reuse",
            EventKind::BindingFailed => "binding_failed",
        }
    }
}

impl FromStr for EventKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// An event before the store has given it a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    pub subject: String,
    pub handle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevokeReason>,
}

impl NewEvent {
    pub fn new(kind: EventKind, s: &SessionRecord, at: Timestamp) -> Self {
        Self {
            at,
            kind,
            subject: s.subject.clone(),
            handle: s.handle.clone(),
            reason: None,
        }
    }

    pub fn revoked(s: &SessionRecord, reason: RevokeReason, at: Timestamp) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(EventKind::Revoked, s, at)
        }
    }
}

/// A stored event. `id` increases strictly in the order events were written
/// and is the cursor of `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    #[serde(flatten)]
    pub event: NewEvent,
}

/// A backend API key. Only the hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub hash: TokenHash,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// What the key may do (SPEC §4.1), in [`ApiKeyScope::ALL`] order,
    /// without duplicates.
    pub scopes: Vec<ApiKeyScope>,
}

impl ApiKeyRecord {
    /// Whether the key may act within `scope`: it holds it, or `admin`.
    pub fn allows(&self, scope: ApiKeyScope) -> bool {
        scope.granted_by(&self.scopes)
    }
}

/// An OAuth client registered at run time ([`ClientStore`](crate::ClientStore)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// 1–128 printable characters.
    pub client_id: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The registration (kind, secret hash, keys, scopes, audiences, …) as
    /// JSON text; the client registry reads it, stores keep it as it is.
    /// It holds no secret: a client secret is kept only as its hash.
    pub registration: String,
}

/// What an API key may do (SPEC §4.1). Least privilege: a key holds only
/// the scopes it was created with; `admin` covers every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// Every `/v1/sessions…` and `/v1/subjects…` route, and introspection.
    Sessions,
    /// `GET /v1/events`.
    Events,
    /// `GET /v1/revocations`: all a resource server needs.
    Revocations,
    /// Everything, including key management.
    Admin,
}

impl ApiKeyScope {
    pub const ALL: [ApiKeyScope; 4] = [
        ApiKeyScope::Sessions,
        ApiKeyScope::Events,
        ApiKeyScope::Revocations,
        ApiKeyScope::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::Sessions => "sessions",
            ApiKeyScope::Events => "events",
            ApiKeyScope::Revocations => "revocations",
            ApiKeyScope::Admin => "admin",
        }
    }

    /// Whether a key holding `scopes` may act within this scope: it holds
    /// it, or `admin`. The one rule every face applies.
    pub fn granted_by(self, scopes: &[ApiKeyScope]) -> bool {
        scopes.iter().any(|s| *s == self || *s == ApiKeyScope::Admin)
    }

    /// `scopes` sorted in [`ApiKeyScope::ALL`] order, without duplicates.
    pub fn normalize(mut scopes: Vec<ApiKeyScope>) -> Vec<ApiKeyScope> {
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }

    /// The scopes as stored and shown: space-separated names.
    pub fn join(scopes: &[ApiKeyScope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }
}

impl fmt::Display for ApiKeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiKeyScope {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

/// A refresh-token family: the chain of refresh tokens (`tsr_…`) issued to
/// one client for one session (SPEC §1). Each use rotates it; `generation`
/// counts the rotations. Only hashes of the tokens are stored, plus, for the
/// grace window only, the current token sealed (encrypted with the at-rest
/// key) so that a retry inside that window gets the very same successor
/// back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// `rtf_…`.
    pub id: String,
    /// The session the family belongs to. Its idle and absolute limits are
    /// the family's; revoking the session ends the family.
    pub handle: String,
    /// The session's token hash when the family was issued: a token
    /// regeneration (login, step-up) ends the family without a write here.
    pub session_token_hash: TokenHash,
    pub client_id: String,
    /// The granted scope; refreshes may narrow the access token's scope,
    /// never widen it.
    pub scope: Vec<String>,
    pub audience: Vec<String>,
    /// Generation of the current (unconsumed) refresh token; starts at 0.
    pub generation: u64,
    pub created_at: Timestamp,
    /// When the current generation was issued (= when its predecessor was
    /// consumed): the start of the reuse grace window.
    pub rotated_at: Timestamp,
    /// The current refresh token, sealed, while a retry may still need it:
    /// `None` for generation 0 (nobody can retry into a generation that was
    /// never a successor), at grace 0, and once the sweeper has cleared it
    /// after the grace window (SPEC §5).
    pub current_sealed: Option<Vec<u8>>,
    pub binding: Option<Binding>,
    pub revoked: Option<Revocation>,
}

impl RefreshFamily {
    /// This family (a template drawn before its session existed) as issued
    /// for `session` at `now`.
    #[must_use]
    pub fn issued_for(&self, session: &SessionRecord, now: Timestamp) -> Self {
        Self {
            handle: session.handle.clone(),
            session_token_hash: session.token_hash,
            created_at: now,
            rotated_at: now,
            ..self.clone()
        }
    }
}

/// What a presented refresh token's hash points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshLookup {
    pub family: std::sync::Arc<RefreshFamily>,
    /// The generation this token was issued as.
    pub generation: u64,
}

/// Signature algorithms Tessera signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    EdDSA,
    ES256,
    RS256,
}

impl SigningAlg {
    pub const fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }
}

impl FromStr for SigningAlg {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(())
    }
}

/// A signing key as stored. The private key is sealed with the at-rest key;
/// the public JWK is kept in the clear for the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: Timestamp,
    /// From this instant the key signs (if it is the newest active one).
    /// It is published in the JWKS from `created_at`, so verifiers know it
    /// before the first token it signs.
    pub activates_at: Timestamp,
    /// PKCS#8 DER of the private key, sealed (AES-256-GCM, AAD = kid).
    pub private_sealed: Vec<u8>,
    /// The public JWK (JSON object with `kid`, `alg`, `use`).
    pub public_jwk: String,
    /// Set by an emergency withdrawal (`tessera keys revoke`): the key never
    /// signs again, is not published, and `private_sealed` is empty.
    pub revoked_at: Option<Timestamp>,
}

/// "Chrome on Linux" from a user-agent string, by woothee's parser.
pub fn device_label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|s| !s.is_empty()) else {
        return String::from("Unknown device");
    };
    let parsed = woothee::parser::Parser::new().parse(ua);
    let known = |s: &str| !s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN;
    match parsed {
        Some(r) if known(r.name) && known(r.os) => format!("{} on {}", r.name, r.os),
        Some(r) if known(r.name) => r.name.to_string(),
        Some(r) if known(r.os) => format!("Unknown browser on {}", r.os),
        _ => String::from("Unknown device"),
    }
}

#[cfg(test)]
mod tests;
