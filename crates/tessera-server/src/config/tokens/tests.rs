use std::ffi::OsString;

use super::super::{ConfigError, Overrides};
use super::*;
use tessera_core::clients::ClientAuthMethod;

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut vars: Vec<(OsString, OsString)> = pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    vars.push(("TESSERA_STORE".into(), "memory://".into()));
    Config::load(None, vars, &Overrides::default())
}

#[test]
fn token_defaults_match_the_contract() {
    let c = load(&[]).unwrap();
    assert_eq!(c.issuer(), "http://127.0.0.1:8080");
    let p = c.token_policy();
    assert_eq!(p.access_token_ttl_secs, 300);
    assert_eq!(p.reuse_grace_secs, 10);
    assert_eq!(p.default_audience, "tessera");
    assert_eq!(c.oauth.jwks_max_age_secs, 300);
    let k = c.key_policy();
    assert_eq!(k.alg, SigningAlg::EdDSA);
    assert_eq!(k.rotation_interval_secs, 2_592_000);
    assert_eq!(k.prepublish_secs, 86_400);
    assert_eq!(c.keys.reload_interval_secs, 30);
    assert_eq!(
        load(&[("TESSERA_KEYS_RELOAD_INTERVAL_SECS", "1")])
            .unwrap()
            .keys
            .reload_interval_secs,
        1
    );
    assert_eq!(
        c.encryption_key_path(),
        PathBuf::from("./data/key-encryption-key")
    );
    let r = c.client_registry().unwrap();
    assert!(r.get("default").is_some());
}

#[test]
fn token_sections_parse_from_a_file() {
    let text = format!(
        r#"
[oauth]
issuer = "https://auth.example/t1"
access_token_ttl_secs = 120
default_audience = "api"
jwks_max_age_secs = 60

[refresh]
reuse_grace_secs = 0

[keys]
alg = "ES256"
rotation_interval_secs = 86400
prepublish_secs = 3600
encryption_key = "{}"

[[clients]]
client_id = "spa"

[[clients]]
client_id = "backend"
kind = "confidential"
secret_sha256 = "{}"
scopes = ["read"]
audiences = ["api"]
refresh_tokens = false
"#,
        "A".repeat(43),
        "ab".repeat(32)
    );
    let c = Config::from_toml(&text).unwrap();
    c.validate().unwrap();
    assert_eq!(c.issuer(), "https://auth.example/t1");
    assert_eq!(c.key_policy().alg, SigningAlg::ES256);
    let r = c.client_registry().unwrap();
    let b = r.get("backend").unwrap();
    assert_eq!(b.kind, ClientKind::Confidential);
    assert!(!b.refresh_tokens && b.allows_scope("read") && !b.allows_scope("x"));
    let spa = r.get("spa").unwrap();
    assert!(spa.refresh_tokens && spa.allows_audience("anything"));
    // The encryption key never shows in `config check`.
    let shown = c.to_masked_toml();
    assert!(!shown.contains(&"A".repeat(43)), "{shown}");
    assert!(shown.contains("encryption_key = \"****\""), "{shown}");
    assert!(shown.contains("[[clients]]"), "{shown}");
}

