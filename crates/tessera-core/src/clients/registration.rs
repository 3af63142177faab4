//! A stored client's registration ([`ClientRecord::registration`]): the JSON
//! the `tessera clients` command writes and the token service reads. It
//! holds no secret: a client secret is kept only as its SHA-256.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Client, ClientJwks, ClientKind};
use crate::model::ClientRecord;

/// The registration as stored. Unknown members are refused, so a record
/// written by a newer version is not half understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// `client_secret_basic` (or `_post`) or `private_key_jwt`: stored
    /// clients are confidential.
    pub token_endpoint_auth_method: String,
    /// Hex of the SHA-256 of the secret (secret clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    /// The public JWK Set (`private_key_jwt` clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

impl Registration {
    /// The registration of `client` (a confidential client).
    pub fn of(client: &Client) -> Registration {
        Registration {
            token_endpoint_auth_method: client.auth_method().name().to_owned(),
            secret_sha256: client.secret_sha256.map(|h| hex(&h)),
            jwks: client
                .jwks
                .as_ref()
                .and_then(|j| serde_json::from_str(j.to_json()).ok()),
            scopes: client.scopes.clone(),
            audiences: client.audiences.clone(),
            grant_types: client.grant_types.clone(),
            dpop_bound_access_tokens: client.dpop_bound_access_tokens,
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, lists and JSON values always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The client a stored record describes, checked as a configured one is.
    pub fn client(record: &ClientRecord) -> Result<Client, String> {
        let r: Registration = serde_json::from_str(&record.registration)
            .map_err(|e| format!("unreadable registration: {e}"))?;
        let secret_sha256 = match &r.secret_sha256 {
            Some(h) => Some(unhex(h).ok_or("secret_sha256 is not 64 hex digits")?),
            None => None,
        };
        let jwks = r
            .jwks
            .as_ref()
            .map(ClientJwks::from_value)
            .transpose()
            .map_err(|e| e.to_string())?;
        let method_fits = match r.token_endpoint_auth_method.as_str() {
            "private_key_jwt" => jwks.is_some(),
            "client_secret_basic" | "client_secret_post" => secret_sha256.is_some(),
            _ => false,
        };
        if !method_fits {
            return Err(format!(
                "token_endpoint_auth_method {:?} does not fit the registration",
                r.token_endpoint_auth_method
            ));
        }
        let client = Client {
            client_id: record.client_id.clone(),
            kind: ClientKind::Confidential,
            secret_sha256,
            scopes: r.scopes,
            audiences: r.audiences,
            refresh_tokens: false,
            dpop_bound_access_tokens: r.dpop_bound_access_tokens,
            jwks,
            grant_types: r.grant_types,
        };
        client.validate()?;
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::TokenHash;
    use crate::time::Timestamp;

    const JWK: &str = r#"{"kty": "EC", "crv": "P-256", "x": "Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw", "y": "3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"}"#;

    fn record(client_id: &str, registration: String) -> ClientRecord {
        ClientRecord {
            client_id: client_id.into(),
            created_at: Timestamp::from_unix_secs(1),
            revoked_at: None,
            registration,
        }
    }

    #[test]
    fn a_registration_reads_back_as_the_client_it_was_written_from() {
        let secret = Client {
            client_id: "svc".into(),
            kind: ClientKind::Confidential,
            secret_sha256: Some(TokenHash::of_secret(b"s").0),
            scopes: vec!["read".into()],
            audiences: vec!["api".into()],
            refresh_tokens: false,
            dpop_bound_access_tokens: true,
            jwks: None,
            grant_types: vec!["client_credentials".into()],
        };
        let json = Registration::of(&secret).to_json();
        assert!(!json.contains("\"s\""), "{json}");
        assert_eq!(Registration::client(&record("svc", json)).unwrap(), secret);
        let keys = Client {
            secret_sha256: None,
            jwks: Some(ClientJwks::from_json(&format!("{{\"keys\": [{JWK}]}}")).unwrap()),
            ..secret
        };
        let json = Registration::of(&keys).to_json();
        assert!(json.contains("private_key_jwt"), "{json}");
        assert_eq!(Registration::client(&record("svc", json)).unwrap(), keys);
    }

    #[test]
    fn unusable_registrations_are_refused() {
        for bad in [
            "",
            "{}",
            r#"{"token_endpoint_auth_method": "private_key_jwt", "scopes": [], "audiences": [], "grant_types": []}"#,
            r#"{"token_endpoint_auth_method": "none", "secret_sha256": "ab", "scopes": [], "audiences": [], "grant_types": []}"#,
            r#"{"token_endpoint_auth_method": "client_secret_basic", "secret_sha256": "zz", "scopes": [], "audiences": [], "grant_types": []}"#,
            r#"{"token_endpoint_auth_method": "client_secret_basic", "scopes": [], "audiences": [], "grant_types": [], "later": 1}"#,
        ] {
            assert!(Registration::client(&record("svc", bad.into())).is_err(), "{bad}");
        }
    }
}
