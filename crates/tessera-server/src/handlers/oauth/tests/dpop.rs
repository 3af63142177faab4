//! DPoP (RFC 9449) through the service: session creation with `dpop_jkt`,
//! the token endpoint, `/auth/verify` and introspection, named after the
//! checklist's DP rows. Proofs are signed here with keys made per test.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use tessera_core::b64url;
use tessera_core::dpop::{PublicJwk, jwk_thumbprint};

use super::*;

/// The default issuer (no `[oauth] issuer`): `http://<listen>`.
const TOKEN_URL: &str = "http://127.0.0.1:8080/oauth2/token";
const APP_URL: &str = "https://app.example/orders?id=7";

struct Key(EcdsaKeyPair);

impl Key {
    fn new() -> Key {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Key(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn jwk(&self) -> Value {
        let p = self.0.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])})
    }

    fn jkt(&self) -> String {
        jwk_thumbprint(&PublicJwk::from_json(&self.jwk().to_string()).unwrap())
    }

    fn sign_parts(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url::encode(sig.as_ref()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()})
    }

    /// A proof for `htm htu` at `iat`, with `extra` claims merged in.
    fn proof_with(&self, htm: &str, htu: &str, iat: i64, extra: Value) -> String {
        let mut claims = json!({"jti": tessera_core::secret::new_id(""), "htm": htm, "htu": htu, "iat": iat});
        if let (Some(c), Value::Object(e)) = (claims.as_object_mut(), extra) {
            c.extend(e);
        }
        self.sign_parts(&self.header(), &claims)
    }
}

