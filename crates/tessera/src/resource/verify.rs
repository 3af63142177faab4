//! Strict parsing and verification of a compact-JWS access token.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cache::Checked;
use super::error::VerifyError;
use super::jwks::{KeySet, VerifyKey};
use super::{Inner, MAX_KID_BYTES, MAX_TOKEN_BYTES, read};

/// The protected header may take at most this many base64url characters.
const MAX_HEADER_B64: usize = 2048;
/// RSA-8192 signatures are 1024 bytes: 1366 characters.
const MAX_SIGNATURE_B64: usize = 1368;

/// The claims of a Tessera access token (RFC 9068; CONTRACTS "Stateless
/// tokens"). Unknown claims are ignored; a duplicated claim is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer; equal to the configured one.
    pub iss: String,
    /// The subject (the user).
    pub sub: String,
    /// The audiences (a JSON string when there is one, else an array).
    #[serde(serialize_with = "ser_aud", deserialize_with = "de_aud")]
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's unique id.
    pub jti: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// The session handle (`ses_…`); revoking the session revokes the token.
    pub sid: String,
    /// Space-separated scopes, when any were granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Time of the last authentication, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authentication level as a decimal string (`"2"`: multi-factor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods (RFC 8176).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Confirmation (sender constraint). Tokens with it are refused as
    /// Bearer tokens, so a verified token never has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
}

/// A verified access token: its claims and its scopes, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The claims.
    pub claims: AccessClaims,
    /// `scope`, split on spaces.
    pub scopes: Vec<String>,
}

impl VerifiedToken {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

fn ser_aud<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn de_aud<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(vec![v])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// Marks a header member as present whatever its value (even `null`).
#[derive(Default)]
struct Present(bool);

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
    // used: a key must come from the configured JWKS (RFC 8725 §3.10, JW-04).
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

/// The base64url alphabet, as a lookup table.
static BASE64URL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        i += 1;
    }
    t
};

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
            .position(|b| !BASE64URL[usize::from(*b)])
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

/// Decodes base64url (no padding, canonical trailing bits) into `buf`.
#[inline]
fn decode_into<'b>(input: &str, buf: &'b mut [u8], err: VerifyError) -> Result<&'b [u8], VerifyError> {
    if input.len() / 4 * 3 + 3 > buf.len() {
        return Err(err);
    }
    let n = URL_SAFE_NO_PAD.decode_slice(input, buf).map_err(|_| err)?;
    buf.get(..n).ok_or(err)
}

fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// The verification (see the module docs for the order of the checks).
pub(crate) fn verify(inner: &Inner, token: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
    inner.check_feed()?;
    let cache_key = inner.cache.key(token);
    // Fast path: a token verified before. Expiry and revocation are checked
    // again on every hit.
    if let Some(key) = cache_key
        && let Some(Some(result)) = inner.cache.with_hit(key, token, |entry| {
            // Verified with a key set that has lost a key since: verify
            // again against the current one.
            if entry.keys_removed != inner.keys_removed.load(Ordering::Acquire) {
                return None;
            }
            let now = inner.clock.now_unix();
            if now >= entry.exp.saturating_add(inner.leeway) {
                return Some(Err(VerifyError::Expired));
            }
            let epoch = inner.revocations.epoch();
            if entry.epoch() != epoch {
                if inner.revocations.is_revoked(&entry.verified.claims.sid) {
                    return Some(Err(VerifyError::Revoked));
                }
                entry.set_epoch(epoch);
            }
            Some(Ok(Arc::clone(&entry.verified)))
        })
    {
        return result;
    }
    first_sight(inner, token, cache_key)
}

/// Decoded payloads up to this size stay on the stack.
const PAYLOAD_STACK_BYTES: usize = 1024;

fn first_sight(
    inner: &Inner,
    token: &str,
    cache_key: Option<u64>,
) -> Result<Arc<VerifiedToken>, VerifyError> {
    let (header_b64, payload_b64, signature_b64) = locate(token)?;

    // Everything is base64url-decoded first (nothing is interpreted yet): a
    // failure may be a byte outside the alphabet, which must be reported as
    // `Malformed` before any header error. The other decoding errors are
    // reported below, at the step that needs the bytes.
    let mut sig_buf = [0u8; MAX_SIGNATURE_B64 / 4 * 3 + 3];
    let signature = if signature_b64.len() > MAX_SIGNATURE_B64 {
        Err(VerifyError::BadSignature)
    } else {
        decode_into(signature_b64, &mut sig_buf, VerifyError::BadSignature)
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
    let payload_json = decode_into(payload_b64, payload_buf, VerifyError::InvalidClaims);

    // 1. Header, and 2. the key, the algorithm coming from it. The removal
    // generation is read before the keys (see `install_keys`).
    let keys_removed = inner.keys_removed.load(Ordering::Acquire);
    let keys = Arc::clone(&*read(&inner.keys));
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
                decode_into(header_b64, &mut header_buf, VerifyError::BadHeader)
            };
            if header_json.is_err() || signature.is_err() || payload_json.is_err() {
                check_form(token)?;
            }
            check_header(&keys, header_json?)?
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
    let payload_json = payload_json?;
    if payload_json.first() != Some(&b'{') {
        return Err(VerifyError::InvalidClaims);
    }
    // Validated once as a whole, so that serde_json does not validate every
    // string again.
    let payload_json = std::str::from_utf8(payload_json).map_err(|_| VerifyError::InvalidClaims)?;
    let claims: AccessClaims = serde_json::from_str(payload_json).map_err(|_| VerifyError::InvalidClaims)?;
    if claims.sub.is_empty() || claims.sid.is_empty() || claims.client_id.is_empty() || claims.jti.is_empty()
    {
        return Err(VerifyError::InvalidClaims);
    }
    if claims.iss.as_bytes() != inner.issuer.as_bytes() {
        return Err(VerifyError::WrongIssuer);
    }
    if !claims.aud.iter().any(|a| **a == *inner.audience) {
        return Err(VerifyError::WrongAudience);
    }
    let now = inner.clock.now_unix();
    let leeway = inner.leeway;
    if now >= claims.exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway))
        || claims.iat > now.saturating_add(leeway)
    {
        return Err(VerifyError::NotYetValid);
    }
    if claims.cnf.is_some() {
        // A DPoP- or mTLS-bound token presented as Bearer (RFC 9449 §7.1,
        // RFC 8705 §3): without the proof of possession it is refused.
        return Err(VerifyError::SenderConstrained);
    }

    // 5. Revocation. The epoch is read before the lookup, so the cache entry
    // never claims a check newer than the one made.
    let epoch = inner.revocations.epoch();
    if inner.revocations.is_revoked(&claims.sid) {
        return Err(VerifyError::Revoked);
    }

    let scopes = claims
        .scope
        .as_deref()
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let exp = claims.exp;
    let verified = Arc::new(VerifiedToken { claims, scopes });
    if let Some(cache_key) = cache_key {
        inner.cache.insert(
            cache_key,
            token,
            Arc::clone(&verified),
            exp,
            Checked { epoch, keys_removed },
            now.saturating_sub(leeway),
        );
    }
    Ok(verified)
}

/// The header checks, on the decoded protected header; returns the key that
/// `kid` names, whose algorithm `alg` must equal.
fn check_header<'k>(keys: &'k KeySet, header_json: &[u8]) -> Result<&'k Arc<VerifyKey>, VerifyError> {
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
    let key = keys.get(kid).ok_or(VerifyError::UnknownKid)?;
    if alg != key.alg.name() {
        return Err(VerifyError::AlgorithmMismatch);
    }
    Ok(key)
}
