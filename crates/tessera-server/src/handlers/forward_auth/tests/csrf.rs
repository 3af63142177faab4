//! CSRF on the proxied request (`/auth/verify`) and on the browser's own (`/auth/logout`).

use axum::http::{Method, StatusCode};

use super::*;

#[tokio::test]
async fn cs_02_fetch_metadata_for_the_proxied_request() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let c = c.as_str();
    for state_changing in ["POST", "PUT", "PATCH", "DELETE", "post"] {
        let r = h
            .verify_as(
                "/auth/verify",
                state_changing,
                &[("cookie", c), ("sec-fetch-site", "cross-site")],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        r.assert_no_store();
        assert!(r.header("x-tessera-subject").is_none());
        h.verify_as(
            "/auth/verify",
            state_changing,
            &[("cookie", c), ("sec-fetch-site", "same-site")],
        )
        .await
        .assert_problem(403, "csrf_rejected");
        h.verify_as(
            "/auth/verify",
            state_changing,
            &[("cookie", c), ("sec-fetch-site", "bogus")],
        )
        .await
        .assert_problem(403, "csrf_rejected");
        for ok in ["same-origin", "none"] {
            let r = h
                .verify_as(
                    "/auth/verify",
                    state_changing,
                    &[("cookie", c), ("sec-fetch-site", ok)],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{state_changing} {ok}: {:?}", r.body);
        }
    }
    // Safe methods pass from anywhere (links, top-level navigations).
    for safe in ["GET", "HEAD", "OPTIONS"] {
        let r = h
            .verify_as(
                "/auth/verify",
                safe,
                &[
                    ("cookie", c),
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://evil.example"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{safe}");
    }
    // Traefik's header counts too, and a client-added "GET" does not
    // hide a state-changing method.
    let cross = ("sec-fetch-site", "cross-site");
    let r = h
        .send(
            Method::GET,
            "/auth/verify",
            &[("cookie", c), cross, ("x-forwarded-method", "DELETE")],
        )
        .await;
    r.assert_problem(403, "csrf_rejected");
    let r = h
        .send(
            Method::GET,
            "/auth/verify",
            &[
                ("cookie", c),
                cross,
                ("x-forwarded-method", "GET"),
                ("x-original-method", "POST"),
            ],
        )
        .await;
    r.assert_problem(403, "csrf_rejected");
    // A refused request does not slide the idle expiry (it writes nothing).
    let handle = h.state.sessions.verify(&tok).await.unwrap().handle.clone();
    let stored = |h: &H| {
        let store = h.state.sessions.store().clone();
        let handle = handle.clone();
        async move { store.get(&handle).await.unwrap().unwrap() }
    };
    let before = stored(&h).await;
    h.clock
        .advance_secs(h.state.config.session.touch_interval_secs + 5);
    h.verify_as("/auth/verify", "POST", &[("cookie", c), cross])
        .await
        .assert_problem(403, "csrf_rejected");
    let after = stored(&h).await;
    assert_eq!(
        (after.last_seen_at, after.idle_expires_at),
        (before.last_seen_at, before.idle_expires_at)
    );
    // A successful one does.
    let r = h.verify_as("/auth/verify", "POST", &[("cookie", c)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(stored(&h).await.last_seen_at > before.last_seen_at);

    // allow_same_site opens same-site, never cross-site.
    let mut cfg = config();
    cfg.forward_auth.allow_same_site = true;
    let h = harness_with(cfg);
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let r = h
        .verify_as(
            "/auth/verify",
            "POST",
            &[("cookie", &c), ("sec-fetch-site", "same-site")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.verify_as(
        "/auth/verify",
        "POST",
        &[("cookie", &c), ("sec-fetch-site", "cross-site")],
    )
    .await
    .assert_problem(403, "csrf_rejected");
}

/// Without `X-Forwarded-Method` / `X-Original-Method` the proxied
/// method is unknown: it was taken for the sub-request's own GET, so a
/// same-site (or cross-site) POST passed the CSRF check (SPEC §4.2).
#[tokio::test]
async fn cs_02_without_a_method_header_the_request_is_judged_state_changing() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    for site in ["same-site", "cross-site"] {
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[("cookie", &c), ("host", HOST), ("sec-fetch-site", site)],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        assert!(r.header("x-tessera-subject").is_none());
    }
    let r = h
        .send(
            Method::HEAD,
            "/auth/verify",
            &[("cookie", &c), ("host", HOST), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The proxy naming a safe method lets a cross-site navigation pass…
    let r = h
        .verify_as(
            "/auth/verify",
            "GET",
            &[("cookie", &c), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // …and so do same-origin requests and non-browser clients (no
    // Sec-Fetch-Site, no Origin) without one.
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("origin", OWN_ORIGIN)],
        vec![],
    ] {
        let mut all = vec![("cookie", c.as_str()), ("host", HOST)];
        all.extend(headers.iter().copied());
        let r = h.send(Method::GET, "/auth/verify", &all).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}: {:?}", r.body);
    }
}

/// Traefik's ForwardAuth sends the sub-request with Tessera's own
/// `Host` and the public one in `X-Forwarded-Host`: the request's own
/// origin is the forwarded host's.
#[tokio::test]
async fn cs_03_traefik_forwarded_host_is_the_requests_own_origin() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let traefik = |origin: &'static str| {
        vec![
            ("cookie", c.clone()),
            ("host", "tessera:8080".to_owned()),
            ("x-forwarded-method", "POST".to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
            ("x-forwarded-host", HOST.to_owned()),
            ("x-forwarded-uri", "/orders".to_owned()),
            ("origin", origin.to_owned()),
        ]
    };
    let send = |hs: Vec<(&'static str, String)>| {
        let h = &h;
        async move {
            let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.send(Method::GET, "/auth/verify", &hs).await
        }
    };
    let r = send(traefik(OWN_ORIGIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    send(traefik("https://evil.example"))
        .await
        .assert_problem(403, "csrf_rejected");
    send(traefik("https://tessera:8080"))
        .await
        .assert_problem(403, "csrf_rejected");
}

#[tokio::test]
async fn cs_03_origin_is_the_fallback() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let c = c.as_str();
    for evil in [
        "https://evil.example",
        "null",
        "http://app.example.evil",
        "https://app.example:8443",
        // Not as a browser writes an origin.
        "https://app.example/",
        "https://app.example:443",
        "",
    ] {
        let r = h
            .verify_as("/auth/verify", "POST", &[("cookie", c), ("origin", evil)])
            .await;
        r.assert_problem(403, "csrf_rejected");
        let r = h.logout("/auth/logout", &[("cookie", c), ("origin", evil)]).await;
        r.assert_problem(403, "csrf_rejected");
        assert!(h.is_live(&tok).await);
    }
    // `Origin: null` refuses even beside a same-origin Referer; without an
    // Origin the Referer's origin is judged.
    h.verify_as(
        "/auth/verify",
        "POST",
        &[
            ("cookie", c),
            ("origin", "null"),
            ("referer", "https://app.example/a"),
        ],
    )
    .await
    .assert_problem(403, "csrf_rejected");
    h.verify_as(
        "/auth/verify",
        "POST",
        &[("cookie", c), ("referer", "https://evil.example/a")],
    )
    .await
    .assert_problem(403, "csrf_rejected");
    // The request's own origin (in any letter case, with or without the
    // proxy's scheme, from the Referer), and a non-browser client that
    // sends none of these headers.
    for headers in [
        vec![("origin", OWN_ORIGIN)],
        vec![("origin", "HTTPS://APP.EXAMPLE")],
        vec![("origin", OWN_ORIGIN), ("x-forwarded-proto", "https")],
        vec![("referer", "https://app.example/orders?x=1")],
        vec![],
    ] {
        let mut all = vec![("cookie", c)];
        all.extend(headers.iter().copied());
        let r = h.verify_as("/auth/verify", "POST", &all).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}: {:?}", r.body);
    }
    // The scheme must match X-Forwarded-Proto when the proxy sends it.
    let r = h
        .verify_as(
            "/auth/verify",
            "POST",
            &[
                ("cookie", c),
                ("origin", "http://app.example"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    r.assert_problem(403, "csrf_rejected");
    // Host with the default port still matches.
    let r = h
        .send(
            Method::GET,
            "/auth/verify",
            &[
                ("cookie", c),
                ("x-original-method", "POST"),
                ("host", "app.example:443"),
                ("origin", OWN_ORIGIN),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .logout("/auth/logout", &[("cookie", c), ("origin", OWN_ORIGIN)])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!h.is_live(&tok).await);
}

/// `allowed_origins` is the whole list once set, as in the library: the
/// request's own origin passes only if listed, and a listed origin opens
/// neither `same-site` nor `cross-site`.
#[tokio::test]
async fn cs_03_listed_origins_are_the_whole_list() {
    let mut cfg = config();
    cfg.forward_auth.allowed_origins = vec!["https://admin.example".into()];
    let h = harness_with(cfg);
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let c = c.as_str();
    for ok in [
        vec![("origin", "https://admin.example")],
        vec![("origin", "https://ADMIN.example")],
        vec![("referer", "https://admin.example/x")],
        vec![("sec-fetch-site", "same-origin")],
    ] {
        let mut all = vec![("cookie", c)];
        all.extend(ok.iter().copied());
        let r = h.verify_as("/auth/verify", "POST", &all).await;
        assert_eq!(r.status, StatusCode::OK, "{ok:?}: {:?}", r.body);
    }
    for refused in [
        vec![("origin", OWN_ORIGIN)],
        vec![("referer", "https://app.example/x")],
        vec![
            ("origin", "https://admin.example"),
            ("sec-fetch-site", "same-site"),
        ],
        vec![
            ("origin", "https://admin.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    ] {
        let mut all = vec![("cookie", c)];
        all.extend(refused.iter().copied());
        h.verify_as("/auth/verify", "POST", &all)
            .await
            .assert_problem(403, "csrf_rejected");
    }
    h.logout("/auth/logout", &[("cookie", c), ("origin", OWN_ORIGIN)])
        .await
        .assert_problem(403, "csrf_rejected");
    let r = h
        .logout(
            "/auth/logout",
            &[("cookie", c), ("origin", "https://admin.example")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!h.is_live(&tok).await);
}

/// TRACE and lower-case methods are state-changing, and Fetch Metadata is
/// read as browsers send it (lower case), as in the library.
#[tokio::test]
async fn cs_02_trace_lower_case_and_odd_fetch_metadata_are_judged() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    for method in ["TRACE", "get", "post"] {
        h.verify_as(
            "/auth/verify",
            method,
            &[("cookie", &c), ("sec-fetch-site", "cross-site")],
        )
        .await
        .assert_problem(403, "csrf_rejected");
    }
    for odd in ["Same-Origin", "SAME-ORIGIN", "same-origin, cross-site"] {
        h.verify_as("/auth/verify", "POST", &[("cookie", &c), ("sec-fetch-site", odd)])
            .await
            .assert_problem(403, "csrf_rejected");
    }
}

/// A refused request is refused for the same reason with or without a
/// usable cookie: the CSRF check comes first, as in the library.
#[tokio::test]
async fn cs_02_csrf_is_judged_before_the_cookie() {
    let h = harness();
    let (a, _) = h.login("a", 1).await;
    let (b, _) = h.login("b", 1).await;
    let two = format!("{}; {}", h.cookie(&a), h.cookie(&b));
    for cookie in [None, Some(two.as_str()), Some("__Host-tessera=garbage")] {
        let mut headers = vec![("sec-fetch-site", "cross-site")];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        h.verify_as("/auth/verify", "POST", &headers)
            .await
            .assert_problem(403, "csrf_rejected");
    }
    // An access token is no browser credential: no CSRF check for it.
    h.verify_as(
        "/auth/verify",
        "POST",
        &[("sec-fetch-site", "cross-site"), ("authorization", "Bearer x")],
    )
    .await
    .assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn cs_04_logout_is_never_a_get() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    for method in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ] {
        let r = h
            .send(method.clone(), "/auth/logout", &[("cookie", &c), ("host", HOST)])
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert!(r.header("set-cookie").is_none() && r.header("clear-site-data").is_none());
        assert!(h.is_live(&tok).await, "{method} /auth/logout ended the session");
    }
    // /auth/verify answers every method (Envoy's ext_authz checks with
    // the proxied one), and a POST there is judged as one.
    let r = h
        .send(
            Method::POST,
            "/auth/verify",
            &[("cookie", &c), ("host", HOST), ("sec-fetch-site", "cross-site")],
        )
        .await;
    r.assert_problem(403, "csrf_rejected");
}
