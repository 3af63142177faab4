//! `[tls]` (issue 12): the real binary listening with TLS, client
//! certificates binding tokens (RFC 8705, checklist MT-01..MT-07 as they
//! apply) and standing in for API keys, `curl --cert`, and SIGHUP
//! reloading the certificate. Every certificate is made here with rcgen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Opts, TestServer};

/// A CA and certificates it issued, written as PEM files into `dir`.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as files and as one PEM (for reqwest).
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
    identity_pem: String,
}

impl Issued {
    /// `cnf.x5t#S256`: base64url(SHA-256(DER)), computed here with
    /// aws-lc-rs, independently of the service's code.
    fn x5t(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
    }
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::Builder::new().prefix("tessera-pki-").tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn issue(&self, file: &str, cn: &str, server: bool) -> Issued {
        let sans = if server {
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{file}.pem")),
            self.dir.path().join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert: cert_path,
            key: key_path,
            der: cert.der().to_vec(),
            identity_pem: format!("{}{}", cert.pem(), key.serialize_pem()),
        }
    }
}

fn tls_opts(pki: &Pki, server: &Issued, extra: &[(&str, &str)]) -> Opts {
    let mut o = Opts::default()
        .https(&pki.ca_pem())
        .env("TESSERA_TLS_CERT_FILE", server.cert.to_str().unwrap())
        .env("TESSERA_TLS_KEY_FILE", server.key.to_str().unwrap())
        .env("TESSERA_TLS_CLIENT_CA_FILE", pki.ca_file().to_str().unwrap());
    for (k, v) in extra {
        o = o.env(k, v);
    }
    o
}

