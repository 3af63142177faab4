//! Forward auth through a REAL nginx (`auth_request`): the real `tessera`
//! binary, a small upstream app (axum, in-process) that echoes what it
//! received, and nginx (`/usr/sbin/nginx`, Debian package `nginx`) running
//! the example `deploy/nginx/tessera-forward-auth.conf` itself, with only
//! its addresses and TLS lines rewritten.
//!
//! nginx missing is a failure, never a skip: `./scripts/test` installs it.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method as AxMethod, Uri};
use reqwest::Method;
use reqwest::redirect::Policy;
use serde_json::json;
use tempfile::TempDir;

use crate::harness::{Created, Opts, TestServer, free_port, parse_set_cookie};

const NGINX: &str = "/usr/sbin/nginx";
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/nginx/tessera-forward-auth.conf"
);
const COOKIE: &str = "__Host-tessera";

// ------------------------------------------------------------- upstream app

/// One request as the app saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    subject: Vec<String>,
    session: Vec<String>,
    level: Vec<String>,
    body: Vec<u8>,
}

/// The protected application: answers 200 to anything and remembers what
/// nginx passed it.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Upstream {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let app = Router::new().fallback(
            move |method: AxMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    let all = |name: &str| -> Vec<String> {
                        headers
                            .get_all(name)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect()
                    };
                    log.lock().unwrap().push(Seen {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        subject: all("x-tessera-subject"),
                        session: all("x-tessera-session"),
                        level: all("x-tessera-auth-level"),
                        body: body.to_vec(),
                    });
                    "app says hello"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { addr, seen, task }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the app saw no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// -------------------------------------------------------------------- nginx

/// nginx in the foreground (`daemon off; master_process off`), everything
/// in its own temporary directory; killed on drop.
struct Nginx {
    dir: TempDir,
    child: Option<Child>,
    base: String,
}

