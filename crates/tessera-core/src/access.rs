//! RFC 9068 access tokens: claims, minting, and the one verifier every face
//! uses — the library's resource layer (keys from a fetched JWKS),
//! `/auth/verify`, introspection and revocation (the service's own signing
//! keys). Revocation (the library's feed, the service's session lookup)
//! stays with the callers; the token checks are all here.
//!
//! Header `{"typ":"at+jwt","alg":<key alg>,"kid":…}`; claims `iss sub aud exp
//! iat jti client_id`, `sid` (the session; absent for a client's own token),
//! plus `scope` (space-separated, only when
//! non-empty), `auth_time`, `acr`, `amr` (only when non-empty) and `cnf`
//! when known.
//!
//! # What [`verify`] checks, in order
//!
//! 1. Length (at most [`MAX_TOKEN_BYTES`]) and form before anything is
//!    interpreted: exactly three non-empty base64url segments, no padding, no
//!    whitespace ([`crate::b64url`], the one decoder). JWS JSON serialization
//!    and JWE (five segments) are refused. (The segments are decoded up front
//!    and the full form scan runs only when a decoding fails; the outcome is
//!    the same as scanning first.)
//! 2. The protected header (at most [`MAX_HEADER_B64`] characters), parsed as
//!    raw JSON: any `crit` is refused (no extension is understood); `jwk`,
//!    `jku`, `x5u`, `x5c` are refused (keys come only from the
//!    [`KeySource`]); `enc`/`zip` (JWE) refused; `typ` must be `at+jwt` or
//!    `application/at+jwt` (case-insensitive); `kid` is required and at most
//!    [`MAX_KID_BYTES`].
//! 3. The key is looked up by `kid` in the key source; the header's `alg`
//!    must equal the algorithm **of the key** byte for byte (so `none`,
//!    `HS256`, `es256`, … never match).
//! 4. The signature, with aws-lc-rs (jsonwebtoken's own backend), over the
//!    exact signing input, against a public key parsed once at import.
//! 5. Only then the claims: `sub`, `client_id`, `jti` present and not
//!    empty, `sid` not empty when present, `iat` present; `iss` byte-exact; `aud` as [`AudienceRule`]
//!    says; `exp` required, `nbf` and `iat` not in the future, each with the
//!    caller's leeway (≤ 60 s); a sender-constrained token (`cnf`) refused
//!    unless the caller accepts it.
//!
//! Every failure is a [`VerifyError`].
//!
//! # Why not `jsonwebtoken::decode`
//!
//! Keys are imported with `jsonwebtoken` (`Jwk` → `DecodingKey::from_jwk`),
//! but the token is parsed once here and its signature verified with
//! aws-lc-rs against the pre-parsed key. `jsonwebtoken::decode` parses the
//! header twice and the claims twice and boxes a verifier per call (8–11 %
//! more than a bare Ed25519 verification, measured), which misses the
//! library's goal of ≥ 95 % of raw signature throughput once these header
//! checks are added (`crates/tessera/benches/verify.rs`).

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::{ActiveSigner, KeyError};
use crate::secret::new_id;

mod error;
mod keys;
mod verify;

pub use error::VerifyError;
pub use keys::{KeyAlg, KeySet, KeySetError, KeySource, VerifyKey};
pub(crate) use verify::Present;
pub use verify::{AudienceRule, Expected, MAX_HEADER_B64, verify};

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A `kid` longer than this is refused without a key lookup.
pub const MAX_KID_BYTES: usize = 256;
/// The largest leeway allowed for `exp`/`nbf`/`iat` (checklist JW-09).
pub const MAX_LEEWAY_SECS: u64 = 60;

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The `aud` claim: serialized as a string when there is one audience, as an
/// array otherwise; both forms are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience(Vec<String>);

impl Audience {
    pub fn one(aud: impl Into<String>) -> Audience {
        Audience(vec![aud.into()])
    }

    pub fn new(auds: Vec<String>) -> Audience {
        Audience(auds)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn contains(&self, aud: &str) -> bool {
        self.0.iter().any(|a| a == aud)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }
}

impl From<&str> for Audience {
    fn from(s: &str) -> Self {
        Audience::one(s)
    }
}

impl From<String> for Audience {
    fn from(s: String) -> Self {
        Audience::one(s)
    }
}

impl From<Vec<String>> for Audience {
    fn from(v: Vec<String>) -> Self {
        Audience(v)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::one(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Audience(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Claims of an access token (RFC 9068 §2.2; CONTRACTS "Stateless tokens"):
/// what [`mint`] signs and what [`verify`] returns. Unknown claims are
/// ignored when read; a duplicated claim is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    /// Unix seconds.
    pub exp: i64,
    /// Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds. Tessera never sets it; a token that has it
    /// is not valid before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    /// The session handle (`ses_…`): revoking the session revokes the token.
    /// Absent from a token a client obtained for itself
    /// (`client_credentials`): there is no session; revoking the client
    /// ends it (introspection at once, resource servers at `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Space-separated scopes; omitted when `None` or empty.
    #[serde(default, skip_serializing_if = "blank")]
    pub scope: Option<String>,
    /// Unix seconds of the last authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The auth level as a decimal string, e.g. `"2"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// RFC 8176 method references; omitted when `None` or empty.
    #[serde(default, skip_serializing_if = "no_amr")]
    pub amr: Option<Vec<String>>,
    /// Confirmation (`{"jkt":…}` or `{"x5t#S256":…}`) of a bound token.
    /// Refused when presented as a Bearer token
    /// ([`Expected::accept_sender_constrained`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
    /// RFC 8693 §4.1 actor: who acts for `sub` (`{"sub": …}`, nested for a
    /// chain of delegations), on tokens issued by token exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Value>,
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

fn no_amr(v: &Option<Vec<String>>) -> bool {
    v.as_deref().is_none_or(<[String]>::is_empty)
}

impl AccessClaims {
    /// What the revocation feed names when this token is revoked: its
    /// session, or for a session-less (`client_credentials`) token its
    /// client ([`client_revocation_key`](crate::clients::client_revocation_key)).
    pub fn revocation_key(&self) -> std::borrow::Cow<'_, str> {
        match &self.sid {
            Some(sid) => std::borrow::Cow::Borrowed(sid),
            None => std::borrow::Cow::Owned(crate::clients::client_revocation_key(&self.client_id)),
        }
    }
}

/// A fresh `jti`: 128 random bits, base64url (22 characters).
pub fn new_jti() -> String {
    new_id("")
}

/// Signs `claims` as an RFC 9068 access token with `signer`. Refuses claims
/// a resource server would reject anyway (no `iss`/`sub`/`jti`, an empty
/// audience, `exp` not after `iat`).
pub fn mint(signer: &ActiveSigner, claims: &AccessClaims) -> Result<String, KeyError> {
    if claims.iss.is_empty() {
        return Err(KeyError::InvalidClaims("iss is empty"));
    }
    if claims.sub.is_empty() {
        return Err(KeyError::InvalidClaims("sub is empty"));
    }
    if claims.jti.is_empty() {
        return Err(KeyError::InvalidClaims("jti is empty"));
    }
    if claims.aud.is_empty() || claims.aud.iter().any(String::is_empty) {
        return Err(KeyError::InvalidClaims("aud is empty"));
    }
    if claims.exp <= claims.iat {
        return Err(KeyError::InvalidClaims("exp is not after iat"));
    }
    signer.sign_jws(ACCESS_TOKEN_TYP, claims)
}

#[cfg(test)]
mod tests;
