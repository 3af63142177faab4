//! Test support (feature `testing`): the memcached tests run against.
//!
//! `TESSERA_TEST_MEMCACHED_URL` (a `memcached://HOST:PORT` URL, as
//! `./scripts/test` exports) names a running server; without it a private
//! `memcached` is started on a free loopback port, one per test process,
//! and stopped when the process ends however it ends (a small shell waits
//! on a pipe from this process and kills the server when the pipe closes).
//! Every store made here has a prefix of its own, so tests share a server
//! without seeing each other.
//!
//! There is no skipping: without `memcached` on PATH every test that needs
//! one fails, saying so (`./scripts/test` installs it).

// Test support: a server that cannot start fails the test that needs it.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{MemcachedOptions, MemcachedStore};

/// A running private `memcached`; dropping it stops the server.
pub struct Server {
    /// The loopback port it listens on.
    pub port: u16,
    // Kept so the watchdog's stdin (the pipe) stays open while we live.
    watchdog: Child,
}

impl Server {
    /// `memcached://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port)
    }

    /// Stops the server and waits until it has exited (everything it held
    /// is gone: memcached keeps nothing).
    pub fn stop(self) -> u16 {
        let port = self.port;
        stop_watchdog(self.watchdog);
        port
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn watched(command: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} & pid=$!; cat >/dev/null; kill $pid; wait $pid"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sh for memcached")
}

fn stop_watchdog(mut watchdog: Child) {
    drop(watchdog.stdin.take());
    let _ = watchdog.wait();
}

/// One plain-text command on a fresh connection, its answer up to `END`
/// (`stats …`, `lru_crawler metadump …`) or its first line (anything else).
pub fn text_command(port: u16, command: &str) -> std::io::Result<Vec<String>> {
    let multi = command.starts_with("stats") || command.starts_with("lru_crawler metadump");
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end().to_owned();
        let end = line == "END" || (!multi && !line.starts_with("STAT ")) || line.starts_with("ERROR");
        out.push(line);
        if end {
            break;
        }
    }
    Ok(out)
}

/// Starts a memcached on `port` (a free one if `None`) with `extra`
/// arguments.
pub fn start_on(port: Option<u16>, extra: &str) -> Server {
    let found = Command::new("memcached")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(found, Ok(s) if s.success()),
        "memcached is not on PATH: the Memcached store's tests need it \
         (Debian: apt-get install memcached; ./scripts/test installs it)"
    );
    let user = if is_root() { "-u nobody" } else { "" };
    for _ in 0..5 {
        let p = port.unwrap_or_else(free_port);
        let watchdog = watched(&format!("memcached -l 127.0.0.1 -p {p} -U 0 {user} {extra}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if text_command(p, "version").is_ok_and(|l| l.first().is_some_and(|v| v.starts_with("VERSION"))) {
                return Server { port: p, watchdog };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_watchdog(watchdog);
    }
    panic!("memcached did not start on a free port after 5 tries");
}

/// A server of the caller's own (stopped when dropped or [`Server::stop`]ped).
pub fn private_server() -> Server {
    start_on(None, "")
}

/// The URL of the server tests share: `TESSERA_TEST_MEMCACHED_URL`, or
/// this process's private one, started on first use.
pub fn server_url() -> String {
    static SERVER: OnceLock<Server> = OnceLock::new();
    match std::env::var("TESSERA_TEST_MEMCACHED_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => SERVER.get_or_init(private_server).url(),
    }
}

/// A prefix no other store of this or another test process uses.
pub fn fresh_prefix() -> String {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("t{}-{nanos}-{n}:", std::process::id())
}

/// A fresh, empty store on the shared server (its own prefix).
pub async fn fresh_store() -> MemcachedStore {
    store_on(&server_url(), &fresh_prefix()).await
}

/// A store on `url` with `prefix`, connected.
pub async fn store_on(url: &str, prefix: &str) -> MemcachedStore {
    let mut options = MemcachedOptions::from_url(url).expect("a memcached:// URL");
    options.prefix = prefix.to_owned();
    let store = MemcachedStore::with_options(options);
    tessera_core::StoreHealth::ping(&store)
        .await
        .expect("the test memcached answers");
    store
}
