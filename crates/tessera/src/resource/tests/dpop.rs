//! Sender-constrained tokens at the resource server, through the axum
//! extractor on a real router: DPoP (RFC 9449 §7, named after the
//! checklist's DP ids) and certificate binding (RFC 8705, MT-02). The
//! checks themselves are core's; these prove the library wires them in.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use axum::http::HeaderMap;
use tessera_core::dpop::{NonceIssuer, NonceUse, PublicJwk, jwk_thumbprint};

use super::*;

/// A client's DPoP key.
enum Key {
    Es256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Key {
    fn es256() -> Key {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn ed25519() -> Key {
        Key::Ed(Ed25519KeyPair::generate().unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Key::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Key::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())}),
        }
    }

    fn jkt(&self) -> String {
        jwk_thumbprint(&PublicJwk::from_json(&self.jwk().to_string()).unwrap())
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Key::Es256(k) => k.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(input).as_ref().to_vec(),
        }
    }

    /// A proof with exactly these claims.
    fn raw(&self, claims: &Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()});
        let input = format!("{}.{}", b64j(&header), b64j(claims));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// A fresh proof for `GET htu` with `token`, optionally with a nonce.
    fn proof(&self, htu: &str, token: &str, nonce: Option<&str>) -> String {
        let mut claims = json!({
            "jti": tessera_core::secret::new_id(""), "htm": "GET", "htu": htu, "iat": NOW,
            "ath": ath(token),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.raw(&claims)
    }
}

fn ath(token: &str) -> String {
    b64(digest(&SHA256, token.as_bytes()).as_ref())
}

const BASE: &str = "https://api.example.com";
const ME: &str = "https://api.example.com/me";
const ALGS: &str = r#"algs="ES256 EdDSA ES384""#;

/// A verifier whose public base URL is [`BASE`], adjusted by `f`.
fn dpop_verifier(key: &TestKey, f: impl FnOnce(&mut VerifierConfig)) -> (Verifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock.clone());
    c.public_base_url = Some(BASE.parse().unwrap());
    f(&mut c);
    (Verifier::with_jwks(c, jwks(&[key])).unwrap(), clock)
}

/// An access token bound to `cnf`.
fn bound(issuer: &TestKey, cnf: Value) -> String {
    issuer.token(&issuer.header(), &with(claims(), "cnf", cnf))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn www(&self) -> &str {
        self.headers
            .get(header::WWW_AUTHENTICATE)
            .map_or("", |v| v.to_str().unwrap())
    }
}

