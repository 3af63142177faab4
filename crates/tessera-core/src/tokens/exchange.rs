//! RFC 8693 token exchange: an access token traded for a narrower one —
//! a smaller scope, one downstream audience — that says who acts for its
//! subject (`act`).

use serde_json::{Map, Value};

use crate::access::{AccessClaims, Audience, mint, new_jti};
use crate::clients::{Client, ClientKind};
use crate::model::Binding;

use super::{IssuedTokens, OAuthError, TokenService, parse_scope};

/// The `grant_type` of RFC 8693 §2.1.
pub const TOKEN_EXCHANGE_GRANT: &str = crate::clients::GRANT_TOKEN_EXCHANGE;
/// RFC 8693 §3 token type of an access token; what the exchange issues.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3 token type of a JWT: our access tokens are JWTs, so this
/// names them too.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The parameters of a token-exchange request (RFC 8693 §2.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExchangeRequest<'a> {
    pub subject_token: &'a str,
    pub subject_token_type: &'a str,
    pub actor_token: Option<&'a str>,
    pub actor_token_type: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// `audience` values (logical names).
    pub audience: &'a [String],
    /// RFC 8707 `resource` values (absolute URIs).
    pub resource: &'a [String],
}

/// Most `act` nesting kept: a longer delegation chain is refused rather
/// than grown without bound.
const MAX_ACT_DEPTH: usize = 8;

fn our_token_type(t: &str) -> bool {
    t == ACCESS_TOKEN_TYPE || t == JWT_TOKEN_TYPE
}

