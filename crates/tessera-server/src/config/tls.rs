//! `[tls]`: HTTPS and client certificates (SPEC §4.3 "TLS").

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tessera_core::ApiKeyScope;

use super::Config;
use super::enums::string_enum;

string_enum!(
    /// Whether a client certificate is asked for (`optional`: requested,
    /// verified when sent) or required for every connection.
    ClientAuth { Optional => "optional", Required => "required" } default Optional
);

/// `[tls]`. With `cert_file` and `key_file` set, `tessera serve` listens
/// with TLS; both files are read again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to; unset:
    /// no client certificates are asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// `[[tls.api_clients]]`: client certificates that authenticate to the
    /// backend API instead of an API key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_clients: Vec<CertApiClient>,
}

/// One `[[tls.api_clients]]` entry: the certificate (by its SHA-256
/// thumbprint, base64url, as in `cnf.x5t#S256`) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertApiClient {
    /// Shown in logs as the caller, like an API key's id.
    pub name: String,
    /// base64url(SHA-256(DER of the client certificate)).
    pub x5t_s256: String,
    /// API key scopes (`sessions`, `events`, `revocations`, `admin`).
    #[serde(default = "sessions_scope")]
    pub scopes: Vec<ApiKeyScope>,
}

fn sessions_scope() -> Vec<ApiKeyScope> {
    vec![ApiKeyScope::Sessions]
}

impl TlsConfig {
    /// Whether the service listens with TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }
}

impl Config {
    pub(super) fn validate_tls(&self) -> Result<(), String> {
        let t = &self.tls;
        match (&t.cert_file, &t.key_file) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => return Err("[tls] set both cert_file and key_file".into()),
        }
        if t.client_ca_file.is_some() && !t.enabled() {
            return Err("[tls] client_ca_file needs cert_file and key_file".into());
        }
        if t.client_auth == ClientAuth::Required && t.client_ca_file.is_none() {
            return Err("[tls] client_auth = \"required\" needs client_ca_file".into());
        }
        if !t.api_clients.is_empty() && t.client_ca_file.is_none() {
            return Err("[[tls.api_clients]] need [tls] client_ca_file".into());
        }
        for c in &t.api_clients {
            if c.name.is_empty() || c.name.len() > 64 || c.name.chars().any(char::is_control) {
                return Err(format!(
                    "[[tls.api_clients]] name {:?} must be 1-64 printable characters",
                    c.name
                ));
            }
            if !tessera_core::b64url::is_sha256_digest(&c.x5t_s256) {
                return Err(format!(
                    "[[tls.api_clients]] {}: x5t_s256 must be base64url of a SHA-256 digest (43 characters)",
                    c.name
                ));
            }
            if c.scopes.is_empty() {
                return Err(format!(
                    "[[tls.api_clients]] {}: scopes must not be empty",
                    c.name
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn parse_api_clients_env(v: &str) -> Result<Vec<CertApiClient>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        api_clients: Vec<CertApiClient>,
    }
    toml::from_str::<Wrapper>(&format!("api_clients = {v}"))
        .map(|w| w.api_clients)
        .map_err(|e| format!("expected a TOML array of tables: {}", e.message().trim_end()))
}
