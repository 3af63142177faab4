//! RFC 8693 token exchange and RFC 8707 resource indicators through the
//! HTTP faces: session creation, the refresh grant, the exchange grant.

use super::*;

const RS_A: &str = "https://rs-a.example";
const RS_B: &str = "https://rs-b.example";

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The test registry plus two registered resources; `backend`
/// (confidential) may ask for any audience.
async fn targets() -> H {
    let mut c = test_config();
    c.oauth.resources = vec![RS_A.into(), RS_B.into()];
    harness_with(c).await
}

async fn exchange(h: &H, subject: &str, extra: &str, auth: Option<&str>) -> Resp {
    h.form(
        "/oauth2/token",
        &format!(
            "grant_type={}&subject_token={subject}&subject_token_type={}{extra}",
            enc("urn:ietf:params:oauth:grant-type:token-exchange"),
            enc("urn:ietf:params:oauth:token-type:access_token")
        ),
        auth,
    )
    .await
}

#[tokio::test]
async fn jw_16_resource_on_session_creation_and_refresh() {
    let h = targets().await;
    let r = h
        .login("alice", json!({ "resource": RS_A, "scope": "read" }))
        .await;
    let c = h.claims(r.str("access_token"));
    assert_eq!(c.aud.as_slice(), [RS_A.to_owned()], "aud is only rs-a");
    // At rs-b it is refused: the forward-auth face with its audience.
    let tokens = &h.state.oauth.tokens;
    let at_b = tessera_core::access::Expected {
        audience: tessera_core::access::AudienceRule::Contains(RS_B),
        ..tokens.own_token_rules()
    };
    assert!(tokens.verify_access_token(r.str("access_token"), &at_b).is_err());

    // Unknown, malformed or disallowed resources: a problem naming
    // invalid_target, and no session left behind.
    for bad in [
        json!("https://unknown.example"),
        json!("rs-a"),
        json!("https://rs-a.example/#f"),
        json!([]),
    ] {
        let before = h.active_sessions("bob").await;
        let r = h
            .api(
                Method::POST,
                "/v1/sessions",
                Some(json!({ "subject": "bob", "tokens": { "resource": bad } })),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.str("detail").contains("invalid_target"), "{}", r.text);
        assert_eq!(h.active_sessions("bob").await, before);
    }
    let r = h
        .api(
            Method::POST,
            "/v1/sessions",
            Some(json!({ "subject": "bob", "tokens": { "client_id": "rs", "resource": RS_A } })),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "rs may only use `api`: {}",
        r.text
    );

    // Refresh with two granted resources narrows to one; an ungranted one is
    // invalid_target and consumes nothing.
    let r = h.login("carol", json!({ "resource": [RS_A, RS_B] })).await;
    let rt = r.str("refresh_token").to_owned();
    let n = h
        .refresh(&rt, &format!("&resource={}", enc("https://unknown.example")))
        .await;
    n.assert_oauth_error(400, "invalid_target");
    let n = h.refresh(&rt, &format!("&resource={}", enc(RS_B))).await;
    assert_eq!(n.status, StatusCode::OK, "{}", n.text);
    assert_eq!(h.claims(n.str("access_token")).aud.as_slice(), [RS_B.to_owned()]);
    // `resource` may repeat (RFC 8707 §2); other parameters may not.
    let rt = n.str("refresh_token").to_owned();
    let n = h
        .refresh(&rt, &format!("&resource={}&resource={}", enc(RS_A), enc(RS_B)))
        .await;
    assert_eq!(n.status, StatusCode::OK, "{}", n.text);
    assert_eq!(h.claims(n.str("access_token")).aud.len(), 2);
    let n = h.refresh(n.str("refresh_token"), "&scope=a&scope=b").await;
    n.assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn token_exchange_over_http() {
    let h = targets().await;
    let r = h
        .login("alice", json!({ "client_id": "spa", "scope": "read write" }))
        .await;
    let at = r.str("access_token").to_owned();
    let handle = r.body["session"]["handle"].as_str().unwrap().to_owned();
    let auth = basic("backend", "backend-secret");

    let x = exchange(&h, &at, "&audience=orders&scope=read", Some(&auth)).await;
    assert_eq!(x.status, StatusCode::OK, "{}", x.text);
    x.assert_no_store();
    assert_eq!(
        x.str("issued_token_type"),
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(x.str("token_type"), "Bearer");
    assert_eq!(x.str("scope"), "read");
    assert!(x.body.get("refresh_token").is_none(), "{}", x.text);
    let c = h.claims(x.str("access_token"));
    assert_eq!(
        (
            c.sub.as_str(),
            c.client_id.as_str(),
            c.sid.as_deref().unwrap_or("")
        ),
        ("alice", "backend", handle.as_str())
    );
    assert_eq!(c.aud.as_slice(), ["orders".to_owned()]);
    assert_eq!(c.act, Some(json!({ "sub": "backend" })));
    // Introspection shows the actor.
    let i = h
        .form(
            "/oauth2/introspect",
            &format!("token={}", x.str("access_token")),
            Some(&auth),
        )
        .await;
    assert_eq!(i.body["active"], true, "{}", i.text);
    assert_eq!(i.body["act"], json!({ "sub": "backend" }));

    // The error cases of RFC 8693 and RFC 8707.
    exchange(&h, &at, "&audience=orders&scope=admin", Some(&auth))
        .await
        .assert_oauth_error(400, "invalid_scope");
    exchange(&h, &at, "&audience=orders&audience=billing", Some(&auth))
        .await
        .assert_oauth_error(400, "invalid_target");
    exchange(&h, &at, "", Some(&auth))
        .await
        .assert_oauth_error(400, "invalid_target");
    exchange(
        &h,
        &at,
        &format!("&resource={}", enc("https://unknown.example")),
        Some(&auth),
    )
    .await
    .assert_oauth_error(400, "invalid_target");
    exchange(&h, "garbage", "&audience=orders", Some(&auth))
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The rs client may only ask for `api`.
    exchange(&h, &at, "&audience=orders", Some(&basic("rs", "rs-secret")))
        .await
        .assert_oauth_error(400, "invalid_target");
    // Unauthenticated, or a public client: refused.
    exchange(&h, &at, "&audience=orders", None)
        .await
        .assert_oauth_error(401, "invalid_client");
    exchange(&h, &at, "&audience=orders&client_id=spa", None)
        .await
        .assert_oauth_error(400, "unauthorized_client");
    // A resource is fine as the one target.
    let y = exchange(&h, &at, &format!("&resource={}", enc(RS_A)), Some(&auth)).await;
    assert_eq!(y.status, StatusCode::OK, "{}", y.text);
    assert_eq!(h.claims(y.str("access_token")).aud.as_slice(), [RS_A.to_owned()]);

    // Logout ends the session: the exchanged token is inactive too, and
    // cannot be exchanged again.
    let out = h
        .api(Method::DELETE, &format!("/v1/sessions/{handle}"), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    let i = h
        .form(
            "/oauth2/introspect",
            &format!("token={}", x.str("access_token")),
            Some(&auth),
        )
        .await;
    assert_eq!(i.body, json!({ "active": false }));
    exchange(&h, x.str("access_token"), "&audience=orders", Some(&auth))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn unknown_grant_types_name_the_supported_ones() {
    let h = targets().await;
    let r = h
        .form("/oauth2/token", "grant_type=password&username=a&password=b", None)
        .await;
    r.assert_oauth_error(400, "unsupported_grant_type");
    assert!(
        r.str("error_description").contains("token-exchange"),
        "{}",
        r.text
    );
}
