//! Client authentication, one place for the token, revocation and
//! introspection endpoints (see the parent module's docs), and the abuse
//! limits that count by the client it finds.

use super::*;

/// What a request presents in `Authorization`.
pub(super) enum Authorization<'h> {
    None,
    Basic(&'h str),
    Bearer(&'h [u8]),
    Other,
}

pub(super) fn authorization(headers: &HeaderMap) -> Authorization<'_> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Authorization::None;
    };
    let raw = v.as_bytes();
    if raw.len() > MAX_AUTHORIZATION_BYTES {
        return Authorization::Other;
    }
    match raw.split_first_chunk::<6>() {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"Basic ") => {
            std::str::from_utf8(rest).map_or(Authorization::Other, |s| Authorization::Basic(s.trim()))
        }
        _ => match raw.split_first_chunk::<7>() {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case(b"Bearer ") => Authorization::Bearer(raw),
            _ => Authorization::Other,
        },
    }
}

/// Base64 of RFC 4648 §4, padding optional.
pub(super) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The client credentials a request presents.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Presented {
    None,
    Basic {
        id: String,
        secret: Option<String>,
    },
    Post {
        id: String,
        secret: Option<String>,
    },
    /// A `private_key_jwt` assertion; `id` is the client it names (its
    /// unverified `sub`, equal to the form's `client_id` if one was sent).
    Assertion {
        id: String,
        assertion: String,
    },
}

impl Presented {
    pub(super) fn is_basic(&self) -> bool {
        matches!(self, Presented::Basic { .. })
    }
}

/// Reads the client credentials: HTTP Basic, or `client_id` (and
/// `client_secret`) in the form; both at once is `invalid_request`.
pub(super) fn presented_client(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthFailure> {
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    if let Some(p) = presented_assertion(headers, form)? {
        return Ok(p);
    }
    match authorization(headers) {
        Authorization::Basic(b64) => {
            let malformed = || OAuthFailure::client(true, "malformed Basic credentials");
            let raw = BASE64.decode(b64).map_err(|_| malformed())?;
            let text = String::from_utf8(raw).map_err(|_| malformed())?;
            let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
            let id = form_decode(id).filter(|i| !i.is_empty()).ok_or_else(malformed)?;
            let secret = form_decode(secret).ok_or_else(malformed)?;
            if form_secret.is_some() {
                return Err(OAuthFailure::request(
                    "use one client authentication method, not Basic and client_secret",
                ));
            }
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthFailure::request(
                    "client_id differs from the Basic credentials",
                ));
            }
            Ok(Presented::Basic {
                id,
                secret: (!secret.is_empty()).then_some(secret),
            })
        }
        Authorization::Bearer(_) | Authorization::Other => Err(OAuthFailure::client(
            true,
            "unsupported Authorization scheme; use Basic client credentials",
        )),
        Authorization::None => match (form_id, form_secret) {
            (Some(id), secret) => Ok(Presented::Post {
                id: id.to_owned(),
                secret: secret.map(str::to_owned),
            }),
            (None, Some(_)) => Err(OAuthFailure::request("client_secret without client_id")),
            (None, None) => Ok(Presented::None),
        },
    }
}

/// A `private_key_jwt` assertion in the form (RFC 7523 §2.2), if any:
/// both parameters, the registered assertion type, no other client
/// credentials beside it, and a `client_id` (optional) naming the
/// assertion's subject.
pub(super) fn presented_assertion(
    headers: &HeaderMap,
    form: &Form,
) -> Result<Option<Presented>, OAuthFailure> {
    let kind = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let (kind, assertion) = match (kind, assertion) {
        (None, None) => return Ok(None),
        (Some(k), Some(a)) => (k, a),
        _ => {
            return Err(OAuthFailure::request(
                "client_assertion_type and client_assertion go together",
            ));
        }
    };
    if form.get("client_secret").is_some() || !matches!(authorization(headers), Authorization::None) {
        return Err(OAuthFailure::request(
            "use one client authentication method, not a client assertion and another",
        ));
    }
    let refused = || OAuthFailure::client(false, "client authentication failed");
    if kind != ASSERTION_TYPE_JWT_BEARER {
        tracing::debug!("client authentication failed: unsupported client_assertion_type");
        return Err(refused());
    }
    let Some(id) = assertion_client_id(assertion) else {
        tracing::debug!("client authentication failed: unreadable client assertion");
        return Err(refused());
    };
    if form.get("client_id").is_some_and(|f| f != id) {
        tracing::debug!("client authentication failed: client_id differs from the assertion's sub");
        return Err(refused());
    }
    Ok(Some(Presented::Assertion {
        id,
        assertion: assertion.to_owned(),
    }))
}