impl TokenService {
    /// Token exchange for `client`, already authenticated: the subject
    /// token must be one of our access tokens whose session is active; the
    /// new token keeps its subject, session (`sid`: revoking the session
    /// revokes it too) and authentication, and is:
    ///
    /// - for exactly one audience (an `audience` or a `resource`), allowed
    ///   for the client (`invalid_target`);
    /// - at most the subject token's scope, and only scopes the client may
    ///   hold (`invalid_scope`; no `scope` asks for what both allow);
    /// - never longer-lived than the subject token;
    /// - marked with `act`: the actor token's subject when one is given
    ///   (it must be a token issued to this client), else the client
    ///   itself — unless the client exchanges its own token — nesting any
    ///   `act` the subject token had;
    /// - bound to `holder` (a DPoP key or client certificate) if any;
    /// - never accompanied by a refresh token.
    ///
    /// Only confidential clients whose registration lists the grant
    /// (`grant_types`) exchange tokens: a public client cannot prove who is
    /// acting, and least privilege keeps the grant off by default.
    pub async fn exchange(
        &self,
        req: &ExchangeRequest<'_>,
        client: &Client,
        holder: Option<&Binding>,
    ) -> Result<IssuedTokens, OAuthError> {
        if client.kind != ClientKind::Confidential || !client.allows_grant(TOKEN_EXCHANGE_GRANT) {
            return Err(OAuthError::UnauthorizedClient);
        }
        if !our_token_type(req.subject_token_type) {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type must be {ACCESS_TOKEN_TYPE} or {JWT_TOKEN_TYPE}"
            )));
        }
        if let Some(t) = req.requested_token_type
            && !our_token_type(t)
        {
            return Err(OAuthError::InvalidRequest(format!(
                "requested_token_type must be {ACCESS_TOKEN_TYPE}: only access tokens are issued"
            )));
        }
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
        let subject = self.active_claims(req.subject_token, "subject_token").await?;
        let actor = match (req.actor_token, req.actor_token_type) {
            (None, None) => None,
            (Some(token), Some(t)) if our_token_type(t) => {
                let actor = self.active_claims(token, "actor_token").await?;
                if actor.client_id != client.client_id {
                    return Err(OAuthError::InvalidGrant(
                        "actor_token was issued to another client",
                    ));
                }
                Some(actor.sub)
            }
            (Some(_), Some(_)) => {
                return Err(OAuthError::InvalidRequest(format!(
                    "actor_token_type must be {ACCESS_TOKEN_TYPE} or {JWT_TOKEN_TYPE}"
                )));
            }
            (Some(_), None) => {
                return Err(OAuthError::InvalidRequest(
                    "actor_token needs actor_token_type".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(OAuthError::InvalidRequest(
                    "actor_token_type without actor_token".into(),
                ));
            }
        };

        let audience = self.exchange_target(client, req)?;
        let granted: Vec<String> = subject
            .scope
            .as_deref()
            .map(|s| {
                s.split(' ')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let scope = match req.scope {
            Some(s) => {
                let asked = parse_scope(Some(s))?;
                if let Some(w) = asked.iter().find(|a| !granted.contains(a)) {
                    return Err(OAuthError::InvalidScope(format!(
                        "scope {w:?} is not in the subject token; an exchange may only narrow the scope"
                    )));
                }
                if let Some(w) = asked.iter().find(|a| !client.allows_scope(a)) {
                    return Err(OAuthError::InvalidScope(format!(
                        "scope {w:?} is not allowed for this client"
                    )));
                }
                asked
            }
            None => granted.into_iter().filter(|g| client.allows_scope(g)).collect(),
        };
        let act = match actor {
            Some(who) => Some(act_claim(who, subject.act.clone())?),
            None if subject.sub != client.client_id => {
                Some(act_claim(client.client_id.clone(), subject.act.clone())?)
            }
            // A client exchanging its own token acts for nobody else; any
            // chain the token already carried stays.
            None => subject.act.clone(),
        };

        let now = self.sessions.now();
        let exp = now
            .unix_secs()
            .saturating_add(self.policy.access_token_ttl_secs)
            .min(subject.exp);
        let signer = self
            .keys
            .signer()
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: subject.sub,
            aud: Audience::new(audience),
            exp,
            iat: now.unix_secs(),
            nbf: None,
            jti: new_jti(),
            client_id: client.client_id.clone(),
            sid: subject.sid,
            scope: (!scope.is_empty()).then(|| scope.join(" ")),
            auth_time: subject.auth_time,
            acr: subject.acr,
            amr: subject.amr,
            cnf: holder.and_then(Binding::cnf),
            act,
        };
        // The subject token expires within the second: nothing to issue.
        if claims.exp <= claims.iat {
            return Err(OAuthError::InvalidGrant("subject_token is about to expire"));
        }
        let access_token = mint(&signer, &claims).map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        Ok(IssuedTokens {
            access_token,
            token_type: Binding::token_type(holder),
            expires_in: claims.exp - claims.iat,
            refresh_token: None,
            scope: scope.join(" "),
        })
    }

    /// The claims of one of our access tokens whose session is active now;
    /// `invalid_grant` naming the parameter otherwise.
    async fn active_claims(&self, token: &str, what: &'static str) -> Result<AccessClaims, OAuthError> {
        let inactive = || {
            OAuthError::InvalidGrant(match what {
                "actor_token" => "actor_token is not an active access token of this issuer",
                _ => "subject_token is not an active access token of this issuer",
            })
        };
        let claims = self
            .verify_access_token(token, &self.own_token_rules())
            .map_err(|_| inactive())?;
        // A client's own (`client_credentials`) token has no session: it
        // stands while its client is registered.
        let live = match &claims.sid {
            Some(sid) => self
                .sessions
                .lookup(sid)
                .await?
                .is_some_and(|s| s.is_active(self.sessions.now())),
            None => self.client_token_live(&claims).await?,
        };
        if live { Ok(claims) } else { Err(inactive()) }
    }

    /// Exactly one downstream audience, from `audience` or `resource`.
    fn exchange_target(&self, client: &Client, req: &ExchangeRequest<'_>) -> Result<Vec<String>, OAuthError> {
        if req.audience.is_empty() && req.resource.is_empty() {
            return Err(OAuthError::InvalidTarget(
                "name the one audience (audience or resource) the new token is for".into(),
            ));
        }
        if req.audience.len() + req.resource.len() != 1 {
            return Err(OAuthError::InvalidTarget(
                "token exchange issues a token for a single audience".into(),
            ));
        }
        let audience = (!req.audience.is_empty()).then(|| Audience::new(req.audience.to_vec()));
        self.resolve_target(client, audience.as_ref(), req.resource)
    }
}

/// `{"sub": who}`, with the chain so far nested as its `act`.
fn act_claim(who: String, prior: Option<Value>) -> Result<Value, OAuthError> {
    let mut depth = 0;
    let mut cur = prior.as_ref();
    while let Some(Value::Object(m)) = cur {
        depth += 1;
        cur = m.get("act");
    }
    if depth >= MAX_ACT_DEPTH {
        return Err(OAuthError::InvalidRequest(format!(
            "a delegation chain of more than {MAX_ACT_DEPTH} actors"
        )));
    }
    let mut m = Map::new();
    m.insert("sub".into(), Value::String(who));
    if let Some(p) = prior {
        m.insert("act".into(), p);
    }
    Ok(Value::Object(m))
}
