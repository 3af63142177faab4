//! The HTTP listener: accepts connections and serves the router on them
//! (HTTP/1.1, and HTTP/2 with prior knowledge), with the limits that keep
//! slow or idle clients from exhausting the service (a slowloris):
//!
//! - at most `[http] max_connections` open connections. When they are all
//!   taken the listener stops accepting until one closes; new clients wait
//!   in the kernel's accept backlog (their connect succeeds, their request
//!   is answered once a slot frees) rather than being refused.
//! - `[http] header_read_timeout_secs` (T): a connection with no request in
//!   progress must complete the head of a request within T of its start or
//!   of its previous request's head, or it is closed without an answer —
//!   whatever it sent meanwhile: half a head, half the HTTP/2 preface, or
//!   nothing (an idle keep-alive connection is closed after T too). A
//!   request in progress (a slow body upload is bounded by the request
//!   timeout instead, a long-poll by its `wait`) keeps its connection open.
//!
//! The timeout is enforced by a per-connection watchdog that looks every
//! T/10 and closes the connection at the tenth look in a row that saw no
//! new request head and nothing in progress: so between 0.9·T and T after
//! the last head. hyper's own `header_read_timeout` arms and disarms a
//! timer for every request head; on the verify hot path that cost 5–10 %
//! of throughput in A/B runs (bench/results.md), which the watchdog's one
//! timer per connection does not.
//!
//! Graceful shutdown: once `stop` resolves the listener closes, every
//! connection finishes the requests it has started and then closes, and
//! connections that have not sent a request yet close at once.
//!
//! The connection is served over any byte stream, so TLS can wrap the TCP
//! stream before [`serve_connection`] without touching the limits.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::limits::PeerAddr;

/// How long the listener pauses after an accept error that is not about
/// one connection (e.g. out of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);
/// The "all connection slots taken" warning is logged at most this often.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Looks of the watchdog per header-read timeout; it closes a connection
/// at the last of them in a row that all saw it idle.
const LOOKS_PER_TIMEOUT: u32 = 10;

/// The listener's limits (`[http]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts connections on `listener` until `stop` resolves, serving
/// `router` on each. Returns the handle whose
/// [`GracefulShutdown::shutdown`] drains the connections still open.
pub async fn accept_loop<S>(
    listener: TcpListener,
    router: S,
    limits: ConnLimits,
    tls: Option<Arc<crate::tls::Tls>>,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown
where
    S: AppService,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let builder = Arc::new(builder());
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
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => (stream, peer),
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
        match &tls {
            None => serve_connection(
                stream,
                WithConnInfo {
                    inner: router.clone(),
                    peer: PeerAddr(peer),
                    cert: None,
                },
                Arc::clone(&builder),
                graceful.watcher(),
                limits.header_read_timeout,
                permit,
            ),
            Some(tls) => {
                let (acceptor, router, builder, watcher) = (
                    tls.acceptor(),
                    router.clone(),
                    Arc::clone(&builder),
                    graceful.watcher(),
                );
                let timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    // The handshake holds the slot, and gets no more time
                    // than a plain connection gets for its first head.
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    let cert = crate::tls::peer_thumbprint(stream.get_ref().1);
                    let router = WithConnInfo {
                        inner: router,
                        peer: PeerAddr(peer),
                        cert,
                    };
                    serve_connection(stream, router, builder, watcher, timeout, permit);
                });
            }
        }
    }
    graceful
}

/// Puts what the connection knows of its client into each request's
/// extensions: the peer address (for the abuse limits) and, on TLS, the
/// client certificate's thumbprint. Only the listener adds them, so no
/// request header can make one up.
#[derive(Clone)]
struct WithConnInfo<S> {
    inner: S,
    peer: PeerAddr,
    cert: Option<tessera_http::bearer::ClientCertThumbprint>,
}

impl<S: AppService> Service<Request> for WithConnInfo<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        if let Some(cert) = &self.cert {
            req.extensions_mut().insert(cert.clone());
        }
        self.inner.call(req)
    }
}

/// HTTP/1.1 and HTTP/2, chosen by the client's first bytes. The
/// header-read timeout is the watchdog's (see the module docs), not hyper's.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http2().timer(TokioTimer::new());
    b
}

/// Serves one connection on its own task, holding `permit` (its slot)
/// until it closes, and closes it (without an answer) once it has been
/// idle — no new request head, nothing in progress — for
/// `header_read_timeout`.
pub fn serve_connection<I, S>(
    io: I,
    router: S,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    header_read_timeout: Duration,
    permit: OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AppService,
{
    tokio::spawn(async move {
        let _slot = permit;
        let activity = Arc::new(Activity::default());
        let service = Tracked {
            inner: router,
            activity: Arc::clone(&activity),
        };
        let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
        let mut conn = std::pin::pin!(conn);
        let period = (header_read_timeout / LOOKS_PER_TIMEOUT).max(Duration::from_millis(1));
        let mut look = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut heads_seen, mut idle_looks) = (0u64, 0u32);
        let result = loop {
            tokio::select! {
                r = &mut conn => break r,
                _ = look.tick() => {
                    let heads = activity.heads.load(Ordering::Relaxed);
                    if heads != heads_seen || activity.in_flight.load(Ordering::Relaxed) > 0 {
                        heads_seen = heads;
                        idle_looks = 0;
                        continue;
                    }
                    idle_looks += 1;
                    if idle_looks >= LOOKS_PER_TIMEOUT - 1 {
                        tracing::debug!("closing a connection that completed no request head in time");
                        return;
                    }
                }
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

/// What the watchdog of one connection reads.
#[derive(Default)]
struct Activity {
    /// Request heads completed so far (hyper calls the service once per head).
    heads: AtomicU64,
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
}

/// Counts one request in flight until dropped.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the listener serves: the application as one tower service.
pub trait AppService:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> AppService for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The application as a hyper service that tells the watchdog about
/// requests.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AppService> hyper::service::Service<axum::http::Request<Incoming>> for Tracked<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = TrackedFuture<S>;

    fn call(&self, req: axum::http::Request<Incoming>) -> Self::Future {
        self.activity.heads.fetch_add(1, Ordering::Relaxed);
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        TrackedFuture {
            inner: self.inner.clone().oneshot(req.map(Body::new)),
            _in_flight: InFlight(Arc::clone(&self.activity)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The application's future, counted in flight until it is dropped. A
    /// named type rather than a boxed `async` block: one allocation less
    /// per request.
    pub struct TrackedFuture<S: AppService> {
        #[pin]
        inner: Oneshot<S, Request>,
        _in_flight: InFlight,
    }
}

impl<S: AppService> Future for TrackedFuture<S> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
