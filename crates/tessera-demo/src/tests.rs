//! In-process tests of the demo: a tiny cookie-keeping "browser" drives the
//! router with `oneshot`, as Chromium would (same-origin Fetch Metadata,
//! forms with their hidden `csrf_token`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::app;
use crate::users::Passwords;

struct Demo {
    router: Router,
    dir: tempfile::TempDir,
}

fn demo() -> Demo {
    demo_with(false)
}

fn demo_with(dbsc: bool) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let cfg = app::Config {
        data_dir: dir.path().join("data"),
        allowed_origins: vec!["http://127.0.0.1:3000".into()],
        insecure_dev_cookies: false,
        dbsc,
        dbsc_cookie_ttl_secs: 600,
    };
    // Cheap argon2 parameters: the tests are about flows, not hashing cost.
    let passwords = Passwords::with_params(argon2::Params::new(8, 1, 1, None).unwrap()).unwrap();
    let (router, _) = app::build(&cfg, passwords).unwrap();
    Demo { router, dir }
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION).map(|v| v.to_str().unwrap())
    }

    fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).map(|v| v.to_str().unwrap())
    }

    /// The first hidden `csrf_token` of the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let i = self.body.find(marker).expect("a csrf_token field") + marker.len();
        let j = self.body[i..].find('"').unwrap();
        self.body[i..i + j].to_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.body.matches(needle).count()
    }
}

/// A browser with a cookie jar.
struct Browser {
    router: Router,
    jar: BTreeMap<String, String>,
    ip: [u8; 4],
}

impl Browser {
    fn new(d: &Demo, ip: [u8; 4]) -> Self {
        Browser {
            router: d.router.clone(),
            jar: BTreeMap::new(),
            ip,
        }
    }

    async fn send(&mut self, method: Method, uri: &str, form: Option<&[(&str, &str)]>) -> Page {
        self.send_with(method, uri, form, &[]).await
    }

    async fn send_with(
        &mut self,
        method: Method,
        uri: &str,
        form: Option<&[(&str, &str)]>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "127.0.0.1:3000")
            .header("sec-fetch-site", "same-origin")
            .header(
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            )
            .extension(ConnectInfo(SocketAddr::from((self.ip, 40000))));
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        if !self.jar.is_empty() {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b = b.header(header::COOKIE, c.join("; "));
        }
        let body = match form {
            Some(f) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut s = url_encode_form(f);
                if s.is_empty() {
                    s.push('_');
                }
                Body::from(s)
            }
            None => Body::empty(),
        };
        let resp = self.router.clone().oneshot(b.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for sc in headers.get_all(header::SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            let pair = sc.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if sc.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        if headers
            .get("clear-site-data")
            .is_some_and(|v| v.to_str().unwrap().contains("\"cookies\""))
        {
            self.jar.clear();
        }
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&mut self, uri: &str) -> Page {
        self.send(Method::GET, uri, None).await
    }

    /// Submits a form of the page at `page_uri` (taking its csrf_token).
    async fn submit(&mut self, page_uri: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(page_uri).await;
        assert_eq!(page.status, StatusCode::OK, "{page_uri}: {}", page.body);
        let token = page.csrf();
        let mut f = fields.to_vec();
        f.push(("csrf_token", &token));
        self.send(Method::POST, action, Some(&f)).await
    }

    fn session_cookie(&self) -> Option<&String> {
        self.jar.get("__Host-tessera")
    }

    async fn signup(&mut self, user: &str, pw: &str) -> Page {
        self.submit("/signup", "/signup", &[("username", user), ("password", pw)])
            .await
    }

    async fn login(&mut self, user: &str, pw: &str) -> Page {
        self.submit("/login", "/login", &[("username", user), ("password", pw)])
            .await
    }
}

fn url_encode_form(f: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    f.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn signup_account_logout_happy_path() {
    let d = demo();
    let mut b = Browser::new(&d, [127, 0, 0, 1]);
    let r = b.get("/").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/login")));

    let r = b.get("/signup").await;
    for id in ["id=\"username\"", "id=\"password\"", "id=\"signup\""] {
        assert!(r.body.contains(id), "{id}");
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));

    let r = b.signup("alice", "correct horse battery").await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, Some("/account"))
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(b.session_cookie().is_some());
    // The login-form nonce cookie is retired once signed in.
    assert!(!b.jar.contains_key("__Host-tessera-csrf"));

    let r = b.get("/").await;
    assert_eq!(r.location(), Some("/account"));
    let r = b.get("/account").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("<strong id=\"whoami\">alice</strong>"),
        "{}",
        r.body
    );
    assert_eq!(r.count("<tr class=\"session"), 1);
    assert_eq!(r.count("<tr class=\"session this-device\" data-handle=\"ses_"), 1);
    assert!(r.body.contains("Chrome on Linux"));
    assert!(r.body.contains("<td class=\"ip\">127.0.0.1</td>"));
    for id in [
        "id=\"sessions\"",
        "id=\"revoke-others\"",
        "id=\"change-password\"",
        "id=\"logout\"",
        "id=\"delete-account\"",
        "class=\"revoke ",
    ] {
        assert!(r.body.contains(id), "{id}");
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let token = r.csrf();
    let r = b
        .send(Method::POST, "/logout", Some(&[("csrf_token", &token)]))
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/login")));
    assert_eq!(
        r.header("clear-site-data"),
        Some("\"cache\", \"cookies\", \"storage\"")
    );
    assert!(b.session_cookie().is_none());
    let r = b.get("/account").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/login")));
}

