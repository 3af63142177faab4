//! The HTTP listener: accepts connections and serves the router on them
//! (HTTP/1.1, and HTTP/2 with prior knowledge), with the limits that keep
//! slow or idle clients from exhausting the service (a slowloris):
//!
//! - at most `[http] max_connections` open connections. When they are all
//!   taken the listener stops accepting until one closes; new clients wait
//!   in the kernel's accept backlog (their connect succeeds, their request
//!   is answered once a slot frees) rather than being refused.
//! - `[http] header_read_timeout_secs`: a connection must deliver the head
//!   of its first request within this time, and an HTTP/1.1 connection the
//!   head of every later one (so an idle keep-alive connection is closed
//!   after it too), or it is closed without an answer.
//!
//! Graceful shutdown: once `stop` resolves the listener closes, every
//! connection finishes the requests it has started and then closes, and
//! connections that have not sent a request yet close at once.
//!
//! The connection is served over any byte stream, so TLS can wrap the TCP
//! stream before [`serve_connection`] without touching the limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the listener pauses after an accept error that is not about
/// one connection (e.g. out of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);
/// The "all connection slots taken" warning is logged at most this often.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The listener's limits (`[http]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts connections on `listener` until `stop` resolves, serving
/// `router` on each. Returns the handle whose
/// [`GracefulShutdown::shutdown`] drains the connections still open.
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let builder = Arc::new(builder(limits.header_read_timeout));
    let mut last_full_warning: Option<Instant> = None;
    let mut stop = std::pin::pin!(stop);
    loop {
        // A slot first: while every slot is taken, nothing is accepted.
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if last_full_warning.is_none_or(|t| t.elapsed() >= FULL_WARNING_EVERY) {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "all connection slots are taken; new connections wait until one closes ([http] max_connections)"
                    );
                }
                tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => match p {
                        Ok(p) => p,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        serve_connection(
            stream,
            router.clone(),
            Arc::clone(&builder),
            graceful.watcher(),
            limits.header_read_timeout,
            permit,
        );
    }
    graceful
}

/// HTTP/1.1 and HTTP/2 (chosen by the client's first bytes) with the
/// header-read timeout on HTTP/1.1.
fn builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    b.http2().timer(TokioTimer::new());
    b
}

/// Serves one connection on its own task, holding `permit` (its slot)
/// until it closes. The connection is dropped (closed without an answer)
/// when no request has arrived within `header_read_timeout`: that covers
/// what hyper's own HTTP/1.1 timeout cannot see, a client that sends
/// nothing or only part of the HTTP/2 preface or of its first request.
pub fn serve_connection<I>(
    io: I,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    header_read_timeout: Duration,
    permit: OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _slot = permit;
        let started = Arc::new(AtomicBool::new(false));
        let service = FirstRequest {
            inner: TowerToHyperService::new(router),
            started: Arc::clone(&started),
        };
        let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = &mut conn => r,
            () = tokio::time::sleep(header_read_timeout) => {
                if !started.load(Ordering::Relaxed) {
                    tracing::debug!("closing a connection that sent no request in time");
                    return;
                }
                conn.await
            }
        };
        if let Err(e) = result {
            // Clients that vanish, time out or speak garbage: routine.
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Errors of one connection (the peer gave up before it was accepted),
/// after which the listener simply goes on.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// The router as a hyper service that notes its first request.
#[derive(Clone)]
struct FirstRequest {
    inner: TowerToHyperService<Router>,
    started: Arc<AtomicBool>,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for FirstRequest {
    type Response =
        <TowerToHyperService<Router> as hyper::service::Service<axum::http::Request<Incoming>>>::Response;
    type Error =
        <TowerToHyperService<Router> as hyper::service::Service<axum::http::Request<Incoming>>>::Error;
    type Future =
        <TowerToHyperService<Router> as hyper::service::Service<axum::http::Request<Incoming>>>::Future;

    fn call(&self, req: axum::http::Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        self.inner.call(req)
    }
}