/// Client authentication, the one place for the token, revocation and
/// introspection endpoints: `Ok(None)` when no credentials were presented.
/// Under `[oauth] sender_constrained_only` a client secret is refused
/// (ASVS 10.4.16: asymmetric client authentication only); a
/// `private_key_jwt` assertion is asymmetric. Every refusal is the same
/// 401 `invalid_client`; the reason goes to the debug log only.
pub(super) async fn authenticate(
    state: &AppState,
    presented: &Presented,
) -> Result<Option<Arc<Client>>, OAuthFailure> {
    let (id, basic) = match presented {
        Presented::None => return Ok(None),
        Presented::Basic { id, .. } => (id, true),
        Presented::Post { id, .. } | Presented::Assertion { id, .. } => (id, false),
    };
    let refused = |why: &dyn std::fmt::Display| {
        tracing::debug!(reason = %why, "client authentication failed");
        OAuthFailure::client(basic, "client authentication failed")
    };
    if let Presented::Basic { secret: Some(_), .. } | Presented::Post { secret: Some(_), .. } = presented
        && state.oauth.tokens.policy().sender_constrained_only
    {
        return Err(OAuthFailure::client(
            basic,
            "client secrets are not accepted here (sender-constrained profile)",
        ));
    }
    let client = state
        .oauth
        .tokens
        .find_client(id)
        .await
        .map_err(|e| OAuthFailure::from_core(e, basic))?
        .ok_or_else(|| refused(&ClientAuthError::Unknown))?;
    match presented {
        Presented::Assertion { assertion, .. } => {
            match state.oauth.assertions.verify(&client, assertion).await {
                Ok(_) => {}
                Err(AssertionError::Unavailable(why)) => {
                    tracing::error!(error = %why, "client assertion replay check unavailable");
                    return Err(OAuthFailure::unavailable());
                }
                Err(e) => return Err(refused(&e)),
            }
        }
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            client
                .authenticate_secret(secret.as_deref())
                .map_err(|e| refused(&e))?;
        }
        Presented::None => {}
    }
    Ok(Some(client))
}

/// A client that presented nothing: the public client `client_id` names
/// (the token's), or `invalid_client` for a confidential one.
pub(super) async fn implied_client(state: &AppState, client_id: &str) -> Result<Arc<Client>, OAuthFailure> {
    let required = || OAuthFailure::client(false, "client authentication is required");
    let client = state
        .oauth
        .tokens
        .find_client(client_id)
        .await
        .map_err(|e| OAuthFailure::from_core(e, false))?
        .ok_or_else(required)?;
    client.authenticate_secret(None).map_err(|_| required())?;
    Ok(client)
}

/// The abuse limits of the OAuth endpoints: an authenticated confidential
/// client counts under its id, everything else (public clients, failed or
/// missing client authentication) under the caller's address.
pub(super) fn limit_oauth(
    state: &AppState,
    ip: &IpSubject,
    authenticated: Option<&Client>,
) -> Result<(), OAuthFailure> {
    let limits = &state.limits;
    match authenticated {
        Some(c) if c.kind == ClientKind::Confidential => {
            limits.check(&limits.oauth_per_client, c.client_id.as_bytes())
        }
        _ => limits.check(&limits.oauth_per_ip, ip.as_bytes()),
    }
    .map_err(OAuthFailure::rate_limited)
}

/// Client authentication and the abuse limit it decides, in that order:
/// a failed authentication counts against the address before it is
/// reported.
pub(super) async fn authenticate_limited(
    state: &AppState,
    presented: &Presented,
    ip: &IpSubject,
) -> Result<Option<Arc<Client>>, OAuthFailure> {
    let authenticated = authenticate(state, presented).await;
    limit_oauth(state, ip, authenticated.as_ref().ok().and_then(Option::as_deref))?;
    authenticated
}

/// The client a refresh token was issued to, if it is one we know.
pub(super) async fn refresh_token_client(
    state: &AppState,
    presented: &str,
) -> Result<Option<String>, OAuthFailure> {
    Ok(state.oauth.tokens.refresh_token_client(presented).await?)
}

/// The client any of our tokens (refresh or access) was issued to.
pub(super) async fn token_client(state: &AppState, presented: &str) -> Result<Option<String>, OAuthFailure> {
    if secret::parse(TokenKind::Refresh, presented.as_bytes()).is_ok() {
        return refresh_token_client(state, presented).await;
    }
    let tokens = &state.oauth.tokens;
    Ok(tokens
        .verify_access_token(presented, &tokens.own_token_rules())
        .ok()
        .map(|c| c.client_id))
}
