//! `GET /auth/verify`: identity, credentials, step-up, Envoy, metrics, configuration.

use axum::http::{Method, StatusCode};
use tessera_core::RevokeReason;

use super::*;

#[tokio::test]
async fn verify_answers_the_identity_headers() {
    let h = harness();
    let (tok, handle) = h.login("user-42", 1).await;
    let c = h.cookie(&tok);
    for method in [Method::GET, Method::HEAD] {
        let r = h.send(method.clone(), "/auth/verify", &[("cookie", &c)]).await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {:?}", r.body);
        assert_eq!(r.header("x-tessera-subject"), Some("user-42"));
        assert_eq!(r.header("x-tessera-session"), Some(handle.as_str()));
        assert_eq!(r.header("x-tessera-auth-level"), Some("1"));
        r.assert_no_store();
    }
    // The cookie among others, and in a second Cookie header (HTTP/2).
    let r = h
        .send(
            Method::GET,
            "/auth/verify",
            &[
                ("cookie", "theme=dark; lang=en"),
                ("cookie", &format!("a=b; {c}; z=1")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A UTF-8 subject goes out as its bytes.
    let (tok, _) = h.login("jos\u{e9}", 1).await;
    let r = h
        .send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(&tok))])
        .await;
    assert_eq!(r.headers["x-tessera-subject"].as_bytes(), "jos\u{e9}".as_bytes());
}

#[tokio::test]
async fn verify_slides_the_idle_expiry() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let idle = h.state.config.session.idle_timeout_secs;
    for _ in 0..4 {
        h.clock.advance_secs(idle - 60);
        let r = h.send(Method::GET, "/auth/verify", &[("cookie", &c)]).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    h.clock.advance_secs(idle + 1);
    h.send(Method::GET, "/auth/verify", &[("cookie", &c)])
        .await
        .assert_problem(401, "session_expired");
}

#[tokio::test]
async fn verify_refuses_without_a_live_session() {
    let h = harness();
    let r = h.send(Method::GET, "/auth/verify", &[]).await;
    r.assert_problem(401, "unauthorized");
    r.assert_no_store();
    for bad in ["", "tss_short", "nonsense", &"tss_".repeat(40)] {
        h.send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(bad))])
            .await
            .assert_problem(401, "session_invalid");
    }
    let (tok, handle) = h.login("u", 1).await;
    // The right token under another cookie name is not the session cookie.
    let r = h
        .send(
            Method::GET,
            "/auth/verify",
            &[("cookie", &format!("tessera={tok}"))],
        )
        .await;
    r.assert_problem(401, "unauthorized");
    // Two different values for the session cookie: refused, not guessed.
    let (other, _) = h.login("attacker", 1).await;
    let two = format!("{}; {}", h.cookie(&other), h.cookie(&tok));
    h.send(Method::GET, "/auth/verify", &[("cookie", &two)])
        .await
        .assert_problem(401, "session_invalid");
    // The same value twice is fine.
    let same = format!("{}; {}", h.cookie(&tok), h.cookie(&tok));
    let r = h.send(Method::GET, "/auth/verify", &[("cookie", &same)]).await;
    assert_eq!(r.status, StatusCode::OK);
    h.state
        .sessions
        .revoke(&handle, RevokeReason::Revoked)
        .await
        .unwrap();
    let r = h
        .send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(&tok))])
        .await;
    r.assert_problem(401, "session_revoked");
    r.assert_no_store();
}

/// Another application's cookie with a byte outside visible ASCII
/// (`x=é`) once voided the whole `Cookie` header: verify answered 401
/// and logout cleared the browser but left the session live.
#[tokio::test]
async fn a_non_ascii_neighbour_cookie_hides_nothing() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    for cookie in [
        format!("{}; x=\u{e9}", h.cookie(&tok)),
        format!("x=\u{e9}; {}; y=\u{e9}t\u{e9}", h.cookie(&tok)),
    ] {
        let r = h.send(Method::GET, "/auth/verify", &[("cookie", &cookie)]).await;
        assert_eq!(r.status, StatusCode::OK, "{cookie}: {:?}", r.body);
        assert_eq!(r.header("x-tessera-subject"), Some("u"));
    }
    // A non-ASCII value of the session cookie itself is simply invalid.
    h.send(
        Method::GET,
        "/auth/verify",
        &[("cookie", &h.cookie("tss_\u{e9}"))],
    )
    .await
    .assert_problem(401, "session_invalid");
}

