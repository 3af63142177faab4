//! Revocation (RFC 7009) and introspection (RFC 7662), and the check of our
//! own access tokens both rest on.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::access::{AccessClaims, Audience};
use crate::clients::Client;
use crate::error::Error;
use crate::model::RevokeReason;
use crate::token::{self, TokenKind};

use super::{OAuthError, TokenService};

/// Access tokens longer than this are refused before any parsing.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 8192;

/// RFC 7662 answer. `Inactive` serializes as exactly `{"active":false}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    Inactive,
    Active(Map<String, Value>),
}

impl Serialize for Introspection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Introspection::Inactive => {
                let mut m = Map::new();
                m.insert("active".into(), Value::Bool(false));
                m.serialize(s)
            }
            Introspection::Active(m) => m.serialize(s),
        }
    }
}

impl TokenService {
    /// Verifies one of our own access tokens (signature with a published
    /// key, `typ`, `iss`, `exp`) without checking the audience; `None` if it
    /// is not one.
    pub fn decode_own_access_token(&self, token: &str) -> Option<AccessClaims> {
        use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
        if token.len() > MAX_ACCESS_TOKEN_BYTES {
            return None;
        }
        let header = decode_header(token).ok()?;
        let typ = header.typ.as_deref()?;
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return None;
        }
        let set = self.keys.jwk_set();
        let jwk = set.find(header.kid.as_deref()?)?;
        // The algorithm comes from our key, never from the token.
        let key_alg = jwk.common.key_algorithm?;
        if format!("{key_alg:?}") != format!("{:?}", header.alg) {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.policy.issuer.as_str()]);
        v.validate_aud = false;
        // Expiry is checked against the core's clock below, not the system's.
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = decode::<AccessClaims>(token, &key, &v).ok()?.claims;
        (claims.exp > self.sessions.now().unix_secs()).then_some(claims)
    }

    /// RFC 7009. Any valid token of this client ends its session (access
    /// tokens carry only `sid`, so ending the session is how their access
    /// tokens die everywhere the revocation feed reaches). Unknown tokens,
    /// and tokens of other clients, are a silent no-op.
    pub async fn revoke(&self, presented: &str, client: &Client) -> Result<(), OAuthError> {
        if let Ok(hash) = token::parse(TokenKind::Refresh, presented.as_bytes()) {
            if let Some(l) = self.families.find_refresh(&hash).await?
                && l.family.client_id == client.client_id
            {
                let now = self.sessions.now();
                self.families
                    .revoke_refresh_family(&l.family.id, RevokeReason::Revoked, now, &[])
                    .await?;
                self.revoke_session(&l.family.handle).await?;
            }
            return Ok(());
        }
        if let Some(claims) = self.decode_own_access_token(presented)
            && claims.client_id == client.client_id
        {
            self.revoke_session(&claims.sid).await?;
        }
        Ok(())
    }

    async fn revoke_session(&self, handle: &str) -> Result<(), OAuthError> {
        match self.sessions.revoke(handle, RevokeReason::Revoked).await {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// RFC 7662. Anything not active is exactly `{"active":false}`.
    pub async fn introspect(&self, presented: &str) -> Result<Introspection, OAuthError> {
        let now = self.sessions.now();
        if let Ok(hash) = token::parse(TokenKind::Refresh, presented.as_bytes()) {
            let Some(l) = self.families.find_refresh(&hash).await? else {
                return Ok(Introspection::Inactive);
            };
            if l.generation != l.family.generation || l.family.revoked.is_some() {
                return Ok(Introspection::Inactive);
            }
            let Ok(s) = self.live_session_of(&l.family).await else {
                return Ok(Introspection::Inactive);
            };
            let mut m = Map::new();
            m.insert("active".into(), Value::Bool(true));
            m.insert("token_type".into(), "refresh_token".into());
            m.insert("client_id".into(), l.family.client_id.clone().into());
            m.insert("sub".into(), s.subject.clone().into());
            m.insert("sid".into(), s.handle.clone().into());
            m.insert("iss".into(), self.policy.issuer.clone().into());
            if !l.family.scope.is_empty() {
                m.insert("scope".into(), l.family.scope.join(" ").into());
            }
            m.insert(
                "aud".into(),
                serde_json::to_value(Audience::new(l.family.audience.clone())).unwrap_or(Value::Null),
            );
            m.insert("iat".into(), l.family.rotated_at.unix_secs().into());
            m.insert("exp".into(), s.expires_at().unix_secs().into());
            m.insert("auth_time".into(), s.auth.time.unix_secs().into());
            return Ok(Introspection::Active(m));
        }
        let Some(claims) = self.decode_own_access_token(presented) else {
            return Ok(Introspection::Inactive);
        };
        // Revocation and expiry of the session count too (RV-11).
        match self.sessions.lookup(&claims.sid).await? {
            Some(s) if s.is_active(now) => {}
            _ => return Ok(Introspection::Inactive),
        }
        let Ok(Value::Object(mut m)) = serde_json::to_value(&claims) else {
            return Ok(Introspection::Inactive);
        };
        m.insert("active".into(), Value::Bool(true));
        m.insert("token_type".into(), "Bearer".into());
        Ok(Introspection::Active(m))
    }
}
