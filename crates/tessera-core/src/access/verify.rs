//! Strict parsing and verification of a compact-JWS access token: the one
//! implementation every face calls (see the [module docs](super) for the
//! order of the checks).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use super::keys::{KeySource, VerifyKey};
use super::{AccessClaims, MAX_KID_BYTES, MAX_LEEWAY_SECS, MAX_TOKEN_BYTES, VerifyError};
use crate::b64url;
use crate::time::Clock;

/// The protected header may take at most this many base64url characters.
pub const MAX_HEADER_B64: usize = 2048;
/// RSA-8192 signatures are 1024 bytes: 1366 characters.
const MAX_SIGNATURE_B64: usize = 1368;
/// Decoded payloads up to this size stay on the stack.
const PAYLOAD_STACK_BYTES: usize = 1024;

/// Which audiences a token may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceRule<'a> {
    /// `aud` must contain exactly this value: a resource server's check
    /// (the library's resource layer, `/auth/verify`).
    Contains(&'a str),
    /// Any audience, as long as `aud` names at least one: the issuer asking
    /// about its own tokens (introspection, revocation), whose answer is
    /// filtered by caller afterwards (RV-12).
    Any,
}

/// What the caller expects of a token. Built per call from borrowed strings,
/// so it costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// `iss`, compared byte for byte.
    pub issuer: &'a str,
    pub audience: AudienceRule<'a>,
    /// Clock-skew leeway for `exp`, `nbf` and `iat`; values above
    /// [`MAX_LEEWAY_SECS`] count as that (JW-09).
    pub leeway_secs: u64,
    /// Whether a sender-constrained token (`cnf`) is accepted. Not when it is
    /// presented as a Bearer token (RFC 9449 §7.1, RFC 8705 §3): without the
    /// proof of possession it is [`VerifyError::SenderConstrained`]. The
    /// issuer's own introspection and revocation accept it.
    pub accept_sender_constrained: bool,
}

impl Expected<'_> {
    #[inline]
    fn leeway(&self) -> i64 {
        // At most 60: the cast cannot wrap.
        self.leeway_secs.min(MAX_LEEWAY_SECS) as i64
    }

    /// Whether a token with this `exp` has expired at `now` (Unix seconds):
    /// the rule [`verify`] applies, for callers that re-check a token they
    /// verified before (the library's cache).
    #[inline]
    pub fn is_expired(&self, exp: i64, now: i64) -> bool {
        now >= exp.saturating_add(self.leeway())
    }

    /// The claim checks, on claims whose signature verified.
    fn check(&self, claims: &AccessClaims, now: i64) -> Result<(), VerifyError> {
        if claims.sub.is_empty()
            || claims.sid.as_deref().is_some_and(str::is_empty)
            || claims.client_id.is_empty()
            || claims.jti.is_empty()
        {
            return Err(VerifyError::InvalidClaims);
        }
        if claims.iss.as_bytes() != self.issuer.as_bytes() {
            return Err(VerifyError::WrongIssuer);
        }
        let audience_ok = match self.audience {
            AudienceRule::Contains(ours) => !ours.is_empty() && claims.aud.contains(ours),
            AudienceRule::Any => claims.aud.iter().any(|a| !a.is_empty()),
        };
        if !audience_ok {
            return Err(VerifyError::WrongAudience);
        }
        if self.is_expired(claims.exp, now) {
            return Err(VerifyError::Expired);
        }
        let horizon = now.saturating_add(self.leeway());
        if claims.nbf.is_some_and(|nbf| nbf > horizon) || claims.iat > horizon {
            return Err(VerifyError::NotYetValid);
        }
        if claims.cnf.is_some() && !self.accept_sender_constrained {
            return Err(VerifyError::SenderConstrained);
        }
        Ok(())
    }
}