#[test]
fn token_env_keys_apply() {
    let c = load(&[
        ("TESSERA_OAUTH_ISSUER", "https://auth.example"),
        ("TESSERA_OAUTH_ACCESS_TOKEN_TTL_SECS", "60"),
        ("TESSERA_REFRESH_REUSE_GRACE_SECS", "3"),
        ("TESSERA_KEYS_ALG", "RS256"),
        ("TESSERA_KEYS_ENCRYPTION_KEY_FILE", "/tmp/kek"),
        ("TESSERA_CLIENTS", r#"[{client_id = "spa", scopes = ["read"]}]"#),
    ])
    .unwrap();
    assert_eq!(c.token_policy().issuer, "https://auth.example");
    assert_eq!(c.token_policy().access_token_ttl_secs, 60);
    assert_eq!(c.refresh.reuse_grace_secs, 3);
    assert_eq!(c.keys.alg, KeyAlg::RS256);
    assert_eq!(c.encryption_key_path(), PathBuf::from("/tmp/kek"));
    assert_eq!(c.clients.len(), 1);
    assert!(!c.client_registry().unwrap().get("spa").unwrap().allows_scope("x"));
}

#[test]
fn bad_token_settings_are_refused() {
    let cases = [
        ("TESSERA_OAUTH_ISSUER", "auth.example"),
        ("TESSERA_OAUTH_ISSUER", "https://auth.example/"),
        ("TESSERA_OAUTH_ISSUER", "https://auth.example?x=1"),
        ("TESSERA_OAUTH_ISSUER", "https://auth.example/#f"),
        ("TESSERA_OAUTH_ISSUER", "https://"),
        ("TESSERA_OAUTH_ACCESS_TOKEN_TTL_SECS", "0"),
        ("TESSERA_OAUTH_DEFAULT_AUDIENCE", ""),
        ("TESSERA_OAUTH_JWKS_MAX_AGE_SECS", "86400"),
        ("TESSERA_OAUTH_JWKS_MAX_AGE_SECS", "-1"),
        ("TESSERA_KEYS_PREPUBLISH_SECS", "100"),
        ("TESSERA_KEYS_ROTATION_INTERVAL_SECS", "10"),
        ("TESSERA_KEYS_ENCRYPTION_KEY", "too-short"),
        ("TESSERA_KEYS_RELOAD_INTERVAL_SECS", "0"),
        ("TESSERA_KEYS_RELOAD_INTERVAL_SECS", "3601"),
        ("TESSERA_REFRESH_REUSE_GRACE_SECS", "-1"),
        ("TESSERA_REFRESH_REUSE_GRACE_SECS", "61"),
        ("TESSERA_REFRESH_REUSE_GRACE_SECS", "3600"),
        ("TESSERA_CLIENTS", r#"[{client_id = "x", kind = "confidential"}]"#),
        (
            "TESSERA_CLIENTS",
            r#"[{client_id = "x", kind = "confidential", secret_sha256 = "zz"}]"#,
        ),
        ("TESSERA_CLIENTS", r#"[{client_id = "a"}, {client_id = "a"}]"#),
    ];
    for (k, v) in cases {
        let r = load(&[(k, v)]);
        assert!(matches!(r, Err(ConfigError::Invalid(_))), "{k}={v}: {r:?}");
    }
    let secret = "A".repeat(43);
    let e = load(&[("TESSERA_KEYS_ENCRYPTION_KEY", "short-secret-value")])
        .unwrap_err()
        .to_string();
    assert!(!e.contains("short-secret-value"), "{e}");
    let r = load(&[
        ("TESSERA_KEYS_ENCRYPTION_KEY", secret.as_str()),
        ("TESSERA_KEYS_ENCRYPTION_KEY_FILE", "/tmp/kek"),
    ]);
    assert!(matches!(r, Err(ConfigError::Invalid(_))), "{r:?}");
    let r = load(&[("TESSERA_CLIENTS", "not toml")]);
    assert!(matches!(r, Err(ConfigError::Env { .. })), "{r:?}");
}

/// The reuse grace window is at most a minute (the longest accepted
/// value loads, one more is refused).
#[test]
fn reuse_grace_is_capped_at_60_secs() {
    let c = load(&[("TESSERA_REFRESH_REUSE_GRACE_SECS", "60")]).unwrap();
    assert_eq!(c.token_policy().reuse_grace_secs, 60);
    let e = load(&[("TESSERA_REFRESH_REUSE_GRACE_SECS", "61")]).unwrap_err();
    assert!(e.to_string().contains("between 0 and 60"), "{e}");
}

const EC_JWK: &str = r#"{"kty": "EC", "crv": "P-256", "x": "Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw", "y": "3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"}"#;

#[test]
fn service_clients_parse_with_jwks_as_a_table_or_as_json_text() {
    let text = format!(
        r#"
[[clients]]
client_id = "svc"
kind = "confidential"
secret_sha256 = "{}"
grant_types = ["client_credentials"]
token_endpoint_auth_method = "client_secret_post"

[[clients]]
client_id = "jwt-table"
kind = "confidential"
token_endpoint_auth_method = "private_key_jwt"
grant_types = ["client_credentials"]
[[clients.jwks.keys]]
kty = "EC"
crv = "P-256"
x = "Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw"
y = "3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"

[[clients]]
client_id = "jwt-text"
kind = "confidential"
jwks = '{{"keys": [{EC_JWK}]}}'
grant_types = ["client_credentials", "refresh_token"]
"#,
        "ab".repeat(32)
    );
    let c = Config::from_toml(&text).unwrap();
    c.validate().unwrap();
    let r = c.client_registry().unwrap();
    let svc = r.get("svc").unwrap();
    assert_eq!(svc.auth_method(), ClientAuthMethod::ClientSecret);
    assert!(svc.allows_grant("client_credentials") && !svc.allows_grant("refresh_token"));
    // No refresh_token grant: no refresh tokens, whatever refresh_tokens says.
    assert!(!svc.refresh_tokens);
    for id in ["jwt-table", "jwt-text"] {
        let j = r.get(id).unwrap();
        assert_eq!(j.auth_method(), ClientAuthMethod::PrivateKeyJwt, "{id}");
        assert_eq!(j.jwks.as_ref().map(|k| k.len()), Some(1), "{id}");
    }
    assert_eq!(r.get("jwt-table").unwrap().jwks, r.get("jwt-text").unwrap().jwks);
    // The built-in default client keeps its refresh grant.
    assert!(r.get("default").unwrap().allows_grant("refresh_token"));
}

#[test]
fn inconsistent_service_clients_are_refused() {
    let secret = "ab".repeat(32);
    let jwks = format!("'{{\"keys\": [{EC_JWK}]}}'");
    for (entry, why) in [
        (
            format!("kind = \"confidential\"\nsecret_sha256 = \"{secret}\"\njwks = {jwks}"),
            "not both",
        ),
        (
            format!(
                "kind = \"confidential\"\nsecret_sha256 = \"{secret}\"\ntoken_endpoint_auth_method = \"private_key_jwt\""
            ),
            "private_key_jwt",
        ),
        (
            format!(
                "kind = \"confidential\"\njwks = {jwks}\ntoken_endpoint_auth_method = \"client_secret_basic\""
            ),
            "client_secret_basic",
        ),
        (format!("jwks = {jwks}"), "must not have jwks"),
        (
            "grant_types = [\"client_credentials\"]".into(),
            "cannot use client_credentials",
        ),
        ("grant_types = [\"password\"]".into(), "unknown grant type"),
        (
            "kind = \"confidential\"\njwks = '{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}'".into(),
            "private member",
        ),
    ] {
        let text = format!("[[clients]]\nclient_id = \"c\"\n{entry}\n");
        let e = match Config::from_toml(&text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains(why), "{entry}: {e}");
    }
}
