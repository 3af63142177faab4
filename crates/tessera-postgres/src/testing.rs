//! Test support (feature `testing`): a PostgreSQL database for tests.
//!
//! If `TESSERA_TEST_POSTGRES_URL` is set (`./scripts/test` starts one
//! private cluster for the whole run and sets it), tests use that server.
//! Otherwise each test binary starts a private cluster of its own on first
//! use: `initdb` into a temporary directory, a free loopback port, fsync
//! off, run as the `postgres` system user when we are root (PostgreSQL
//! refuses to run as root). It is stopped, and its directory removed, when
//! the test process ends, however it ends: a small shell waits on a pipe
//! from this process and stops the server when the pipe closes.
//!
//! Every [`fresh_store`] is a schema of its own, so cases run concurrently
//! on one server without seeing each other.
//!
//! There is no skipping: without PostgreSQL's server binaries every test
//! that needs one fails, saying so (`./scripts/test` installs them).

// Test support: a server that cannot start fails the test that needs it.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{PostgresOptions, PostgresStore};

/// The variable naming a server to test against instead of a private one.
pub const URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// A running private PostgreSQL cluster; dropping it stops the server and
/// removes its directory.
pub struct Server {
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
    /// More `postgres` arguments it was started with.
    extra: String,
    // Kept so the watchdog's stdin (the pipe) stays open while we live.
    watchdog: Child,
}