/// Verifies an access token: form, header, key (from `keys` only), signature,
/// then the claims against `expected` at `clock`'s time. Revocation is the
/// caller's (a feed, a session lookup). Allocates only the returned claims
/// (and a payload buffer above 1 KiB).
pub fn verify<K: KeySource + ?Sized>(
    token: &str,
    keys: &K,
    expected: &Expected<'_>,
    clock: &dyn Clock,
) -> Result<AccessClaims, VerifyError> {
    let (header_b64, payload_b64, signature_b64) = locate(token)?;

    // Everything is base64url-decoded first (nothing is interpreted yet): a
    // failure may be a byte outside the alphabet, which must be reported as
    // `Malformed` before any header error. The other decoding errors are
    // reported below, at the step that needs the bytes.
    let mut sig_buf = [0u8; MAX_SIGNATURE_B64 / 4 * 3 + 3];
    let signature = if signature_b64.len() > MAX_SIGNATURE_B64 {
        Err(VerifyError::BadSignature)
    } else {
        b64url::decode_into(signature_b64.as_bytes(), &mut sig_buf).ok_or(VerifyError::BadSignature)
    };
    let mut payload_stack = [0u8; PAYLOAD_STACK_BYTES];
    let mut payload_heap = Vec::new();
    let payload_max = payload_b64.len() / 4 * 3 + 3;
    let payload_buf: &mut [u8] = if payload_max <= PAYLOAD_STACK_BYTES {
        &mut payload_stack
    } else {
        payload_heap.resize(payload_max, 0);
        &mut payload_heap
    };
    let payload_json =
        b64url::decode_into(payload_b64.as_bytes(), payload_buf).ok_or(VerifyError::InvalidClaims);

    // 1. Header, and 2. the key, the algorithm coming from it.
    let known = keys.known_header(header_b64);
    let key = match known {
        Some(key) => {
            if signature.is_err() || payload_json.is_err() {
                check_form(token)?;
            }
            key
        }
        None => {
            let mut header_buf = [0u8; MAX_HEADER_B64 / 4 * 3 + 3];
            let header_json = if header_b64.len() > MAX_HEADER_B64 {
                Err(VerifyError::BadHeader)
            } else {
                b64url::decode_into(header_b64.as_bytes(), &mut header_buf).ok_or(VerifyError::BadHeader)
            };
            if header_json.is_err() || signature.is_err() || payload_json.is_err() {
                check_form(token)?;
            }
            check_header(keys, header_json?)?
        }
    };

    // 3. Signature over the exact signing input.
    let signature = signature?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(signing_input, signature) {
        return Err(VerifyError::BadSignature);
    }
    if known.is_none() {
        keys.remember_header(header_b64, key);
    }

    // 4. Claims, only now.
    let claims = parse_claims(payload_json?)?;
    expected.check(&claims, clock.now().unix_secs())?;
    Ok(claims)
}

fn parse_claims(payload_json: &[u8]) -> Result<AccessClaims, VerifyError> {
    // A JSON object (serde would also map an array onto the struct).
    if payload_json.first() != Some(&b'{') {
        return Err(VerifyError::InvalidClaims);
    }
    // Validated once as a whole, so that serde_json does not validate every
    // string again.
    let payload_json = std::str::from_utf8(payload_json).map_err(|_| VerifyError::InvalidClaims)?;
    serde_json::from_str(payload_json).map_err(|_| VerifyError::InvalidClaims)
}

/// Marks a header member as present whatever its value (even `null`).
/// Also the DPoP `jwk`'s private-member check.
#[derive(Default)]
pub(crate) struct Present(pub(crate) bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The protected header, as far as we look at it. Other members are ignored;
/// a duplicated member among these is an error (serde refuses duplicates).
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Present,
    // Key material or key locations named by the token itself are never
    // used: a key must come from the key source (RFC 8725 §3.10, JW-04).
    // Ignoring them silently would be safe too, but a Tessera issuer never
    // sets them, so their presence means a forged or foreign token; refusing
    // it outright leaves no room for a later code path to trust them.
    #[serde(default)]
    jwk: Present,
    #[serde(default)]
    jku: Present,
    #[serde(default)]
    x5u: Present,
    #[serde(default)]
    x5c: Present,
    // JWE members: an encrypted token is not an access token we can read.
    #[serde(default)]
    enc: Present,
    #[serde(default)]
    zip: Present,
}

