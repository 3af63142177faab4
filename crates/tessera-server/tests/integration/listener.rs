//! The listener against slow and idle clients (a slowloris): the
//! header-read timeout and the connection cap (`[http]`), and HTTP/2 with
//! prior knowledge still served by the same accept loop.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Opts, TestServer};

/// A client that opens no pooled connections: every request is a new
/// connection, closed after it, so none lingers in the count.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

/// Waits until the server closes `s` (EOF or reset) and returns when.
async fn closed_at(s: &mut TcpStream, within: Duration) -> Option<Instant> {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(0) | Err(_)) => Some(Instant::now()),
        // hyper answers nothing on a header timeout; anything read is a
        // surprise worth seeing.
        Ok(Ok(n)) => panic!(
            "unexpected answer to a half request: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

/// A client that sends half a request head (or nothing, or half the
/// HTTP/2 preface) is disconnected within `[http]
/// header_read_timeout_secs`, and other clients are served meanwhile.
#[tokio::test]
async fn slow_header_client_is_cut_off_while_others_are_served() {
    let srv = TestServer::start(Opts::default().config("[http]\nheader_read_timeout_secs = 1\n")).await;
    let t0 = Instant::now();
    let mut half_head = TcpStream::connect(srv.addr).await.expect("connect");
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tessera\r\nX-Slow: a")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(srv.addr).await.expect("connect");
    let mut half_preface = TcpStream::connect(srv.addr).await.expect("connect");
    half_preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");

    // Served while the slow clients hang on.
    let others = fresh_client();
    let mut served = 0;
    while t0.elapsed() < Duration::from_millis(700) {
        let r = others
            .get(srv.url("/healthz"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .expect("another client is served while slow ones hang");
        assert_eq!(r.status(), 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served >= 3, "only {served} requests served in 700 ms");

    for (name, s) in [
        ("half a request head", &mut half_head),
        ("nothing", &mut silent),
        ("half the HTTP/2 preface", &mut half_preface),
    ] {
        let at = closed_at(s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("a client that sent {name} was still connected 5 s later"));
        let after = at - t0;
        assert!(
            after >= Duration::from_millis(850) && after < Duration::from_secs(3),
            "a client that sent {name} was cut off after {after:?}, expected about 1 s"
        );
    }
    srv.finish().await;
}

/// `[http] max_connections`: below it, new clients are served; at it,
/// the listener accepts nothing more until a connection closes, then
/// serves the client that waited.
#[tokio::test]
async fn connection_cap_holds_and_frees() {
    let srv = TestServer::start(
        Opts::default().config("[http]\nmax_connections = 3\nheader_read_timeout_secs = 30\n"),
    )
    .await;
    // The harness's own client may keep one idle connection from its
    // start-up checks: at most 1 slot.
    let client = fresh_client();
    let healthz = || {
        client
            .get(srv.url("/healthz"))
            .timeout(Duration::from_secs(20))
            .send()
    };
    let first = TcpStream::connect(srv.addr).await.expect("connect");
    let r = tokio::time::timeout(Duration::from_secs(5), healthz())
        .await
        .expect("served below the cap")
        .expect("request");
    assert_eq!(r.status(), 200);

    let more = [
        TcpStream::connect(srv.addr).await.expect("connect"),
        TcpStream::connect(srv.addr).await.expect("connect"),
    ];
    let waiting = tokio::spawn(healthz());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a client was served with every connection slot taken"
    );

    drop(first);
    drop(more);
    let r = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting client is served once slots free")
        .expect("task")
        .expect("request");
    assert_eq!(r.status(), 200);
    srv.finish().await;
}

/// HTTP/2 with prior knowledge (h2c) is served as before.
#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let srv = TestServer::start(Opts::default()).await;
    let stream = TcpStream::connect(srv.addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("HTTP/2 handshake");
    let conn = tokio::spawn(conn);
    for path in ["/healthz", "/readyz"] {
        let req = axum::http::Request::get(format!("http://{}{path}", srv.addr))
            .body(Empty::<axum::body::Bytes>::new())
            .expect("request");
        let res = send.send_request(req).await.expect("HTTP/2 request");
        assert_eq!(res.version(), axum::http::Version::HTTP_2);
        assert_eq!(res.status(), 200, "{path}");
        res.into_body().collect().await.expect("body");
    }
    drop(send);
    conn.abort();
    srv.finish().await;
}
