//! Starts the real `tessera` binary on a free port with its own temporary
//! data directory and SQLite file, and talks to it over HTTP.
//!
//! Every response that passes through [`TestServer::send`] is scanned for
//! issued secrets (`tss_…`, `tsk_…`, `tsr_…` and JWT access tokens,
//! `eyJ….eyJ….…`); [`TestServer::finish`] then asserts that none of them
//! ever reached the server's logs, and that the logs hold nothing shaped
//! like an access token at all (SC-15).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Length of the base64url body of every secret token (32 bytes).
pub const SECRET_CHARS: usize = 43;
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-test server options.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Extra environment variables (`TESSERA_SECTION_KEY=…`).
    pub env: Vec<(String, String)>,
    /// Contents of a TOML file passed with `--config`.
    pub config: Option<String>,
    /// `RUST_LOG` for the child (default `info`).
    pub rust_log: Option<String>,
    /// The store URL (default: a SQLite file in the test's directory).
    pub store: Option<String>,
    /// An API key put in the data directory as `bootstrap-api-key` before
    /// the start: for another server on a store a first one set up (which
    /// then creates none).
    pub api_key: Option<String>,
    /// The node joins a store shared with other nodes: the bootstrap API
    /// key file may be in another node's data directory (set
    /// [`TestServer::api_key`] to it), so its absence is no failure.
    pub joins: bool,
    /// The server listens with TLS (`TESSERA_TLS_*` in `env`): the base URL
    /// is `https://` and the test's client trusts this CA (PEM).
    pub https_ca: Option<String>,
    /// The certificate and key (one PEM) the test's client presents.
    pub client_identity: Option<String>,
}

impl Opts {
    /// See [`Opts::client_identity`].
    pub fn client_identity(mut self, pem: &str) -> Self {
        self.client_identity = Some(pem.to_owned());
        self
    }

    /// See [`Opts::https_ca`].
    pub fn https(mut self, ca_pem: &str) -> Self {
        self.https_ca = Some(ca_pem.to_owned());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    pub fn store(mut self, url: &str) -> Self {
        self.store = Some(url.to_owned());
        self
    }

    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    /// See [`Opts::joins`].
    pub fn joining(mut self) -> Self {
        self.joins = true;
        self
    }

    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = Some(filter.to_owned());
        self
    }
}

/// A decoded HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// Asserts the status, that the body is an RFC 9457 problem document
    /// with this `code`, and returns the document.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {} {}",
            self.status,
            self.text()
        );
        check_problem(self, code).unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        self
    }

    #[track_caller]
    pub fn assert_no_store(&self) -> &Self {
        let cc = self.header("cache-control").unwrap_or_default();
        assert!(
            cc.to_ascii_lowercase().split(',').any(|d| d.trim() == "no-store"),
            "expected Cache-Control: no-store, got {cc:?} (status {})",
            self.status
        );
        self
    }
}

/// Checks the problem-document shape (content type, members, `type` URN,
/// `status` echo) and the `code`.
pub fn check_problem(r: &Resp, code: &str) -> Result<Value, String> {
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/problem+json") {
        return Err(format!(
            "content-type {ct:?} is not application/problem+json (status {}, body {:?})",
            r.status,
            r.text()
        ));
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("problem body is not JSON: {e}: {:?}", r.text()))?;
    let want_type = format!("urn:tessera:error:{code}");
    if v["code"] != code {
        return Err(format!("problem code {} != {code:?}; body {v}", v["code"]));
    }
    if v["type"] != want_type.as_str() {
        return Err(format!("problem type {} != {want_type:?}; body {v}", v["type"]));
    }
    if v["status"] != r.status {
        return Err(format!(
            "problem status {} != HTTP status {}",
            v["status"], r.status
        ));
    }
    for m in ["title", "detail"] {
        if !v[m].is_string() || v[m].as_str().is_some_and(str::is_empty) {
            return Err(format!("problem member {m:?} missing or empty; body {v}"));
        }
    }
    Ok(v)
}

