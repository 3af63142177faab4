//! `grant_type=client_credentials` and `private_key_jwt` client
//! authentication (RFC 7523) through the OAuth endpoints, in process.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use tessera_core::b64url;

use super::*;

/// The default issuer (no `[oauth] issuer`): `http://<listen>`.
const ISSUER: &str = "http://127.0.0.1:8080";
const TOKEN_URL: &str = "http://127.0.0.1:8080/oauth2/token";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

struct Key(EcdsaKeyPair);

impl Key {
    fn new() -> Key {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Key(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn jwk(&self) -> Value {
        let p = self.0.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65]), "kid": "k1"})
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url::encode(sig.as_ref()))
    }
}

struct Cc {
    h: H,
    key: Key,
}

fn secret_client() -> ClientConfig {
    let mut c = client("svc", ClientKindConfig::Confidential, Some("svc-secret"));
    c.grant_types = vec!["client_credentials".into()];
    c.scopes = vec!["read".into(), "write".into()];
    c.audiences = vec!["api".into()];
    c
}

fn jwt_client(key: &Key) -> ClientConfig {
    let mut c = client("jwt-svc", ClientKindConfig::Confidential, None);
    c.jwks = Some(json!({"keys": [key.jwk()]}));
    c.token_endpoint_auth_method = Some(crate::config::AuthMethodConfig::PrivateKeyJwt);
    c.grant_types = vec!["client_credentials".into()];
    c.scopes = vec!["read".into()];
    c.audiences = vec!["api".into(), "tessera".into()];
    c
}

async fn cc() -> Cc {
    let key = Key::new();
    let mut config = test_config();
    config.clients.push(secret_client());
    config.clients.push(jwt_client(&key));
    Cc {
        h: harness_with(config).await,
        key,
    }
}

impl Cc {
    fn now(&self) -> i64 {
        self.h.clock.now().unix_secs()
    }

    fn assertion_with(&self, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = json!({"iss": "jwt-svc", "sub": "jwt-svc", "aud": TOKEN_URL,
            "exp": self.now() + 60, "iat": self.now(), "jti": tessera_core::secret::new_id("")});
        f(c.as_object_mut().unwrap());
        self.key.sign(&c)
    }

    fn assertion(&self) -> String {
        self.assertion_with(|_| {})
    }

    async fn with_assertion(&self, uri: &str, assertion: &str, extra: &str) -> Resp {
        self.h
            .form(
                uri,
                &format!("client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}{extra}"),
                None,
            )
            .await
    }

    async fn jwt_token(&self, assertion: &str) -> Resp {
        self.with_assertion("/oauth2/token", assertion, "&grant_type=client_credentials")
            .await
    }
}

#[tokio::test]
async fn client_credentials_with_a_secret_issues_a_token_without_refresh_token() {
    let t = cc().await;
    let r =
        t.h.form(
            "/oauth2/token",
            "grant_type=client_credentials&scope=read",
            Some(&basic("svc", "svc-secret")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.assert_no_store();
    assert!(r.body.get("refresh_token").is_none(), "{}", r.text);
    assert_eq!(r.str("token_type"), "Bearer");
    assert_eq!(r.str("scope"), "read");
    let c = t.h.claims(r.str("access_token"));
    assert_eq!((c.sub.as_str(), c.client_id.as_str()), ("svc", "svc"));
    assert_eq!(c.sid, None);
    assert_eq!(c.aud, tessera_core::Audience::one("api"));
    // client_secret_post too.
    let r =
        t.h.form(
            "/oauth2/token",
            "grant_type=client_credentials&client_id=svc&client_secret=svc-secret",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("scope"), "read write");
}

#[tokio::test]
async fn client_credentials_refusals() {
    let t = cc().await;
    // A public client: unauthorized_client.
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials&client_id=spa",
        None,
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    // No client authentication at all.
    t.h.form("/oauth2/token", "grant_type=client_credentials", None)
        .await
        .assert_oauth_error(401, "invalid_client");
    // A confidential client not registered for the grant.
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&basic("backend", "backend-secret")),
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    // Wrong secret.
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&basic("svc", "nope")),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    // Scope or audience outside the registration.
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials&scope=admin",
        Some(&basic("svc", "svc-secret")),
    )
    .await
    .assert_oauth_error(400, "invalid_scope");
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials&audience=other",
        Some(&basic("svc", "svc-secret")),
    )
    .await
    .assert_oauth_error(400, "invalid_target");
}

