//! Device Bound Session Credentials (W3C WebAppSec draft, SPEC §4.5): the
//! protocol's rules, once for the library's browser layer and the
//! service's `/auth/dbsc/*` endpoints. HTTP framing (headers, the session
//! instruction JSON, `Set-Cookie`) is `tessera_http::dbsc`'s.
//!
//! - The DBSC session identifier is the session's handle: public, stable
//!   across elevate, unguessable (128 bits), unique.
//! - Challenges are stateless: the purpose, the handle and the issue time
//!   sealed with the deployment key, so any process sharing it accepts them;
//!   single use through the shared [`ReplayStore`] (a marker per challenge,
//!   kept for its lifetime), short-lived (`challenge_ttl_secs`), and bound to
//!   one session and one purpose.
//! - A proof is a compact JWS `typ: dbsc+jwt`: at registration with the
//!   public key in its header (`jwk`, public members only) and `jti` the
//!   registration challenge; at refresh without `jwk`, verified with the
//!   registered key, `jti` a refresh challenge of the same session.
//! - Registration binds the session (`Binding::Dbsc`, compare-and-swap on
//!   the record): a bound session is never re-bound to another key.
//! - The bound cookie is the handle and an expiry sealed with the
//!   deployment key: checking it needs no store read beyond the session.

use std::borrow::Cow;
use std::sync::Arc;

use aws_lc_rs::digest;
use serde::Deserialize;

use crate::b64url;
use crate::dpop::{DpopAlg, PublicJwk, jwk_thumbprint};
use crate::model::{Binding, EventKind, NewEvent, SessionRecord};
use crate::seal::Sealer;
use crate::sessions::Sessions;
use crate::store::{EventStore, ReplayStore, StoreError};
use crate::time::Timestamp;

/// Longest proof accepted (an RS256 registration proof with a 4096-bit key
/// is under 1.5 KB).
pub const MAX_PROOF_BYTES: usize = 4096;
const CHALLENGE_CONTEXT: &[u8] = b"tessera dbsc challenge";
const COOKIE_CONTEXT: &[u8] = b"tessera dbsc bound cookie";

/// Per deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbscPolicy {
    /// Offered in `Secure-Session-Registration`, in order of preference.
    pub algs: Vec<DpopAlg>,
    /// How long a challenge is accepted.
    pub challenge_ttl_secs: i64,
    /// Lifetime of a bound cookie; the browser refreshes it with a proof.
    pub cookie_ttl_secs: i64,
    /// Step-up to this level or above only from a bound session.
    pub required_level: Option<u8>,
}

impl Default for DbscPolicy {
    fn default() -> Self {
        DbscPolicy {
            algs: vec![DpopAlg::Es256, DpopAlg::Rs256],
            challenge_ttl_secs: 300,
            cookie_ttl_secs: 600,
            required_level: None,
        }
    }
}

/// Why a DBSC request failed; each maps onto the status the draft's user
/// agents act on (403: retry with the challenge; other 4xx: forget the
/// session; 5xx: back off).
#[derive(Debug, thiserror::Error)]
pub enum DbscError {
    /// A proof is needed, or the one sent named a stale or unknown
    /// challenge: 403 with this fresh challenge.
    #[error("a DBSC proof over a fresh challenge is needed")]
    ChallengeNeeded(String),
    /// The proof is malformed, unsigned by the right key, or its challenge
    /// belongs to another session or purpose: 400 (401 at refresh), no
    /// cookie.
    #[error("invalid DBSC proof: {0}")]
    InvalidProof(&'static str),
    /// No such bound session: 404, so the user agent forgets it.
    #[error("unknown DBSC session")]
    UnknownSession,
    /// The session ended (logout, revocation, expiry): `{"continue": false}`.
    #[error("the session has ended")]
    Ended,
    /// The session is already bound to a key (never swapped).
    #[error("the session is already device-bound")]
    AlreadyBound,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for DbscError {
    fn from(e: StoreError) -> Self {
        DbscError::Unavailable(e.to_string())
    }
}

impl From<crate::Error> for DbscError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Store(s) => s.into(),
            crate::Error::NotFound => DbscError::UnknownSession,
            crate::Error::Conflict => DbscError::Unavailable("session update contention".into()),
            _ => DbscError::Ended,
        }
    }
}

