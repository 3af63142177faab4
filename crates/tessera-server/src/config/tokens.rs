//! `[oauth]`, `[refresh]`, `[keys]` and `[[clients]]`: stateless tokens
//! (CONTRACTS "Stateless tokens").

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tessera_core::clients::{ClientJwks, GRANT_REFRESH_TOKEN};
use tessera_core::tokens::MAX_REUSE_GRACE_SECS;
use tessera_core::{Client, ClientKind, ClientRegistry, KeyPolicy, Sealer, SigningAlg, TokenPolicy};

use super::Config;
use super::enums::string_enum;

/// File in `data_dir` holding the generated key-encryption key.
pub const KEY_ENCRYPTION_KEY_FILE: &str = "key-encryption-key";
/// Clock-skew leeway verifiers get (JW-09); also the feed's `until` margin.
pub const LEEWAY_SECS: i64 = 60;

/// `[oauth]`: the issuer and its access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// `iss` of every access token and the metadata's `issuer`
    /// (byte-identical). `None`: `http://<listen>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub access_token_ttl_secs: i64,
    /// `aud` when a token request names none.
    pub default_audience: String,
    /// RFC 8707 resource indicators this issuer knows: absolute URIs (no
    /// fragment) a client allowed them (its `audiences`, or `"*"`) may ask
    /// for as `resource`; any other `resource` is `invalid_target`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// `Cache-Control: max-age` of the JWKS; must be below
    /// `[keys] prepublish_secs`, so verifiers see a new key before it signs.
    pub jwks_max_age_secs: i64,
    /// The high-assurance profile (ASVS L3, RFC 9700 §2.5): only
    /// sender-constrained tokens are issued, and clients may not
    /// authenticate with a shared secret.
    pub sender_constrained_only: bool,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        let p = TokenPolicy::default();
        Self {
            issuer: None,
            access_token_ttl_secs: p.access_token_ttl_secs,
            default_audience: p.default_audience,
            resources: p.resources,
            jwks_max_age_secs: 300,
            sender_constrained_only: false,
        }
    }
}

/// `[refresh]`: refresh-token rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// Seconds after a rotation in which the consumed token returns the
    /// same successor (0: strict rotation).
    pub reuse_grace_secs: i64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            reuse_grace_secs: TokenPolicy::default().reuse_grace_secs,
        }
    }
}

string_enum!(
    /// Algorithm of newly generated signing keys.
    KeyAlg { EdDSA => "EdDSA", ES256 => "ES256", RS256 => "RS256" } default EdDSA
);

impl KeyAlg {
    pub fn signing_alg(self) -> SigningAlg {
        match self {
            KeyAlg::EdDSA => SigningAlg::EdDSA,
            KeyAlg::ES256 => SigningAlg::ES256,
            KeyAlg::RS256 => SigningAlg::RS256,
        }
    }
}

/// `[keys]`: signing keys and the key that encrypts them at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    pub alg: KeyAlg,
    pub rotation_interval_secs: i64,
    pub prepublish_secs: i64,
    /// How often a running service reloads the key set from the store (keys
    /// another process added or withdrew) and runs the rotation schedule.
    pub reload_interval_secs: u64,
    /// base64url (no padding) of 32 bytes. A secret: masked by `config check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
    /// Where the key is read from (and generated on first start) when
    /// `encryption_key` is not set. `None`: `<data_dir>/key-encryption-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_file: Option<PathBuf>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        let p = KeyPolicy::default();
        Self {
            alg: KeyAlg::EdDSA,
            rotation_interval_secs: p.rotation_interval_secs,
            prepublish_secs: p.prepublish_secs,
            reload_interval_secs: 30,
            encryption_key: None,
            encryption_key_file: None,
        }
    }
}

string_enum!(
    /// RFC 6749 §2.1 client type.
    ClientKindConfig { Public => "public", Confidential => "confidential" } default Public
);

fn all() -> Vec<String> {
    vec![String::from("*")]
}

fn yes() -> bool {
    true
}

fn refresh_grant() -> Vec<String> {
    vec![GRANT_REFRESH_TOKEN.into()]
}

string_enum!(
    /// RFC 7591 `token_endpoint_auth_method`.
    AuthMethodConfig {
        None => "none",
        ClientSecretBasic => "client_secret_basic",
        ClientSecretPost => "client_secret_post",
        PrivateKeyJwt => "private_key_jwt",
    } default None
);