#[tokio::test]
async fn login_failures_and_success() {
    let d = demo();
    let mut b = Browser::new(&d, [127, 0, 0, 1]);
    b.signup("bob", "hunter2hunter2").await;
    let mut other = Browser::new(&d, [10, 0, 0, 2]);
    for (u, p) in [("bob", "wrong-password"), ("nobody", "hunter2hunter2"), ("", "")] {
        let r = other.login(u, p).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{u}");
        assert!(r.body.contains("id=\"error\""));
        assert!(other.session_cookie().is_none());
    }
    let r = other.login("BOB", "hunter2hunter2").await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, Some("/account"))
    );
    let r = other.get("/account").await;
    assert_eq!(r.count("<tr class=\"session"), 2);
    assert!(r.body.contains("<td class=\"ip\">10.0.0.2</td>"));
    // Signed in, /login goes to the account page.
    assert_eq!(other.get("/login").await.location(), Some("/account"));
}

#[tokio::test]
async fn signup_validation_and_escaping() {
    let d = demo();
    let mut b = Browser::new(&d, [127, 0, 0, 1]);
    let r = b.signup("carol", "short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"error\""));
    let r = b.signup("<script>x</script>", "long enough pw").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = b.get("/account").await;
    assert!(!r.body.contains("<script>"));
    assert!(r.body.contains("&lt;script&gt;x&lt;/script&gt;"));
    let mut b2 = Browser::new(&d, [127, 0, 0, 1]);
    let r = b2.signup("<SCRIPT>x</script>", "long enough pw").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn step_up_then_password_change_ends_other_sessions() {
    let d = demo();
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    a.signup("dave", "first password").await;
    let mut other = Browser::new(&d, [10, 0, 0, 9]);
    other.login("dave", "first password").await;

    let r = a.get("/account/password").await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, Some("/reauth?next=/account/password"))
    );
    let r = a.get("/reauth?next=/account/password").await;
    for id in ["id=\"password\"", "id=\"reauth\""] {
        assert!(r.body.contains(id), "{id}");
    }
    let r = a
        .submit(
            "/reauth?next=/account/password",
            "/reauth",
            &[("password", "nope nope"), ("next", "/account/password")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("id=\"error\""));

    let before = a.session_cookie().cloned().unwrap();
    let r = a
        .submit(
            "/reauth?next=/account/password",
            "/reauth",
            &[("password", "first password"), ("next", "/account/password")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, Some("/account/password"))
    );
    let after = a.session_cookie().cloned().unwrap();
    assert_ne!(before, after, "step-up rotates the cookie");

    let r = a.get("/account/password").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"new-password\"") && r.body.contains("id=\"save-password\""));
    let r = a
        .submit(
            "/account/password",
            "/account/password",
            &[("new_password", "second password")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, Some("/account"))
    );
    assert_ne!(
        a.session_cookie().cloned().unwrap(),
        after,
        "password change rotates"
    );
    let r = a.get("/account").await;
    assert_eq!(r.count("<tr class=\"session"), 1);
    // The other browser is signed out; the old password no longer works.
    assert_eq!(other.get("/account").await.location(), Some("/login"));
    assert_eq!(
        other.login("dave", "first password").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        other.login("dave", "second password").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn revoke_one_and_others() {
    let d = demo();
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    a.signup("erin", "erin's password").await;
    let mut b = Browser::new(&d, [10, 0, 0, 2]);
    b.login("erin", "erin's password").await;
    let mut c = Browser::new(&d, [10, 0, 0, 3]);
    c.login("erin", "erin's password").await;

    let page = b.get("/account").await;
    let this = "<tr class=\"session this-device\" data-handle=\"";
    let i = page.body.find(this).unwrap() + this.len();
    let b_handle = page.body[i..i + 26].to_owned();
    assert!(b_handle.starts_with("ses_"));

    let r = a
        .submit("/account", &format!("/account/sessions/{b_handle}/revoke"), &[])
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, Some("/account"))
    );
    assert_eq!(b.get("/account").await.location(), Some("/login"));
    assert_eq!(a.get("/account").await.count("<tr class=\"session"), 2);

    let r = a.submit("/account", "/account/sessions/revoke-others", &[]).await;
    assert_eq!(r.location(), Some("/account"));
    assert_eq!(c.get("/account").await.location(), Some("/login"));
    assert_eq!(a.get("/account").await.count("<tr class=\"session"), 1);

    // Another user's handle cannot be revoked.
    let mut m = Browser::new(&d, [10, 0, 0, 4]);
    m.signup("mallory", "mallory's password").await;
    let page = a.get("/account").await;
    let i = page.body.find(this).unwrap() + this.len();
    let a_handle = page.body[i..i + 26].to_owned();
    let r = m
        .submit("/account", &format!("/account/sessions/{a_handle}/revoke"), &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(a.get("/account").await.status, StatusCode::OK);
}

