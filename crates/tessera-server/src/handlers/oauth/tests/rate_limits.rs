//! The abuse limits (GN-04) through the router: 429 with `Retry-After`,
//! per address, per API key, per client, on the DBSC endpoints, counted in
//! metrics, and off when `[rate_limits] enabled = false`.

use std::net::SocketAddr;

use crate::config::LimitConfig;
use crate::limits::PeerAddr;

use super::*;

fn limited_config(f: impl FnOnce(&mut crate::config::RateLimitsConfig)) -> Config {
    let mut c = test_config();
    f(&mut c.rate_limits);
    c
}

impl H {
    /// Sends `req` as if it came from `ip` (the listener's peer address).
    async fn send_from(&self, ip: &str, mut req: Request<Body>) -> Resp {
        let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut().insert(PeerAddr(addr));
        self.send(req).await
    }

    async fn v1_from(&self, ip: &str, key: &str) -> Resp {
        self.send_from(
            ip,
            Request::get("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn token_from(&self, ip: &str, body: &str, authorization: Option<&str>) -> Resp {
        let mut b =
            Request::post("/oauth2/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(a) = authorization {
            b = b.header(header::AUTHORIZATION, a);
        }
        self.send_from(ip, b.body(Body::from(body.to_owned())).unwrap())
            .await
    }
}

#[track_caller]
fn assert_429_problem(r: &Resp, limit: &str) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(r.body["code"], "rate_limited", "{}", r.text);
    assert!(r.str("detail").contains(limit), "{}", r.text);
    let retry: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
}

#[track_caller]
fn assert_429_oauth(r: &Resp) -> u64 {
    r.assert_oauth_error(429, "slow_down");
    r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn gn_04_failed_api_keys_per_address_get_429_and_a_known_key_still_works() {
    let h = harness_with(limited_config(|r| {
        r.api_key_failures_per_ip = LimitConfig::new(5, 60);
    }))
    .await;
    // The valid key is used (and cached) before the attack.
    assert_eq!(h.v1_from("198.51.100.1", &h.key).await.status, StatusCode::OK);
    let guess = "tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for _ in 0..5 {
        let r = h.v1_from("198.51.100.1", guess).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    // The sixth guess is not even looked at.
    assert_429_problem(&h.v1_from("198.51.100.1", guess).await, "api_key_failures_per_ip");
    // Nor is any key the address presents that is not known good…
    let (_, fresh) = h
        .state
        .api_keys
        .create("fresh", &[tessera_core::ApiKeyScope::Events], h.clock.now())
        .await
        .unwrap();
    assert_429_problem(
        &h.v1_from("198.51.100.1", fresh.expose()).await,
        "api_key_failures_per_ip",
    );
    // …while a key already known good keeps working from it (NAT).
    assert_eq!(h.v1_from("198.51.100.1", &h.key).await.status, StatusCode::OK);
    // Another address is not affected, and the new key works there.
    assert_eq!(
        h.v1_from("198.51.100.2", guess).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.v1_from("198.51.100.2", fresh.expose()).await.status,
        StatusCode::OK
    );
    // The same goes for introspection with an API key.
    let r = h
        .send_from(
            "198.51.100.1",
            Request::post("/oauth2/introspect")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, format!("Bearer {guess}"))
                .body(Body::from("token=x"))
                .unwrap(),
        )
        .await;
    assert_429_oauth(&r);
    // Waiting as told lets the address try again.
    h.clock.advance_secs(61);
    assert_eq!(
        h.v1_from("198.51.100.1", guess).await.status,
        StatusCode::UNAUTHORIZED
    );
    let metrics = h.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tessera_rate_limited_total{limit=\"api_key_failures_per_ip\"}")),
        "the refusals are counted in metrics"
    );
}

#[tokio::test]
async fn gn_04_requests_per_api_key() {
    let h = harness_with(limited_config(|r| {
        r.api_per_key = LimitConfig::new(3, 10);
    }))
    .await;
    for _ in 0..3 {
        assert_eq!(h.v1_from("198.51.100.1", &h.key).await.status, StatusCode::OK);
    }
    // Per key, whatever the address.
    assert_429_problem(&h.v1_from("198.51.100.9", &h.key).await, "api_per_key");
    let r = h.v1_from("198.51.100.9", &h.key).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    h.clock.advance_secs(20);
    assert_eq!(h.v1_from("198.51.100.1", &h.key).await.status, StatusCode::OK);
}

