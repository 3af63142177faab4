//! The service when its Redis fails: stopped, it answers 503
//! `store_unavailable` and `/readyz` fails, fail closed and without a
//! panic; back, it recovers by itself within 2 s, without a restart.
//! Restarted empty, Redis has lost every session; with the append-only
//! file on, they survive. Killed under load, only 200s and 503s come back,
//! never a 200 for a session revoked before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_redis::testing as redis;

use crate::chaos_proxy::{ChaosProxy, Mode};
use crate::harness::{Opts, Resp, TestServer};

/// The recovery the service promises once Redis answers again.
const RECOVERY: Duration = Duration::from_secs(2);
/// How long the session cache may take to notice its subscription is gone.
const CACHE_LOSS: Duration = Duration::from_secs(1);

fn on(server: &redis::Server) -> Opts {
    Opts::default().store(&format!("{}?prefix=faults", server.url()))
}

/// `GET /auth/verify` with the session cookie, as nginx would send it.
async fn forward(srv: &TestServer, token: &str) -> Resp {
    srv.send_any(
        srv.req(reqwest::Method::GET, "/auth/verify")
            .header("Cookie", format!("__Host-tessera={token}"))
            .header("X-Forwarded-Method", "GET"),
    )
    .await
}

/// `POST /v1/sessions/verify`, whatever it answers.
async fn verify(srv: &TestServer, token: &str) -> Resp {
    srv.send_any(
        srv.req(reqwest::Method::POST, "/v1/sessions/verify")
            .json(&json!({"session_token": token})),
    )
    .await
}

async fn get(srv: &TestServer, path: &str) -> Resp {
    srv.send_any(srv.req(reqwest::Method::GET, path)).await
}

