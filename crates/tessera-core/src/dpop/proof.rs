//! The stateless part of checking a proof: form, header, key, signature and
//! claims (see the [module docs](super)).

use std::borrow::Cow;

use aws_lc_rs::digest;
use serde::Deserialize;

use super::jwk::{PublicJwk, RawJwk, jwk_thumbprint};
use super::{DpopAlg, DpopError, DpopPolicy, MAX_JTI_BYTES, MAX_NONCE_BYTES, MAX_PROOF_BYTES};
use crate::b64url;
use crate::time::Timestamp;

/// The request a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The request's target URI as the client addressed it (absolute; a
    /// query or fragment is ignored): built from the configured public base
    /// URL, or, behind a trusted proxy, from what it forwarded.
    pub uri: &'a str,
    /// The access token presented with the proof, at a resource server:
    /// `ath` must then be its hash. `None` at the token endpoint, where a
    /// proof with `ath` is refused.
    pub access_token: Option<&'a str>,
}

/// A proof that passed [`check_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// RFC 7638 thumbprint of the proof's key (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    /// Unix seconds.
    pub iat: i64,
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    jwk: Option<RawJwk<'a>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htu: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(borrow, default)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
}

fn json_object<'b, T: Deserialize<'b>>(bytes: &'b [u8], what: &'static str) -> Result<T, DpopError> {
    if bytes.first() != Some(&b'{') {
        return Err(DpopError::Invalid(what));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DpopError::Invalid(what))?;
    serde_json::from_str(text).map_err(|_| DpopError::Invalid(what))
}

/// Checks a proof against `req` at `now` under `policy`: everything but the
/// `jti` replay and the nonce's freshness (see [`super::DpopVerifier`]).
pub fn check_proof(
    proof: &str,
    req: &ProofRequest<'_>,
    policy: &DpopPolicy,
    now: Timestamp,
) -> Result<CheckedProof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Invalid("proof too long"));
    }
    let mut parts = proof.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Invalid("not a compact JWS"));
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(DpopError::Invalid("not a compact JWS"));
    }
    let mut hbuf = [0u8; MAX_PROOF_BYTES / 4 * 3 + 3];
    let header_json = b64url::decode_into(h64.as_bytes(), &mut hbuf)
        .ok_or(DpopError::Invalid("header is not base64url"))?;
    let header: RawHeader<'_> = json_object(header_json, "header is not a JSON object")?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(DpopError::Invalid("typ must be dpop+jwt"));
    }
    if header.crit.is_some() {
        return Err(DpopError::Invalid("no critical header extension is understood"));
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(DpopAlg::from_name)
        .filter(|a| policy.algs.contains(a))
        .ok_or(DpopError::Invalid("alg is not an allowed asymmetric algorithm"))?;
    let raw_jwk = header
        .jwk
        .as_ref()
        .ok_or(DpopError::Invalid("no jwk in the header"))?;
    let jwk = PublicJwk::from_raw(raw_jwk)?;
    if !jwk.fits(alg) {
        return Err(DpopError::Invalid("the jwk does not fit alg"));
    }

    let mut sbuf = [0u8; 132];
    let signature = b64url::decode_into(s64.as_bytes(), &mut sbuf)
        .ok_or(DpopError::Invalid("signature is not base64url"))?;
    let input = &proof.as_bytes()[..h64.len() + 1 + p64.len()];
    if !jwk.verify(alg, input, signature) {
        return Err(DpopError::Invalid("signature does not verify with the jwk"));
    }

    let mut pbuf = [0u8; MAX_PROOF_BYTES / 4 * 3 + 3];
    let payload_json = b64url::decode_into(p64.as_bytes(), &mut pbuf)
        .ok_or(DpopError::Invalid("payload is not base64url"))?;
    let claims: RawClaims<'_> = json_object(payload_json, "payload is not a JSON object")?;
    let jti = claims.jti.as_deref().ok_or(DpopError::Invalid("no jti"))?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::Invalid("jti must be 1-256 bytes"));
    }
    let htm = claims.htm.as_deref().ok_or(DpopError::Invalid("no htm"))?;
    if htm != req.method {
        return Err(DpopError::Invalid("htm does not match the request method"));
    }
    let htu = claims.htu.as_deref().ok_or(DpopError::Invalid("no htu"))?;
    if !htu_matches(htu, req.uri) {
        return Err(DpopError::Invalid("htu does not match the request URI"));
    }
    let iat = claims
        .iat
        .as_ref()
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f.floor() as i64)))
        .ok_or(DpopError::Invalid("no numeric iat"))?;
    let now_s = now.unix_secs();
    if iat < now_s.saturating_sub(policy.max_age_secs) {
        return Err(DpopError::Invalid("iat is too old"));
    }
    if iat > now_s.saturating_add(policy.max_future_secs) {
        return Err(DpopError::Invalid("iat is in the future"));
    }
    match (req.access_token, claims.ath.as_deref()) {
        (Some(at), Some(ath)) => {
            let want = b64url::encode(digest::digest(&digest::SHA256, at.as_bytes()).as_ref());
            // Both sides are public (the token travels beside the proof);
            // a plain comparison leaks nothing.
            if ath != want {
                return Err(DpopError::Invalid("ath does not match the access token"));
            }
        }
        (Some(_), None) => return Err(DpopError::Invalid("no ath")),
        (None, Some(_)) => return Err(DpopError::Invalid("ath without an access token")),
        (None, None) => {}
    }
    let nonce = match claims.nonce.as_deref() {
        Some(n) if n.is_empty() || n.len() > MAX_NONCE_BYTES => {
            return Err(DpopError::Invalid("nonce must be 1-256 bytes"));
        }
        n => n.map(str::to_owned),
    };
    Ok(CheckedProof {
        jkt: jwk_thumbprint(&jwk),
        jti: jti.to_owned(),
        iat,
        nonce,
    })
}

/// Whether a proof's `htu` names `uri`: both parsed as URLs (RFC 3986
/// syntax- and scheme-based normalisation: case of scheme and host, default
/// port, dot segments, percent-encoding of unreserved characters) with
/// query and fragment dropped, then compared. Only `http` and `https`.
/// A string with a control character or a space is no URI (RFC 3986 §2)
/// and names nothing: the WHATWG parser would strip or drop them silently.
pub fn htu_matches(htu: &str, uri: &str) -> bool {
    let norm = |s: &str| -> Option<url::Url> {
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return None;
        }
        let mut u = url::Url::parse(s).ok()?;
        if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() || u.host().is_none() {
            return None;
        }
        u.set_query(None);
        u.set_fragment(None);
        Some(u)
    };
    match (norm(htu), norm(uri)) {
        (Some(a), Some(b)) => {
            a == b || decode_unreserved(a.path()) == decode_unreserved(b.path()) && same_origin(&a, &b)
        }
        _ => false,
    }
}

fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.username() == b.username()
        && a.password() == b.password()
}

/// A path with percent-encoded unreserved characters (RFC 3986 §2.3)
/// decoded and the remaining escapes upper-cased (§6.2.2.1–2), which the
/// URL parser leaves as written.
fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
            && let (Some(hv), Some(lv)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            let c = (hv * 16 + lv) as u8;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(c as char);
            } else {
                out.push('%');
                out.push(h.to_ascii_uppercase() as char);
                out.push(l.to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}
