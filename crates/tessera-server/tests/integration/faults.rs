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