/// What the browser gets after a registration or refresh: the bound
/// cookie's value and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCookie {
    /// The DBSC session identifier (the session handle).
    pub session_id: String,
    pub value: String,
    pub expires_at: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register = 1,
    Refresh = 2,
}

/// The DBSC service of a deployment.
#[derive(Clone)]
pub struct Dbsc {
    sessions: Sessions,
    replay: Arc<dyn ReplayStore>,
    sealer: Arc<Sealer>,
    policy: Arc<DbscPolicy>,
    /// Where `binding_failed` events go, if anywhere.
    events: Option<Arc<dyn EventStore>>,
}

impl std::fmt::Debug for Dbsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dbsc")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Dbsc {
    /// `replay` must be shared by every process serving the DBSC
    /// endpoints (the store), or a challenge could be used once per process.
    pub fn new(
        sessions: Sessions,
        replay: Arc<dyn ReplayStore>,
        sealer: Arc<Sealer>,
        policy: DbscPolicy,
    ) -> Dbsc {
        Dbsc {
            sessions,
            replay,
            sealer,
            policy: Arc::new(policy),
            events: None,
        }
    }

    /// Records a `binding_failed` event (the audit log) for every refused
    /// proof that names a real session.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn EventStore>) -> Dbsc {
        self.events = Some(events);
        self
    }

    /// Logs a refused proof, and appends `binding_failed` to the audit log
    /// when an event store is set. A failure to append is logged; the answer
    /// stays the refusal.
    async fn failed(&self, session: &SessionRecord, why: &str) {
        tracing::warn!(session = %session.handle, reason = why, "binding_failed: DBSC proof refused");
        if let Some(events) = &self.events {
            let e = NewEvent::new(EventKind::BindingFailed, session, self.sessions.now());
            if let Err(err) = events.append_events(&[e]).await {
                tracing::warn!(error = %err, "cannot record a binding_failed event");
            }
        }
    }

    pub fn policy(&self) -> &DbscPolicy {
        &self.policy
    }

    /// A registration challenge for this live session.
    pub fn registration_challenge(&self, session: &SessionRecord) -> String {
        self.challenge(Purpose::Register, &session.handle)
    }

    /// A refresh challenge for the DBSC session `session_id` (pushed early
    /// on responses, or answered with a 403).
    pub fn refresh_challenge(&self, session_id: &str) -> String {
        self.challenge(Purpose::Refresh, session_id)
    }

    fn challenge(&self, purpose: Purpose, handle: &str) -> String {
        let mut plain = Vec::with_capacity(9 + handle.len());
        plain.push(purpose as u8);
        plain.extend_from_slice(&self.sessions.now().unix_millis().to_be_bytes());
        plain.extend_from_slice(handle.as_bytes());
        b64url::encode(&self.sealer.seal(&plain, CHALLENGE_CONTEXT))
    }

    /// The handle a challenge was issued for, if it is ours, for `purpose`,
    /// and not older than the challenge lifetime.
    fn open_challenge(&self, challenge: &str, purpose: Purpose) -> Option<String> {
        if challenge.len() > 512 {
            return None;
        }
        let mut buf = [0u8; 512];
        let sealed = b64url::decode_into(challenge.as_bytes(), &mut buf)?;
        let plain = self.sealer.open(sealed, CHALLENGE_CONTEXT).ok()?;
        let (&kind, rest) = plain.split_first()?;
        let (issued, handle) = rest.split_first_chunk::<8>()?;
        let age = self.sessions.now().unix_millis() - i64::from_be_bytes(*issued);
        let fresh = (-1000..=self.policy.challenge_ttl_secs.saturating_mul(1000)).contains(&age);
        (kind == purpose as u8 && fresh).then(|| String::from_utf8(handle.to_vec()).ok())?
    }

    /// Spends a challenge: the first use across every process wins.
    async fn spend(&self, challenge: &str) -> Result<bool, DbscError> {
        let mut marker = [0u8; 32];
        let d = digest::digest(
            &digest::SHA256,
            [b"tessera dbsc\0", challenge.as_bytes()].concat().as_slice(),
        );
        marker.copy_from_slice(d.as_ref());
        let now = self.sessions.now();
        let until = now.plus_secs(self.policy.challenge_ttl_secs.saturating_add(2));
        Ok(self.replay.use_once(&marker, until, now).await?)
    }

    /// `POST` registration: `session` is the live session of the request's
    /// session cookie, `proof` the `Secure-Session-Response` header.
    pub async fn register(&self, session: &SessionRecord, proof: &str) -> Result<BoundCookie, DbscError> {
        let r = self.register_checked(session, proof).await;
        if let Err(DbscError::InvalidProof(why)) = &r {
            self.failed(session, why).await;
        }
        r
    }

    async fn register_checked(&self, session: &SessionRecord, proof: &str) -> Result<BoundCookie, DbscError> {
        let p = parse_proof(proof, &self.policy.algs, None)?;
        let jwk = p
            .jwk
            .ok_or(DbscError::InvalidProof("a registration proof carries its jwk"))?;
        match self.open_challenge(&p.jti, Purpose::Register) {
            Some(h) if h == session.handle => {}
            Some(_) => {
                return Err(DbscError::InvalidProof(
                    "the challenge belongs to another session",
                ));
            }
            None => return Err(DbscError::InvalidProof("unknown or stale registration challenge")),
        }
        if !self.spend(&p.jti).await? {
            return Err(DbscError::InvalidProof(
                "the registration challenge was used before",
            ));
        }
        let binding = Binding::Dbsc {
            session_id: session.handle.clone(),
            jkt: jwk_thumbprint(&jwk),
            jwk: jwk.to_json(),
        };
        if !self.sessions.bind(&session.handle, binding).await? {
            return Err(DbscError::AlreadyBound);
        }
        Ok(self.cookie(&session.handle))
    }

    /// `POST` refresh for DBSC session `session_id`
    /// (`Sec-Secure-Session-Id`), with the proof if the browser sent one.
    pub async fn refresh(&self, session_id: &str, proof: Option<&str>) -> Result<BoundCookie, DbscError> {
        let rec = match self.sessions.lookup(session_id).await? {
            Some(r) => r,
            None => return Err(DbscError::UnknownSession),
        };
        let Some(Binding::Dbsc { jwk, .. }) = &rec.binding else {
            return Err(DbscError::UnknownSession);
        };
        if !rec.is_active(self.sessions.now()) {
            return Err(DbscError::Ended);
        }
        let Some(proof) = proof else {
            return Err(DbscError::ChallengeNeeded(self.refresh_challenge(session_id)));
        };
        let r = self.refresh_checked(session_id, proof, jwk).await;
        if let Err(DbscError::InvalidProof(why)) = &r {
            self.failed(&rec, why).await;
        }
        r
    }

    async fn refresh_checked(
        &self,
        session_id: &str,
        proof: &str,
        jwk: &str,
    ) -> Result<BoundCookie, DbscError> {
        let key = PublicJwk::from_json(jwk)
            .map_err(|_| DbscError::Unavailable("stored DBSC key is corrupt".into()))?;
        let p = parse_proof(proof, &self.policy.algs, Some(&key))?;
        match self.open_challenge(&p.jti, Purpose::Refresh) {
            Some(h) if h == session_id => {}
            Some(_) => {
                return Err(DbscError::InvalidProof(
                    "the challenge belongs to another session",
                ));
            }
            // Stale or not ours: the draft's answer is a new challenge.
            None => return Err(DbscError::ChallengeNeeded(self.refresh_challenge(session_id))),
        }
        if !self.spend(&p.jti).await? {
            return Err(DbscError::ChallengeNeeded(self.refresh_challenge(session_id)));
        }
        Ok(self.cookie(session_id))
    }

    fn cookie(&self, handle: &str) -> BoundCookie {
        let expires_at = self.sessions.now().plus_secs(self.policy.cookie_ttl_secs);
        let mut plain = expires_at.unix_millis().to_be_bytes().to_vec();
        plain.extend_from_slice(handle.as_bytes());
        BoundCookie {
            session_id: handle.to_owned(),
            value: b64url::encode(&self.sealer.seal(&plain, COOKIE_CONTEXT)),
            expires_at,
        }
    }

    /// Whether a request may use `session`: unbound sessions always; a
    /// DBSC-bound one only with a bound cookie issued for it and not
    /// expired (checklist DB-09, SC-14).
    pub fn admits(&self, session: &SessionRecord, bound_cookie: Option<&[u8]>) -> bool {
        if !matches!(session.binding, Some(Binding::Dbsc { .. })) {
            return true;
        }
        let Some(value) = bound_cookie else {
            return false;
        };
        let mut buf = [0u8; 512];
        if value.len() > 512 {
            return false;
        }
        let Some(sealed) = b64url::decode_into(value, &mut buf) else {
            return false;
        };
        let Ok(plain) = self.sealer.open(sealed, COOKIE_CONTEXT) else {
            return false;
        };
        let Some((exp, handle)) = plain.split_first_chunk::<8>() else {
            return false;
        };
        handle == session.handle.as_bytes() && self.sessions.now().unix_millis() < i64::from_be_bytes(*exp)
    }

    /// Whether step-up to `level` is allowed for `session` (`required_level`).
    pub fn may_elevate_to(&self, session: &SessionRecord, level: u8) -> bool {
        match self.policy.required_level {
            Some(min) if level >= min => matches!(session.binding, Some(Binding::Dbsc { .. })),
            _ => true,
        }
    }
}

