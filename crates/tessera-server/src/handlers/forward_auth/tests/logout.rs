//! `POST /auth/logout`: revocation, clearing, redirects.

use axum::http::{Method, StatusCode};
use serde_json::Value;
use tessera_core::RevokeReason;

use super::*;

#[tokio::test]
async fn logout_revokes_despite_a_non_ascii_neighbour_cookie() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let cookie = format!("{}; x=\u{e9}", h.cookie(&tok));
    let r = h
        .logout(
            "/auth/logout",
            &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("clear-site-data").is_some());
    assert!(
        !h.is_live(&tok).await,
        "logout cleared the browser but left the session live"
    );
    h.send(Method::GET, "/auth/verify", &[("cookie", &cookie)])
        .await
        .assert_problem(401, "session_revoked");
}

#[tokio::test]
async fn ex_12_logout_clears_the_client() {
    for secure in [true, false] {
        let mut cfg = config();
        cfg.cookie.secure = secure;
        let h = harness_with(cfg);
        let (tok, _) = h.login("u", 1).await;
        let (other, _) = h.login("u", 1).await;
        let r = h
            .logout(
                "/auth/logout",
                &[("cookie", &h.cookie(&tok)), ("sec-fetch-site", "same-origin")],
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.body, Value::Null);
        assert_eq!(
            r.header("clear-site-data"),
            Some("\"cache\", \"cookies\", \"storage\"")
        );
        r.assert_no_store();
        let set = r.header("set-cookie").unwrap();
        let name = h.cookie_name();
        assert!(set.starts_with(&format!("{name}=;")), "{set}");
        assert!(set.contains("Max-Age=0"), "{set}");
        assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");
        // Identical attributes to the cookie the session was issued with.
        let issued = tessera_http::cookies::session_cookie(
            &h.state.config.cookie,
            &tok,
            h.clock_now().plus_secs(3600),
            h.clock_now(),
        );
        assert_eq!(attrs(set), attrs(&issued), "{set} vs {issued}");
        assert_eq!(secure, set.contains("Secure"));
        assert_eq!(secure, name.starts_with("__Host-"));
        assert!(!h.is_live(&tok).await, "logout left the session live");
        assert!(h.is_live(&other).await, "logout ended another session");
        let events = h
            .state
            .events
            .page(tessera_core::EventQuery {
                subject: Some("u".into()),
                handle: None,
                kind: None,
                after: 0,
                limit: 100,
            })
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.event.reason == Some(RevokeReason::Logout)),
            "{events:?}"
        );
    }
    // No cookie, an unknown one, an already revoked one: the same answer.
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    h.logout("/auth/logout", &[("cookie", &h.cookie(&tok))]).await;
    for headers in [
        vec![],
        vec![("cookie", h.cookie("tss_nope"))],
        vec![("cookie", h.cookie(&tok))],
    ] {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = h.logout("/auth/logout", &hs).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{headers:?}");
        assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
        assert!(r.header("clear-site-data").is_some());
    }
}

#[tokio::test]
async fn logout_redirects_only_to_a_relative_path() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    for bad in [
        "next=https://evil.example/",
        "next=//evil.example",
        "next=%2F%2Fevil.example",
        "next=/\\evil.example",
        "next=%2F%5Cevil.example",
        "next=evil",
        "next=/a%0d%0aSet-Cookie:x",
        "next=/a&next=/b",
        "next=%zz",
    ] {
        let r = h.logout(&format!("/auth/logout?{bad}"), &[("cookie", &c)]).await;
        r.assert_problem(400, "validation_failed");
        assert!(r.header("location").is_none());
        assert!(h.is_live(&tok).await, "{bad}");
    }
    let r = h
        .logout("/auth/logout?next=%2Fsigned-out%3Fbye%3D1", &[("cookie", &c)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/signed-out?bye=1"));
    assert!(r.header("clear-site-data").is_some() && r.header("set-cookie").is_some());
    assert!(!h.is_live(&tok).await);
}

#[tokio::test]
async fn ex_13_every_answer_is_no_store() {
    let h = harness();
    let (tok, _) = h.login("u", 1).await;
    let c = h.cookie(&tok);
    let answers = [
        h.send(Method::GET, "/auth/verify", &[("cookie", &c)]).await,
        h.send(Method::HEAD, "/auth/verify", &[("cookie", &c)]).await,
        h.send(Method::GET, "/auth/verify", &[]).await,
        h.send(Method::GET, "/auth/verify?level=9", &[("cookie", &c)])
            .await,
        h.send(Method::GET, "/auth/verify?level=x", &[]).await,
        h.verify_as(
            "/auth/verify",
            "POST",
            &[("cookie", &c), ("sec-fetch-site", "cross-site")],
        )
        .await,
        h.logout("/auth/logout", &[("sec-fetch-site", "cross-site")])
            .await,
        h.logout("/auth/logout?next=//x", &[]).await,
        h.logout("/auth/logout", &[("cookie", &c)]).await,
    ];
    for r in &answers {
        r.assert_no_store();
    }
}
