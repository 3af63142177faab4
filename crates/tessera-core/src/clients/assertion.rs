//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OIDC
//! Core §9): the one check of a client assertion, for the token,
//! introspection and revocation endpoints alike.
//!
//! # What [`check_assertion`] checks, in order
//!
//! 1. Size (at most [`MAX_ASSERTION_BYTES`]).
//! 2. The header (jsonwebtoken's `decode_header`, which has no `none`
//!    variant): `alg` on [`ASSERTION_ALGS`] (asymmetric only, so `HS256`
//!    with a public key as the secret never gets to a key); no `crit`, no
//!    key or key location in the header (`jwk`, `jku`, `x5u`, `x5c`): keys
//!    come only from the client's registration; `typ` absent, `JWT` or
//!    `client-authentication+jwt`.
//! 3. The signature, with a registered key of the client that fits `alg`
//!    (the one `kid` names, else each that fits).
//! 4. The claims: `iss` = `sub` = the client's id; `aud` names the issuer
//!    or the token endpoint's URL; `exp` present, not past (with the
//!    leeway) and at most [`MAX_ASSERTION_LIFETIME_SECS`] ahead; `iat` and
//!    `nbf`, when present, not in the future beyond the leeway; `jti`
//!    present, 1–[`MAX_ASSERTION_JTI_BYTES`] bytes.
//!
//! [`ClientAssertions::verify`] adds the single use of `jti` (RFC 7523 §3
//! item 7) through the shared [`ReplayStore`]: a marker of SHA-256 over the
//! client id and `jti`, kept until `exp` plus the leeway, so an assertion
//! is accepted once across every node.
//!
//! Time is the core's clock, never jsonwebtoken's wall clock: jsonwebtoken
//! verifies the signature only, every claim is checked here.

use std::sync::Arc;

use aws_lc_rs::digest;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;

use super::Client;
use super::jwks::{ASSERTION_ALGS, ClientJwks};
use crate::access::{Audience, MAX_LEEWAY_SECS};
use crate::store::ReplayStore;
use crate::time::{Clock, Timestamp};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An assertion longer than this is refused before any decoding.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// How far ahead an assertion's `exp` may be: assertions are minted per
/// request, and a long-lived one would have to be remembered (its `jti`)
/// for as long.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// Longest `jti` accepted.
pub const MAX_ASSERTION_JTI_BYTES: usize = 256;

/// Why an assertion was refused. The endpoints answer every one of them with
/// the same 401 `invalid_client` and log the reason at debug level only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the client does not authenticate with private_key_jwt")]
    NotRegistered,
    #[error("assertion too long")]
    TooLong,
    #[error("malformed assertion or header")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("header names a key, a key location or a critical extension")]
    UnsupportedHeader,
    #[error("wrong typ")]
    WrongType,
    #[error("no registered key fits")]
    NoKey,
    #[error("bad signature")]
    BadSignature,
    #[error("claims are not valid JSON of the expected types")]
    InvalidClaims,
    #[error("iss is not the client id")]
    WrongIssuer,
    #[error("sub is not the client id")]
    WrongSubject,
    #[error("aud names neither the issuer nor the token endpoint")]
    WrongAudience,
    #[error("exp is missing")]
    MissingExp,
    #[error("expired")]
    Expired,
    #[error("exp is too far ahead")]
    TooLongLived,
    #[error("iat or nbf is in the future")]
    NotYetValid,
    #[error("jti is missing or too long")]
    BadJti,
    #[error("jti was used before")]
    Replayed,
    #[error("replay check unavailable: {0}")]
    Unavailable(String),
}

/// What the checks need besides the assertion.
#[derive(Debug, Clone, Copy)]
pub struct AssertionRules<'a> {
    /// Accepted `aud` values: the issuer and the token endpoint's URL.
    pub audiences: &'a [String],
    /// Clock-skew leeway for `exp`, `iat` and `nbf` (at most 60 s).
    pub leeway_secs: i64,
}

/// A verified assertion's single-use parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedAssertion {
    pub jti: String,
    /// Unix seconds.
    pub exp: i64,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

fn typ_ok(typ: Option<&str>) -> bool {
    match typ {
        None => true,
        Some(t) => t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("client-authentication+jwt"),
    }
}