fn ath(token: &str) -> String {
    b64url::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

impl H {
    fn now(&self) -> i64 {
        self.clock.now().unix_secs()
    }

    fn token_proof(&self, key: &Key) -> String {
        key.proof_with("POST", TOKEN_URL, self.now(), json!({}))
    }

    /// `POST /oauth2/token` (refresh grant) with these `DPoP` headers.
    async fn refresh_dpop(&self, rt: &str, proofs: &[&str]) -> Resp {
        let mut b =
            Request::post("/oauth2/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for p in proofs {
            b = b.header("dpop", *p);
        }
        self.send(
            b.body(Body::from(format!("grant_type=refresh_token&refresh_token={rt}")))
                .unwrap(),
        )
        .await
    }

    /// `GET /auth/verify` for a proxied `GET APP_URL` (nginx's headers).
    async fn verify_dpop(&self, scheme: &str, at: &str, proofs: &[&str]) -> Resp {
        let mut b = Request::get("/auth/verify")
            .header(header::AUTHORIZATION, format!("{scheme} {at}"))
            .header("x-original-method", "GET")
            .header("x-original-url", APP_URL);
        for p in proofs {
            b = b.header("dpop", *p);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    fn rs_proof(&self, key: &Key, at: &str) -> String {
        key.proof_with(
            "GET",
            "https://app.example/orders",
            self.now(),
            json!({"ath": ath(at)}),
        )
    }
}

fn nonce_config(token: bool, resource: bool) -> Config {
    let mut c = test_config();
    c.dpop.token_nonce = token;
    c.dpop.resource_nonce = resource;
    c
}

#[tokio::test]
async fn dp_19_session_created_with_dpop_jkt_gets_bound_tokens_and_the_token_endpoint_keeps_them_bound() {
    let h = harness().await;
    let key = Key::new();
    let r = h.login("alice", json!({"dpop_jkt": key.jkt()})).await;
    assert_eq!(r.str("token_type"), "DPoP");
    assert_eq!(
        h.claims(r.str("access_token")).cnf,
        Some(json!({"jkt": key.jkt()}))
    );
    let rt = r.str("refresh_token").to_owned();
    // Without a proof, or with another key: refused, and nothing consumed.
    h.refresh(&rt, "")
        .await
        .assert_oauth_error(400, "invalid_dpop_proof");
    let other = Key::new();
    h.refresh_dpop(&rt, &[&h.token_proof(&other)])
        .await
        .assert_oauth_error(400, "invalid_grant");
    let ok = h.refresh_dpop(&rt, &[&h.token_proof(&key)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    ok.assert_no_store();
    assert_eq!(ok.str("token_type"), "DPoP");
    assert_eq!(
        h.claims(ok.str("access_token")).cnf,
        Some(json!({"jkt": key.jkt()}))
    );
}

#[tokio::test]
async fn dp_19_a_proof_binds_the_access_token_of_an_unbound_refresh_token() {
    let h = harness().await;
    let r = h.login("alice", json!({})).await;
    assert_eq!(r.str("token_type"), "Bearer");
    let key = Key::new();
    let ok = h
        .refresh_dpop(r.str("refresh_token"), &[&h.token_proof(&key)])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.str("token_type"), "DPoP");
    assert_eq!(
        h.claims(ok.str("access_token")).cnf,
        Some(json!({"jkt": key.jkt()}))
    );
}

#[tokio::test]
async fn dp_01_dp_10_two_proofs_or_a_replayed_proof_are_refused_before_the_refresh_token_is_spent() {
    let h = harness().await;
    let key = Key::new();
    let rt = h
        .login("alice", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("refresh_token")
        .to_owned();
    let (p1, p2) = (h.token_proof(&key), h.token_proof(&key));
    h.refresh_dpop(&rt, &[&p1, &p2])
        .await
        .assert_oauth_error(400, "invalid_dpop_proof");
    let ok = h.refresh_dpop(&rt, &[&p1]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let rt2 = ok.str("refresh_token").to_owned();
    h.refresh_dpop(&rt2, &[&p1])
        .await
        .assert_oauth_error(400, "invalid_dpop_proof");
    // The refused replay spent nothing: rt2 still rotates.
    let again = h.refresh_dpop(&rt2, &[&p2]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
}

#[tokio::test]
async fn dp_11_token_endpoint_nonce() {
    let h = harness_with(nonce_config(true, false)).await;
    let key = Key::new();
    let rt = h
        .login("alice", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("refresh_token")
        .to_owned();
    let r = h.refresh_dpop(&rt, &[&h.token_proof(&key)]).await;
    r.assert_oauth_error(400, "use_dpop_nonce");
    assert_eq!(
        r.headers.get_all("dpop-nonce").iter().count(),
        1,
        "exactly one DPoP-Nonce"
    );
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let with = key.proof_with("POST", TOKEN_URL, h.now(), json!({"nonce": nonce}));
    let ok = h.refresh_dpop(&rt, &[&with]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // DP-13: a 200 may carry the next nonce; it is no-store.
    assert!(ok.headers.contains_key("dpop-nonce"));
    ok.assert_no_store();
    // An old nonce: use_dpop_nonce again, with a new one.
    h.clock.advance_secs(301);
    let stale = key.proof_with("POST", TOKEN_URL, h.now(), json!({"nonce": nonce}));
    let r = h.refresh_dpop(ok.str("refresh_token"), &[&stale]).await;
    r.assert_oauth_error(400, "use_dpop_nonce");
    assert_ne!(r.headers["dpop-nonce"].to_str().unwrap(), nonce);
}

#[tokio::test]
async fn dp_20_client_that_must_use_dpop_at_the_token_endpoint() {
    let mut config = test_config();
    let mut strict = client("strict", ClientKindConfig::Public, None);
    strict.dpop_bound_access_tokens = true;
    config.clients.push(strict);
    let h = harness_with(config).await;
    let r = h
        .api(
            Method::POST,
            "/v1/sessions",
            Some(json!({"subject": "alice", "tokens": {"client_id": "strict"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let key = Key::new();
    let r = h
        .login("alice", json!({"client_id": "strict", "dpop_jkt": key.jkt()}))
        .await;
    let rt = r.str("refresh_token").to_owned();
    h.refresh(&rt, "&client_id=strict")
        .await
        .assert_oauth_error(400, "invalid_dpop_proof");
    let ok = h.refresh_dpop(&rt, &[&h.token_proof(&key)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn dp_19_metadata_advertises_the_proof_algorithms() {
    let h = harness().await;
    let m = h.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        m.body["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "ES384"])
    );
}

#[tokio::test]
async fn dp_mt_03_introspection_over_http_returns_cnf_and_token_type() {
    let h = harness().await;
    let key = Key::new();
    let r = h.login("alice", json!({"dpop_jkt": key.jkt()})).await;
    let i = h
        .form(
            "/oauth2/introspect",
            &format!("token={}", r.str("access_token")),
            Some(&format!("Bearer {}", h.key)),
        )
        .await;
    assert_eq!(i.body["active"], true, "{}", i.text);
    assert_eq!(i.body["token_type"], "DPoP");
    assert_eq!(i.body["cnf"], json!({"jkt": key.jkt()}));
}

#[tokio::test]
async fn dp_14_to_18_forward_auth_with_dpop() {
    let h = harness().await;
    let key = Key::new();
    let at = h
        .login("alice", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("access_token")
        .to_owned();
    let ok = h.verify_dpop("DPoP", &at, &[&h.rs_proof(&key, &at)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.headers["x-tessera-subject"], "alice");
    let challenge = |r: &Resp| r.headers[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    // DP-17: the bound token as Bearer.
    let r = h.verify_dpop("Bearer", &at, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r).starts_with("Bearer error=\"invalid_token\""),
        "{}",
        challenge(&r)
    );
    // DP-16: the DPoP scheme without a proof.
    let r = h.verify_dpop("DPoP", &at, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r).starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{}",
        challenge(&r)
    );
    assert!(challenge(&r).contains("algs=\"ES256 EdDSA ES384\""));
    // DP-01: two proofs.
    let r = h
        .verify_dpop("DPoP", &at, &[&h.rs_proof(&key, &at), &h.rs_proof(&key, &at)])
        .await;
    assert!(challenge(&r).starts_with("DPoP error=\"invalid_dpop_proof\""));
    // DP-15: another key's proof.
    let r = h.verify_dpop("DPoP", &at, &[&h.rs_proof(&Key::new(), &at)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r)
            .starts_with("DPoP error=\"invalid_token\", error_description=\"Invalid DPoP key binding\""),
        "{}",
        challenge(&r)
    );
    // DP-14: a proof for another token.
    let r = h
        .verify_dpop("DPoP", &at, &[&h.rs_proof(&key, "another-token")])
        .await;
    assert!(challenge(&r).starts_with("DPoP error=\"invalid_dpop_proof\""));
    // DP-18: two Authorization headers.
    let r = h
        .send(
            Request::get("/auth/verify")
                .header(header::AUTHORIZATION, format!("DPoP {at}"))
                .header(header::AUTHORIZATION, format!("Bearer {at}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // The proof names the proxied URL; Traefik's headers work as well.
    let proof = h.rs_proof(&key, &at);
    let r = h
        .send(
            Request::get("/auth/verify")
                .header(header::AUTHORIZATION, format!("DPoP {at}"))
                .header("dpop", proof)
                .header("x-forwarded-method", "GET")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "APP.example:443")
                .header("x-forwarded-uri", "/orders?id=8")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A proof for another path of the app is refused (DP-08).
    let elsewhere = key.proof_with(
        "GET",
        "https://app.example/admin",
        h.now(),
        json!({"ath": ath(&at)}),
    );
    let r = h.verify_dpop("DPoP", &at, &[&elsewhere]).await;
    assert!(challenge(&r).starts_with("DPoP error=\"invalid_dpop_proof\""));
}

#[tokio::test]
async fn dp_12_resource_nonce_and_token_nonces_are_not_interchangeable() {
    let h = harness_with(nonce_config(true, true)).await;
    let key = Key::new();
    let at = h
        .login("alice", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("access_token")
        .to_owned();
    let r = h.verify_dpop("DPoP", &at, &[&h.rs_proof(&key, &at)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let www = r.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(www.starts_with("DPoP error=\"use_dpop_nonce\""), "{www}");
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = |n: &str| {
        key.proof_with(
            "GET",
            "https://app.example/orders",
            h.now(),
            json!({"ath": ath(&at), "nonce": n}),
        )
    };
    let ok = h.verify_dpop("DPoP", &at, &[&proof(&nonce)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // A nonce the token endpoint issued.
    let rt = h
        .login("bob", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("refresh_token")
        .to_owned();
    let as_nonce = h.refresh_dpop(&rt, &[&h.token_proof(&key)]).await.headers["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = h.verify_dpop("DPoP", &at, &[&proof(&as_nonce)]).await;
    assert!(
        r.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("DPoP error=\"use_dpop_nonce\"")
    );
}

#[tokio::test]
async fn hostile_proofs_get_the_rfc_error_never_a_5xx() {
    let h = harness().await;
    let key = Key::new();
    let rt = h
        .login("alice", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("refresh_token")
        .to_owned();
    let now = h.now();
    let hs256 = {
        let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}});
        let claims = json!({"jti": "x1", "htm": "POST", "htu": TOKEN_URL, "iat": now});
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        )
    };
    let none = {
        let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()});
        let claims = json!({"jti": "x2", "htm": "POST", "htu": TOKEN_URL, "iat": now});
        format!(
            "{}.{}.",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        )
    };
    let private = {
        let mut header = key.header();
        header["jwk"]["d"] = json!("AAAA");
        key.sign_parts(
            &header,
            &json!({"jti": "x3", "htm": "POST", "htu": TOKEN_URL, "iat": now}),
        )
    };
    let huge = key.proof_with("POST", TOKEN_URL, now, json!({"pad": "x".repeat(20 * 1024)}));
    let used = h.token_proof(&key);
    let ok = h.refresh_dpop(&rt, &[&used]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let rt = ok.str("refresh_token").to_owned();
    let cases = [
        ("wrong htm", key.proof_with("GET", TOKEN_URL, now, json!({}))),
        (
            "wrong htu",
            key.proof_with("POST", "http://127.0.0.1:8080/oauth2/revoke", now, json!({})),
        ),
        (
            "stale iat",
            key.proof_with("POST", TOKEN_URL, now - 300, json!({})),
        ),
        (
            "future iat",
            key.proof_with("POST", TOKEN_URL, now + 60, json!({})),
        ),
        ("replayed jti", used),
        ("alg none", none),
        ("HS256", hs256),
        ("private d", private),
        (
            "ath at the token endpoint",
            key.proof_with("POST", TOKEN_URL, now, json!({"ath": ath("x")})),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (what, proof) in &cases {
        let r = h.refresh_dpop(&rt, &[proof]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert_eq!(r.body["error"], "invalid_dpop_proof", "{what}: {}", r.text);
    }
    // A 20 KB proof: refused by the proof check, or by the header limit
    // before it; a client error either way.
    let r = h.refresh_dpop(&rt, &[&huge]).await;
    assert!(r.status.is_client_error(), "20 KB proof: {}", r.status);
    // The refresh token survived every refusal.
    let ok = h.refresh_dpop(&rt, &[&h.token_proof(&key)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn mt_07_sender_constrained_profile_issues_only_bound_tokens_and_refuses_secrets() {
    let mut config = test_config();
    config.oauth.sender_constrained_only = true;
    let h = harness_with(config).await;
    // Session creation must bind.
    let r = h
        .api(
            Method::POST,
            "/v1/sessions",
            Some(json!({"subject": "alice", "tokens": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let key = Key::new();
    let rt = h
        .login("alice", json!({"dpop_jkt": key.jkt()}))
        .await
        .str("refresh_token")
        .to_owned();
    // A token request with neither DPoP nor a certificate: 400.
    h.refresh(&rt, "")
        .await
        .assert_oauth_error(400, "invalid_dpop_proof");
    let ok = h.refresh_dpop(&rt, &[&h.token_proof(&key)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // client_secret_basic: 401 invalid_client.
    let r = h
        .form(
            "/oauth2/token",
            &format!(
                "grant_type=refresh_token&refresh_token={}",
                ok.str("refresh_token")
            ),
            Some(&basic("backend", "backend-secret")),
        )
        .await;
    r.assert_oauth_error(401, "invalid_client");
}