/// A client trusting `pki`'s CA, presenting `identity` if given.
fn client(pki: &Pki, identity: Option<&Issued>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap());
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.identity_pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn refresh(srv: &TestServer, http: &reqwest::Client, rt: &str) -> (u16, Value) {
    let r = http
        .post(srv.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=refresh_token&refresh_token={rt}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn cnf(at: &str) -> Value {
    let payload = at.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["cnf"].clone()
}

#[tokio::test]
async fn mt_01_mt_02_tokens_requested_over_mtls_are_bound_to_the_certificate() {
    let pki = Pki::new("one");
    let server = pki.issue("server", "localhost", true);
    let (c1, c2) = (
        pki.issue("c1", "client one", false),
        pki.issue("c2", "client two", false),
    );
    let srv = TestServer::start(tls_opts(&pki, &server, &[])).await;
    let created = srv
        .send(
            srv.req(Method::POST, "/v1/sessions")
                .json(&json!({"subject": "alice", "tokens": {}})),
        )
        .await;
    created.assert_status(201);
    let rt = created.json()["refresh_token"].as_str().unwrap().to_owned();
    // MT-01: the refresh over C1's connection binds the new access token.
    let (status, body) = refresh(&srv, &client(&pki, Some(&c1)), &rt).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        cnf(body["access_token"].as_str().unwrap()),
        json!({"x5t#S256": c1.x5t()})
    );
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    // MT-02 (at the token endpoint): the bound refresh token with C2, or
    // with no certificate, is refused.
    let (status, body) = refresh(&srv, &client(&pki, Some(&c2)), &rt2).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = refresh(&srv, &client(&pki, None), &rt2).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = refresh(&srv, &client(&pki, Some(&c1)), &rt2).await;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().unwrap().to_owned();
    // MT-03: introspection names the certificate.
    let i = srv
        .send(
            srv.req(Method::POST, "/oauth2/introspect")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={at}")),
        )
        .await;
    assert_eq!(i.json()["cnf"], json!({"x5t#S256": c1.x5t()}));
    srv.finish().await;
}

#[tokio::test]
async fn a_mapped_client_certificate_authenticates_to_the_backend_api() {
    let pki = Pki::new("two");
    let server = pki.issue("server", "localhost", true);
    let (c1, c2) = (pki.issue("c1", "billing", false), pki.issue("c2", "other", false));
    let clients = format!(
        r#"[{{name = "billing", x5t_s256 = "{}", scopes = ["sessions"]}}]"#,
        c1.x5t()
    );
    let srv = TestServer::start(tls_opts(&pki, &server, &[("TESSERA_TLS_API_CLIENTS", &clients)])).await;
    let create = |http: reqwest::Client| {
        let url = srv.url("/v1/sessions");
        async move {
            http.post(url)
                .json(&json!({"subject": "alice"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(create(client(&pki, Some(&c1))).await, 201, "C1 is mapped");
    assert_eq!(create(client(&pki, Some(&c2))).await, 401, "C2 is not");
    assert_eq!(create(client(&pki, None)).await, 401, "no certificate");
    // Least privilege: the mapping's scopes, not more.
    let events = client(&pki, Some(&c1))
        .get(srv.url("/v1/events"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(events.as_u16(), 403);
    srv.finish().await;
}

#[tokio::test]
async fn mt_04_required_client_auth_refuses_untrusted_and_missing_certificates() {
    let pki = Pki::new("three");
    let other = Pki::new("other");
    let server = pki.issue("server", "localhost", true);
    let good = pki.issue("good", "client", false);
    let stranger = other.issue("stranger", "client", false);
    let srv = TestServer::start(
        tls_opts(&pki, &server, &[("TESSERA_TLS_CLIENT_AUTH", "required")])
            .client_identity(&good.identity_pem),
    )
    .await;
    let get = |http: reqwest::Client| {
        let url = srv.url("/healthz");
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(get(client(&pki, Some(&good))).await.unwrap(), 200);
    assert!(
        get(client(&pki, None)).await.is_err(),
        "no certificate: the handshake fails"
    );
    assert!(
        get(client(&pki, Some(&stranger))).await.is_err(),
        "a certificate of another CA: the handshake fails"
    );
    srv.finish().await;
}

/// `curl` as an independent client: `--cert` gets a certificate-bound
/// token at the token endpoint.
#[tokio::test]
async fn mt_01_curl_with_a_client_certificate_gets_a_bound_token() {
    let pki = Pki::new("curl");
    let server = pki.issue("server", "localhost", true);
    let c1 = pki.issue("c1", "curl client", false);
    let srv = TestServer::start(tls_opts(&pki, &server, &[])).await;
    let created = srv
        .send(
            srv.req(Method::POST, "/v1/sessions")
                .json(&json!({"subject": "alice", "tokens": {}})),
        )
        .await;
    let rt = created.json()["refresh_token"].as_str().unwrap().to_owned();
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(pki.ca_file())
        .arg("--cert")
        .arg(&c1.cert)
        .arg("--key")
        .arg(&c1.key)
        .args(["-d", "grant_type=refresh_token", "-d"])
        .arg(format!("refresh_token={rt}"))
        .arg(srv.url("/oauth2/token"))
        .output()
        .expect("curl (./scripts/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        cnf(body["access_token"].as_str().unwrap()),
        json!({"x5t#S256": c1.x5t()})
    );
    srv.finish().await;
}

fn served_cert_cn(srv: &TestServer, ca: &Path) -> String {
    // openssl prints the chain the server sends; only the subject matters.
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(srv.addr.to_string())
        .arg("-CAfile")
        .arg(ca)
        .arg("-servername")
        .arg("localhost")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_a_restart() {
    let pki = Pki::new("reload");
    let first = pki.issue("server", "first.localhost", true);
    let srv = TestServer::start(tls_opts(&pki, &first, &[])).await;
    assert!(served_cert_cn(&srv, &pki.ca_file()).contains("first.localhost"));
    // Replace the files in place, as a certificate renewal does.
    let second = pki.issue("renewed", "second.localhost", true);
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    // A broken file set on the first SIGHUP keeps the old certificate.
    std::fs::write(&first.key, "not a key").unwrap();
    Command::new("kill")
        .arg("-HUP")
        .arg(srv.pid().to_string())
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(served_cert_cn(&srv, &pki.ca_file()).contains("first.localhost"));
    assert!(srv.logs().contains("TLS reload failed"), "{}", srv.logs());
    std::fs::copy(&second.key, &first.key).unwrap();
    Command::new("kill")
        .arg("-HUP")
        .arg(srv.pid().to_string())
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if served_cert_cn(&srv, &pki.ca_file()).contains("second.localhost") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded: {}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The service kept running and answering.
    srv.send(srv.req(Method::GET, "/v1/subjects/alice/sessions"))
        .await
        .assert_status(200);
    srv.finish().await;
}