/// Checks the form of a compact JWS: at most `MAX_TOKEN_BYTES`, only
/// base64url characters and exactly two dots, no empty segment. This refuses
/// padding (`=`), whitespace, JSON serialization and JWE.
///
/// The common path does not run it: [`locate`] finds the segments and the
/// base64url decoder refuses every byte outside the alphabet, so only a token
/// whose decoding failed is checked here, to answer `Malformed` before any
/// other error exactly as if the form had been checked first.
#[cold]
fn check_form(token: &str) -> Result<(), VerifyError> {
    let bytes = token.as_bytes();
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLong);
    }
    // Length of the base64url run starting at `from`.
    let segment = |from: usize| -> usize {
        let rest = bytes.get(from..).unwrap_or_default();
        rest.iter()
            .position(|b| !b64url::is_alphabet(*b))
            .unwrap_or(rest.len())
    };
    let h = segment(0);
    if bytes.get(h) != Some(&b'.') {
        return Err(VerifyError::Malformed);
    }
    let p = segment(h + 1);
    if bytes.get(h + 1 + p) != Some(&b'.') {
        return Err(VerifyError::Malformed);
    }
    let s_start = h + 1 + p + 1;
    let s = segment(s_start);
    if s_start + s != bytes.len() || h == 0 || p == 0 || s == 0 {
        return Err(VerifyError::Malformed);
    }
    Ok(())
}

/// The three segments: up to the first dot, between the first and the last,
/// after the last. Only the length and the dots are looked at; a token
/// whose segments all decode has the form [`check_form`] requires (the
/// payload decodes only without dots in it).
#[inline]
fn locate(token: &str) -> Result<(&str, &str, &str), VerifyError> {
    let bytes = token.as_bytes();
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLong);
    }
    // core's `find`/`rfind` of one byte already scan a word at a time.
    let (Some(first), Some(last)) = (token.find('.'), token.rfind('.')) else {
        return Err(VerifyError::Malformed);
    };
    if first == 0 || last <= first + 1 || last + 1 == bytes.len() {
        return Err(VerifyError::Malformed);
    }
    Ok((&token[..first], &token[first + 1..last], &token[last + 1..]))
}

fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// The header checks, on the decoded protected header; returns the key that
/// `kid` names, whose algorithm `alg` must equal.
fn check_header<'k, K: KeySource + ?Sized>(
    keys: &'k K,
    header_json: &[u8],
) -> Result<&'k std::sync::Arc<VerifyKey>, VerifyError> {
    // A JSON object (serde would also map an array onto the struct).
    if header_json.first() != Some(&b'{') {
        return Err(VerifyError::BadHeader);
    }
    let header_json = std::str::from_utf8(header_json).map_err(|_| VerifyError::BadHeader)?;
    let header: RawHeader<'_> = serde_json::from_str(header_json).map_err(|_| VerifyError::BadHeader)?;
    if header.crit.0 {
        return Err(VerifyError::CriticalExtension);
    }
    if header.jwk.0 || header.jku.0 || header.x5u.0 || header.x5c.0 || header.enc.0 || header.zip.0 {
        return Err(VerifyError::UnsupportedHeader);
    }
    match header.typ.as_deref() {
        Some(typ) if is_access_token_type(typ) => {}
        _ => return Err(VerifyError::WrongType),
    }
    let alg = header.alg.as_deref().ok_or(VerifyError::AlgorithmMismatch)?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(VerifyError::AlgorithmMismatch);
    }
    let kid = match header.kid.as_deref() {
        Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => kid,
        _ => return Err(VerifyError::BadKid),
    };
    let key = keys.key(kid).ok_or(VerifyError::UnknownKid)?;
    if alg != key.alg().name() {
        return Err(VerifyError::AlgorithmMismatch);
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