/// One `[[clients]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    #[serde(default)]
    pub kind: ClientKindConfig,
    /// Hex of the SHA-256 of the client secret (confidential clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    /// Allowed scopes; `"*"` allows any.
    #[serde(default = "all")]
    pub scopes: Vec<String>,
    /// Allowed audiences; `"*"` allows any.
    #[serde(default = "all")]
    pub audiences: Vec<String>,
    /// Whether the client gets refresh tokens.
    #[serde(default = "yes")]
    pub refresh_tokens: bool,
    /// RFC 9449 §5.2: the client must always use DPoP.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// How the client authenticates; by default what its entry implies
    /// (`none` for a public client, `client_secret_basic` with
    /// `secret_sha256`, `private_key_jwt` with `jwks`). `client_secret_basic`
    /// and `client_secret_post` are interchangeable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<AuthMethodConfig>,
    /// The public keys of a `private_key_jwt` client: a JWK Set, as a TOML
    /// table (`jwks = { keys = [ { kty = "EC", … } ] }`) or as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// The grants the client may use: `refresh_token` (default),
    /// `client_credentials` and
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (confidential
    /// clients only).
    #[serde(default = "refresh_grant")]
    pub grant_types: Vec<String>,
}

impl ClientConfig {
    fn to_client(&self) -> Result<Client, String> {
        let secret_sha256 = match &self.secret_sha256 {
            None => None,
            Some(hex) => Some(decode_sha256_hex(hex).ok_or_else(|| {
                format!(
                    "client {}: secret_sha256 must be 64 hex digits (the SHA-256 of the secret)",
                    self.client_id
                )
            })?),
        };
        let jwks = match &self.jwks {
            None => None,
            Some(serde_json::Value::String(text)) => Some(ClientJwks::from_json(text)),
            Some(v) => Some(ClientJwks::from_value(v)),
        }
        .transpose()
        .map_err(|e| format!("client {}: {e}", self.client_id))?;
        let kind = match self.kind {
            ClientKindConfig::Public => ClientKind::Public,
            ClientKindConfig::Confidential => ClientKind::Confidential,
        };
        let implied = match (kind, &secret_sha256, &jwks) {
            (ClientKind::Public, ..) => AuthMethodConfig::None,
            (ClientKind::Confidential, _, Some(_)) => AuthMethodConfig::PrivateKeyJwt,
            (ClientKind::Confidential, ..) => AuthMethodConfig::ClientSecretBasic,
        };
        if let Some(m) = self.token_endpoint_auth_method {
            let fits = match m {
                AuthMethodConfig::ClientSecretBasic | AuthMethodConfig::ClientSecretPost => {
                    implied == AuthMethodConfig::ClientSecretBasic
                }
                other => other == implied,
            };
            if !fits {
                return Err(format!(
                    "client {}: token_endpoint_auth_method = \"{}\" needs {}",
                    self.client_id,
                    m.as_str(),
                    match m {
                        AuthMethodConfig::None => "kind = \"public\" and no secret_sha256 or jwks",
                        AuthMethodConfig::PrivateKeyJwt =>
                            "kind = \"confidential\" and jwks (and no secret_sha256)",
                        _ => "kind = \"confidential\" and secret_sha256 (and no jwks)",
                    }
                ));
            }
        }
        let client = Client {
            client_id: self.client_id.clone(),
            kind,
            secret_sha256,
            scopes: self.scopes.clone(),
            audiences: self.audiences.clone(),
            refresh_tokens: self.refresh_tokens && self.grant_types.iter().any(|g| g == GRANT_REFRESH_TOKEN),
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            jwks,
            grant_types: self.grant_types.clone(),
        };
        client.validate()?;
        Ok(client)
    }
}

fn decode_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// `TESSERA_CLIENTS`: a TOML array of inline tables, e.g.
/// `[{client_id = "spa"}, {client_id = "api", kind = "confidential", secret_sha256 = "…"}]`.
pub(super) fn parse_clients_env(v: &str) -> Result<Vec<ClientConfig>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        clients: Vec<ClientConfig>,
    }
    toml::from_str::<Wrapper>(&format!("clients = {v}"))
        .map(|w| w.clients)
        .map_err(|e| {
            format!(
                "expected a TOML array of client tables: {}",
                e.message().trim_end()
            )
        })
}