/// The proof parser as the fuzz targets (`fuzz/`) call it; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{DbscError, DpopAlg, PublicJwk};

    /// Parses and verifies a `dbsc+jwt` proof exactly as registration
    /// (`registered` is `None`) and refresh do: its `jti` and, at
    /// registration, the key from its header.
    pub fn parse_proof(
        proof: &str,
        algs: &[DpopAlg],
        registered: Option<&PublicJwk>,
    ) -> Result<(String, Option<PublicJwk>), DbscError> {
        super::parse_proof(proof, algs, registered).map(|p| (p.jti, p.jwk))
    }
}

struct Proof {
    jti: String,
    jwk: Option<PublicJwk>,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    jwk: Option<crate::dpop::RawJwk<'a>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
}

/// Parses and verifies a `dbsc+jwt` proof: with its header `jwk` when
/// `registered` is `None` (registration), else with the registered key
/// and no `jwk` allowed (refresh, DB-07).
fn parse_proof(proof: &str, algs: &[DpopAlg], registered: Option<&PublicJwk>) -> Result<Proof, DbscError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DbscError::InvalidProof("proof too long"));
    }
    let mut parts = proof.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DbscError::InvalidProof("not a compact JWS"));
    };
    let decode = |s: &str| -> Result<Vec<u8>, DbscError> {
        let mut buf = vec![0u8; s.len() / 4 * 3 + 3];
        let n = b64url::decode_into(s.as_bytes(), &mut buf)
            .ok_or(DbscError::InvalidProof("not base64url"))?
            .len();
        buf.truncate(n);
        Ok(buf)
    };
    let (header, payload, signature) = (decode(h64)?, decode(p64)?, decode(s64)?);
    let header: RawHeader<'_> = json_object(&header)?;
    if header.typ.as_deref() != Some("dbsc+jwt") {
        return Err(DbscError::InvalidProof("typ must be dbsc+jwt"));
    }
    if header.crit.is_some() {
        return Err(DbscError::InvalidProof(
            "no critical header extension is understood",
        ));
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(DpopAlg::from_name)
        .filter(|a| algs.contains(a))
        .ok_or(DbscError::InvalidProof("alg is not an offered algorithm"))?;
    let (key, jwk) = match (registered, header.jwk) {
        (None, Some(raw)) => {
            let k = PublicJwk::from_raw(&raw).map_err(|e| match e {
                crate::dpop::DpopError::Invalid(why) => DbscError::InvalidProof(why),
                _ => DbscError::InvalidProof("jwk is not a usable public key"),
            })?;
            (k.clone(), Some(k))
        }
        (None, None) => return Err(DbscError::InvalidProof("a registration proof carries its jwk")),
        (Some(_), Some(_)) => return Err(DbscError::InvalidProof("a refresh proof must not carry a jwk")),
        (Some(k), None) => (k.clone(), None),
    };
    if !key.fits(alg) {
        return Err(DbscError::InvalidProof("alg does not fit the key"));
    }
    let input = &proof.as_bytes()[..h64.len() + 1 + p64.len()];
    if !key.verify(alg, input, &signature) {
        return Err(DbscError::InvalidProof("signature does not verify"));
    }
    let claims: RawClaims<'_> = json_object(&payload)?;
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 512)
        .ok_or(DbscError::InvalidProof("jti must be the challenge"))?;
    Ok(Proof {
        jti: jti.into_owned(),
        jwk,
    })
}

fn json_object<'b, T: Deserialize<'b>>(bytes: &'b [u8]) -> Result<T, DbscError> {
    if bytes.first() != Some(&b'{') {
        return Err(DbscError::InvalidProof("not a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|_| DbscError::InvalidProof("not a JSON object"))
}

#[cfg(test)]
mod tests;