#[tokio::test]
async fn gn_04_token_endpoint_per_address_for_public_clients_and_bad_credentials() {
    let h = harness_with(limited_config(|r| {
        r.oauth_per_ip = LimitConfig::new(4, 60);
    }))
    .await;
    let rt = h
        .login("alice", json!({"client_id": "spa"}))
        .await
        .str("refresh_token")
        .to_owned();
    // A refresh-token guess, a wrong client secret and a real refresh all
    // count against the address.
    h.token_from(
        "203.0.113.5",
        "grant_type=refresh_token&refresh_token=tsr_nope",
        None,
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    h.token_from(
        "203.0.113.5",
        "grant_type=refresh_token&refresh_token=x",
        Some(&basic("backend", "wrong")),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    let ok = h
        .token_from(
            "203.0.113.5",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let rt = ok.str("refresh_token").to_owned();
    h.token_from(
        "203.0.113.5",
        "grant_type=refresh_token&refresh_token=tsr_nope",
        None,
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    let r = h
        .token_from(
            "203.0.113.5",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
            None,
        )
        .await;
    assert!(assert_429_oauth(&r) >= 1);
    // The refused request consumed nothing: the refresh token still works
    // from another address.
    let ok = h
        .token_from(
            "203.0.113.6",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // Revocation shares the limit.
    let r = h
        .send_from(
            "203.0.113.5",
            Request::post("/oauth2/revoke")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("token=whatever&client_id=spa"))
                .unwrap(),
        )
        .await;
    assert_429_oauth(&r);
}

#[tokio::test]
async fn gn_04_confidential_clients_count_per_client_not_per_address() {
    let h = harness_with(limited_config(|r| {
        r.oauth_per_ip = LimitConfig::new(1, 60);
        r.oauth_per_client = LimitConfig::new(3, 60);
    }))
    .await;
    let introspect = |ip: &'static str| {
        let req = Request::post("/oauth2/introspect")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic("rs", "rs-secret"))
            .body(Body::from("token=x"))
            .unwrap();
        h.send_from(ip, req)
    };
    // Three from one address, past its per-address limit of one: an
    // authenticated confidential client is counted by its id.
    for _ in 0..3 {
        let r = introspect("192.0.2.1").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_429_oauth(&introspect("192.0.2.2").await);
}

#[tokio::test]
async fn gn_04_limits_can_be_turned_off() {
    let h = harness_with(limited_config(|r| {
        r.enabled = false;
        r.api_key_failures_per_ip = LimitConfig::new(1, 60);
        r.api_per_key = LimitConfig::new(1, 60);
    }))
    .await;
    for _ in 0..5 {
        assert_eq!(
            h.v1_from("198.51.100.1", "tsk_bad").await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(h.v1_from("198.51.100.1", &h.key).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn gn_04_dbsc_endpoints_per_address_and_per_session() {
    let mut c = limited_config(|r| {
        r.dbsc_per_ip = LimitConfig::new(3, 60);
        r.dbsc_per_session = LimitConfig::new(2, 60);
    });
    c.dbsc.enabled = true;
    let h = harness_with(c).await;
    let refresh = |ip: &'static str, id: &'static str| {
        let req = Request::post(tessera_http::dbsc::REFRESH_PATH)
            .header("sec-secure-session-id", id)
            .body(Body::empty())
            .unwrap();
        h.send_from(ip, req)
    };
    // Unknown sessions: 404 until a limit bites.
    assert_eq!(refresh("192.0.2.1", "a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(refresh("192.0.2.2", "a").await.status, StatusCode::NOT_FOUND);
    assert_429_problem(&refresh("192.0.2.3", "a").await, "dbsc_per_session");
    assert_eq!(refresh("192.0.2.1", "b").await.status, StatusCode::NOT_FOUND);
    assert_eq!(refresh("192.0.2.1", "c").await.status, StatusCode::NOT_FOUND);
    assert_429_problem(&refresh("192.0.2.1", "d").await, "dbsc_per_ip");
    let r = h
        .send_from(
            "192.0.2.1",
            Request::post(tessera_http::dbsc::REGISTER_PATH)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_429_problem(&r, "dbsc_per_ip");
}
