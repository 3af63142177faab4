//! Certificate-bound tokens (RFC 8705) in process: the TLS listener's
//! thumbprint extension at the token endpoint, and `/auth/verify` reading
//! the client's certificate only from the header the proxy is configured
//! to set (checklist MT-02, MT-06).

use tessera_http::bearer::ClientCertThumbprint;

use super::*;

/// A self-signed client certificate (PEM) and its thumbprint.
fn certificate(cn: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    let x5t = ClientCertThumbprint::from_der(cert.der()).0;
    (cert.pem(), x5t)
}

impl H {
    /// `POST /oauth2/token` over a connection whose client certificate has
    /// this thumbprint (what the TLS listener puts in the extensions).
    async fn refresh_over_mtls(&self, rt: &str, x5t: Option<&str>) -> Resp {
        let mut req = Request::post("/oauth2/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("grant_type=refresh_token&refresh_token={rt}")))
            .unwrap();
        if let Some(x) = x5t {
            req.extensions_mut().insert(ClientCertThumbprint(x.to_owned()));
        }
        self.send(req).await
    }

    /// `GET /auth/verify` for a proxied GET with `at` as Bearer and the
    /// certificate header `cert` (URL-encoded PEM, as nginx forwards it).
    async fn verify_with_cert_header(&self, at: &str, header_name: &str, cert_pem: Option<&str>) -> Resp {
        let mut b = Request::get("/auth/verify")
            .header(header::AUTHORIZATION, format!("Bearer {at}"))
            .header("x-original-method", "GET")
            .header("x-original-url", "https://app.example/orders");
        if let Some(pem) = cert_pem {
            let escaped: String =
                percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).collect();
            b = b.header(header_name, escaped);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }
}

async fn bound_access_token(h: &H, x5t: &str) -> String {
    let rt = h.login("alice", json!({})).await.str("refresh_token").to_owned();
    let r = h.refresh_over_mtls(&rt, Some(x5t)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        h.claims(r.str("access_token")).cnf,
        Some(json!({"x5t#S256": x5t}))
    );
    r.str("access_token").to_owned()
}

#[tokio::test]
async fn mt_02_forward_auth_needs_the_bound_certificate_from_the_configured_header() {
    let mut config = test_config();
    config.forward_auth.client_cert_header = Some("x-ssl-client-cert".into());
    let h = harness_with(config).await;
    let ((c1, x1), (c2, _)) = (certificate("one"), certificate("two"));
    let at = bound_access_token(&h, &x1).await;
    let ok = h
        .verify_with_cert_header(&at, "x-ssl-client-cert", Some(&c1))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    for (what, cert) in [
        ("another certificate", Some(c2.as_str())),
        ("no certificate", None),
    ] {
        let r = h.verify_with_cert_header(&at, "x-ssl-client-cert", cert).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert!(
            r.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\""),
            "{what}"
        );
    }
}

#[tokio::test]
async fn mt_06_a_certificate_header_is_ignored_unless_configured() {
    // No [forward_auth] client_cert_header: a client that forges one from
    // outside the proxy gains nothing.
    let h = harness().await;
    let (c1, x1) = certificate("one");
    let at = bound_access_token(&h, &x1).await;
    for name in ["x-ssl-client-cert", "x-forwarded-client-cert", "ssl-client-cert"] {
        let r = h.verify_with_cert_header(&at, name, Some(&c1)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.text);
    }
}

#[tokio::test]
async fn mt_01_token_endpoint_binds_to_the_connections_certificate_and_metadata_says_so() {
    let h = harness().await;
    let (_, x1) = certificate("one");
    let rt = h.login("alice", json!({})).await.str("refresh_token").to_owned();
    let r = h.refresh_over_mtls(&rt, Some(&x1)).await;
    assert_eq!(r.str("token_type"), "Bearer");
    let rt2 = r.str("refresh_token").to_owned();
    // The public client's family is now bound to the certificate.
    h.refresh_over_mtls(&rt2, None)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let (_, x2) = certificate("two");
    h.refresh_over_mtls(&rt2, Some(&x2))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let m = h.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        m.body["tls_client_certificate_bound_access_tokens"], false,
        "no client CA here"
    );
}