/// A freshly created session.
#[derive(Debug, Clone)]
pub struct Created {
    pub token: String,
    pub handle: String,
    pub cookie: String,
    pub session: Value,
    pub resp: Resp,
}

pub struct TestServer {
    dir: TempDir,
    child: Option<Child>,
    generation: u32,
    pub addr: SocketAddr,
    pub base: String,
    pub api_key: String,
    pub http: reqwest::Client,
    opts: Opts,
    secrets: Mutex<BTreeSet<String>>,
}

impl TestServer {
    pub async fn start(opts: Opts) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("tessera-it-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        if let Some(key) = &opts.api_key {
            std::fs::write(
                dir.path().join("data").join("bootstrap-api-key"),
                format!("{key}\n"),
            )
            .expect("API key file");
        }
        if let Some(cfg) = &opts.config {
            std::fs::write(dir.path().join("tessera.toml"), cfg).expect("config file");
        }
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15));
        if let Some(ca) = &opts.https_ca {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM"));
        }
        if let Some(id) = &opts.client_identity {
            http = http.identity(reqwest::Identity::from_pem(id.as_bytes()).expect("identity PEM"));
        }
        let http = http.build().expect("http client");
        let mut srv = TestServer {
            dir,
            child: None,
            generation: 0,
            addr: "127.0.0.1:1".parse().unwrap(),
            base: String::new(),
            api_key: String::new(),
            http,
            opts,
            secrets: Mutex::new(BTreeSet::new()),
        };
        srv.spawn().await;
        srv
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn store_url(&self) -> String {
        if let Some(url) = &self.opts.store {
            return url.clone();
        }
        format!("sqlite://{}", self.dir.path().join("t.db").display())
    }

    pub fn bootstrap_key_path(&self) -> PathBuf {
        self.data_dir().join("bootstrap-api-key")
    }

    fn log_path(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("server-{generation}.log"))
    }

    /// Runs the `tessera` binary with the same store and data dir (for CLI
    /// subcommands); returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TESSERA_STORE", self.store_url())
            .env("TESSERA_DATA_DIR", self.data_dir())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run tessera CLI");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.note_secrets(&stdout);
        (out.status, stdout, stderr)
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.generation += 1;
        let port = free_port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let scheme = if self.opts.https_ca.is_some() {
            "https"
        } else {
            "http"
        };
        self.base = format!("{scheme}://{}", self.addr);
        let log = File::create(self.log_path(self.generation)).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--store")
            .arg(self.store_url())
            .arg("--data-dir")
            .arg(self.data_dir());
        if self.opts.config.is_some() {
            cmd.arg("--config").arg(self.dir.path().join("tessera.toml"));
        }
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", self.opts.rust_log.as_deref().unwrap_or("info"))
            .env("RUST_BACKTRACE", "1")
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn tessera");
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                panic!(
                    "tessera exited during start-up with {status}; log:\n{}",
                    self.logs()
                );
            }
            if let Ok(r) = self
                .http
                .get(self.url("/healthz"))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                && r.status() == 200
            {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "tessera did not answer /healthz within {START_TIMEOUT:?}; log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.opts.joins && !self.bootstrap_key_path().exists() {
            return;
        }
        let key = std::fs::read_to_string(self.bootstrap_key_path()).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; log:\n{}",
                self.bootstrap_key_path().display(),
                self.logs()
            )
        });
        assert!(
            key.ends_with('\n'),
            "bootstrap-api-key must be the key and a newline: {key:?}"
        );
        let key = key.trim_end().to_owned();
        assert!(
            is_secret("tsk_", &key),
            "bootstrap key is not a tsk_ token of {SECRET_CHARS} base64url characters"
        );
        self.secrets.lock().unwrap().insert(key.clone());
        self.api_key = key;
    }

    /// Everything the server printed so far, all generations.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for g in 1..=self.generation {
            if let Ok(b) = std::fs::read(self.log_path(g)) {
                out.push_str(&format!("----- server generation {g} -----\n"));
                out.push_str(&String::from_utf8_lossy(&b));
            }
        }
        out
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// SIGTERM and wait (≤ `within`) for the process to exit.
    pub async fn stop_within(&mut self, within: Duration) -> ExitStatus {
        let pid = self.pid();
        send_signal(pid, "TERM");
        self.wait_exit(within).await
    }

    /// Waits for an exit already requested with [`send_signal`].
    pub async fn stop_within_after_signal(&mut self, within: Duration) -> ExitStatus {
        self.wait_exit(within).await
    }

    /// Graceful stop; asserts a clean exit.
    pub async fn stop(&mut self) {
        let status = self.stop_within(Duration::from_secs(10)).await;
        assert!(
            status.success(),
            "tessera exited with {status} after SIGTERM; log:\n{}",
            self.logs()
        );
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("server not running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("server not running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "tessera did not exit within {within:?} of SIGTERM; log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts the binary again on the same data dir and database.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Remembers every secret-looking value in `text` (tokens and JWT
    /// access tokens) for the SC-15 check.
    pub fn note_secrets(&self, text: &str) {
        let mut found = find_secrets(text);
        found.extend(find_access_tokens(text));
        if !found.is_empty() {
            self.secrets.lock().unwrap().extend(found);
        }
    }

    pub fn secrets(&self) -> Vec<String> {
        self.secrets.lock().unwrap().iter().cloned().collect()
    }

    /// A request with the bootstrap API key.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let resp = self.send_any(rb).await;
        if resp.status >= 500 {
            panic!(
                "server answered {}: {}\nlog:\n{}",
                resp.status,
                resp.text(),
                self.logs()
            );
        }
        resp
    }

    /// [`send`](Self::send) that also returns a 5xx (tests of outages).
    pub async fn send_any(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}; log:\n{}", self.logs()));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("read body").to_vec();
        for v in headers.values() {
            self.note_secrets(&String::from_utf8_lossy(v.as_bytes()));
        }
        self.note_secrets(&String::from_utf8_lossy(&body));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.req(Method::POST, path).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(self.req(Method::PATCH, path).json(body)).await
    }

    /// `POST /v1/sessions`, asserting 201 and the response shape.
    pub async fn create(&self, body: Value) -> Created {
        let resp = self.post("/v1/sessions", &body).await;
        assert_eq!(resp.status, 201, "create failed: {}", resp.text());
        let v = resp.json();
        let token = v["session_token"].as_str().expect("session_token").to_owned();
        assert!(
            is_secret("tss_", &token),
            "session_token {token:?} is not a tss_ token"
        );
        let cookie = v["cookie"].as_str().expect("cookie").to_owned();
        let session = v["session"].clone();
        let handle = session["handle"].as_str().expect("session.handle").to_owned();
        assert!(handle.starts_with("ses_"), "handle {handle:?}");
        Created {
            token,
            handle,
            cookie,
            session,
            resp,
        }
    }

    pub async fn verify(&self, token: &str) -> Resp {
        self.post(
            "/v1/sessions/verify",
            &serde_json::json!({ "session_token": token }),
        )
        .await
    }

    /// Asserts the token verifies and returns the session view.
    pub async fn assert_verifies(&self, token: &str) -> Value {
        let r = self.verify(token).await;
        assert_eq!(r.status, 200, "token should verify: {}", r.text());
        r.json()["session"].clone()
    }

    /// Every event, following `next` until an empty page.
    pub async fn all_events(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/events?limit=1000{query}");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, 200, "events: {}", r.text());
            let v = r.json();
            let page = v["events"].as_array().expect("events array").clone();
            let next = v["next"].as_str().expect("next must be a string").to_owned();
            if page.is_empty() {
                return out;
            }
            out.extend(page);
            after = Some(next);
        }
    }

    /// SC-15: no issued secret appears in anything the server logged.
    #[track_caller]
    pub fn assert_logs_clean(&self) {
        let logs = self.logs();
        let secrets = self.secrets();
        assert!(!secrets.is_empty(), "no secrets recorded; the scan is broken");
        if let Some(leak) = log_leaks(&logs, &secrets).first() {
            panic!("SC-15: {leak} appears in the server log:\n{logs}");
        }
    }

    /// The end of a test: the logs are free of secrets, and the server
    /// shuts down cleanly.
    pub async fn finish(mut self) {
        self.assert_logs_clean();
        if self.child.is_some() {
            self.stop().await;
        }
        self.assert_logs_clean();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().unwrap().port()
}

