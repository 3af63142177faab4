//! Issuing tokens for a session: resolving a request's client, scope and
//! audience, and minting access tokens (also for the refresh grant).

use std::sync::Arc;

use crate::access::{AccessClaims, Audience, mint, new_jti};
use crate::clients::{Client, ClientKind, DEFAULT_CLIENT_ID};
use crate::model::{Binding, RefreshFamily, SessionRecord};
use crate::secret::{self, SecretToken, TokenKind};
use crate::time::Timestamp;

use super::{IssuedTokens, OAuthError, TokenRequest, TokenService, parse_scope};

pub const REFRESH_FAMILY_PREFIX: &str = "rtf_";

/// A request's client, scope, audience and DPoP binding.
type Resolved = (Arc<Client>, Vec<String>, Vec<String>, Option<Binding>);

impl TokenService {
    /// Issues an access token (and, if the client gets them, a refresh-token
    /// family) for a session just created or verified by a trusted backend.
    /// Least privilege: exactly the scope and audience asked for, each
    /// allowed for the client.
    pub async fn issue_for_session(
        &self,
        session: &SessionRecord,
        req: &TokenRequest,
    ) -> Result<IssuedTokens, OAuthError> {
        self.issue_for_session_with(session, req, None).await
    }

    /// [`issue_for_session`](Self::issue_for_session) for a caller that
    /// presented a client certificate (`cert`: its [`Binding::Mtls`]): the
    /// tokens are bound to it unless `req.dpop_jkt` binds them to a DPoP
    /// key. Refresh tokens are bound only for public clients (RFC 9449 §5,
    /// RFC 8705 §4); a confidential client's are bound to its
    /// authentication instead.
    pub async fn issue_for_session_with(
        &self,
        session: &SessionRecord,
        req: &TokenRequest,
        cert: Option<Binding>,
    ) -> Result<IssuedTokens, OAuthError> {
        let (client, scope, audience, holder) = self.resolve_request(req).await?;
        let client = &*client;
        let holder = holder.or(cert);
        if holder.is_none() && self.policy.sender_constrained_only {
            return Err(OAuthError::InvalidDpopProof(
                "this deployment issues only sender-constrained tokens: bind them with dpop_jkt".into(),
            ));
        }
        let now = self.sessions.now();
        let access_token = self.mint_for(session, client, &scope, &audience, holder.as_ref(), now)?;
        let refresh_token = if client.refresh_tokens {
            let token = SecretToken::generate(TokenKind::Refresh);
            let family = RefreshFamily {
                id: secret::new_id(REFRESH_FAMILY_PREFIX),
                handle: session.handle.clone(),
                session_token_hash: session.token_hash,
                client_id: client.client_id.clone(),
                scope: scope.clone(),
                audience: audience.clone(),
                generation: 0,
                created_at: now,
                rotated_at: now,
                current_sealed: None,
                binding: match client.kind {
                    ClientKind::Public => holder.clone(),
                    ClientKind::Confidential => None,
                },
                revoked: None,
            };
            self.families
                .create_refresh_family(&family, &token.hash(), &[])
                .await?;
            Some(token)
        } else {
            None
        };
        Ok(IssuedTokens {
            access_token,
            token_type: Binding::token_type(holder.as_ref()),
            expires_in: self.policy.access_token_ttl_secs,
            refresh_token,
            scope: scope.join(" "),
        })
    }

    /// Checks a token request exactly as [`issue_for_session`](Self::issue_for_session)
    /// will, so a caller can refuse it before writing anything.
    pub async fn check_request(&self, req: &TokenRequest) -> Result<(), OAuthError> {
        let (.., holder) = self.resolve_request(req).await?;
        // Session creation has no certificate to bind to (see
        // `issue_for_session_with`): under the sender-constrained profile
        // the request itself must name the key.
        if holder.is_none() && self.policy.sender_constrained_only {
            return Err(OAuthError::InvalidDpopProof(
                "this deployment issues only sender-constrained tokens: bind them with dpop_jkt".into(),
            ));
        }
        Ok(())
    }

    /// The client, scope and audience a request names, each allowed for the
    /// client (least privilege: exactly what was asked for), and the DPoP
    /// key it binds the tokens to. The client is a configured one or one
    /// registered at run time (`tessera clients create`) and not revoked.
    async fn resolve_request(&self, req: &TokenRequest) -> Result<Resolved, OAuthError> {
        let client_id = req.client_id.as_deref().unwrap_or(DEFAULT_CLIENT_ID);
        let client = self
            .find_client(client_id)
            .await?
            .ok_or_else(|| OAuthError::InvalidRequest(format!("unknown client_id {client_id:?}")))?;
        let scope = parse_scope(req.scope.as_deref())?;
        if let Some(s) = scope.iter().find(|s| !client.allows_scope(s)) {
            return Err(OAuthError::InvalidScope(format!(
                "scope {s:?} is not allowed for this client"
            )));
        }
        let resources = req.resource.as_ref().map(Audience::as_slice).unwrap_or_default();
        if req.resource.as_ref().is_some_and(Audience::is_empty) {
            return Err(OAuthError::InvalidTarget("resource names no resource".into()));
        }
        let audience = self.resolve_target(&client, req.audience.as_ref(), resources)?;
        let holder = match req.dpop_jkt.as_deref() {
            Some(jkt) => Some(Binding::dpop(jkt).map_err(|e| OAuthError::InvalidRequest(e.into()))?),
            None if client.dpop_bound_access_tokens => {
                return Err(OAuthError::InvalidDpopProof(
                    "this client must bind its tokens to a DPoP key (dpop_jkt)".into(),
                ));
            }
            None => None,
        };
        Ok((client, scope, audience, holder))
    }

    pub(super) fn mint_for(
        &self,
        session: &SessionRecord,
        client: &Client,
        scope: &[String],
        audience: &[String],
        holder: Option<&Binding>,
        now: Timestamp,
    ) -> Result<String, OAuthError> {
        let signer = self
            .keys
            .signer()
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        let exp = now
            .plus_secs(self.policy.access_token_ttl_secs)
            .min(session.absolute_expires_at);
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: session.subject.clone(),
            aud: Audience::new(audience.to_vec()),
            exp: exp.unix_secs(),
            iat: now.unix_secs(),
            nbf: None,
            jti: new_jti(),
            client_id: client.client_id.clone(),
            sid: Some(session.handle.clone()),
            scope: (!scope.is_empty()).then(|| scope.join(" ")),
            auth_time: Some(session.auth.time.unix_secs()),
            acr: Some(session.auth.level.to_string()),
            amr: (!session.auth.methods.is_empty()).then(|| session.auth.methods.clone()),
            cnf: holder.and_then(Binding::cnf),
            act: None,
        };
        mint(&signer, &claims).map_err(|e| OAuthError::Unavailable(e.to_string()))
    }
}