#[tokio::test]
async fn client_credentials_with_private_key_jwt_then_introspection() {
    let t = cc().await;
    let r = t
        .with_assertion(
            "/oauth2/token",
            &t.assertion(),
            "&grant_type=client_credentials&audience=tessera",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body.get("refresh_token").is_none());
    let at = r.str("access_token").to_owned();
    assert_eq!(t.h.claims(&at).sub, "jwt-svc");
    // The same client introspects its token, authenticating with a new
    // assertion (aud = the issuer works too).
    let a = t.assertion_with(|c| {
        c.insert("aud".into(), json!(ISSUER));
    });
    let r = t
        .with_assertion("/oauth2/introspect", &a, &format!("&token={at}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["active"], true, "{}", r.text);
    assert_eq!(r.body["client_id"], "jwt-svc");
    assert!(r.body.get("sid").is_none());
    // Revocation authenticates the same way (a no-op for this token).
    let r = t
        .with_assertion("/oauth2/revoke", &t.assertion(), &format!("&token={at}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Forward auth accepts it (its audience is the default one) while the
    // client is registered, without a session header.
    let r = t.h.forward_auth_bearer(&at).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["x-tessera-subject"], "jwt-svc");
    assert!(r.headers.get("x-tessera-session").is_none());
}

#[tokio::test]
async fn md_12_private_key_jwt_failures_are_all_the_same_invalid_client() {
    let t = cc().await;
    let now = t.now();
    let bad = [
        t.assertion_with(|c| {
            c.insert("aud".into(), json!("https://other"));
        }),
        t.assertion_with(|c| {
            c.insert("exp".into(), json!(now - 120));
        }),
        t.assertion_with(|c| {
            c.insert("exp".into(), json!(now + 3600));
        }),
        t.assertion_with(|c| {
            c.remove("jti");
        }),
        t.assertion_with(|c| {
            c.insert("iss".into(), json!("svc"));
        }),
        Key::new().sign(
            &json!({"iss": "jwt-svc", "sub": "jwt-svc", "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}),
        ),
        "not.a.jwt".into(),
    ];
    let mut descriptions = std::collections::HashSet::new();
    for a in &bad {
        for uri in ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"] {
            let r = t
                .with_assertion(uri, a, "&grant_type=client_credentials&token=x")
                .await;
            r.assert_oauth_error(401, "invalid_client");
            descriptions.insert(r.str("error_description").to_owned());
        }
    }
    assert_eq!(descriptions.len(), 1, "{descriptions:?}");
    // The wrong assertion type, and a secret beside an assertion.
    t.h.form(
        "/oauth2/token",
        &format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Ax&client_assertion={}",
            t.assertion()
        ),
        None,
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    t.with_assertion(
        "/oauth2/token",
        &t.assertion(),
        "&grant_type=client_credentials&client_secret=x",
    )
    .await
    .assert_oauth_error(400, "invalid_request");
    // client_id naming another client than the assertion.
    t.with_assertion(
        "/oauth2/token",
        &t.assertion(),
        "&grant_type=client_credentials&client_id=svc",
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    // A private_key_jwt client never authenticates with a secret, and a
    // secret client never with an assertion.
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials&client_id=jwt-svc&client_secret=x",
        None,
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    let as_svc = t.assertion_with(|c| {
        c.insert("iss".into(), json!("svc"));
        c.insert("sub".into(), json!("svc"));
    });
    t.jwt_token(&as_svc)
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn c7523_a_replayed_assertion_is_refused() {
    let t = cc().await;
    let a = t.assertion();
    assert_eq!(t.jwt_token(&a).await.status, StatusCode::OK);
    t.jwt_token(&a).await.assert_oauth_error(401, "invalid_client");
    // Spent at one endpoint, refused at another.
    let a = t.assertion();
    assert_eq!(t.jwt_token(&a).await.status, StatusCode::OK);
    t.with_assertion("/oauth2/introspect", &a, "&token=x")
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn client_credentials_token_is_dpop_bound_with_a_proof() {
    let t = cc().await;
    let proof_key = Key::new();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {
        "kty": "EC", "crv": "P-256", "x": proof_key.jwk()["x"], "y": proof_key.jwk()["y"]}});
    let claims =
        json!({"jti": tessera_core::secret::new_id(""), "htm": "POST", "htu": TOKEN_URL, "iat": t.now()});
    let input = format!(
        "{}.{}",
        b64url::encode(header.to_string().as_bytes()),
        b64url::encode(claims.to_string().as_bytes())
    );
    let sig = proof_key.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let proof = format!("{input}.{}", b64url::encode(sig.as_ref()));
    let r =
        t.h.send(
            Request::post("/oauth2/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, basic("svc", "svc-secret"))
                .header("DPoP", proof)
                .body(Body::from("grant_type=client_credentials"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("token_type"), "DPoP");
    assert!(t.h.claims(r.str("access_token")).cnf.unwrap()["jkt"].is_string());
}

/// [`harness_with`], keeping the store to register clients in.
async fn harness_and_store(config: Config) -> (H, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let app = build_with_clock(config, store.clone(), Arc::new(clock.clone()));
    crate::issuer::start(&app.state.oauth).await.unwrap();
    let h = H {
        router: app.router,
        state: app.state,
        key: String::new(),
        clock,
    };
    (h, store)
}

#[tokio::test]
async fn stored_clients_authenticate_until_revoked_and_config_wins() {
    use tessera_core::clients::Registration;
    use tessera_core::model::ClientRecord;
    let (h, store) = harness_and_store(test_config()).await;
    let mut stored = tessera_core::Client {
        client_id: "stored".into(),
        kind: tessera_core::ClientKind::Confidential,
        secret_sha256: Some(TokenHash::of_secret(b"stored-secret").0),
        scopes: vec!["read".into()],
        audiences: vec!["api".into()],
        refresh_tokens: false,
        dpop_bound_access_tokens: false,
        jwks: None,
        grant_types: vec!["client_credentials".into()],
    };
    let record = |c: &tessera_core::Client| ClientRecord {
        client_id: c.client_id.clone(),
        created_at: h.clock.now(),
        revoked_at: None,
        registration: Registration::of(c).to_json(),
    };
    store.insert_client(&record(&stored)).await.unwrap();
    // A stored client with the id of a configured one is shadowed.
    stored.client_id = "backend".into();
    store.insert_client(&record(&stored)).await.unwrap();

    let r = h
        .form(
            "/oauth2/token",
            "grant_type=client_credentials",
            Some(&basic("stored", "stored-secret")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let at = r.str("access_token").to_owned();
    let introspect = |who: &'static str, secret: &'static str| {
        let at = at.clone();
        let h = &h;
        async move {
            h.form(
                "/oauth2/introspect",
                &format!("token={at}"),
                Some(&basic(who, secret)),
            )
            .await
        }
    };
    assert_eq!(introspect("stored", "stored-secret").await.body["active"], true);
    h.form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&basic("backend", "stored-secret")),
    )
    .await
    .assert_oauth_error(401, "invalid_client");

    // Revoked in the store: refused at once, and its token inactive.
    assert!(store.revoke_client("stored", h.clock.now()).await.unwrap());
    h.form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&basic("stored", "stored-secret")),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    let r = introspect("rs", "rs-secret").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"active": false}));
}

#[tokio::test]
async fn gn_04_a_private_key_jwt_client_counts_under_its_own_limit() {
    let key = Key::new();
    let mut config = test_config();
    config.clients.push(jwt_client(&key));
    config.rate_limits.oauth_per_ip = crate::config::LimitConfig::new(1, 60);
    config.rate_limits.oauth_per_client = crate::config::LimitConfig::new(3, 60);
    let t = Cc {
        h: harness_with(config).await,
        key,
    };
    // Three requests authenticated by assertion: beyond the per-address
    // limit of one, within the client's three.
    for _ in 0..3 {
        let r = t.jwt_token(&t.assertion()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    t.jwt_token(&t.assertion())
        .await
        .assert_oauth_error(429, "slow_down");
}

#[tokio::test]
async fn mt_07_private_key_jwt_is_accepted_in_the_sender_constrained_profile() {
    let key = Key::new();
    let mut config = test_config();
    config.oauth.sender_constrained_only = true;
    let mut secret = secret_client();
    secret.client_id = "svc".into();
    config.clients.push(secret);
    config.clients.push(jwt_client(&key));
    let t = Cc {
        h: harness_with(config).await,
        key,
    };
    // A shared secret is refused outright.
    t.h.form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&basic("svc", "svc-secret")),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    // An assertion authenticates; the token must still be bound.
    t.jwt_token(&t.assertion())
        .await
        .assert_oauth_error(400, "invalid_dpop_proof");
}

#[tokio::test]
async fn mt_01_client_credentials_over_mtls_binds_the_token_to_the_certificate() {
    let t = cc().await;
    let x5t = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let mut req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic("svc", "svc-secret"))
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    req.extensions_mut()
        .insert(tessera_http::bearer::ClientCertThumbprint(x5t.to_owned()));
    let r = t.h.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("token_type"), "Bearer");
    let cnf = t.h.claims(r.str("access_token")).cnf.unwrap();
    assert_eq!(cnf["x5t#S256"], x5t);
}