/// The stateless checks of an assertion by `client_id` against its `jwks`,
/// at `now` (see this module's docs).
pub fn check_assertion(
    client_id: &str,
    jwks: &ClientJwks,
    assertion: &str,
    rules: &AssertionRules<'_>,
    now: Timestamp,
) -> Result<CheckedAssertion, AssertionError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(AssertionError::TooLong);
    }
    let header = decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
    if !ASSERTION_ALGS.contains(&header.alg) {
        return Err(AssertionError::Algorithm);
    }
    if header.crit.is_some()
        || header.jwk.is_some()
        || header.jku.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
    {
        return Err(AssertionError::UnsupportedHeader);
    }
    if !typ_ok(header.typ.as_deref()) {
        return Err(AssertionError::WrongType);
    }
    let claims = verified_claims(jwks, assertion, header.kid.as_deref(), header.alg)?;

    if claims.iss.as_deref() != Some(client_id) {
        return Err(AssertionError::WrongIssuer);
    }
    if claims.sub.as_deref() != Some(client_id) {
        return Err(AssertionError::WrongSubject);
    }
    let aud_ok = claims
        .aud
        .as_ref()
        .is_some_and(|aud| aud.iter().any(|a| rules.audiences.iter().any(|r| r == a)));
    if !aud_ok {
        return Err(AssertionError::WrongAudience);
    }
    let leeway = rules.leeway_secs.clamp(0, MAX_LEEWAY_SECS as i64);
    let now = now.unix_secs();
    let exp = claims.exp.ok_or(AssertionError::MissingExp)?;
    if now >= exp.saturating_add(leeway) {
        return Err(AssertionError::Expired);
    }
    if exp
        > now
            .saturating_add(MAX_ASSERTION_LIFETIME_SECS)
            .saturating_add(leeway)
    {
        return Err(AssertionError::TooLongLived);
    }
    let horizon = now.saturating_add(leeway);
    if claims.iat.is_some_and(|t| t > horizon) || claims.nbf.is_some_and(|t| t > horizon) {
        return Err(AssertionError::NotYetValid);
    }
    match claims.jti {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_ASSERTION_JTI_BYTES => {
            Ok(CheckedAssertion { jti, exp })
        }
        _ => Err(AssertionError::BadJti),
    }
}

/// The claims, once a registered key verified the signature.
fn verified_claims(
    jwks: &ClientJwks,
    assertion: &str,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Claims, AssertionError> {
    // Signature only: every claim is checked by the caller on our clock.
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let mut last = AssertionError::NoKey;
    for key in jwks.candidates(kid, alg) {
        let e = match decode::<Claims>(assertion, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => e,
        };
        use jsonwebtoken::errors::ErrorKind;
        last = match e.kind() {
            // After a good signature, or about the form: no other key
            // will do better.
            ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                return Err(AssertionError::InvalidClaims);
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                return Err(AssertionError::Malformed);
            }
            _ => AssertionError::BadSignature,
        };
    }
    Err(last)
}

/// Client assertions with their state: the replay store that makes each
/// `jti` single-use, the clock, and the accepted audiences.
#[derive(Clone)]
pub struct ClientAssertions {
    replay: Arc<dyn ReplayStore>,
    clock: Arc<dyn Clock>,
    audiences: Arc<[String]>,
    leeway_secs: i64,
}

impl std::fmt::Debug for ClientAssertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertions")
            .field("audiences", &self.audiences)
            .field("leeway_secs", &self.leeway_secs)
            .finish_non_exhaustive()
    }
}

impl ClientAssertions {
    /// `audiences`: the issuer and the token endpoint's URL (RFC 7523 §3
    /// item 3; OIDC Core §9 names the token endpoint). `replay` must be the
    /// store every node shares.
    pub fn new(
        replay: Arc<dyn ReplayStore>,
        clock: Arc<dyn Clock>,
        audiences: Vec<String>,
        leeway_secs: i64,
    ) -> ClientAssertions {
        ClientAssertions {
            replay,
            clock,
            audiences: audiences.into(),
            leeway_secs,
        }
    }

    /// Checks `assertion` as `client`'s authentication and spends its `jti`.
    pub async fn verify(&self, client: &Client, assertion: &str) -> Result<CheckedAssertion, AssertionError> {
        let jwks = client.jwks.as_ref().ok_or(AssertionError::NotRegistered)?;
        let now = self.clock.now();
        let rules = AssertionRules {
            audiences: &self.audiences,
            leeway_secs: self.leeway_secs,
        };
        let checked = check_assertion(&client.client_id, jwks, assertion, &rules, now)?;
        let marker = replay_marker(&client.client_id, &checked.jti);
        let until = Timestamp::from_unix_secs(
            checked
                .exp
                .saturating_add(rules.leeway_secs.max(0))
                .saturating_add(1),
        );
        match self.replay.use_once(&marker, until, now).await {
            Ok(true) => Ok(checked),
            Ok(false) => Err(AssertionError::Replayed),
            Err(e) => Err(AssertionError::Unavailable(e.to_string())),
        }
    }
}

/// The client an assertion claims to come from (its `sub`, else its
/// `iss`), read from the unverified payload only to find the registration
/// to verify it with; `None` if it cannot be read. Nothing else of an
/// unverified assertion is ever looked at.
pub fn assertion_client_id(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Who {
        #[serde(default)]
        sub: Option<String>,
        #[serde(default)]
        iss: Option<String>,
    }
    if assertion.len() > MAX_ASSERTION_BYTES {
        return None;
    }
    let mut parts = assertion.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let mut buf = vec![0u8; payload.len() / 4 * 3 + 3];
    let json = crate::b64url::decode_into(payload.as_bytes(), &mut buf)?;
    if json.first() != Some(&b'{') {
        return None;
    }
    let who: Who = serde_json::from_slice(json).ok()?;
    who.sub.or(who.iss).filter(|id| !id.is_empty() && id.len() <= 128)
}

/// SHA-256 over a domain label, the client id and the `jti` (unambiguous:
/// the id never holds a NUL byte, and the `jti` comes last).
pub fn replay_marker(client_id: &str, jti: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"tessera client assertion\0");
    ctx.update(client_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(jti.as_bytes());
    let mut marker = [0u8; 32];
    marker.copy_from_slice(ctx.finish().as_ref());
    marker
}

#[cfg(test)]
mod tests;
