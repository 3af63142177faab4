//! A TCP proxy for the fault tests, put between the service and Redis: it
//! forwards bytes both ways and can add latency, stall or cut the path.
//!
//! - `set_delay(d)`: every chunk read is written `d` after it was read, so
//!   a round trip takes `2 × d` more, however many are in flight (a slow
//!   network, not a slow link: chunks do not queue behind each other).
//! - `Mode::Blackhole`: nothing moves any more, and new connections are
//!   accepted and then left hanging; bytes held are delivered, in order,
//!   once the mode changes (a stalled path, as TCP sees one: it never
//!   drops bytes inside a stream, which a client pairing answers with
//!   commands by their order relies on).
//! - `Mode::Down`: every open connection is cut and new ones are closed at
//!   once (a Redis gone away). `cut()` cuts the open ones only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    Blackhole,
    Down,
}

/// The mode and how many cuts there were: a connection ends at the first
/// cut after it began, even one undone before it looked.
#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    cuts: u64,
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    state: Arc<watch::Sender<State>>,
    delay_ms: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// A proxy on a free loopback port to `upstream`, forwarding at once.
    pub async fn start(upstream: SocketAddr) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(watch::Sender::new(State {
            mode: Mode::Up,
            cuts: 0,
        }));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, d) = (state.clone(), delay_ms.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(connection(client, upstream, s.subscribe(), d.clone()));
            }
        });
        ChaosProxy {
            addr,
            state,
            delay_ms,
            accept,
        }
    }

    /// `redis://` through the proxy, with the store options `query`.
    pub fn url(&self, query: &str) -> String {
        format!("redis://{}/?{query}", self.addr)
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.send_modify(|s| {
            if mode == Mode::Down && s.mode != Mode::Down {
                s.cuts += 1;
            }
            s.mode = mode;
        });
    }

    /// Cuts every open connection; new ones go through.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.cuts += 1);
    }

    /// Down and up again every `half` until the task is aborted (then set
    /// the mode you want).
    pub fn flap(&self, half: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                state.send_modify(|s| (s.mode, s.cuts) = (Mode::Down, s.cuts + 1));
                tokio::time::sleep(half).await;
                state.send_modify(|s| s.mode = Mode::Up);
                tokio::time::sleep(half).await;
            }
        })
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_mode(Mode::Down);
    }
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
    delay: Arc<AtomicU64>,
) {
    let cuts = state.borrow().cuts;
    // Blackholed: the connect succeeded, and then nothing happens.
    let Ok(s) = state.wait_for(|s| s.mode != Mode::Blackhole).await.map(|s| *s) else {
        return;
    };
    if s.mode == Mode::Down || s.cuts != cuts {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let ((cr, cw), (sr, sw)) = (client.into_split(), server.into_split());
    let mut cut = state.clone();
    tokio::select! {
        _ = pump(cr, sw, state.clone(), delay.clone()) => {}
        _ = pump(sr, cw, state, delay) => {}
        _ = cut.wait_for(|s| s.mode == Mode::Down || s.cuts != cuts) => {}
    }
}

/// One direction: each chunk goes out `delay` after it came in, and
/// nothing moves while blackholed.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: watch::Receiver<State>,
    delay: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let (mut r_state, mut w_state) = (state.clone(), state);
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while r_state.wait_for(|s| s.mode != Mode::Blackhole).await.is_ok() {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
            if tx.send((at, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w_state.wait_for(|s| s.mode != Mode::Blackhole).await.is_err()
                || to.write_all(&chunk).await.is_err()
            {
                return;
            }
        }
    };
    tokio::join!(read, write);
}