#[tokio::test]
async fn delete_account_ends_everything() {
    let d = demo();
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    a.signup("frank", "frank's password").await;
    let mut b = Browser::new(&d, [10, 0, 0, 2]);
    b.login("frank", "frank's password").await;
    let r = a.submit("/account", "/account/delete", &[]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/login")));
    assert!(r.header("clear-site-data").is_some());
    assert_eq!(a.get("/account").await.location(), Some("/login"));
    assert_eq!(b.get("/account").await.location(), Some("/login"));
    assert_eq!(
        a.login("frank", "frank's password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn forms_without_token_or_cross_site_are_refused() {
    let d = demo();
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    a.signup("gina", "gina's password").await;
    // Same-origin but no token: refused (the demo always wants the token).
    let r = a.send(Method::POST, "/logout", Some(&[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(a.get("/account").await.status, StatusCode::OK);
    // Cross-site with a valid token: refused.
    let token = a.get("/account").await.csrf();
    let req = Request::post("/logout")
        .header(
            header::COOKIE,
            format!("__Host-tessera={}", a.session_cookie().unwrap()),
        )
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf_token={token}")))
        .unwrap();
    let r = d.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Login CSRF: a cross-site login post is refused and sets no cookie.
    let req = Request::post("/login")
        .header("origin", "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("username=gina&password=gina%27s+password"))
        .unwrap();
    let r = d.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    // GET /logout is not a thing.
    assert_eq!(a.get("/logout").await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn reauth_next_is_local_only() {
    let d = demo();
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    a.signup("hank", "hank's password").await;
    for evil in ["https://evil.example/", "//evil.example/", "/\\evil.example"] {
        let r = a
            .submit(
                "/reauth",
                "/reauth",
                &[("password", "hank's password"), ("next", evil)],
            )
            .await;
        assert_eq!(r.location(), Some("/account"), "{evil}");
    }
}

#[cfg(unix)]
#[test]
fn secrets_on_disk_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let d = demo();
    for f in ["users.db", "csrf-key"] {
        let mode = std::fs::metadata(d.dir.path().join("data").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f}: {mode:o}");
    }
}

/// Pages carry no inline styles, so the CSP allows none: the stylesheet is
/// served from the app's own origin.
#[tokio::test]
async fn styles_come_from_the_own_origin_only() {
    let d = demo();
    let mut b = Browser::new(&d, [127, 0, 0, 1]);
    let page = b.get("/login").await;
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(!csp.contains("-inline"), "{csp}");
    assert!(!page.body.contains("<style"), "inline <style> in the page");
    assert!(page.body.contains("href=\"/style.css\""));
    let css = b.get("/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.body.contains("main"));
}

/// The handle of the row marked as this browser's on the account page.
fn own_handle(page: &Page) -> String {
    let marker = "class=\"session this-device\" data-handle=\"";
    let i = page.body.find(marker).expect("this device's row") + marker.len();
    let j = page.body[i..].find('"').unwrap();
    page.body[i..i + j].to_owned()
}

#[tokio::test]
async fn dbsc_login_offers_registration_and_devices_page_shows_bound_sessions() {
    let d = demo_with(true);
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    let r = a.signup("alice", "correct horse battery").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let reg = r
        .header("secure-session-registration")
        .expect("DBSC offered after sign-up");
    assert!(reg.contains("/auth/dbsc/register"), "{reg}");
    let mut b = Browser::new(&d, [127, 0, 0, 2]);
    let r = b.login("alice", "correct horse battery").await;
    assert!(r.header("secure-session-registration").is_some());
    let b_handle = own_handle(&b.get("/account").await);
    let page = a.get("/account").await;
    assert_eq!(page.count("device-bound (DBSC)"), 0, "nothing bound yet");

    // Browser b registers a device key the way Chromium does.
    let reg = r.header("secure-session-registration").unwrap().to_owned();
    let challenge = reg
        .split("challenge=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let device = Device::new();
    let r = b
        .send_with(
            Method::POST,
            "/auth/dbsc/register",
            None,
            &[("secure-session-response", &device.registration(challenge))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        b.jar.contains_key("__Host-tessera-dbsc"),
        "the bound cookie is set"
    );

    let page = a.get("/account").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.count("device-bound (DBSC)"), 1, "{}", page.body);
    let row_start = page.body.find(&format!("data-handle=\"{b_handle}\"")).unwrap();
    let row = &page.body[row_start..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("device-bound (DBSC)"),
        "the badge is on the bound session's row: {row}"
    );
    // The bound browser itself, with its bound cookie, sees its own row
    // marked.
    let own = b.get("/account").await;
    assert_eq!(own.status, StatusCode::OK);
    let row_start = own.body.find("class=\"session this-device\"").unwrap();
    let row = &own.body[row_start..];
    assert!(row[..row.find("</tr>").unwrap()].contains("device-bound (DBSC)"));
}

/// A device key signing the proofs Chromium would (ES256 `dbsc+jwt`).
struct Device(aws_lc_rs::signature::EcdsaKeyPair);

impl Device {
    fn new() -> Device {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Device(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn registration(&self, challenge: &str) -> String {
        use aws_lc_rs::signature::KeyPair as _;
        use tessera_core::b64url;
        let p = self.0.public_key().as_ref();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])});
        let header = serde_json::json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": jwk});
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(serde_json::json!({ "jti": challenge }).to_string().as_bytes())
        );
        let sig = self
            .0
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64url::encode(sig.as_ref()))
    }
}

#[tokio::test]
async fn dbsc_key_is_private_and_kept_across_restarts() {
    let d = demo_with(true);
    let path = d.dir.path().join("data").join("dbsc-key");
    let key = std::fs::read_to_string(&path).unwrap();
    assert!(tessera_core::Sealer::from_base64url(key.trim()).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let cfg = app::Config {
        data_dir: d.dir.path().join("data"),
        allowed_origins: vec!["https://127.0.0.1:3000".into()],
        insecure_dev_cookies: false,
        dbsc: true,
        dbsc_cookie_ttl_secs: 600,
    };
    let passwords = Passwords::with_params(argon2::Params::new(8, 1, 1, None).unwrap()).unwrap();
    let _ = app::build(&cfg, passwords).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
}

#[tokio::test]
async fn devices_page_without_dbsc_has_no_badge_or_registration() {
    let d = demo();
    let mut a = Browser::new(&d, [127, 0, 0, 1]);
    let r = a.signup("alice", "correct horse battery").await;
    assert!(r.header("secure-session-registration").is_none());
    assert_eq!(a.get("/account").await.count("device-bound (DBSC)"), 0);
}

#[test]
fn self_signed_certificate_spki_hash_is_the_printed_one_and_is_reused() {
    use base64::Engine;
    use rcgen::PublicKeyData;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::tls::self_signed(dir.path()).unwrap();
    assert_eq!(cert, dir.path().join("tls-cert.pem"));
    assert_eq!(key, dir.path().join("tls-key.pem"));
    let tls = crate::tls::load(&cert, &key).unwrap();

    let key_pem = std::fs::read_to_string(&key).unwrap();
    let spki = rcgen::KeyPair::from_pem(&key_pem)
        .unwrap()
        .subject_public_key_info();
    let expected = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki));
    assert_eq!(tls.spki_sha256, expected);
    // The hash is over the certificate's own SubjectPublicKeyInfo.
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let b64: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert!(der.windows(spki.len()).any(|w| w == spki.as_slice()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Second start: the same pair, so the printed hash stays valid.
    crate::tls::self_signed(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), cert_pem);
    assert_eq!(crate::tls::load(&cert, &key).unwrap().spki_sha256, expected);
}

#[tokio::test]
async fn tls_server_answers_https_with_the_generated_certificate() {
    let d = demo();
    let (cert, key) = crate::tls::self_signed(d.dir.path()).unwrap();
    let tls = crate::tls::load(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = d.router.clone();
    let server = tokio::spawn(async move {
        crate::tls::serve(listener, router, &tls, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let r = client
            .get(format!("https://{host}:{port}/login"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{host}");
        assert!(r.text().await.unwrap().contains("id=\"login\""));
    }
    stop_tx.send(()).unwrap();
    drop(client);
    server.await.unwrap().unwrap();
}
