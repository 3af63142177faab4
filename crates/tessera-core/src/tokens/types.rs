//! The token service's policy, what a request for tokens asks for, and the
//! tokens an answer hands out.

use serde::Deserialize;

#[cfg(doc)]
use super::{MAX_REUSE_GRACE_SECS, TokenService};
use crate::access::Audience;
use crate::secret::SecretToken;

/// Lifetimes and names of issued tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `iss` of every access token; byte-identical to the metadata's issuer.
    pub issuer: String,
    pub access_token_ttl_secs: i64,
    /// Inside this window after a rotation, presenting the consumed token
    /// again returns the same successor (0 disables: strict rotation). At
    /// most [`MAX_REUSE_GRACE_SECS`]; [`TokenService::new`] caps it.
    pub reuse_grace_secs: i64,
    /// `aud` when a request names none.
    pub default_audience: String,
    /// RFC 8707 resource indicators the issuer knows (`[oauth]
    /// resources`): absolute URIs a client allowed them may name as
    /// `resource`.
    pub resources: Vec<String>,
    /// Issue only sender-constrained tokens (ASVS L3, checklist MT-07):
    /// every token request must bind to a DPoP key or a client
    /// certificate.
    pub sender_constrained_only: bool,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            access_token_ttl_secs: 300,
            reuse_grace_secs: 10,
            default_audience: "tessera".into(),
            resources: Vec::new(),
            sender_constrained_only: false,
        }
    }
}

/// `tokens` in `POST /v1/sessions`: which client, scope and audience the
/// session's tokens are for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 6749 §3.3).
    #[serde(default)]
    pub scope: Option<String>,
    /// One audience or several.
    #[serde(default)]
    pub audience: Option<Audience>,
    /// RFC 8707 resource indicators (one or several absolute URIs): the
    /// access token's `aud` is exactly these. Not together with
    /// `audience`.
    #[serde(default)]
    pub resource: Option<Audience>,
    /// RFC 7638 thumbprint of the client's DPoP key (SPEC §4.1): the
    /// tokens issued are bound to that key from the first one on.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// Tokens handed out by issuance or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    /// `DPoP` when the access token is bound to a DPoP key, else `Bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: Option<SecretToken>,
    /// The access token's scope (space-separated), possibly narrowed.
    pub scope: String,
}