#[tokio::test]
async fn sc_04_a_token_in_the_query_is_ignored() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let name = h.cookie_name();
    for q in [
        format!("session_token={tok}"),
        format!("{name}={tok}"),
        format!("tessera={tok}"),
        format!("token={tok}&level=1"),
    ] {
        let r = h.send(Method::GET, &format!("/auth/verify?{q}"), &[]).await;
        r.assert_problem(401, "unauthorized");
        assert!(r.header("x-tessera-subject").is_none());
    }
    // Nor is a token in a header other than Cookie.
    let r = h
        .send(Method::GET, "/auth/verify", &[("x-session-token", &tok)])
        .await;
    r.assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn a_bearer_only_request_is_refused_for_now() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    for auth in [format!("Bearer {tok}"), "DPoP eyJhbGciOi.x.y".to_owned()] {
        let r = h
            .send(Method::GET, "/auth/verify", &[("authorization", &auth)])
            .await;
        r.assert_problem(401, "unauthorized");
        r.assert_no_store();
    }
    // A cookie still counts when an Authorization header rides along.
    let r = h
        .send(
            Method::GET,
            "/auth/verify",
            &[("cookie", &h.cookie(&tok)), ("authorization", "Basic dTpw")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn level_step_up_is_an_rfc9470_challenge() {
    let h = harness();
    let (one, _) = h.login("u", 1).await;
    let (two, _) = h.login("u", 2).await;
    let r = h
        .send(
            Method::GET,
            "/auth/verify?level=2",
            &[("cookie", &h.cookie(&one))],
        )
        .await;
    r.assert_problem(403, "forbidden");
    r.assert_no_store();
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("acr_values=\"2\""), "{challenge}");
    assert!(!challenge.contains("max_age"), "{challenge}");
    for uri in [
        "/auth/verify?level=2",
        "/auth/verify?level=1",
        "/auth/verify?x=1&level=2",
    ] {
        let r = h.send(Method::GET, uri, &[("cookie", &h.cookie(&two))]).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.header("x-tessera-auth-level"), Some("2"));
    }
    let r = h
        .send(
            Method::GET,
            "/auth/verify?level=1",
            &[("cookie", &h.cookie(&one))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for bad in ["level=0", "level=abc", "level=256", "level=", "level=2&level=3"] {
        let r = h
            .send(
                Method::GET,
                &format!("/auth/verify?{bad}"),
                &[("cookie", &h.cookie(&two))],
            )
            .await;
        r.assert_problem(400, "validation_failed");
        r.assert_no_store();
    }
    // Without a session the answer is 401, not the step-up 403.
    h.send(Method::GET, "/auth/verify?level=2", &[])
        .await
        .assert_problem(401, "unauthorized");
}

/// Envoy's ext_authz HTTP service sends the check with the original
/// method, at `path_prefix` + the original path and query; the method
/// header comes from `headers_to_add` (`%REQ(:METHOD)%`).
#[tokio::test]
async fn envoy_ext_authz_checks_are_understood() {
    let h = harness();
    let (tok, handle) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    for (method, uri) in [
        (Method::POST, "/auth/verify/orders?level=hard"),
        (Method::DELETE, "/auth/verify/"),
        (Method::GET, "/auth/verify/a/b?x=1"),
        (Method::PUT, "/auth/verify"),
    ] {
        let m = method.as_str().to_owned();
        let r = h
            .send(
                method.clone(),
                uri,
                &[
                    ("cookie", &c),
                    ("host", HOST),
                    ("x-forwarded-method", &m),
                    ("sec-fetch-site", "same-origin"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{method} {uri}: {:?}", r.body);
        assert_eq!(r.header("x-tessera-session"), Some(handle.as_str()));
        let r = h
            .send(
                method.clone(),
                uri,
                &[("cookie", &c), ("host", HOST), ("sec-fetch-site", "cross-site")],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
    }
    // The proxied request's query is not ours: `level` there is ignored.
    let r = h
        .send(
            Method::GET,
            "/auth/verify/x?level=9",
            &[("cookie", &c), ("x-forwarded-method", "GET")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    h.send(Method::GET, "/auth/verify?level=9", &[("cookie", &c)])
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn outcomes_are_counted() {
    let h = harness();
    h.send(Method::GET, "/auth/verify", &[]).await;
    let (tok, _) = h.login("u", 1).await;
    h.send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(&tok))])
        .await;
    h.logout("/auth/logout", &[("sec-fetch-site", "cross-site")])
        .await;
    let text = h.state.metrics.render();
    for needle in [
        r#"tessera_forward_auth_total{endpoint="verify",outcome="ok"}"#,
        r#"tessera_forward_auth_total{endpoint="verify",outcome="no_credential"}"#,
        r#"tessera_forward_auth_total{endpoint="logout",outcome="csrf_rejected"}"#,
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains(&tok[4..]), "a token reached the metrics");
}

#[test]
fn the_forward_auth_section_is_configurable() {
    let c = Config::default();
    assert!(c.forward_auth.allowed_origins.is_empty() && !c.forward_auth.allow_same_site);
    let c = Config::from_toml(
        "[forward_auth]\nallowed_origins = [\"https://app.example\", \"http://localhost:3000\", \"https://[::1]:8443\"]\nallow_same_site = true\n",
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.forward_auth.allowed_origins.len(), 3);
    assert!(c.forward_auth.allow_same_site);
    let e = Config::from_toml("[forward_auth]\nallowed_origin = []\n").unwrap_err();
    assert!(e.contains("unknown field `allowed_origin`"), "{e}");
    let c = Config::load(
        None,
        env(&[
            ("TESSERA_STORE", "memory://"),
            (
                "TESSERA_FORWARD_AUTH_ALLOWED_ORIGINS",
                " https://a.example, https://b.example:8443 ,",
            ),
            ("TESSERA_FORWARD_AUTH_ALLOW_SAME_SITE", "true"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.forward_auth.allowed_origins,
        ["https://a.example", "https://b.example:8443"]
    );
    assert!(c.forward_auth.allow_same_site);
    for bad in [
        "*",
        "null",
        "app.example",
        "https://app.example/",
        "https://app.example/path",
        "https://app.example:443",
        "http://app.example:80",
        "https://app.example:x",
        "https://",
        "ftp://app.example",
        "https://user@app.example",
    ] {
        let r = Config::load(
            None,
            env(&[
                ("TESSERA_STORE", "memory://"),
                ("TESSERA_FORWARD_AUTH_ALLOWED_ORIGINS", bad),
            ]),
            &Overrides::default(),
        );
        let e = r.expect_err(bad).to_string();
        assert!(e.contains("[forward_auth] allowed_origins"), "{bad}: {e}");
    }
    // The effective configuration round-trips through `config check`.
    let shown = c.to_masked_toml();
    assert!(shown.contains("[forward_auth]"), "{shown}");
    assert_eq!(Config::from_toml(&shown).unwrap().forward_auth, c.forward_auth);
}
