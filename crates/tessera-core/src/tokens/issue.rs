//! Issuing tokens for a session: resolving a request's client, scope and
//! audience, and minting access tokens (also for the refresh grant).

use std::sync::Arc;

use crate::access::{AccessClaims, Audience, mint, new_jti};
use crate::clients::{Client, ClientKind, DEFAULT_CLIENT_ID};
use crate::model::{Binding, RefreshFamily, RevokeReason, SessionRecord};
use crate::secret::{self, SecretToken, TokenHash, TokenKind};
use crate::sessions::{AuthInput, CreateSession, IssuedSession};
use crate::time::Timestamp;

use super::{IssuedTokens, OAuthError, TokenRequest, TokenService, parse_scope};

pub const REFRESH_FAMILY_PREFIX: &str = "rtf_";

/// A request's client, scope, audience and DPoP binding.
type Resolved = (Arc<Client>, Vec<String>, Vec<String>, Option<Binding>);

/// A token request checked and resolved, its refresh token drawn, nothing
/// written yet: what [`TokenService::prepare`] gives
/// [`TokenService::login`].
pub struct PreparedTokens {
    client: Arc<Client>,
    scope: Vec<String>,
    audience: Vec<String>,
    holder: Option<Binding>,
    /// The refresh token and its family's template (no session yet).
    refresh: Option<(SecretToken, RefreshFamily)>,
}

impl std::fmt::Debug for PreparedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedTokens")
            .field("client_id", &self.client.client_id)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("refresh", &self.refresh.is_some())
            .finish_non_exhaustive()
    }
}

/// Why [`TokenService::login`] or [`TokenService::elevate`] failed: the
/// session could not be written, or it was but its tokens could not be
/// issued (it is revoked again).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Session(#[from] crate::error::Error),
    #[error(transparent)]
    Tokens(#[from] OAuthError),
}

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
        let prepared = self.prepare_with(req, cert).await?;
        if let Some((token, template)) = &prepared.refresh {
            let family = template.issued_for(session, self.sessions.now());
            self.families
                .create_refresh_family(&family, &token.hash(), &[])
                .await?;
        }
        self.finish(prepared, session)
    }

    /// The first half of issuing tokens at login: checks a token request
    /// exactly as [`issue_for_session`](Self::issue_for_session) would and
    /// draws the refresh token, writing nothing, so a bad request leaves
    /// no session behind and [`login`](Self::login) can store the refresh
    /// family together with the session.
    pub async fn prepare(&self, req: &TokenRequest) -> Result<PreparedTokens, OAuthError> {
        // Session creation has no certificate to bind to (see
        // `issue_for_session_with`): under the sender-constrained profile
        // the request itself must name the key.
        self.prepare_with(req, None).await
    }

    async fn prepare_with(
        &self,
        req: &TokenRequest,
        cert: Option<Binding>,
    ) -> Result<PreparedTokens, OAuthError> {
        let (client, scope, audience, holder) = self.resolve_request(req).await?;
        let holder = holder.or(cert);
        if holder.is_none() && self.policy.sender_constrained_only {
            return Err(OAuthError::InvalidDpopProof(
                "this deployment issues only sender-constrained tokens: bind them with dpop_jkt".into(),
            ));
        }
        let refresh = client.refresh_tokens.then(|| {
            let now = self.sessions.now();
            let family = RefreshFamily {
                id: secret::new_id(REFRESH_FAMILY_PREFIX),
                // The session's, filled in when it exists.
                handle: String::new(),
                session_token_hash: TokenHash([0; 32]),
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
            (SecretToken::generate(TokenKind::Refresh), family)
        });
        Ok(PreparedTokens {
            client,
            scope,
            audience,
            holder,
            refresh,
        })
    }

    /// A login that hands out tokens: creates the session as
    /// [`Sessions::create`](crate::Sessions::create) does, with the refresh
    /// family (if the client gets refresh tokens) stored in the same atomic
    /// step, then mints the access token. Without a signing key nothing
    /// is written; if minting fails all the same (the key went in between),
    /// the session is revoked again, so nothing usable is left.
    pub async fn login(
        &self,
        req: CreateSession,
        prepared: PreparedTokens,
    ) -> Result<(IssuedSession, IssuedTokens), LoginError> {
        self.signer_ready()?;
        let issued = match &prepared.refresh {
            Some((token, family)) => {
                self.sessions
                    .create_with_refresh_family(req, &*self.families, family, &token.hash())
                    .await?
            }
            None => self.sessions.create(req).await?,
        };
        self.finish_or_revoke(prepared, issued).await
    }

    /// Step-up that hands out tokens: [`Sessions::elevate`](crate::Sessions::elevate)
    /// with the new refresh family stored in the same atomic step, as
    /// [`login`](Self::login) does for a new session.
    pub async fn elevate(
        &self,
        presented: &str,
        auth: AuthInput,
        prepared: PreparedTokens,
    ) -> Result<(IssuedSession, IssuedTokens), LoginError> {
        self.signer_ready()?;
        let issued = match &prepared.refresh {
            Some((token, family)) => {
                self.sessions
                    .elevate_with_refresh_family(presented, auth, &*self.families, family, &token.hash())
                    .await?
            }
            None => self.sessions.elevate(presented, auth).await?,
        };
        self.finish_or_revoke(prepared, issued).await
    }

    /// Mints the access token for a session just written with its family;
    /// if that fails after all, the session is revoked, so nothing usable
    /// is left behind.
    async fn finish_or_revoke(
        &self,
        prepared: PreparedTokens,
        issued: IssuedSession,
    ) -> Result<(IssuedSession, IssuedTokens), LoginError> {
        match self.finish(prepared, &issued.session) {
            Ok(tokens) => Ok((issued, tokens)),
            Err(e) => {
                if let Err(r) = self
                    .sessions
                    .revoke(&issued.session.handle, RevokeReason::Revoked)
                    .await
                {
                    tracing::error!(error = %r, handle = %issued.session.handle, "cannot revoke a session whose tokens failed");
                }
                Err(LoginError::Tokens(e))
            }
        }
    }

    /// Mints the access token of prepared tokens for `session`, whose
    /// refresh family (if any) is stored.
    fn finish(&self, prepared: PreparedTokens, session: &SessionRecord) -> Result<IssuedTokens, OAuthError> {
        let PreparedTokens {
            client,
            scope,
            audience,
            holder,
            refresh,
        } = prepared;
        let now = self.sessions.now();
        let access_token = self.mint_for(session, &client, &scope, &audience, holder.as_ref(), now)?;
        Ok(IssuedTokens {
            access_token,
            token_type: Binding::token_type(holder.as_ref()),
            expires_in: self.policy.access_token_ttl_secs,
            refresh_token: refresh.map(|(token, _)| token),
            scope: scope.join(" "),
        })
    }

    /// Whether there is a key to mint with, checked before a login writes
    /// anything.
    fn signer_ready(&self) -> Result<(), OAuthError> {
        self.keys
            .signer()
            .map(|_| ())
            .map_err(|e| OAuthError::Unavailable(e.to_string()))
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