/// `GET uri` with these headers (in order, repeats kept) and, if given, a
/// client certificate thumbprint as the TLS layer would insert it.
async fn get(app: &Router, uri: &str, headers: &[(&str, &str)], cert: Option<&str>) -> Answer {
    let mut req = Request::builder().uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(cert) = cert {
        req.extensions_mut().insert(ClientCertThumbprint(cert.to_owned()));
    }
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn dpop_get(app: &Router, path: &str, token: &str, proof: &str) -> Answer {
    let auth = format!("DPoP {token}");
    get(app, path, &[("authorization", &auth), ("dpop", proof)], None).await
}

fn assert_refused(a: &Answer, code: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(
        a.www().starts_with(&format!("DPoP error=\"{code}\"")),
        "{}",
        a.www()
    );
    assert!(a.www().ends_with(ALGS), "{}", a.www());
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert!(a.body.contains(code), "{}", a.body);
}

#[tokio::test]
async fn dpop_request_is_accepted_once_and_its_replay_refused() {
    let issuer = TestKey::ed("k1");
    for key in [Key::es256(), Key::ed25519()] {
        let (v, _) = dpop_verifier(&issuer, |_| {});
        let app = app(v);
        let token = bound(&issuer, json!({"jkt": key.jkt()}));
        let proof = key.proof(ME, &token, None);
        let ok = dpop_get(&app, "/me", &token, &proof).await;
        assert_eq!(
            (ok.status, ok.body.as_str()),
            (StatusCode::OK, "user-1"),
            "{}",
            key.alg()
        );
        // A second request needs a second proof; the same one is a replay.
        assert_refused(&dpop_get(&app, "/me", &token, &proof).await, "invalid_dpop_proof");
        let again = dpop_get(&app, "/me", &token, &key.proof(ME, &token, None)).await;
        assert_eq!(again.status, StatusCode::OK);
        // `Option<Authenticated>` takes DPoP credentials too.
        let maybe = dpop_get(
            &app,
            "/maybe",
            &token,
            &key.proof(&format!("{BASE}/maybe"), &token, None),
        )
        .await;
        assert_eq!(maybe.body, "user-1");
    }
}

#[tokio::test]
async fn dp_01_two_dpop_headers_are_an_invalid_proof() {
    let issuer = TestKey::ed("k1");
    let key = Key::es256();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    let (p1, p2) = (key.proof(ME, &token, None), key.proof(ME, &token, None));
    let auth = format!("DPoP {token}");
    let a = get(
        &app,
        "/me",
        &[("authorization", &auth), ("dpop", &p1), ("dpop", &p2)],
        None,
    )
    .await;
    assert_refused(&a, "invalid_dpop_proof");
    // Neither proof was recorded: each still works alone.
    assert_eq!(dpop_get(&app, "/me", &token, &p1).await.status, StatusCode::OK);
}

#[tokio::test]
async fn dp_08_htu_is_the_public_base_url_and_the_request_path() {
    let issuer = TestKey::ed("k1");
    let key = Key::ed25519();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    let nested = Router::new().nest("/v1", app(v.clone()));
    let app = app(v);
    // RFC 3986 normalisation: case of scheme and host, default port.
    for htu in [
        ME,
        "https://API.Example.COM/me",
        "HTTPS://api.example.com:443/me",
        "https://api.example.com/me?other=query",
    ] {
        let a = dpop_get(&app, "/me?q=1", &token, &key.proof(htu, &token, None)).await;
        assert_eq!(a.status, StatusCode::OK, "{htu}: {}", a.www());
    }
    for htu in [
        "https://api.example.com/other",
        "http://api.example.com/me",
        "https://api.example.com:8443/me",
        "https://evil.example/me",
        "https://api.example.com/me/",
    ] {
        let a = dpop_get(&app, "/me", &token, &key.proof(htu, &token, None)).await;
        assert_refused(&a, "invalid_dpop_proof");
        assert!(a.www().contains("htu"), "{htu}: {}", a.www());
    }
    // The Host header is ignored once a base URL is configured.
    let auth = format!("DPoP {token}");
    let proof = key.proof("https://evil.example/me", &token, None);
    let a = get(
        &app,
        "/me",
        &[
            ("authorization", &auth),
            ("dpop", &proof),
            ("host", "evil.example"),
        ],
        None,
    )
    .await;
    assert_refused(&a, "invalid_dpop_proof");
    // A nested router: `htu` names the whole path the client used.
    let a = dpop_get(
        &nested,
        "/v1/me",
        &token,
        &key.proof(&format!("{BASE}/v1/me"), &token, None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.www());
    let a = dpop_get(&nested, "/v1/me", &token, &key.proof(ME, &token, None)).await;
    assert_refused(&a, "invalid_dpop_proof");

    // A base URL with a path prefix (a proxy stripping `/api`).
    let (v, _) = dpop_verifier(&issuer, |c| {
        c.public_base_url = Some("https://example.com/api/".parse().unwrap());
    });
    let a = dpop_get(
        &app_of(v),
        "/me",
        &token,
        &key.proof("https://example.com/api/me", &token, None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.www());

    // Without a base URL: `https://` + Host + path.
    let (v, _) = dpop_verifier(&issuer, |c| c.public_base_url = None);
    let app = app_of(v);
    for (htu, host, accepted) in [
        ("https://rs.example/me", "rs.example", true),
        ("https://rs.example:8443/me", "rs.example:8443", true),
        ("https://rs.example/me", "other.example", false),
        ("https://rs.example/x/me", "rs.example/x", false),
    ] {
        let proof = key.proof(htu, &token, None);
        let a = get(
            &app,
            "/me",
            &[("authorization", &auth), ("dpop", &proof), ("host", host)],
            None,
        )
        .await;
        if accepted {
            assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.www());
        } else {
            assert_refused(&a, "invalid_dpop_proof");
        }
    }
    // No Host at all: nothing can match.
    let a = dpop_get(
        &app,
        "/me",
        &token,
        &key.proof("https://rs.example/me", &token, None),
    )
    .await;
    assert_refused(&a, "invalid_dpop_proof");
}

fn app_of(v: Verifier) -> Router {
    app(v)
}

#[test]
fn public_base_url_must_be_a_plain_http_url() {
    let key = TestKey::ed("k1");
    for bad in [
        "ftp://api.example.com",
        "https://api.example.com/?x=1",
        "https://api.example.com/#f",
        "https://user@api.example.com",
        "mailto:ops@example.com",
    ] {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
        let mut c = config(clock);
        c.public_base_url = Some(bad.parse().unwrap());
        assert!(
            matches!(
                Verifier::with_jwks(c, jwks(&[&key])),
                Err(ConfigError::Invalid(_))
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn dp_12_resource_server_nonces() {
    let issuer = TestKey::ed("k1");
    let key = Key::es256();
    let nonce_key = [7u8; 32];
    let (v, clock) = dpop_verifier(&issuer, |c| {
        c.dpop_nonces = true;
        c.dpop_nonce_key = Some(nonce_key);
    });
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": key.jkt()}));

    // No nonce: 401 use_dpop_nonce with a fresh DPoP-Nonce.
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &token, None)).await;
    assert_refused(&a, "use_dpop_nonce");
    let nonce = a.headers["dpop-nonce"].to_str().unwrap().to_owned();
    assert!(
        !nonce.is_empty()
            && nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{nonce}"
    );
    // The retry with it passes.
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &token, Some(&nonce))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.www());
    assert!(!a.headers.contains_key("dpop-nonce"));

    // Another instance with the same key accepts it (a load balancer).
    let (other, _) = dpop_verifier(&issuer, |c| {
        c.dpop_nonces = true;
        c.dpop_nonce_key = Some(nonce_key);
    });
    let a = dpop_get(
        &app_of(other),
        "/me",
        &token,
        &key.proof(ME, &token, Some(&nonce)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.www());
    // One with its own random key does not.
    let (own, _) = dpop_verifier(&issuer, |c| c.dpop_nonces = true);
    let a = dpop_get(&app_of(own), "/me", &token, &key.proof(ME, &token, Some(&nonce))).await;
    assert_refused(&a, "use_dpop_nonce");

    // A nonce of the token endpoint, sealed with the same key: refused.
    let token_endpoint = NonceIssuer::new(
        Arc::new(tessera_core::Sealer::new(&nonce_key)),
        NonceUse::Token,
        300,
    );
    let as_nonce = token_endpoint.issue(clock.now());
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &token, Some(&as_nonce))).await;
    assert_refused(&a, "use_dpop_nonce");
    // Garbage and a stale nonce alike.
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &token, Some("garbage"))).await;
    assert_refused(&a, "use_dpop_nonce");
    clock.advance_secs(301);
    let a = dpop_get(
        &app,
        "/me",
        &token,
        &key.raw(&json!({
            "jti": "late", "htm": "GET", "htu": ME, "iat": NOW + 301, "ath": ath(&token), "nonce": nonce,
        })),
    )
    .await;
    assert_refused(&a, "use_dpop_nonce");
}

