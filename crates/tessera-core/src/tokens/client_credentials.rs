//! The `client_credentials` grant (RFC 6749 §4.4): a confidential client
//! asks for an access token for itself. No session and no refresh token
//! (RFC 6749 §4.4.3): the token's `sub` is the client's id, it carries no
//! `sid`, and it ends early only with its client's registration.

use std::sync::Arc;

use crate::access::{AccessClaims, Audience, mint, new_jti};
use crate::clients::{Client, ClientKind, GRANT_CLIENT_CREDENTIALS, Registration};
use crate::model::Binding;

use super::{IssuedTokens, OAuthError, TokenService, parse_scope};

impl TokenService {
    /// The registration of `client_id`: a configured client, else one
    /// stored at run time and not revoked. A stored registration that
    /// cannot be read counts as no client (and is logged).
    pub async fn find_client(&self, client_id: &str) -> Result<Option<Arc<Client>>, OAuthError> {
        if let Some(c) = self.clients.get_arc(client_id) {
            return Ok(Some(c));
        }
        let Some(store) = &self.stored_clients else {
            return Ok(None);
        };
        let Some(record) = store.client_by_id(client_id).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() {
            return Ok(None);
        }
        match Registration::client(&record) {
            Ok(c) => Ok(Some(Arc::new(c))),
            Err(e) => {
                tracing::error!(client_id, error = %e, "stored client registration is not usable");
                Ok(None)
            }
        }
    }

    /// Whether a session-less token (`client_credentials`) still stands:
    /// its client is registered (not revoked), confidential, still allowed
    /// the grant, and the token's subject.
    pub async fn client_token_live(&self, claims: &AccessClaims) -> Result<bool, OAuthError> {
        if claims.sub != claims.client_id {
            return Ok(false);
        }
        Ok(self
            .find_client(&claims.client_id)
            .await?
            .is_some_and(|c| c.kind == ClientKind::Confidential && c.allows_grant(GRANT_CLIENT_CREDENTIALS)))
    }

    /// Issues a `client_credentials` access token to `client`, already
    /// authenticated. `scope`: space-separated, each allowed for the client;
    /// absent, the client's registered scopes (none when it is allowed any,
    /// `"*"`). `audience` or RFC 8707 `resource`s: as
    /// [`resolve_target`](Self::resolve_target) allows for the client;
    /// neither, the client's only registered audience, else `[oauth]
    /// default_audience` if allowed, else `invalid_target`. `holder`: the
    /// DPoP key or certificate the token is bound to.
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
        audience: &[String],
        resources: &[String],
        holder: Option<&Binding>,
    ) -> Result<IssuedTokens, OAuthError> {
        if client.kind != ClientKind::Confidential || !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let scope = match scope {
            Some(_) => {
                let asked = parse_scope(scope)?;
                if let Some(s) = asked.iter().find(|s| !client.allows_scope(s)) {
                    return Err(OAuthError::InvalidScope(format!(
                        "scope {s:?} is not allowed for this client"
                    )));
                }
                asked
            }
            None => client.scopes.iter().filter(|s| *s != "*").cloned().collect(),
        };
        let audience = match (audience, resources) {
            ([], []) => vec![self.client_audience(client)?],
            ([], r) => self.resolve_target(client, None, r)?,
            (a, r) => self.resolve_target(client, Some(&Audience::new(a.to_vec())), r)?,
        };
        if holder.is_none() && self.policy.sender_constrained_only {
            return Err(OAuthError::InvalidDpopProof(
                "this deployment issues only sender-constrained tokens: send a DPoP proof or a client certificate"
                    .into(),
            ));
        }
        if client.dpop_bound_access_tokens && !matches!(holder, Some(Binding::Dpop { .. })) {
            return Err(OAuthError::InvalidDpopProof(
                "this client must send a DPoP proof".into(),
            ));
        }
        let signer = self
            .keys
            .signer()
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        let now = self.sessions.now();
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: client.client_id.clone(),
            aud: Audience::new(audience),
            exp: now.plus_secs(self.policy.access_token_ttl_secs).unix_secs(),
            iat: now.unix_secs(),
            nbf: None,
            jti: new_jti(),
            client_id: client.client_id.clone(),
            sid: None,
            scope: (!scope.is_empty()).then(|| scope.join(" ")),
            auth_time: None,
            acr: None,
            amr: None,
            cnf: holder.and_then(Binding::cnf),
            act: None,
        };
        let access_token = mint(&signer, &claims).map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        Ok(IssuedTokens {
            access_token,
            token_type: Binding::token_type(holder),
            expires_in: self.policy.access_token_ttl_secs,
            refresh_token: None,
            scope: scope.join(" "),
        })
    }

    /// The audience of a request that names none.
    fn client_audience(&self, client: &Client) -> Result<String, OAuthError> {
        let aud = match client.audiences.as_slice() {
            [one] if one != "*" => one.clone(),
            _ => self.policy.default_audience.clone(),
        };
        if !client.allows_audience(&aud) {
            return Err(OAuthError::InvalidTarget(
                "name the audience: this client has several, and not the default one".into(),
            ));
        }
        Ok(aud)
    }
}
