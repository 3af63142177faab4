//! `POST /oauth2/token`: the grants (refresh, client credentials, token
//! exchange), the DPoP proof and certificate binding of what they issue,
//! and the answer's body.

use super::*;

#[derive(Serialize)]
pub(super) struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    /// RFC 8693 §2.2.1: what a token exchange issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

pub(super) fn token_body(t: &IssuedTokens) -> TokenBody<'_> {
    TokenBody {
        access_token: &t.access_token,
        token_type: t.token_type,
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.as_ref().map(|r| r.expose()),
        scope: &t.scope,
        issued_token_type: None,
    }
}

pub(super) async fn token_inner(state: &AppState, req: Request) -> Result<Response, OAuthFailure> {
    // RFC 8705 §3: tokens requested over a connection with a client
    // certificate are bound to it (unless a DPoP proof binds them).
    let cert = req
        .extensions()
        .get::<ClientCertThumbprint>()
        .map(|c| Binding::Mtls {
            x5t_s256: c.0.clone(),
        });
    let ip = state.limits.client_ip(req.headers(), req.extensions());
    let (headers, form) = read_form(req).await?;
    let grant = match form.get("grant_type") {
        None => return Err(OAuthFailure::request("grant_type is required")),
        Some("refresh_token") => Grant::Refresh,
        Some(GRANT_CLIENT_CREDENTIALS) => Grant::ClientCredentials,
        Some(TOKEN_EXCHANGE_GRANT) => Grant::Exchange,
        Some(_) => {
            return Err(OAuthFailure::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("supported grant types: refresh_token, client_credentials, {TOKEN_EXCHANGE_GRANT}"),
            ));
        }
    };
    // RFC 9449 §4.3 check 1: at most one proof.
    let proof = match dpop_proof(&headers) {
        ProofHeader::None => None,
        ProofHeader::One(p) => Some(p),
        ProofHeader::Many => {
            return Err(OAuthFailure::new(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "more than one DPoP header",
            ));
        }
    };
    let presented = presented_client(&headers, &form)?;
    let authenticated = authenticate_limited(state, &presented, &ip).await?;
    let client = match (grant, authenticated) {
        (_, Some(c)) => c,
        // A public client names itself through its refresh token.
        (Grant::Refresh, None) => {
            let refresh_token = form
                .get("refresh_token")
                .ok_or_else(|| OAuthFailure::request("refresh_token is required"))?;
            match refresh_token_client(state, refresh_token).await? {
                Some(id) => implied_client(state, &id).await?,
                None => {
                    return Err(OAuthFailure::from_core(
                        OAuthError::InvalidGrant("unknown refresh token"),
                        false,
                    ));
                }
            }
        }
        // Whoever exchanges a token must say who it is (RFC 8693 §2.1).
        (Grant::Exchange, None) => {
            return Err(OAuthFailure::client(
                false,
                "token exchange needs an authenticated client",
            ));
        }
        // A client asking for itself must prove it is itself.
        (Grant::ClientCredentials, None) => {
            return Err(OAuthFailure::client(
                false,
                "client_credentials needs client authentication",
            ));
        }
    };
    // RFC 6749 §4.4: confidential clients registered for the grant only (a
    // public client has nothing to authenticate with); refused before a
    // DPoP proof is spent.
    if grant == Grant::ClientCredentials
        && (client.kind != ClientKind::Confidential || !client.allows_grant(GRANT_CLIENT_CREDENTIALS))
    {
        return Err(OAuthFailure::from_core(OAuthError::UnauthorizedClient, false));
    }
    // The proof is checked (and its `jti` spent) only for an authenticated
    // client, and before any token is: a bad proof consumes nothing.
    let holder = match proof {
        Some(proof) => {
            let req = ProofRequest {
                method: "POST",
                uri: &state.oauth.token_endpoint,
                access_token: None,
            };
            let checked = state
                .oauth
                .dpop_token
                .verify(proof, &req)
                .await
                .map_err(|e| dpop_failure(state, e))?;
            Some(Binding::Dpop { jkt: checked.jkt })
        }
        None => cert,
    };
    let tokens = &state.oauth.tokens;
    let resources = form.get_all("resource");
    let issued = match grant {
        Grant::Refresh => {
            let refresh_token = form
                .get("refresh_token")
                .ok_or_else(|| OAuthFailure::request("refresh_token is required"))?;
            tokens
                .refresh_with(
                    refresh_token,
                    &client,
                    form.get("scope"),
                    &resources,
                    holder.as_ref(),
                )
                .await
        }
        Grant::Exchange => {
            let audience = form.get_all("audience");
            let subject_token = form
                .get("subject_token")
                .ok_or_else(|| OAuthFailure::request("subject_token is required"))?;
            let subject_token_type = form
                .get("subject_token_type")
                .ok_or_else(|| OAuthFailure::request("subject_token_type is required"))?;
            let req = ExchangeRequest {
                subject_token,
                subject_token_type,
                actor_token: form.get("actor_token"),
                actor_token_type: form.get("actor_token_type"),
                requested_token_type: form.get("requested_token_type"),
                scope: form.get("scope"),
                audience: &audience,
                resource: &resources,
            };
            tokens.exchange(&req, &client, holder.as_ref()).await
        }
        Grant::ClientCredentials => {
            let audience = form.get_all("audience");
            tokens
                .client_credentials(&client, form.get("scope"), &audience, &resources, holder.as_ref())
                .await
        }
    }
    .map_err(|e| OAuthFailure::from_core(e, presented.is_basic()))?;
    let mut body = token_body(&issued);
    if grant == Grant::Exchange {
        body.issued_token_type = Some(ACCESS_TOKEN_TYPE);
    }
    let mut res = axum::Json(body).into_response();
    // RFC 9449 §8.2: a nonce for the next request may come with a success.
    if let Some(nonce) = state.oauth.dpop_token.fresh_nonce()
        && let Ok(v) = HeaderValue::from_str(&nonce)
    {
        res.headers_mut().insert(DPOP_NONCE, v);
    }
    Ok(res)
}

/// The grants `/oauth2/token` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    Refresh,
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 8693.
    Exchange,
}

/// A refused proof at the token endpoint (RFC 9449 §5, §8): 400
/// `invalid_dpop_proof`, or `use_dpop_nonce` with a fresh `DPoP-Nonce`.
pub(super) fn dpop_failure(state: &AppState, e: DpopError) -> OAuthFailure {
    match e {
        DpopError::UseNonce => OAuthFailure {
            dpop_nonce: state.oauth.dpop_token.fresh_nonce(),
            ..OAuthFailure::new(StatusCode::BAD_REQUEST, "use_dpop_nonce", e.to_string())
        },
        DpopError::Unavailable(why) => {
            tracing::error!(error = %why, "DPoP replay check unavailable");
            OAuthFailure::unavailable()
        }
        other @ (DpopError::Invalid(_) | DpopError::Replayed) => {
            OAuthFailure::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", other.to_string())
        }
    }
}