/// Polls until `/readyz` answers 200 and `check` holds; returns how long
/// that took.
async fn recovery(srv: &TestServer, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if get(srv, "/readyz").await.status == 200 && check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s; log:\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_no_panic(srv: &TestServer) {
    assert!(!srv.logs().contains("panicked"), "{}", srv.logs());
}

/// Redis stopped: both verification faces answer 503 `store_unavailable`,
/// `/readyz` fails, `/healthz` still answers (the process is up). Redis
/// started again on the same port (empty: no persistence): the service
/// answers again within 2 s, and the sessions are gone.
#[tokio::test]
async fn redis_down_is_503_and_back_empty_the_service_recovers_by_itself() {
    let server = redis::private_server();
    let srv = TestServer::start(on(&server)).await;
    let s = srv.create(json!({"subject": "olga"})).await;
    srv.assert_verifies(&s.token).await;
    forward(&srv, &s.token).await.assert_status(200);

    let stopped = server.stop();
    // The session cache drops its entries once its subscription connection
    // reports the loss, which takes the subscriber task a moment to see
    // (milliseconds; longer on a loaded machine). Until then a request may
    // still be answered from the cache — for a session nobody could have
    // revoked, since every write needs the Redis that just went away.
    let start = Instant::now();
    while verify(&srv, &s.token).await.status != 503 {
        assert!(
            start.elapsed() < CACHE_LOSS,
            "still answered from the cache {CACHE_LOSS:?} after Redis stopped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("cache dropped {:?} after Redis stopped", start.elapsed());
    verify(&srv, &s.token)
        .await
        .assert_problem(503, "store_unavailable");
    let r = forward(&srv, &s.token).await;
    assert_eq!(r.status, 503, "forward auth fails closed: {}", r.text());
    get(&srv, "/readyz")
        .await
        .assert_problem(503, "store_unavailable");
    srv.get("/healthz").await.assert_status(200);

    let _server = stopped.start_again();
    let took = recovery(&srv, async || forward(&srv, &s.token).await.status != 503).await;
    eprintln!("recovered {took:?} after Redis came back (empty)");
    assert!(took < RECOVERY, "recovery took {took:?}");
    // Redis lost everything it held: the session (and the API key: only
    // the browser face is left to ask).
    forward(&srv, &s.token).await.assert_status(401);
    assert_no_panic(&srv);
    srv.finish().await;
}

/// With the append-only file on and fsynced on every write, a Redis
/// restart loses nothing: the session verifies again, the one revoked
/// before stays revoked, and the service recovers within 2 s.
#[tokio::test]
async fn with_aof_sessions_survive_a_redis_restart() {
    let server = redis::aof_server();
    let srv = TestServer::start(on(&server)).await;
    let live = srv.create(json!({"subject": "pia", "data": {"k": 1}})).await;
    let gone = srv.create(json!({"subject": "pia"})).await;
    srv.post("/v1/sessions/revoke", &json!({"session_token": gone.token}))
        .await
        .assert_status(204);

    let stopped = server.stop();
    verify(&srv, &live.token)
        .await
        .assert_problem(503, "store_unavailable");
    let _server = stopped.start_again();
    let took = recovery(&srv, async || verify(&srv, &live.token).await.status == 200).await;
    eprintln!("recovered {took:?} after Redis came back (AOF)");
    assert!(took < RECOVERY, "recovery took {took:?}");
    let v = srv.assert_verifies(&live.token).await;
    assert_eq!(v["data"], json!({"k": 1}));
    srv.verify(&gone.token)
        .await
        .assert_problem(401, "session_revoked");
    forward(&srv, &gone.token).await.assert_status(401);
    assert_no_panic(&srv);
    srv.finish().await;
}

/// What one verification answered.
#[derive(Debug, Clone)]
struct Answer {
    session: usize,
    status: u16,
    code: Option<String>,
}

/// Four loops verify five sessions (two revoked before the outage)
/// through both faces while Redis is killed (SIGKILL) and started again:
/// every answer is a 200 for a live session, a 401 for a revoked one, or a
/// 503 `store_unavailable`; never a 200 for a revoked session.
#[tokio::test]
async fn killing_redis_under_load_gives_only_503s_and_never_a_revoked_200() {
    let server = redis::aof_server();
    let srv = TestServer::start(on(&server)).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(srv.create(json!({"subject": format!("load-{i}")})).await.token);
    }
    let revoked = [1, 3];
    for &i in &revoked {
        srv.post("/v1/sessions/revoke", &json!({"session_token": tokens[i]}))
            .await
            .assert_status(204);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|n| {
            let (http, base, key) = (srv.http.clone(), srv.base.clone(), srv.api_key.clone());
            let (tokens, stop) = (tokens.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut i = n;
                while !stop.load(Ordering::Relaxed) {
                    let session = i % tokens.len();
                    let token = &tokens[session];
                    let req = if i % 2 == 0 {
                        http.post(format!("{base}/v1/sessions/verify"))
                            .bearer_auth(&key)
                            .json(&json!({"session_token": token}))
                    } else {
                        http.get(format!("{base}/auth/verify"))
                            .header("Cookie", format!("__Host-tessera={token}"))
                            .header("X-Forwarded-Method", "GET")
                    };
                    let r = req.send().await.expect("the service answers");
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    let code = body["code"].as_str().map(str::to_owned);
                    answers.push(Answer {
                        session,
                        status,
                        code,
                    });
                    i += 1;
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _server = killed.start_again();
    let took = recovery(&srv, async || verify(&srv, &tokens[0]).await.status == 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers: Vec<Answer> = Vec::new();
    for l in loops {
        answers.extend(l.await.expect("a verify loop"));
    }

    let count = |f: &dyn Fn(&Answer) -> bool| answers.iter().filter(|a| f(a)).count();
    let ok = count(&|a| a.status == 200);
    let unavailable = count(&|a| a.status == 503);
    let refused = count(&|a| a.status == 401);
    eprintln!(
        "{} answers under load: {ok} × 200, {refused} × 401 (revoked), {unavailable} × 503; recovered {took:?} after Redis came back",
        answers.len()
    );
    for a in &answers {
        let is_revoked = revoked.contains(&a.session);
        match a.status {
            200 => assert!(
                !is_revoked,
                "a 200 for a session revoked before the outage: {a:?}"
            ),
            401 => assert!(is_revoked, "a live session refused: {a:?}"),
            503 => assert!(
                a.code.as_deref().is_none_or(|c| c == "store_unavailable"),
                "{a:?}"
            ),
            _ => panic!("unexpected answer {a:?}"),
        }
    }
    assert!(unavailable > 0, "the outage was seen");
    assert!(ok > 0 && refused > 0);
    assert!(took < RECOVERY, "recovery took {took:?}");
    assert_no_panic(&srv);
    srv.finish().await;
}

// ---------------------------------------------------------------------
// A slow and a flapping Redis, through a proxy (`chaos_proxy`) that adds
// latency, stalls or cuts the path while the Redis server itself runs on.
// ---------------------------------------------------------------------

/// One timed answer.
#[derive(Debug, Clone)]
struct Timed {
    session: usize,
    /// When the request was sent, from the test's start.
    sent: Duration,
    took: Duration,
    status: u16,
    code: Option<String>,
    retry_after: Option<String>,
}

/// Verifies session `session` (`token`) once through the backend API (even
/// `n`) or forward auth (odd `n`), whatever the answer, timed.
async fn timed_verify(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    token: &str,
    session: usize,
    n: usize,
    t0: Instant,
) -> Timed {
    let req = if n.is_multiple_of(2) {
        http.post(format!("{base}/v1/sessions/verify"))
            .bearer_auth(key)
            .json(&json!({"session_token": token}))
    } else {
        http.get(format!("{base}/auth/verify"))
            .header("Cookie", format!("__Host-tessera={token}"))
            .header("X-Forwarded-Method", "GET")
    };
    let start = Instant::now();
    let r = req.send().await.expect("the service answers (no hang, no reset)");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    Timed {
        session,
        sent: start - t0,
        took: start.elapsed(),
        status,
        code: body["code"].as_str().map(str::to_owned),
        retry_after,
    }
}

/// The `q`-quantile of the answers' latencies.
fn quantile(answers: &[Timed], q: f64) -> Duration {
    let mut t: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    t.sort();
    let i = ((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1;
    t[i]
}

/// Redis slowed to a 2 s round trip (1 s each way): a verification fails
/// closed in bounded time instead of waiting for Redis, with 503
/// `store_unavailable` when the store's command timeout (`timeout_ms=300`)
/// comes first. A revoke sent then answers 503 too, though Redis carries
/// it out a moment later: from that answer on, the session is never
/// answered valid (the process drops what it cached, since a write whose
/// outcome it did not learn may have changed it). Redis fast again, the
/// service answers 200 by itself, and the session is revoked.
#[tokio::test]
async fn a_revoke_lost_to_a_slow_redis_is_never_answered_valid_from_the_cache() {
    revoke_while_slow("timeout_ms=300", Duration::from_secs(2), 503).await;
}

/// The same when the service's request timeout (1 s) comes first: the
/// revoke answers 408, its store call is dropped mid-way, and still no
/// later answer says the session is valid.
#[tokio::test]
async fn a_revoke_cut_off_by_the_request_timeout_is_never_answered_valid_from_the_cache() {
    revoke_while_slow("timeout_ms=5000", Duration::from_secs(1), 408).await;
}

async fn revoke_while_slow(store_query: &str, request_timeout: Duration, revoke_status: u16) {
    let server = redis::private_server();
    let proxy = ChaosProxy::start(([127, 0, 0, 1], server.port).into()).await;
    let srv = TestServer::start(
        Opts::default()
            .store(&proxy.url(&format!("prefix=slow&{store_query}")))
            // The API key stays cached: the revoke's one store call is
            // its write.
            .env("TESSERA_HTTP_API_KEY_CACHE_SECS", "600")
            .env(
                "TESSERA_HTTP_REQUEST_TIMEOUT_SECS",
                &request_timeout.as_secs().to_string(),
            ),
    )
    .await;
    let live = srv.create(json!({"subject": "sam"})).await.token;
    let doomed = srv.create(json!({"subject": "sam"})).await.token;
    // Redis learns the revoke script now: later, its EVALSHA alone
    // carries the revoke (a NOSCRIPT answer would need a second round
    // trip, which a request cut off by its timeout never makes).
    let warm = srv.create(json!({"subject": "sam"})).await.token;
    srv.post("/v1/sessions/revoke", &json!({"session_token": warm}))
        .await
        .assert_status(204);
    for _ in 0..3 {
        srv.assert_verifies(&live).await;
        srv.assert_verifies(&doomed).await;
        forward(&srv, &doomed).await.assert_status(200);
    }

    proxy.set_delay(Duration::from_secs(1));
    let r = srv
        .send_any(
            srv.req(reqwest::Method::POST, "/v1/sessions/revoke")
                .json(&json!({"session_token": doomed})),
        )
        .await;
    assert_eq!(r.status, revoke_status, "revoke while slow: {}", r.text());

    let t0 = Instant::now();
    let tokens = [live.clone(), doomed.clone()];
    let mut answers = Vec::new();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        let s = n % 2;
        answers.push(timed_verify(&srv.http, &srv.base, &srv.api_key, &tokens[s], s, n / 2, t0).await);
        n += 1;
    }
    for a in &answers {
        match (a.session, a.status, a.code.as_deref()) {
            // Forward auth's 503 and 401 carry no problem document.
            (0, 200, _) | (1, 401, None | Some("session_revoked")) => {}
            (_, 503, None | Some("store_unavailable")) | (_, 408, Some("request_timeout")) => {}
            _ => panic!("after the revoke's answer: {a:?}\n{answers:#?}"),
        }
    }
    let bound = request_timeout + Duration::from_millis(500);
    let worst = quantile(&answers, 1.0);
    eprintln!(
        "revoke answered {revoke_status}; then {} answers while slow: {} × 503, {} × 408, p99 {:?}, max {worst:?} (bound {bound:?})",
        answers.len(),
        answers.iter().filter(|a| a.status == 503).count(),
        answers.iter().filter(|a| a.status == 408).count(),
        quantile(&answers, 0.99),
    );
    assert!(worst < bound, "an answer took {worst:?}");
    assert!(
        answers.iter().any(|a| a.status == 503 || a.status == 408),
        "the slow store was seen"
    );

    proxy.set_delay(Duration::ZERO);
    let took = recovery(&srv, async || verify(&srv, &live).await.status == 200).await;
    eprintln!("recovered {took:?} after Redis was fast again");
    assert!(took < Duration::from_secs(5), "recovery took {took:?}");
    srv.verify(&doomed).await.assert_problem(401, "session_revoked");
    forward(&srv, &doomed).await.assert_status(401);
    assert_no_panic(&srv);
    srv.finish().await;
}

/// The value of a counter without labels in `/metrics`.
async fn counter(srv: &TestServer, name: &str) -> f64 {
    let text = srv.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Load shedding and timeouts keep the answers' p99 bounded when Redis is
/// slow (a 4 s round trip, longer than everything): with `[http]
/// max_in_flight = 8` and a 1 s request timeout, a burst of 120
/// concurrent verifications gets, each within the request timeout (plus
/// slack for a debug build on a loaded machine), either 503 `overloaded`
/// with `Retry-After: 1` at once or 408 `request_timeout`; nothing waits
/// for Redis, nothing queues behind the requests in progress. Redis fast
/// again, 200s come back by themselves.
#[tokio::test]
async fn a_slow_redis_cannot_make_requests_queue_shedding_and_timeouts_bound_p99() {
    const MAX_IN_FLIGHT: usize = 8;
    const BURST: usize = 120;
    let request_timeout = Duration::from_secs(1);
    let server = redis::private_server();
    let proxy = ChaosProxy::start(([127, 0, 0, 1], server.port).into()).await;
    // No session cache: every verification needs Redis.
    let srv = TestServer::start(
        Opts::default()
            .store(&proxy.url("prefix=shed&cache=off"))
            .env("TESSERA_HTTP_MAX_IN_FLIGHT", &MAX_IN_FLIGHT.to_string())
            .env(
                "TESSERA_HTTP_REQUEST_TIMEOUT_SECS",
                &request_timeout.as_secs().to_string(),
            ),
    )
    .await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        let t = srv.create(json!({"subject": format!("shed-{i}")})).await.token;
        srv.assert_verifies(&t).await;
        tokens.push(t);
    }
    let shed_before = counter(&srv, "tessera_http_requests_shed_total").await;

    proxy.set_delay(Duration::from_secs(2));
    let t0 = Instant::now();
    let burst: Vec<_> = (0..BURST)
        .map(|n| {
            let (http, base, key) = (srv.http.clone(), srv.base.clone(), srv.api_key.clone());
            let token = tokens[n % tokens.len()].clone();
            tokio::spawn(async move { timed_verify(&http, &base, &key, &token, n % 4, n / 4, t0).await })
        })
        .collect();
    let mut answers = Vec::new();
    for b in burst {
        answers.push(b.await.expect("a burst request"));
    }
    let shed: Vec<&Timed> = answers
        .iter()
        .filter(|a| a.code.as_deref() == Some("overloaded"))
        .collect();
    let timed_out = answers.iter().filter(|a| a.status == 408).count();
    let bound = request_timeout + Duration::from_millis(1500);
    let (p50, p99, max) = (
        quantile(&answers, 0.5),
        quantile(&answers, 0.99),
        quantile(&answers, 1.0),
    );
    let shed_max = shed.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "burst of {BURST} with max_in_flight {MAX_IN_FLIGHT}, request timeout {request_timeout:?}, Redis 4 s away: \
         {} × 503 overloaded (slowest {shed_max:?}), {timed_out} × 408, others {}; p50 {p50:?}, p99 {p99:?}, max {max:?} (bound {bound:?})",
        shed.len(),
        answers.len() - shed.len() - timed_out,
    );
    for a in &answers {
        match (a.status, a.code.as_deref()) {
            (408, Some("request_timeout")) | (503, Some("store_unavailable")) => {}
            // Forward auth answers a store failure without a problem document.
            (503, None) if a.session % 2 == 1 => {}
            (503, Some("overloaded")) => {
                assert_eq!(a.retry_after.as_deref(), Some("1"), "{a:?}");
            }
            _ => panic!("unexpected answer while Redis is slow: {a:?}"),
        }
    }
    assert!(
        shed.len() >= BURST / 2,
        "most of the burst is shed: {}",
        shed.len()
    );
    assert!(timed_out >= 1, "the admitted requests time out");
    assert!(p99 < bound, "p99 {p99:?} beyond {bound:?}");
    assert!(max < bound, "max {max:?} beyond {bound:?}");
    proxy.set_delay(Duration::ZERO);
    let took = recovery(&srv, async || verify(&srv, &tokens[0]).await.status == 200).await;
    eprintln!("recovered {took:?} after Redis was fast again");
    assert!(took < Duration::from_secs(5), "recovery took {took:?}");
    let shed_after = counter(&srv, "tessera_http_requests_shed_total").await;
    assert_eq!(
        shed_after - shed_before,
        shed.len() as f64,
        "every shed request is counted"
    );
    for t in &tokens {
        srv.assert_verifies(t).await;
    }
    assert_no_panic(&srv);
    srv.finish().await;
}

/// Redis flapping (cut and back every 250 ms for 3 s) under four loops of
/// verifications through both faces, with a revoke sent during the
/// flapping and retried until acknowledged: every answer is a 200 for a
/// live session, a 401 for a revoked one, or a 503; never a 200 for a
/// session revoked before the flapping, nor for the one revoked during it
/// once its revoke was acknowledged. When the flapping ends the service
/// answers 200 again by itself, within a few seconds.
#[tokio::test]
async fn a_flapping_redis_never_gets_a_revoked_session_accepted_and_recovery_is_automatic() {
    let server = redis::private_server();
    let proxy = ChaosProxy::start(([127, 0, 0, 1], server.port).into()).await;
    let request_timeout = Duration::from_secs(5);
    let srv = TestServer::start(Opts::default().store(&proxy.url("prefix=flap")).env(
        "TESSERA_HTTP_REQUEST_TIMEOUT_SECS",
        &request_timeout.as_secs().to_string(),
    ))
    .await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(srv.create(json!({"subject": format!("flap-{i}")})).await.token);
    }
    let (revoked_before, revoked_during) = ([1, 3], 4);
    for &i in &revoked_before {
        srv.post("/v1/sessions/revoke", &json!({"session_token": tokens[i]}))
            .await
            .assert_status(204);
    }
    for (i, t) in tokens.iter().enumerate() {
        let want = if revoked_before.contains(&i) { 401 } else { 200 };
        verify(&srv, t).await.assert_status(want);
    }

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|l| {
            let (http, base, key) = (srv.http.clone(), srv.base.clone(), srv.api_key.clone());
            let (tokens, stop) = (tokens.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = l;
                while !stop.load(Ordering::Relaxed) {
                    let s = n % tokens.len();
                    answers.push(timed_verify(&http, &base, &key, &tokens[s], s, n / tokens.len(), t0).await);
                    n += 1;
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let flapping = proxy.flap(Duration::from_millis(250));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The revoke, retried as a client would until it is acknowledged.
    let first_attempt = t0.elapsed();
    let mut attempts = 0;
    let acked = loop {
        attempts += 1;
        let r = srv
            .send_any(
                srv.req(reqwest::Method::POST, "/v1/sessions/revoke")
                    .json(&json!({"session_token": tokens[revoked_during]})),
            )
            .await;
        match r.status {
            204 => break t0.elapsed(),
            503 => tokio::time::sleep(Duration::from_millis(20)).await,
            s => panic!("revoke while flapping: {s} {}", r.text()),
        }
        assert!(attempts < 1000, "the revoke never got through");
    };
    let flap_end = Duration::from_millis(300 + 3000);
    if let Some(rest) = flap_end.checked_sub(t0.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    flapping.abort();
    proxy.set_mode(Mode::Up);
    let up_at = t0.elapsed();
    let took = recovery(&srv, async || verify(&srv, &tokens[0]).await.status == 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers: Vec<Timed> = Vec::new();
    for l in loops {
        answers.extend(l.await.expect("a verify loop"));
    }

    let count = |status: u16| answers.iter().filter(|a| a.status == status).count();
    let after_up: Vec<&Timed> = answers.iter().filter(|a| a.sent > up_at + took).collect();
    eprintln!(
        "{} answers while flapping and after: {} × 200, {} × 401, {} × 503; revoke acknowledged after {attempts} attempt(s), \
         {:?} after the first; p99 {:?}, max {:?}; recovered {took:?} after the flapping ended",
        answers.len(),
        count(200),
        count(401),
        count(503),
        acked - first_attempt,
        quantile(&answers, 0.99),
        quantile(&answers, 1.0),
    );
    for a in &answers {
        let revoked =
            revoked_before.contains(&a.session) || (a.session == revoked_during && a.sent >= first_attempt);
        match a.status {
            200 => {
                assert!(
                    !revoked_before.contains(&a.session),
                    "a 200 for a session revoked before: {a:?}"
                );
                assert!(
                    !(a.session == revoked_during && a.sent > acked),
                    "a 200 for a session whose revoke was acknowledged ({acked:?}): {a:?}"
                );
            }
            401 => assert!(revoked, "a live session refused: {a:?}"),
            503 => assert!(
                a.code.as_deref().is_none_or(|c| c == "store_unavailable"),
                "{a:?}"
            ),
            _ => panic!("unexpected answer {a:?}"),
        }
    }
    assert!(count(503) > 0, "the flapping was seen");
    assert!(
        after_up.iter().all(|a| a.status != 503),
        "a 503 after recovery: {after_up:?}"
    );
    assert!(
        quantile(&answers, 1.0) < request_timeout,
        "an answer waited for the request timeout"
    );
    assert!(took < Duration::from_secs(5), "recovery took {took:?}");
    srv.verify(&tokens[revoked_during])
        .await
        .assert_problem(401, "session_revoked");
    assert_no_panic(&srv);
    srv.finish().await;
}

/// Redis blackholed (connections stay open, nothing comes back): every
/// verification fails closed with 503 within the store's command timeout
/// (`timeout_ms=500`), none hangs. The stalled connections then cut and
/// Redis reachable again, the service reconnects and answers 200 by itself.
#[tokio::test]
async fn a_blackholed_redis_fails_closed_within_the_store_timeout_and_recovers() {
    let store_timeout = Duration::from_millis(500);
    let server = redis::private_server();
    let proxy = ChaosProxy::start(([127, 0, 0, 1], server.port).into()).await;
    let srv = TestServer::start(
        Opts::default().store(&proxy.url(&format!("prefix=hole&timeout_ms={}", store_timeout.as_millis()))),
    )
    .await;
    let token = srv.create(json!({"subject": "hole"})).await.token;
    srv.assert_verifies(&token).await;

    proxy.set_mode(Mode::Blackhole);
    let t0 = Instant::now();
    let mut answers = Vec::new();
    let mut n = 0;
    // Past the session cache's heartbeat (every second, `timeout_ms` to
    // answer): then nothing is served from memory either.
    while t0.elapsed() < Duration::from_secs(3) {
        answers.push(timed_verify(&srv.http, &srv.base, &srv.api_key, &token, 0, n, t0).await);
        n += 1;
    }
    let late: Vec<&Timed> = answers
        .iter()
        .filter(|a| a.sent > Duration::from_secs(2))
        .collect();
    // The API key may need a store read too (its cache lasts 5 s): two
    // commands at most, each bounded by the store timeout.
    let bound = store_timeout * 2 + Duration::from_millis(500);
    eprintln!(
        "{} answers while blackholed ({} × 503), p99 {:?}, max {:?} (bound {bound:?})",
        answers.len(),
        answers.iter().filter(|a| a.status == 503).count(),
        quantile(&answers, 0.99),
        quantile(&answers, 1.0),
    );
    for a in &answers {
        assert!(a.status == 200 || a.status == 503, "{a:?}");
        assert!(a.took < bound, "{a:?}");
    }
    assert!(
        !late.is_empty() && late.iter().all(|a| a.status == 503),
        "{late:?}"
    );

    proxy.cut();
    proxy.set_mode(Mode::Up);
    let took = recovery(&srv, async || verify(&srv, &token).await.status == 200).await;
    eprintln!("recovered {took:?} after the blackhole ended");
    assert!(took < Duration::from_secs(5), "recovery took {took:?}");
    assert_no_panic(&srv);
    srv.finish().await;
}
