//! DP-19 with a client written independently of our code: the README's
//! worked example, `scripts/dpop-client.py` (Python, PyJWT + `cryptography`),
//! gets a DPoP-bound token from the real binary, refreshes it with a proof,
//! uses it through forward auth and shows a thief's copy refused (DP-15,
//! DP-17). The script exits non-zero when any of its expectations fails;
//! here its output is checked against what we know independently of it.

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::dpop::{PublicJwk, jwk_thumbprint};

use crate::harness::{Opts, TestServer};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/dpop-client.py");
const ROUTE: &str = "https://app.example/orders";

/// Fails (never skips) when python3 or its packages are missing: the
/// requirement is that this client runs.
fn require_python() {
    let probe = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 cannot import PyJWT and cryptography ({}); run ./scripts/test, which installs them \
             (python3 -m pip install 'PyJWT[crypto]>=2.8')",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); run ./scripts/test"),
    }
}

/// Runs the script against `srv` (the API key in the environment, not on
/// the command line); returns its standard output after asserting success.
fn run_client(srv: &TestServer, subject: &str, key: Option<&Path>) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT)
        .args(["--base", &srv.base, "--subject", subject, "--route-url", ROUTE])
        .env("TESSERA_API_KEY", &srv.api_key)
        .stdin(Stdio::null());
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    let out = cmd.output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dpop-client.py failed ({}):\n{stdout}{stderr}\nserver log:\n{}",
        out.status,
        srv.logs()
    );
    srv.note_secrets(&stdout);
    stdout
}

/// The value of the script's `name: value` line.
fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{stdout}"))
}

/// A P-256 key as PKCS#8 PEM, and its RFC 7638 thumbprint by our own code.
fn p256_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let path = dir.join("dpop-key.pem");
    std::fs::write(&path, key.serialize_pem()).expect("write key");
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let jwk = serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    let jkt = jwk_thumbprint(&PublicJwk::from_json(&jwk.to_string()).expect("our JWK parser"));
    (path, jkt)
}

/// Everything the script reports, for one run.
fn assert_report(stdout: &str, subject: &str, nonce: bool) {
    let jkt = field(stdout, "jkt");
    assert!(
        jkt.len() == 43
            && jkt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "jkt {jkt:?} is not a base64url SHA-256"
    );
    assert!(
        field(stdout, "session").ends_with("token_type=DPoP cnf.jkt matches"),
        "{stdout}"
    );
    let wanted = if nonce {
        "nonce required and sent"
    } else {
        "nonce not required"
    };
    let refresh = field(stdout, "refresh");
    assert!(
        refresh.starts_with("token_type=DPoP cnf.jkt matches, refresh token rotated")
            && refresh.ends_with(wanted),
        "{stdout}"
    );
    assert_eq!(
        field(stdout, &format!("route GET {ROUTE}")),
        format!("200, nonce not required, subject: {subject}"),
        "{stdout}"
    );
    assert!(
        field(stdout, "stolen token + proof from another key")
            .starts_with("401 (DPoP error=\"invalid_token\""),
        "{stdout}"
    );
    assert!(
        field(stdout, "stolen token as Bearer").starts_with("401 (Bearer error=\"invalid_token\""),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("OK: the token works only with the key it is bound to")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_19_independent_python_client_gets_and_uses_a_dpop_bound_token() {
    require_python();
    let srv = TestServer::start(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, jkt) = p256_key(dir.path());
    let out = run_client(&srv, "alice", Some(&key));
    assert_report(&out, "alice", false);
    // The script's own RFC 7638 thumbprint agrees with ours; the 200 from
    // /auth/verify already showed it equals the server's thumbprint of the
    // proof key.
    assert_eq!(field(&out, "jkt"), jkt, "{out}");
    // A new key per run: another thumbprint.
    let again = run_client(&srv, "bob", None);
    assert_report(&again, "bob", false);
    assert_ne!(field(&again, "jkt"), jkt);
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_11_dp_19_independent_python_client_retries_with_the_token_endpoint_nonce() {
    require_python();
    let srv = TestServer::start(Opts::default().env("TESSERA_DPOP_TOKEN_NONCE", "true")).await;
    let out = run_client(&srv, "carol", None);
    assert_report(&out, "carol", true);
    srv.finish().await;
}