pub fn send_signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

pub fn is_secret(prefix: &str, s: &str) -> bool {
    s.len() == prefix.len() + SECRET_CHARS
        && s.starts_with(prefix)
        && s.bytes().skip(prefix.len()).all(is_b64url)
}

/// Every `tss_`/`tsk_`/`tsr_` followed by 43 base64url characters.
pub fn find_secrets(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for prefix in ["tss_", "tsk_", "tsr_"] {
        let mut i = 0;
        while let Some(pos) = text[i..].find(prefix) {
            let start = i + pos;
            let body = start + prefix.len();
            let end = body + SECRET_CHARS;
            if end <= b.len() && b[body..end].iter().all(|&c| is_b64url(c)) {
                out.push(text[start..end].to_owned());
            }
            i = body;
        }
    }
    out
}

/// Every JWT-shaped value in `text`: three base64url segments joined by
/// dots, the first (the header) starting `eyJ` (`{"`), and a signature of
/// at least 32 characters (EdDSA and ES256 give 86, RS256 342).
pub fn find_access_tokens(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let segment = |from: usize| from + b[from..].iter().take_while(|&&c| is_b64url(c)).count();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("eyJ") {
        let start = i + pos;
        i = start + 3;
        let h_end = segment(start);
        if b.get(h_end) != Some(&b'.') {
            continue;
        }
        let p_end = segment(h_end + 1);
        if p_end == h_end + 1 || b.get(p_end) != Some(&b'.') {
            continue;
        }
        let s_end = segment(p_end + 1);
        if s_end - (p_end + 1) < 32 {
            continue;
        }
        out.push(text[start..s_end].to_owned());
        i = s_end;
    }
    out
}