/// Checks an issuer: an `http(s)` URL with a host, no query, no fragment,
/// no trailing slash, and a path (if any) of plain URL characters, so it
/// can be compared byte for byte and used as a route.
fn check_issuer(iss: &str) -> Result<(), String> {
    let rest = iss
        .strip_prefix("https://")
        .or_else(|| iss.strip_prefix("http://"))
        .ok_or_else(|| format!("issuer {iss:?} must start with https:// (or http:// for development)"))?;
    if iss.len() > 1024 {
        return Err("issuer is longer than 1024 bytes".into());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return Err(format!("issuer {iss:?}: the host is not valid"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err(format!(
            "issuer {iss:?}: no query, fragment or special characters (only letters, digits, '-', '.', '_', '~' and '/' in the path)"
        ));
    }
    if path.ends_with('/') || path.contains("//") {
        return Err(format!(
            "issuer {iss:?} must not end with '/' or contain '//'; tokens carry it byte for byte"
        ));
    }
    Ok(())
}

impl Config {
    /// The issuer in effect: `[oauth] issuer`, or `http://<listen>`.
    pub fn issuer(&self) -> String {
        match &self.oauth.issuer {
            Some(i) => i.clone(),
            // The listener's own scheme: https with [tls].
            None if self.tls.enabled() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn token_policy(&self) -> TokenPolicy {
        TokenPolicy {
            issuer: self.issuer(),
            access_token_ttl_secs: self.oauth.access_token_ttl_secs,
            reuse_grace_secs: self.refresh.reuse_grace_secs,
            default_audience: self.oauth.default_audience.clone(),
            resources: self.oauth.resources.clone(),
            sender_constrained_only: self.oauth.sender_constrained_only,
        }
    }

    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            alg: self.keys.alg.signing_alg(),
            rotation_interval_secs: self.keys.rotation_interval_secs,
            prepublish_secs: self.keys.prepublish_secs,
            access_token_ttl_secs: self.oauth.access_token_ttl_secs,
            leeway_secs: LEEWAY_SECS,
        }
    }

    /// The client registry `[[clients]]` describes, plus the built-in
    /// public `default` client unless one is configured.
    pub fn client_registry(&self) -> Result<ClientRegistry, String> {
        let clients = self
            .clients
            .iter()
            .map(ClientConfig::to_client)
            .collect::<Result<Vec<_>, _>>()?;
        ClientRegistry::new(clients)
    }

    /// Where the key-encryption key lives when `encryption_key` is unset.
    pub fn encryption_key_path(&self) -> PathBuf {
        self.keys
            .encryption_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(KEY_ENCRYPTION_KEY_FILE))
    }

    /// The rules of the token sections (called by [`Config::validate`]).
    pub(super) fn validate_tokens(&self) -> Result<(), String> {
        check_issuer(&self.issuer()).map_err(|e| format!("[oauth] {e}"))?;
        let o = &self.oauth;
        if !(1..=86_400).contains(&o.access_token_ttl_secs) {
            return Err("[oauth] access_token_ttl_secs must be between 1 and 86400".into());
        }
        let aud = &o.default_audience;
        if aud.is_empty() || aud.len() > 256 || aud.chars().any(char::is_control) {
            return Err("[oauth] default_audience must be 1-256 printable characters".into());
        }
        for r in &o.resources {
            tessera_core::tokens::resource_syntax(r)
                .map_err(|why| format!("[oauth] resources: {r:?}: {why}"))?;
        }
        if o.jwks_max_age_secs < 0 || o.jwks_max_age_secs >= self.keys.prepublish_secs {
            return Err(format!(
                "[oauth] jwks_max_age_secs ({}) must be >= 0 and below [keys] prepublish_secs ({}), so verifiers learn a new key before it signs",
                o.jwks_max_age_secs, self.keys.prepublish_secs
            ));
        }
        if !(1..=3600).contains(&self.keys.reload_interval_secs) {
            return Err("[keys] reload_interval_secs must be between 1 and 3600".into());
        }
        if !(0..=MAX_REUSE_GRACE_SECS).contains(&self.refresh.reuse_grace_secs) {
            return Err(format!(
                "[refresh] reuse_grace_secs must be between 0 and {MAX_REUSE_GRACE_SECS}"
            ));
        }
        self.key_policy().validate().map_err(|e| format!("[keys] {e}"))?;
        if let Some(k) = &self.keys.encryption_key {
            if self.keys.encryption_key_file.is_some() {
                return Err("[keys] set encryption_key or encryption_key_file, not both".into());
            }
            // The error never echoes the value.
            Sealer::from_base64url(k).map_err(|e| format!("[keys] encryption_key: {e}"))?;
        }
        if self
            .keys
            .encryption_key_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("[keys] encryption_key_file must not be empty".into());
        }
        self.client_registry().map_err(|e| format!("[[clients]] {e}"))?;
        Ok(())
    }

    /// Masks the token sections' secrets for `config check`, and shows the
    /// issuer in effect.
    pub(super) fn mask_tokens(&self, shown: &mut Config) {
        shown.oauth.issuer = Some(self.issuer());
        if shown.keys.encryption_key.is_some() {
            shown.keys.encryption_key = Some(String::from("****"));
        }
    }
}

#[cfg(test)]
mod tests;