#[tokio::test]
async fn dp_14_ath_must_hash_the_presented_token() {
    let issuer = TestKey::ed("k1");
    let key = Key::ed25519();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    let other = issuer.token(
        &issuer.header(),
        &with(
            with(claims(), "jti", json!("jti-0002")),
            "cnf",
            json!({"jkt": key.jkt()}),
        ),
    );
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &other, None)).await;
    assert_refused(&a, "invalid_dpop_proof");
    assert!(a.www().contains("ath"), "{}", a.www());
    // No `ath` at all.
    let no_ath = key.raw(&json!({"jti": "j1", "htm": "GET", "htu": ME, "iat": NOW}));
    assert_refused(
        &dpop_get(&app, "/me", &token, &no_ath).await,
        "invalid_dpop_proof",
    );
}

#[tokio::test]
async fn dp_15_a_proof_by_another_key_is_an_invalid_key_binding() {
    let issuer = TestKey::ed("k1");
    let (k1, k2) = (Key::es256(), Key::es256());
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": k1.jkt()}));
    let stolen = k2.proof(ME, &token, None);
    let a = dpop_get(&app, "/me", &token, &stolen).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.www(),
        format!(r#"DPoP error="invalid_token", error_description="Invalid DPoP key binding", {ALGS}"#)
    );
}