/// `deploy/nginx/tessera-forward-auth.conf` with the test's addresses and
/// without TLS. Every rewrite must apply exactly once, so a change to the
/// example that this test no longer understands fails loudly.
fn site_config(tessera: SocketAddr, app: SocketAddr, port: u16) -> String {
    let text = fs::read_to_string(EXAMPLE).unwrap_or_else(|e| panic!("cannot read {EXAMPLE}: {e}"));
    let mut out = String::new();
    let mut rewritten = [0usize; 3];
    let mut ssl_lines = 0;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("ssl_") {
            ssl_lines += 1;
            continue;
        }
        let line = if t.starts_with("listen 443 ssl;") {
            rewritten[0] += 1;
            format!("    listen 127.0.0.1:{port};")
        } else if t.starts_with("server 127.0.0.1:8080;") {
            rewritten[1] += 1;
            format!("    server {tessera};")
        } else if t.starts_with("server 127.0.0.1:3000;") {
            rewritten[2] += 1;
            format!("    server {app};")
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(
        rewritten,
        [1, 1, 1],
        "{EXAMPLE} changed shape: expected one `listen 443 ssl;`, one `server 127.0.0.1:8080;` and one `server 127.0.0.1:3000;` line"
    );
    assert!(ssl_lines >= 2, "{EXAMPLE}: expected the ssl_certificate lines");
    out
}

impl Nginx {
    async fn start(tessera: SocketAddr, app: SocketAddr) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "nginx is not installed ({NGINX} is missing): run ./scripts/test, which installs the \
             Debian package `nginx`, or `apt-get install -y nginx`"
        );
        let dir = tempfile::Builder::new()
            .prefix("tessera-nginx-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let port = free_port();
        fs::write(d.join("site.conf"), site_config(tessera, app, port)).expect("site.conf");
        let p = |name: &str| d.join(name).display().to_string();
        let main = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {pid};\n\
             error_log {err} info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {access};\n\
             \x20   client_body_temp_path {body};\n\
             \x20   proxy_temp_path {proxy};\n\
             \x20   fastcgi_temp_path {fastcgi};\n\
             \x20   uwsgi_temp_path {uwsgi};\n\
             \x20   scgi_temp_path {scgi};\n\
             \x20   include {site};\n\
             }}\n",
            pid = p("nginx.pid"),
            err = p("error.log"),
            access = p("access.log"),
            body = p("client_body"),
            proxy = p("proxy"),
            fastcgi = p("fastcgi"),
            uwsgi = p("uwsgi"),
            scgi = p("scgi"),
            site = p("site.conf"),
        );
        fs::write(d.join("nginx.conf"), main).expect("nginx.conf");
        let out = fs::File::create(d.join("stdout.log")).expect("stdout log");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(d.join("error.log"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX}: {e}"));
        let mut ngx = Nginx {
            dir,
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = ngx.child.as_mut().unwrap().try_wait().expect("try_wait") {
                ngx.child = None;
                panic!("nginx exited during start-up with {st}:\n{}", ngx.logs());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 15 s:\n{}",
                ngx.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        ngx
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["stdout.log", "error.log"] {
            s.push_str(&format!("----- nginx {f} -----\n"));
            s.push_str(&fs::read_to_string(self.path(f)).unwrap_or_default());
        }
        s.push_str("----- generated site.conf -----\n");
        s.push_str(&fs::read_to_string(self.path("site.conf")).unwrap_or_default());
        s
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn origin(&self) -> &str {
        &self.base
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------ fixture

struct Fixture {
    srv: TestServer,
    app: Upstream,
    nginx: Nginx,
    client: reqwest::Client,
}

/// A response from nginx.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let srv = TestServer::start(Opts::default()).await;
        let app = Upstream::start().await;
        let nginx = Nginx::start(srv.addr, app.addr).await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        Fixture {
            srv,
            app,
            nginx,
            client,
        }
    }

    async fn login(&self, subject: &str, level: u8) -> Created {
        let methods = if level > 1 {
            json!(["pwd", "otp"])
        } else {
            json!(["pwd"])
        };
        let c = self
            .srv
            .create(json!({ "subject": subject, "auth": { "level": level, "methods": methods } }))
            .await;
        let (name, value, _) = parse_set_cookie(&c.cookie);
        assert_eq!((name.as_str(), value.as_str()), (COOKIE, c.token.as_str()));
        c
    }

    /// A request through nginx; `cookie` is a session token or none.
    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut rb = self.client.request(method.clone(), self.nginx.url(path));
        if let Some(tok) = cookie {
            rb = rb.header("cookie", format!("theme=dark; {COOKIE}={tok}"));
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b.to_owned());
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} through nginx failed: {e}\n{}", self.nginx.logs()));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status < 500,
            "{method} {path}: nginx answered {status}: {body}\n{}\n{}",
            self.nginx.logs(),
            self.srv.logs()
        );
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>, headers: &[(&str, &str)]) -> Answer {
        self.call(Method::GET, path, cookie, headers, None).await
    }

    #[track_caller]
    fn assert_status(&self, a: &Answer, status: u16, what: &str) {
        assert_eq!(
            a.status,
            status,
            "{what}: got {} {:?} {}\n{}",
            a.status,
            a.headers,
            a.body,
            self.nginx.logs()
        );
    }

    async fn finish(self) {
        // nginx had nothing to complain about (no warning, no upstream error).
        let log = fs::read_to_string(self.nginx.path("error.log")).unwrap_or_default();
        for level in ["[warn]", "[error]", "[crit]", "[alert]", "[emerg]"] {
            assert!(
                !log.contains(level),
                "nginx logged {level}:\n{}",
                self.nginx.logs()
            );
        }
        drop(self.nginx);
        drop(self.app);
        self.srv.finish().await;
    }
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn nginx_auth_request_protects_the_app() {
    let f = Fixture::start().await;
    let alice = f.login("alice", 1).await;

    // No cookie: 401 for API clients, the login page for browsers.
    let r = f.get("/orders?page=2", None, &[]).await;
    f.assert_status(&r, 401, "no cookie");
    let r = f
        .get(
            "/orders?page=2",
            None,
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    f.assert_status(&r, 302, "no cookie, browser");
    assert_eq!(
        r.header("location")
            .as_deref()
            .map(|l| l.ends_with("/login?next=/orders?page=2")),
        Some(true),
        "{:?}",
        r.headers
    );
    assert_eq!(f.app.count(), 0, "the app was reached without a session");

    // A valid cookie: 200, and the app sees who it is.
    let r = f.get("/orders", Some(&alice.token), &[]).await;
    f.assert_status(&r, 200, "valid cookie");
    assert_eq!(r.body, "app says hello");
    let seen = f.app.last();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", "/orders"));
    assert_eq!(seen.subject, ["alice"]);
    assert_eq!(seen.session, [alice.handle.as_str()]);
    assert_eq!(seen.level, ["1"]);

    // A client-sent identity never reaches the app.
    let forged = [
        ("x-tessera-subject", "admin"),
        ("x-tessera-session", "ses_forged"),
        ("x-tessera-auth-level", "9"),
    ];
    let r = f.get("/orders", Some(&alice.token), &forged).await;
    f.assert_status(&r, 200, "valid cookie + forged headers");
    let seen = f.app.last();
    assert_eq!(
        seen.subject,
        ["alice"],
        "the client's X-Tessera-Subject got through"
    );
    assert_eq!(seen.session, [alice.handle.as_str()]);
    assert_eq!(seen.level, ["1"]);
    let n = f.app.count();
    let r = f.get("/orders", None, &forged).await;
    f.assert_status(&r, 401, "forged headers alone");
    assert_eq!(f.app.count(), n);
    let r = f.get("/public/about", None, &forged).await;
    f.assert_status(&r, 200, "public page");
    let seen = f.app.last();
    assert_eq!(seen.path, "/public/about");
    assert!(
        seen.subject.is_empty() && seen.session.is_empty() && seen.level.is_empty(),
        "identity headers reached the app on a public page: {seen:?}"
    );

    // The verify location is internal, and the token never counts from the URL.
    let r = f.get("/_tessera_verify", Some(&alice.token), &[]).await;
    f.assert_status(&r, 404, "internal location");
    let r = f
        .get(&format!("/orders?session_token={}", alice.token), None, &[])
        .await;
    f.assert_status(&r, 401, "token in the query");

    // CSRF on the proxied request.
    let n = f.app.count();
    let r = f
        .call(
            Method::POST,
            "/orders",
            Some(&alice.token),
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
            Some("item=1"),
        )
        .await;
    f.assert_status(&r, 403, "cross-site POST");
    let r = f
        .call(
            Method::POST,
            "/orders",
            Some(&alice.token),
            &[("origin", "https://evil.example")],
            Some("item=1"),
        )
        .await;
    f.assert_status(&r, 403, "POST from a foreign Origin without Sec-Fetch-Site");
    let r = f
        .call(
            Method::DELETE,
            "/orders/1",
            Some(&alice.token),
            &[
                ("sec-fetch-site", "cross-site"),
                ("x-forwarded-method", "GET"),
                ("x-original-method", "GET"),
            ],
            None,
        )
        .await;
    f.assert_status(&r, 403, "cross-site DELETE with client-sent method headers");
    // Tessera takes X-Forwarded-Host over Host (Traefik's shape); nginx
    // must replace a copy the client sent.
    let r = f
        .call(
            Method::POST,
            "/orders",
            Some(&alice.token),
            &[
                // The scheme nginx sends as X-Forwarded-Proto here.
                ("origin", "http://evil.example"),
                ("x-forwarded-host", "evil.example"),
            ],
            Some("item=1"),
        )
        .await;
    f.assert_status(
        &r,
        403,
        "POST with a client-sent X-Forwarded-Host matching its Origin",
    );
    assert_eq!(f.app.count(), n, "a refused request reached the app");
    let origin = f.nginx.origin().to_owned();
    let r = f
        .call(
            Method::POST,
            "/orders",
            Some(&alice.token),
            &[("sec-fetch-site", "same-origin"), ("origin", &origin)],
            Some("item=1"),
        )
        .await;
    f.assert_status(&r, 200, "same-origin POST");
    let seen = f.app.last();
    assert_eq!(
        (seen.method.as_str(), seen.body.as_slice()),
        ("POST", b"item=1".as_slice())
    );
    assert_eq!(seen.subject, ["alice"]);
    let r = f
        .call(
            Method::POST,
            "/orders",
            Some(&alice.token),
            &[("origin", &origin)],
            Some("item=2"),
        )
        .await;
    f.assert_status(&r, 200, "POST with its own Origin and no Sec-Fetch-Site");
    // A cross-site GET (a link from elsewhere) is fine.
    let r = f
        .get("/orders", Some(&alice.token), &[("sec-fetch-site", "cross-site")])
        .await;
    f.assert_status(&r, 200, "cross-site GET");

    // Step-up: /admin/ requires level 2.
    let r = f.get("/admin/users", Some(&alice.token), &[]).await;
    f.assert_status(&r, 403, "level 1 on /admin/");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_user_authentication\""),
        "403 without the RFC 9470 challenge: {:?}",
        r.headers
    );
    let bob = f.login("bob", 2).await;
    let r = f.get("/admin/users", Some(&bob.token), &[]).await;
    f.assert_status(&r, 200, "level 2 on /admin/");
    let seen = f.app.last();
    assert_eq!(
        (seen.path.as_str(), seen.subject.clone()),
        ("/admin/users", vec!["bob".to_owned()])
    );
    assert_eq!(seen.level, ["2"]);

    // Revoked: the next request through nginx is refused.
    let r = f.srv.delete(&format!("/v1/sessions/{}", alice.handle)).await;
    r.assert_status(204);
    let r = f.get("/orders", Some(&alice.token), &[]).await;
    f.assert_status(&r, 401, "revoked session");
    let r = f.get("/orders", Some(&bob.token), &[]).await;
    f.assert_status(&r, 200, "another session is unaffected");

    f.finish().await;
}

