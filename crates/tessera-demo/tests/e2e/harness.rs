//! The processes and helpers behind the browser scenarios: the demo binary, one
//! chromedriver for the whole test binary, one fresh Chromium profile per
//! simulated device, a second "attacker" web server, and a plain HTTP client for
//! checks the browser cannot make (response headers, replaying old cookies).
//!
//! Everything started here is stopped when its guard is dropped.

use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The session cookie's name in the demo's default (secure) mode.
pub const COOKIE: &str = "__Host-tessera";

/// The password every scenario signs up with, unless it changes it.
pub const PASSWORD: &str = "e2e-Correct-Horse-1";

/// How long a page may take to appear after a click or a navigation.
const NAV_TIMEOUT: Duration = Duration::from_secs(15);

/// The Chromium flags for running as root in a container without a display
/// (see shared/reference/crates.md §2.6); the background-networking ones keep
/// Chromium from calling home on this machine's closed network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

// ------------------------------------------------------------------ paths, ports

/// The workspace root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| manifest.join("../.."))
}

/// `<repo>/test-artifacts/`, created on first use (git-ignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = repo_root().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts/");
    dir
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Finds an executable on PATH, like `which`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Resolves a required system tool or fails the test with the fix.
fn require_tool(bin: &str, debian_pkg: &str) -> Result<PathBuf> {
    which(bin).ok_or_else(|| {
        anyhow!(
            "`{bin}` is not on PATH, so the browser E2E tests cannot run. Install the Debian \
             package `{debian_pkg}` (`apt-get install -y chromium chromium-driver`); \
             ./scripts/test installs it automatically."
        )
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------ processes

/// A child process in its own process group. Dropping it sends SIGTERM to the
/// group (chromedriver's Chromium children included), then SIGKILL.
pub struct ProcessGuard {
    child: Child,
}

impl ProcessGuard {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {name} ({cmd:?})"))?;
        Ok(Self { child })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal_group("-TERM");
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Whatever is left of the group (a straggling renderer, say).
        self.signal_group("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo binary on a free port with a fresh data directory.
pub struct Demo {
    pub port: u16,
    /// `http://127.0.0.1:PORT`, the one origin every scenario uses.
    pub base: String,
    pub log: PathBuf,
    _proc: ProcessGuard,
    _data: tempfile::TempDir,
}

impl Demo {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[], "e2e-demo.log").await
    }

    /// The demo with `extra` arguments; over HTTPS when they include
    /// `--tls-self-signed` (its certificate is then accepted without checks
    /// by the harness's own client, and by Chromium through
    /// [`Demo::spki`]).
    pub async fn start_with(extra: &[&str], log_name: &str) -> Result<Self> {
        let data = tempfile::Builder::new().prefix("tessera-e2e-data").tempdir()?;
        let port = free_port();
        let log = artifacts_dir().join(log_name);
        let mut proc = ProcessGuard::spawn(
            "tessera-demo",
            Command::new(env!("CARGO_BIN_EXE_tessera-demo"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data.path())
                .args(extra)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1"),
            &log,
        )?;
        let scheme = if extra.contains(&"--tls-self-signed") {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://127.0.0.1:{port}");
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = proc.exited() {
                bail!(
                    "tessera-demo exited during startup ({status}); its log ({}):\n{}",
                    log.display(),
                    tail(&log, 40)
                );
            }
            if let Ok(resp) = http.get(format!("{base}/login")).send().await {
                ensure!(
                    resp.status().is_success(),
                    "tessera-demo answered GET /login with {}",
                    resp.status()
                );
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "tessera-demo did not answer on {base} within 30 s; log:\n{}",
                    tail(&log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            port,
            base,
            log,
            _proc: proc,
            _data: data,
        })
    }

    /// The base64 SHA-256 of the TLS certificate's SPKI, as the demo logs it
    /// for `--ignore-certificate-errors-spki-list`.
    pub fn spki(&self) -> Result<String> {
        const FLAG: &str = "--ignore-certificate-errors-spki-list=";
        let text = std::fs::read_to_string(&self.log)?;
        let at = text
            .find(FLAG)
            .ok_or_else(|| anyhow!("the demo logged no SPKI hash:\n{}", tail(&self.log, 20)))?;
        let rest = &text[at + FLAG.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
            .unwrap_or(rest.len());
        Ok(rest[..end].to_string())
    }

    /// The lines of the demo's log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// One chromedriver process for the whole test binary.
pub struct Driver {
    pub url: String,
    chromium: PathBuf,
    _proc: ProcessGuard,
    log: PathBuf,
}

impl Driver {
    pub async fn start() -> Result<Self> {
        let chromium = require_tool("chromium", "chromium")?;
        let chromedriver = require_tool("chromedriver", "chromium-driver")?;
        let port = free_port();
        let log = artifacts_dir().join("e2e-chromedriver.log");
        let mut proc = ProcessGuard::spawn(
            "chromedriver",
            Command::new(&chromedriver).arg(format!("--port={port}")),
            &log,
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = proc.exited() {
                bail!("chromedriver exited at startup ({status}):\n{}", tail(&log, 20));
            }
            if let Ok(resp) = http.get(format!("{url}/status")).send().await
                && let Ok(body) = resp.json::<serde_json::Value>().await
                && body["value"]["ready"] == json!(true)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver not ready on {url} within 20 s:\n{}", tail(&log, 20));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            url,
            chromium,
            _proc: proc,
            log,
        })
    }

    /// A new browser "device": a WebDriver session on a fresh, empty profile.
    pub async fn profile(&self, name: &str, demo: &Demo) -> Result<Profile> {
        self.profile_with(name, demo, &[]).await
    }

    /// [`Driver::profile`] with more Chromium flags.
    pub async fn profile_with(&self, name: &str, demo: &Demo, extra: &[String]) -> Result<Profile> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tessera-e2e-{name}-"))
            .tempdir()?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", dir.path().display()));
        args.extend(extra.iter().cloned());
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "accept",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": args,
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::rustls()?
            .capabilities(caps)
            .connect(&self.url)
            .await
            .with_context(|| {
                format!(
                    "open a Chromium session through chromedriver; its log:\n{}",
                    tail(&self.log, 20)
                )
            })?;
        Ok(Profile {
            name: name.to_string(),
            client,
            base: demo.base.clone(),
            _dir: dir,
        })
    }
}

// ------------------------------------------------------------------ the browser "user"

/// One row of the `#sessions` table.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub handle: String,
    pub this_device: bool,
    pub text: String,
}

/// A browser profile: one device of one user.
pub struct Profile {
    pub name: String,
    pub client: Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl Profile {
    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    pub async fn goto(&self, path: &str) -> Result<()> {
        self.client
            .goto(&format!("{}{}", self.base, path))
            .await
            .with_context(|| format!("[{}] goto {path}", self.name))
    }

    pub async fn url(&self) -> Result<url::Url> {
        Ok(self.client.current_url().await?)
    }

    pub async fn path(&self) -> Result<String> {
        Ok(self.url().await?.path().to_string())
    }

    /// The page's visible text, for assertions and failure messages.
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The HTTP status of the document now shown (Navigation Timing Level 2).
    pub async fn status(&self) -> Result<u16> {
        let v = self
            .client
            .execute(
                "const n = performance.getEntriesByType('navigation')[0]; \
                 return n ? n.responseStatus : null;",
                vec![],
            )
            .await?;
        v.as_u64()
            .map(|s| s as u16)
            .ok_or_else(|| anyhow!("no navigation timing entry ({v})"))
    }

    /// Waits until the current URL's path is `path` and the page has loaded.
    pub async fn wait_path(&self, path: &str) -> Result<()> {
        let deadline = Instant::now() + NAV_TIMEOUT;
        loop {
            let now = self.path().await?;
            if now == path && self.ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "[{}] expected to be on {path}, still on {} after {NAV_TIMEOUT:?}; page text: {:?}",
                    self.name,
                    self.url().await?,
                    snippet(&self.body_text().await)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        matches!(
            self.client
                .execute("return document.readyState", vec![])
                .await,
            Ok(v) if v == json!("complete")
        )
    }

    pub async fn find(&self, css: &str) -> Result<Element> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("[{}] no element `{css}` on this page", self.name))
    }

    pub async fn exists(&self, css: &str) -> Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    pub async fn text_of(&self, css: &str) -> Result<String> {
        Ok(self.find(css).await?.text().await?.trim().to_string())
    }

    pub async fn fill(&self, css: &str, value: &str) -> Result<()> {
        let el = self.find(css).await?;
        el.clear().await?;
        el.send_keys(value).await?;
        Ok(())
    }

    /// Clicks `el` and waits until a new document has replaced the current one
    /// (a form POST answered with 303 to the same URL changes nothing visible
    /// in the URL, so a marker on `window` tells the documents apart).
    pub async fn click_and_wait(&self, el: &Element, what: &str) -> Result<()> {
        self.client
            .execute("window.__e2e_old_document = true;", vec![])
            .await?;
        el.click()
            .await
            .with_context(|| format!("[{}] click {what}", self.name))?;
        let deadline = Instant::now() + NAV_TIMEOUT;
        loop {
            let v = self
                .client
                .execute(
                    "return window.__e2e_old_document === undefined \
                     && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            if matches!(v, Ok(ref v) if *v == json!(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "[{}] clicking {what} did not load a new page within {NAV_TIMEOUT:?} (on {})",
                    self.name,
                    self.url().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `css` and waits for the next page.
    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.click_and_wait(&el, css).await
    }

    /// Signs a new user up through `/signup`; ends on `/account`.
    pub async fn signup(&self, user: &str, password: &str) -> Result<()> {
        self.goto("/signup").await?;
        self.fill("#username", user).await?;
        self.fill("#password", password).await?;
        self.click("#signup").await?;
        self.wait_path("/account").await?;
        let who = self.text_of("#whoami").await?;
        ensure!(
            who == user,
            "[{}] #whoami is {who:?} after signing up as {user:?}",
            self.name
        );
        Ok(())
    }

    /// Fills and submits the login form of the current page (`/login`).
    pub async fn submit_login(&self, user: &str, password: &str) -> Result<()> {
        self.fill("#username", user).await?;
        self.fill("#password", password).await?;
        self.click("#login").await
    }

    /// Logs in through `/login`; ends on `/account`.
    pub async fn login(&self, user: &str, password: &str) -> Result<()> {
        self.goto("/login").await?;
        self.submit_login(user, password).await?;
        self.wait_path("/account").await?;
        let who = self.text_of("#whoami").await?;
        ensure!(
            who == user,
            "[{}] #whoami is {who:?} after logging in as {user:?}",
            self.name
        );
        Ok(())
    }

    /// Answers the step-up form on `/reauth`.
    pub async fn reauth(&self, password: &str) -> Result<()> {
        self.wait_path("/reauth").await?;
        self.fill("#password", password).await?;
        self.click("#reauth").await
    }

    /// The session cookie as the browser holds it, if any.
    pub async fn session_cookie(&self) -> Result<Option<Cookie<'static>>> {
        Ok(self
            .client
            .get_all_cookies()
            .await?
            .into_iter()
            .find(|c| c.name() == COOKIE))
    }

    /// The session cookie's value; an error if the browser holds none.
    pub async fn session_value(&self) -> Result<String> {
        self.session_cookie()
            .await?
            .map(|c| c.value().to_string())
            .ok_or_else(|| anyhow!("[{}] the browser holds no {COOKIE} cookie", self.name))
    }

    /// The rows of `#sessions` on the current page (`/account`).
    pub async fn sessions(&self) -> Result<Vec<SessionRow>> {
        self.find("#sessions").await?;
        let mut rows = Vec::new();
        for tr in self.client.find_all(Locator::Css("#sessions tr.session")).await? {
            let handle = tr.attr("data-handle").await?.unwrap_or_default();
            let this_device = !tr.find_all(Locator::Css(".this-device")).await?.is_empty()
                || tr
                    .attr("class")
                    .await?
                    .is_some_and(|c| c.split_whitespace().any(|c| c == "this-device"));
            let text = tr.text().await?;
            rows.push(SessionRow {
                handle,
                this_device,
                text,
            });
        }
        Ok(rows)
    }

    /// The submit control of the form `form_css`.
    pub async fn submit_button(&self, form_css: &str) -> Result<Element> {
        self.find(&format!(
            "{form_css} button:not([type=button]):not([type=reset]), {form_css} input[type=submit]"
        ))
        .await
    }

    pub async fn screenshot(&self, file: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = artifacts_dir().join(file);
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

/// The first 300 characters of a text, for error messages.
pub fn snippet(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(300).collect()
}

// ------------------------------------------------------------------ plain HTTP

/// An HTTP client that does not follow redirects and keeps no cookies.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Only ever talks to the demo on 127.0.0.1, whose HTTPS certificate
        // is self-signed.
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client")
}

/// `GET path` with only the given session cookie value.
pub async fn get_with_cookie(demo: &Demo, path: &str, value: &str) -> Result<reqwest::Response> {
    Ok(http_client()
        .get(demo.url(path))
        .header("cookie", format!("{COOKIE}={value}"))
        .send()
        .await?)
}

/// Asserts that a cookie value no longer authenticates: `GET /account` with it
/// answers 303 to `/login`.
pub async fn assert_cookie_dead(demo: &Demo, value: &str, what: &str) -> Result<()> {
    let resp = get_with_cookie(demo, "/account", value).await?;
    let status = resp.status().as_u16();
    let location = header(&resp, "location");
    ensure!(
        status == 303 && location.as_deref().is_some_and(is_login_location),
        "{what}: GET /account with it should answer 303 to /login, got {status} (Location: {location:?})"
    );
    Ok(())
}

/// Asserts that a cookie value authenticates: `GET /account` with it answers 200.
pub async fn assert_cookie_live(demo: &Demo, value: &str, what: &str) -> Result<()> {
    let resp = get_with_cookie(demo, "/account", value).await?;
    let status = resp.status().as_u16();
    ensure!(
        status == 200,
        "{what}: GET /account with it should answer 200, got {status} (Location: {:?})",
        header(&resp, "location")
    );
    Ok(())
}

fn is_login_location(loc: &str) -> bool {
    let path = loc
        .strip_prefix("http://127.0.0.1")
        .map(|rest| rest.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit()))
        .unwrap_or(loc);
    path == "/login" || path.starts_with("/login?")
}

pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

pub fn headers_all(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

// ------------------------------------------------------------------ attacker site

/// A second web server on another port: serves whatever HTML the scenarios
/// register, at `http://127.0.0.1:PORT/<path>` (same site as the demo, other
/// origin) and at `http://localhost:PORT/<path>` (another site).
pub struct Attacker {
    pub port: u16,
    pages: Arc<Mutex<HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Attacker {
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let pages: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = pages.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let pages = served.clone();
                tokio::spawn(serve_one(stream, pages));
            }
        });
        Ok(Self { port, pages, task })
    }

    /// Registers a page that POSTs an (empty, token-less) form to `action` as
    /// soon as it loads.
    pub fn auto_post(&self, path: &str, action: &str) {
        let html = format!(
            "<!doctype html><html><head><title>You won a prize</title></head><body>\
             <form id=\"f\" method=\"POST\" action=\"{action}\">\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\"></form>\
             <script>document.getElementById('f').submit();</script></body></html>"
        );
        self.pages.lock().unwrap().insert(path.to_string(), html);
    }

    pub fn same_site_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn cross_site_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut stream: tokio::net::TcpStream, pages: Arc<Mutex<HashMap<String, String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let page = pages.lock().unwrap().get(&path).cloned();
    let (status, body) = match page {
        Some(html) => ("200 OK", html),
        None => ("404 Not Found", "not found".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\n\
         content-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// ------------------------------------------------------------------ the harness

/// Everything the scenarios share.
pub struct Harness {
    pub demo: Demo,
    pub driver: Driver,
    pub attacker: Attacker,
}

impl Harness {
    pub async fn start() -> Result<Self> {
        // The browser first: a missing Chromium is the likelier failure and
        // its message names the fix.
        let driver = Driver::start().await?;
        let demo = Demo::start().await?;
        let attacker = Attacker::start().await?;
        Ok(Self {
            demo,
            driver,
            attacker,
        })
    }

    pub async fn profile(&self, name: &str) -> Result<Profile> {
        self.driver.profile(name, &self.demo).await
    }

    /// The demo's log, for failure reports.
    pub fn demo_log_tail(&self) -> String {
        tail(&self.demo.log, 30)
    }
}