/// What of `secrets` (noted from responses) shows in `logs`, and any
/// access token in them at all, described without the secret itself. For
/// a prefixed token its 43-character body is enough to be a leak; for an
/// access token its signature.
pub fn log_leaks(logs: &str, secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        let marker = match s.get(..4) {
            Some("tss_" | "tsk_" | "tsr_") => &s[4..],
            _ => s.rsplit('.').next().unwrap_or(s),
        };
        if !marker.is_empty() && logs.contains(marker) {
            out.push(format!("a secret ({}…)", s.get(..8).unwrap_or(s)));
        }
    }
    for t in find_access_tokens(logs) {
        out.push(format!("an access token ({}…)", &t[..8]));
    }
    out
}

/// A well-formed session token the server never issued: canonical base64url
/// of 32 random-looking bytes (the last character carries 2 zero bits).
pub fn forged_token(prefix: &str, seed: u64) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const LAST: &[u8] = b"AEIMQUYcgkosw048";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::from(prefix);
    for i in 0..SECRET_CHARS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i == SECRET_CHARS - 1 {
            s.push(LAST[(x % 16) as usize] as char);
        } else {
            s.push(ALPHA[(x % 64) as usize] as char);
        }
    }
    s
}

/// A cookie's attributes: `(name, value, [(attr-lowercase, value)])`.
pub fn parse_set_cookie(c: &str) -> (String, String, Vec<(String, String)>) {
    let mut parts = c.split(';').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let (name, value) = first.split_once('=').unwrap_or((first, ""));
    let attrs = parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect();
    (name.to_owned(), value.to_owned(), attrs)
}