#[tokio::test]
async fn nginx_logout_revokes_and_clears() {
    let f = Fixture::start().await;
    let alice = f.login("alice", 1).await;
    let origin = f.nginx.origin().to_owned();

    // Never a GET; never cross-site.
    let r = f.get("/auth/logout", Some(&alice.token), &[]).await;
    f.assert_status(&r, 405, "GET /auth/logout");
    let r = f
        .call(
            Method::POST,
            "/auth/logout",
            Some(&alice.token),
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
            None,
        )
        .await;
    f.assert_status(&r, 403, "cross-site logout");
    assert!(r.header("set-cookie").is_none());
    f.srv.assert_verifies(&alice.token).await;

    // The real thing.
    let r = f
        .call(
            Method::POST,
            "/auth/logout",
            Some(&alice.token),
            &[("sec-fetch-site", "same-origin"), ("origin", &origin)],
            None,
        )
        .await;
    f.assert_status(&r, 204, "logout");
    assert_eq!(
        r.header("clear-site-data").as_deref(),
        Some("\"cache\", \"cookies\", \"storage\"")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let set = r.header("set-cookie").expect("Set-Cookie");
    let (name, value, attrs) = parse_set_cookie(&set);
    assert_eq!((name.as_str(), value.as_str()), (COOKIE, ""), "{set}");
    let (_, _, issued) = parse_set_cookie(&alice.cookie);
    let strip = |a: &[(String, String)]| {
        let mut v: Vec<(String, String)> = a.iter().filter(|(k, _)| k != "max-age").cloned().collect();
        v.sort();
        v
    };
    assert_eq!(strip(&attrs), strip(&issued), "{set} vs {}", alice.cookie);
    assert!(attrs.contains(&("max-age".into(), "0".into())), "{set}");
    assert!(!attrs.iter().any(|(k, _)| k == "domain"), "{set}");
    let r = f.get("/orders", Some(&alice.token), &[]).await;
    f.assert_status(&r, 401, "after logout");
    f.srv
        .verify(&alice.token)
        .await
        .assert_problem(401, "session_revoked");

    // With ?next=: 303 to that path; without a cookie still the clearing headers.
    let bob = f.login("bob", 1).await;
    let r = f
        .call(
            Method::POST,
            "/auth/logout?next=/goodbye",
            Some(&bob.token),
            &[("sec-fetch-site", "same-origin")],
            None,
        )
        .await;
    f.assert_status(&r, 303, "logout with next");
    assert_eq!(r.header("location").as_deref(), Some("/goodbye"));
    assert!(r.header("clear-site-data").is_some());
    f.srv
        .verify(&bob.token)
        .await
        .assert_problem(401, "session_revoked");
    let r = f
        .call(Method::POST, "/auth/logout", None, &[("origin", &origin)], None)
        .await;
    f.assert_status(&r, 204, "logout without a cookie");
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    assert!(r.header("clear-site-data").is_some());

    f.finish().await;
}
