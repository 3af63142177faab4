//! Revocation (RFC 7009) and introspection (RFC 7662), and the check of our
//! own access tokens both rest on (the shared [`access::verify`] over the
//! published signing keys).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::access::{self, AccessClaims, Audience, AudienceRule, Expected, VerifyError};
use crate::clients::Client;
use crate::error::Error;
use crate::model::{Binding, RevokeReason};
use crate::secret::{self, TokenKind};

use super::{OAuthError, TokenService};

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
    /// What the issuer expects of its own tokens when asked about them
    /// (introspection, revocation): its `iss`, any audience (callers filter
    /// by their own, RV-12), sender-constrained tokens too, and no leeway: it
    /// reads the clock that set `exp`, so an expired token is inactive at
    /// once (RV-11). A resource-server face (`/auth/verify`) narrows it
    /// with `..`.
    pub fn own_token_rules(&self) -> Expected<'_> {
        Expected {
            issuer: &self.policy.issuer,
            audience: AudienceRule::Any,
            leeway_secs: 0,
            accept_sender_constrained: true,
        }
    }

    /// Verifies one of our own access tokens ([`access::verify`]) against the
    /// keys the JWKS publishes now and the core's clock.
    pub fn verify_access_token(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<AccessClaims, VerifyError> {
        let keys = self.keys.verification_keys();
        access::verify(token, &keys, expected, self.sessions.clock())
    }

    /// RFC 7009. Any valid token of this client ends its session (access
    /// tokens carry only `sid`, so ending the session is how their access
    /// tokens die everywhere the revocation feed reaches). Unknown tokens,
    /// and tokens of other clients, are a silent no-op; so is a client's
    /// own `client_credentials` token, which has no session: it is
    /// short-lived, and ends early only with its client (`tessera clients
    /// revoke`).
    pub async fn revoke(&self, presented: &str, client: &Client) -> Result<(), OAuthError> {
        if let Ok(hash) = secret::parse(TokenKind::Refresh, presented.as_bytes()) {
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
        if let Ok(claims) = self.verify_access_token(presented, &self.own_token_rules())
            && claims.client_id == client.client_id
            && let Some(sid) = &claims.sid
        {
            self.revoke_session(sid).await?;
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
        if let Ok(hash) = secret::parse(TokenKind::Refresh, presented.as_bytes()) {
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
            if let Some(cnf) = l.family.binding.as_ref().and_then(Binding::cnf) {
                m.insert("cnf".into(), cnf);
            }
            return Ok(Introspection::Active(m));
        }
        let Ok(claims) = self.verify_access_token(presented, &self.own_token_rules()) else {
            return Ok(Introspection::Inactive);
        };
        // Revocation and expiry of the session count too (RV-11); a
        // client's own token lives as long as the client's registration
        // (revoking the client makes it inactive at once).
        match &claims.sid {
            Some(sid) => match self.sessions.lookup(sid).await? {
                Some(s) if s.is_active(now) => {}
                _ => return Ok(Introspection::Inactive),
            },
            None => {
                if !self.client_token_live(&claims).await? {
                    return Ok(Introspection::Inactive);
                }
            }
        }
        let Ok(Value::Object(mut m)) = serde_json::to_value(&claims) else {
            return Ok(Introspection::Inactive);
        };
        m.insert("active".into(), Value::Bool(true));
        // `cnf` is already among the claims (RFC 9449 §6.2, RFC 8705 §3.2).
        let binding = claims.cnf.as_ref().and_then(Binding::from_cnf);
        m.insert("token_type".into(), Binding::token_type(binding.as_ref()).into());
        Ok(Introspection::Active(m))
    }
}