/// Seconds between two RFC 3339 timestamps (b − a).
pub fn secs_between(a: &str, b: &str) -> f64 {
    let pa = parse_time(a);
    let pb = parse_time(b);
    (pb - pa).as_seconds_f64()
}

pub fn parse_time(s: &str) -> time::OffsetDateTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert_eq!(t.offset(), time::UtcOffset::UTC, "timestamp {s:?} is not UTC");
    t
}

/// A raw HTTP/1.1 exchange, for requests a client library would refuse or
/// normalise (dot segments, NUL escapes, non-UTF-8 header bytes). Sends
/// `Connection: close` and reads to EOF.
pub async fn raw_http(addr: SocketAddr, head: &[u8], body: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = head.to_vec();
    req.extend_from_slice(body);
    // The server may answer (and close) before it has read a large body.
    let _ = s.write_all(&req).await;
    let _ = s.flush().await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    if buf.is_empty() {
                        panic!("raw read failed before any response: {e}");
                    }
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "raw request timed out; got so far: {:?}",
        String::from_utf8_lossy(&buf)
    );
    parse_raw_response(&buf)
}

fn parse_raw_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.append(
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
                reqwest::header::HeaderValue::from_str(v.trim()).expect("header value"),
            );
        }
    }
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_str().unwrap_or("").eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// Reads a file's Unix permission bits.
pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// Runs `tessera serve` with options that must make it refuse to start;
/// returns the exit status and everything it printed.
pub fn serve_must_fail(opts: &Opts) -> (ExitStatus, String) {
    let dir = tempfile::Builder::new()
        .prefix("tessera-it-fail-")
        .tempdir()
        .expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--store")
        .arg(format!("sqlite://{}", dir.path().join("t.db").display()))
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    if let Some(cfg) = &opts.config {
        std::fs::write(dir.path().join("tessera.toml"), cfg).expect("config file");
        cmd.arg("--config").arg(dir.path().join("tessera.toml"));
    }
    let mut child = cmd
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tessera");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "tessera serve kept running with a bad configuration {opts:?}; output:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status, text)
}

#[cfg(test)]
mod scanner_tests {
    use super::*;

    const ACCESS_TOKEN: &str = concat!(
        "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0",
        ".eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6ImFsaWNlIn0",
        ".c2lnbmF0dXJlLW9mLWVpZ2h0eS1zaXgtY2hhcmFjdGVycy1vci1zby1vbmx5LWZvci10aGUtc2Nhbm5lci10ZXN0",
    );

    /// The SC-15 scan once looked only for `tss_`/`tsk_`/`tsr_` tokens: a
    /// log line holding an access token passed it.
    #[test]
    fn the_log_scan_catches_access_tokens() {
        let response = format!(r#"{{"access_token":"{ACCESS_TOKEN}","token_type":"Bearer"}}"#);
        let noted = find_access_tokens(&response);
        assert_eq!(noted, [ACCESS_TOKEN]);
        let line = format!(
            "2026-01-01T00:00:00Z INFO tessera: request authorization=\"Bearer {ACCESS_TOKEN}\" status=200\n"
        );
        assert!(
            !log_leaks(&line, &noted).is_empty(),
            "the scan missed a logged access token"
        );
        // Even one the scan never saw in a response.
        assert!(!log_leaks(&line, &["tss_x".repeat(9)]).is_empty());
        // Only its signature, cut from the rest, is still a leak.
        let sig = ACCESS_TOKEN.rsplit('.').next().unwrap();
        assert!(!log_leaks(&format!("sig={sig}"), &noted).is_empty());
        // Clean lines stay clean: claims and handles are not tokens.
        let clean = "INFO tessera: session verified sid=ses_AAAA sub=alice kid=k1 alg=EdDSA eyJ.not.jwt\n";
        assert!(
            log_leaks(clean, &noted).is_empty(),
            "{:?}",
            log_leaks(clean, &noted)
        );
    }
}
