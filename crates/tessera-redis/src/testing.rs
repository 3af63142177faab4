//! Test support (feature `testing`): a private `redis-server` for tests,
//! one per test binary, on a free loopback port (never 6379), in its own temporary
//! directory, with persistence off. It is stopped when the test process
//! ends, however it ends: a small shell waits on a pipe from this process
//! and kills the server when the pipe closes.
//!
//! There is no skipping: without `redis-server` on PATH every test that
//! needs one fails, saying so (`./scripts/test` installs it).

// Test support: a server that cannot start fails the test that needs it.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{RedisOptions, RedisStore};

/// A running private `redis-server`; dropping it stops the server.
pub struct Server {
    /// The loopback port it listens on.
    pub port: u16,
    /// The TLS port, for a [`tls_server`].
    pub tls_port: Option<u16>,
    _dir: tempfile::TempDir,
    // Kept so the watchdog's stdin (the pipe) stays open while we live.
    _watchdog: Child,
}

impl Server {
    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

/// Whether the server on `port` answers and is the one started in `dir`
/// (another test process may have taken the port in between).
fn is_ours(port: u16, dir: &std::path::Path) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    let Ok(answer) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query::<Vec<String>>(&mut conn)
    else {
        return false;
    };
    let ours = std::fs::canonicalize(dir).ok();
    answer.get(1).map(std::path::PathBuf::from) == ours
}

fn start() -> Server {
    start_on(None)
}

fn start_on(fixed_port: Option<u16>) -> Server {
    start_with(fixed_port, None)
}

/// Starts a server; with `tls` = (cert, key, CA) files it also listens
/// with TLS on a second free port.
fn start_with(fixed_port: Option<u16>, tls: Option<[&std::path::Path; 3]>) -> Server {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(found, Ok(s) if s.success()),
        "redis-server is not on PATH: the Redis store's tests need it \
         (Debian: apt-get install redis-server; ./scripts/test installs it)"
    );
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let port = fixed_port.unwrap_or_else(free_port);
        let tls_port = tls.map(|_| free_port());
        let tls_args = match (tls, tls_port) {
            (Some([cert, key, ca]), Some(p)) => format!(
                "--tls-port {p} --tls-cert-file '{}' --tls-key-file '{}' --tls-ca-cert-file '{}' \
                 --tls-auth-clients no",
                cert.display(),
                key.display(),
                ca.display()
            ),
            _ => String::new(),
        };
        let cmd = format!(
            "redis-server --bind 127.0.0.1 --port {port} --dir '{}' --save '' --appendonly no \
             --protected-mode yes --logfile '{}/redis.log' {tls_args} & pid=$!; \
             cat >/dev/null; kill $pid; wait $pid",
            dir.path().display(),
            dir.path().display(),
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh for redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if is_ours(port, dir.path()) {
                return Server {
                    port,
                    tls_port,
                    _dir: dir,
                    _watchdog: watchdog,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Port taken in between, or a slow start: drop the watchdog (its
        // pipe closes, it kills its server) and try another port.
        drop(watchdog);
    }
    panic!("redis-server did not start on a free port after 5 tries");
}

/// The binary's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// A fresh, empty store: its own prefix on the shared server, so cases
/// run concurrently without seeing each other (no FLUSHALL). Panics if
/// the server cannot be reached: this is test support.
pub async fn fresh_store(buckets: Option<u32>) -> RedisStore {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    // The pid too: under nextest each case is its own process, and two
    // processes could end up on one server.
    let options = RedisOptions {
        prefix: RedisOptions::prefix_for(&format!("t{}-{n}", std::process::id())),
        buckets,
        ..RedisOptions::default()
    };
    RedisStore::connect_with(&server().url(), options)
        .await
        .expect("connect to the private redis-server")
}

/// A server of the caller's own (stopped when dropped), for tests that
/// stop Redis under a store.
pub fn private_server() -> Server {
    start()
}

/// A private server that also speaks TLS, with the certificate and key
/// files given (the CA file is what it would check client certificates
/// against; it does not ask for any).
pub fn tls_server(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Server {
    start_with(None, Some([cert, key, ca]))
}

/// A new, empty server on the port a stopped one had.
pub fn restart_on(port: u16) -> Server {
    start_on(Some(port))
}

/// A store with its own prefix on `server`.
pub async fn store_on(server: &Server, options: RedisOptions) -> RedisStore {
    RedisStore::connect_with(&server.url(), options)
        .await
        .expect("connect to a private redis-server")
}

/// A plain connection to the shared server, to look at the keys.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(server().url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}