impl Server {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (a fast shutdown, as an operator's restart would
    /// do) and waits until it has exited; its data is kept for
    /// [`Stopped::start_again`].
    pub fn stop(self) -> Stopped {
        let Server {
            port,
            dir,
            extra,
            watchdog,
        } = self;
        // The watchdog of a stopped server must not remove the data.
        std::fs::write(dir.join("keep"), b"").expect("mark the data directory to keep");
        stop_watchdog(watchdog);
        Stopped { port, dir, extra }
    }
}

/// A server stopped by [`Server::stop`]: its port and its data.
pub struct Stopped {
    pub port: u16,
    dir: PathBuf,
    extra: String,
}

impl Stopped {
    /// Starts it again on the same port and data directory.
    pub fn start_again(mut self) -> Server {
        let dir = std::mem::take(&mut self.dir);
        let _ = std::fs::remove_file(dir.join("keep"));
        run_on(&bin_dir(), dir, self.port, &self.extra)
            .expect("restart the private PostgreSQL server on its port")
    }
}

impl Drop for Stopped {
    /// A stopped server never started again (a test that failed in
    /// between) leaves no directory behind.
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

/// The directory of `initdb` and `postgres`: Debian keeps them out of
/// PATH, in `/usr/lib/postgresql/VERSION/bin` (the newest is taken).
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    // Elsewhere: wherever `pg_config` says, or `initdb` on PATH.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("postgres").is_file() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL's server binaries (initdb, postgres) were not found in /usr/lib/postgresql/*/bin \
         or pg_config --bindir: the PostgreSQL store's tests need them (Debian: apt-get install \
         postgresql; ./scripts/test installs it), or set {URL_VAR} to a server to test against"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `sh -c SCRIPT`, as the `postgres` system user when we are root.
fn shell(script: &str) -> Command {
    let mut cmd;
    if is_root() {
        cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", "sh", "-c", script]);
    } else {
        cmd = Command::new("sh");
        cmd.args(["-c", script]);
    }
    cmd
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Creates a new cluster in a new temporary directory.
fn init() -> (PathBuf, PathBuf) {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("tessera-pg-")
        .tempdir()
        .expect("temp dir for PostgreSQL")
        .keep();
    if is_root() {
        let owned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("run chown");
        assert!(
            owned.success(),
            "chown {} to the postgres user (does it exist? apt-get install postgresql creates it)",
            dir.display()
        );
    }
    let out = shell(&format!(
        "{} -D {} -U postgres --auth=trust -E UTF8 --locale=C --no-sync >{}/initdb.log 2>&1",
        quote(&bin.join("initdb")),
        quote(&dir.join("data")),
        quote(&dir)
    ))
    .status()
    .expect("run initdb");
    assert!(out.success(), "initdb failed; see {}/initdb.log", dir.display());
    (bin, dir)
}

/// Starts `postgres` on `dir`'s cluster under a watchdog shell that stops
/// it (fast shutdown) when our end of its stdin closes, then removes the
/// directory unless a `keep` file is in it.
fn run_on(bin: &Path, dir: PathBuf, port: u16, extra: &str) -> Option<Server> {
    let script = format!(
        "{postgres} -D {data} -p {port} -c listen_addresses=127.0.0.1 -k {dir} -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=500 \
         -c shared_buffers=32MB {extra} >>{dir}/server.log 2>&1 & pid=$!; \
         cat >/dev/null; kill -INT $pid; wait $pid; \
         [ -e {dir}/keep ] || rm -rf {dir}",
        postgres = quote(&bin.join("postgres")),
        data = quote(&dir.join("data")),
        dir = quote(&dir),
    );
    let watchdog = shell(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sh for postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|s| s.success());
        // Ours if our server has written its pid file (another test
        // process may hold the port).
        if ready && dir.join("data/postmaster.pid").exists() {
            return Some(Server {
                port,
                dir,
                extra: extra.to_owned(),
                watchdog,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(dir.join("keep"), b"").ok();
    stop_watchdog(watchdog);
    None
}

fn stop_watchdog(mut watchdog: Child) {
    drop(watchdog.stdin.take());
    let _ = watchdog.wait();
}

/// A new private cluster on a free port (the caller's own: it stops when
/// dropped), for tests that stop the database under a store.
pub fn private_server() -> Server {
    let (bin, dir) = init();
    start_cluster(&bin, dir, "")
}

/// A private cluster that also accepts TLS (`ssl=on`) with this
/// certificate and key (PEM), for the TLS tests.
pub fn private_tls_server(cert_pem: &str, key_pem: &str) -> Server {
    let (bin, dir) = init();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, cert_pem).expect("write the server certificate");
    std::fs::write(&key, key_pem).expect("write the server key");
    // PostgreSQL refuses a key file others can read.
    let mode = Command::new("chmod")
        .arg("600")
        .arg(&key)
        .status()
        .expect("run chmod");
    assert!(mode.success(), "chmod 600 {}", key.display());
    if is_root() {
        let owned = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&cert)
            .arg(&key)
            .status()
            .expect("run chown");
        assert!(owned.success(), "chown the TLS files to postgres");
    }
    let extra = format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        quote(&cert),
        quote(&key)
    );
    start_cluster(&bin, dir, &extra)
}

fn start_cluster(bin: &Path, dir: PathBuf, extra: &str) -> Server {
    for _ in 0..5 {
        if let Some(s) = run_on(bin, dir.clone(), free_port(), extra) {
            return s;
        }
        let _ = std::fs::remove_file(dir.join("keep"));
    }
    panic!(
        "postgres did not start on a free port after 5 tries; see {}/server.log",
        dir.display()
    );
}

/// The server of this test process: `TESSERA_TEST_POSTGRES_URL`, or a
/// private cluster started on first use.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    static SERVER: OnceLock<Server> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => SERVER.get_or_init(private_server).url(),
    })
    .clone()
}

/// A schema name no other store of this run uses.
pub fn fresh_schema() -> String {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    // The pid and the time too: under nextest each case is its own
    // process, and a server given by URL outlives runs.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("t_{}_{t}_{n}", std::process::id())
}

/// `url` with `?schema=…` (or `&schema=…`) appended.
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

/// The URL of a fresh, empty schema on the test server: what two stores
/// share to act as two nodes of one deployment.
pub fn fresh_url() -> String {
    with_schema(&server_url(), &fresh_schema())
}

/// A fresh, empty store: a schema of its own on the test server.
pub async fn fresh_store() -> PostgresStore {
    store_at(&fresh_url()).await
}

/// A store on `url`, connected (and migrated). Panics if the server cannot
/// be reached: this is test support.
pub async fn store_at(url: &str) -> PostgresStore {
    PostgresStore::connect(url).await.unwrap_or_else(|e| {
        panic!(
            "connect to the test PostgreSQL at {}: {e}",
            crate::mask_password(url)
        )
    })
}

/// Options for a store on a private server, with short timeouts so tests
/// that stop the server fail fast.
pub fn quick_options() -> PostgresOptions {
    PostgresOptions {
        statement_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        ..PostgresOptions::default()
    }
}