#[tokio::test]
async fn dp_16_dpop_scheme_without_a_proof_is_refused() {
    let issuer = TestKey::ed("k1");
    let key = Key::es256();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    let a = get(&app, "/me", &[("authorization", &format!("DPoP {token}"))], None).await;
    assert_refused(&a, "invalid_dpop_proof");
    // An unbound token with the DPoP scheme and a proof: not a DPoP token.
    let unbound = issuer.good();
    let a = dpop_get(&app, "/me", &unbound, &key.proof(ME, &unbound, None)).await;
    assert_refused(&a, "invalid_token");
}

#[tokio::test]
async fn dp_17_a_dpop_bound_token_as_bearer_is_invalid_token() {
    let issuer = TestKey::ed("k1");
    let key = Key::es256();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    // With or without a proof beside it: the scheme is a downgrade.
    for headers in [
        vec![("authorization", format!("Bearer {token}"))],
        vec![
            ("authorization", format!("Bearer {token}")),
            ("dpop", key.proof(ME, &token, None)),
        ],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let a = get(&app, "/me", &headers, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(
            a.www().starts_with("Bearer error=\"invalid_token\""),
            "{}",
            a.www()
        );
        assert!(a.www().ends_with(&format!("DPoP {ALGS}")), "{}", a.www());
    }
}

#[tokio::test]
async fn dp_18_challenges_and_malformed_authorization() {
    let issuer = TestKey::ed("k1");
    let key = Key::ed25519();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    // No credentials: both schemes offered, no error.
    let a = get(&app, "/me", &[], None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.www(), format!("Bearer, DPoP {ALGS}"));
    assert!(!a.www().contains("error"));
    // Two Authorization headers: 400 invalid_request, whatever the schemes.
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    let auth = format!("DPoP {token}");
    let proof = key.proof(ME, &token, None);
    let a = get(
        &app,
        "/me",
        &[
            ("authorization", &auth),
            ("authorization", &auth),
            ("dpop", &proof),
        ],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.www().contains("error=\"invalid_request\""), "{}", a.www());
    assert!(a.body.contains("invalid_request"));
    // An empty DPoP token too.
    let a = get(&app, "/me", &[("authorization", "DPoP  ")], None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // A too-long token: invalid_token, in its scheme.
    let long = format!("DPoP {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    let a = get(&app, "/me", &[("authorization", &long)], None).await;
    assert_refused(&a, "invalid_token");
    // DPoP turned off (no algorithms): only Bearer is offered.
    let (off, _) = dpop_verifier(&issuer, |c| c.dpop.algs.clear());
    let a = get(&app_of(off), "/me", &[], None).await;
    assert_eq!(a.www(), "Bearer");
}

#[tokio::test]
async fn mt_02_a_certificate_bound_token_needs_its_client_certificate() {
    let issuer = TestKey::ed("k1");
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let c1 = ClientCertThumbprint::from_der(b"certificate one");
    let c2 = ClientCertThumbprint::from_der(b"certificate two");
    assert_eq!(c1.0.len(), 43);
    let token = bound(&issuer, json!({"x5t#S256": c1.0}));
    let auth = format!("Bearer {token}");
    let a = get(&app, "/me", &[("authorization", &auth)], Some(&c1.0)).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "user-1"));
    for cert in [Some(c2.0.as_str()), None] {
        let a = get(&app, "/me", &[("authorization", &auth)], cert).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{cert:?}");
        assert!(
            a.www().starts_with("Bearer error=\"invalid_token\""),
            "{}",
            a.www()
        );
    }
    // `verify` (Bearer only) still refuses it.
    let v = dpop_verifier(&issuer, |_| {}).0;
    assert_eq!(
        v.verify(&token).await.unwrap_err(),
        VerifyError::SenderConstrained
    );
}

#[tokio::test]
async fn mt_06_a_proxy_forwarded_certificate_is_read_only_from_the_configured_header() {
    use base64::Engine;
    let issuer = TestKey::ed("k1");
    let der = b"certificate one";
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let escaped: String = pem
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let c1 = ClientCertThumbprint::from_der(der);
    let token = bound(&issuer, json!({"x5t#S256": c1.0}));
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-ssl-client-cert", escaped.as_str()),
    ];
    // Not configured: the header is ignored (a client could have sent it).
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let a = get(&app(v), "/me", &headers, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Configured: the forwarded certificate is the client's.
    let (v, _) = dpop_verifier(&issuer, |c| {
        c.client_cert_header = Some(axum::http::HeaderName::from_static("x-ssl-client-cert"));
    });
    let a = get(&app(v), "/me", &headers, None).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "user-1"));
}

#[tokio::test]
async fn verify_refuses_a_bound_token_even_after_a_dpop_request_cached_it() {
    let issuer = TestKey::ed("k1");
    let key = Key::es256();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    let a = dpop_get(&app(v.clone()), "/me", &token, &key.proof(ME, &token, None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(v.inner.cache.len(), 1, "the DPoP request cached the token");
    assert_eq!(
        v.verify(&token).await.unwrap_err(),
        VerifyError::SenderConstrained
    );
    assert_eq!(v.verify_sync(&token).unwrap_err(), VerifyError::SenderConstrained);
    // And through the extractor as Bearer.
    let a = get(
        &app(v),
        "/me",
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dpop_requests_recheck_expiry_and_revocation_on_cache_hits() {
    let issuer = TestKey::ed("k1");
    let key = Key::ed25519();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v.clone());
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    assert_eq!(
        dpop_get(&app, "/me", &token, &key.proof(ME, &token, None))
            .await
            .status,
        StatusCode::OK
    );
    v.insert_revocation(SID, NOW + 3600);
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &token, None)).await;
    assert_refused(&a, "invalid_token");
    assert!(a.www().contains("revoked"), "{}", a.www());

    let (v, clock) = dpop_verifier(&issuer, |_| {});
    let app = app_of(v);
    assert_eq!(
        dpop_get(&app, "/me", &token, &key.proof(ME, &token, None))
            .await
            .status,
        StatusCode::OK
    );
    clock.advance_secs(3600);
    let late = key.raw(&json!({
        "jti": "late", "htm": "GET", "htu": ME, "iat": NOW + 3600, "ath": ath(&token),
    }));
    let a = dpop_get(&app, "/me", &token, &late).await;
    assert_refused(&a, "invalid_token");
    assert!(a.www().contains("expired"), "{}", a.www());
}

#[tokio::test]
async fn a_full_replay_cache_answers_503() {
    let issuer = TestKey::ed("k1");
    let key = Key::ed25519();
    let (v, _) = dpop_verifier(&issuer, |c| c.dpop_replay_capacity = 1);
    let app = app(v);
    let token = bound(&issuer, json!({"jkt": key.jkt()}));
    assert_eq!(
        dpop_get(&app, "/me", &token, &key.proof(ME, &token, None))
            .await
            .status,
        StatusCode::OK
    );
    let a = dpop_get(&app, "/me", &token, &key.proof(ME, &token, None)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers[header::RETRY_AFTER], "5");
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert!(a.body.contains("temporarily_unavailable"));
}

#[tokio::test]
async fn insufficient_scope_answers_in_the_scheme_the_token_came_with() {
    let issuer = TestKey::ed("k1");
    let key = Key::es256();
    let (v, _) = dpop_verifier(&issuer, |_| {});
    let app = app(v);
    let token = issuer.token(
        &issuer.header(),
        &with(
            with(claims(), "scope", json!("read")),
            "cnf",
            json!({"jkt": key.jkt()}),
        ),
    );
    let a = dpop_get(
        &app,
        "/write",
        &token,
        &key.proof(&format!("{BASE}/write"), &token, None),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.www().starts_with("DPoP error=\"insufficient_scope\"") && a.www().contains("scope=\"write\""),
        "{}",
        a.www()
    );
}
