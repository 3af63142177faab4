//! Service clients with a client written independently of our code:
//! `scripts/oauth-client.py` (Python, PyJWT + `cryptography`) makes its own
//! P-256 key, whose public JWK Set we register (in `[[clients]]`, or with
//! `tessera clients create --jwks`), then runs `grant_type=client_credentials`
//! with `private_key_jwt` (RFC 7523) against the real binary, introspects
//! the token and shows a replayed assertion refused. The script exits
//! non-zero when any of its expectations fails.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use tessera_core::clients::ClientJwks;

use crate::harness::{Opts, TestServer};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/oauth-client.py");

/// Fails (never skips) when python3 or its packages are missing.
fn require_python() {
    let probe = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 cannot import PyJWT and cryptography ({}); run ./scripts/test, which installs them",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); run ./scripts/test"),
    }
}

fn python(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python3")
}

/// The script's key at `dir/key.pem`; returns its public JWK Set, checked
/// by our own parser.
fn keygen(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("key.pem");
    let out = python(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jwks = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let parsed = ClientJwks::from_json(&jwks).unwrap_or_else(|e| panic!("{e}: {jwks}"));
    assert_eq!(parsed.len(), 1);
    (key, jwks)
}

/// Runs the client-credentials flow; returns its output and whether it
/// succeeded.
fn flow(srv: &TestServer, client_id: &str, key: &Path) -> (bool, String) {
    let out = python(&[
        "client-credentials",
        "--base",
        &srv.base,
        "--client-id",
        client_id,
        "--key",
        key.to_str().unwrap(),
        "--scope",
        "read",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_report(out: &str, client_id: &str) {
    assert!(
        out.contains("token: token_type=Bearer expires_in=300 scope=read aud=api refresh_token=none"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "introspection: active=true sub={client_id} client_id={client_id}"
        )),
        "{out}"
    );
    assert!(out.contains("replayed assertion: 401 invalid_client"), "{out}");
    assert!(out.trim_end().ends_with("replay refused"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7523_independent_python_client_credentials_with_private_key_jwt() {
    require_python();
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = keygen(dir.path());
    // The JWK Set as JSON text in a TOML literal string.
    let clients = format!(
        "[{{client_id = \"py-svc\", kind = \"confidential\", token_endpoint_auth_method = \"private_key_jwt\", \
         jwks = '{jwks}', grant_types = [\"client_credentials\"], scopes = [\"read\", \"write\"], audiences = [\"api\"]}}]"
    );
    let srv = TestServer::start(Opts::default().env("TESSERA_CLIENTS", &clients)).await;
    let (ok, out) = flow(&srv, "py-svc", &key);
    assert!(ok, "oauth-client.py failed:\n{out}\nserver log:\n{}", srv.logs());
    assert_report(&out, "py-svc");
    // Another key than the registered one: refused.
    let other = tempfile::tempdir().unwrap();
    let (other_key, _) = keygen(other.path());
    let (ok, out) = flow(&srv, "py-svc", &other_key);
    assert!(!ok && out.contains("HTTP 401"), "{out}");
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_registered_client_works_on_the_running_node_until_revoked() {
    require_python();
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = keygen(dir.path());
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &jwks).unwrap();
    let srv = TestServer::start(Opts::default()).await;
    let (status, stdout, stderr) = srv.cli(&[
        "clients",
        "create",
        "py-stored",
        "--jwks",
        jwks_file.to_str().unwrap(),
        "--scope",
        "read",
        "--audience",
        "api",
    ]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.trim().is_empty(),
        "no secret for a private_key_jwt client: {stdout}"
    );
    let (ok, out) = flow(&srv, "py-stored", &key);
    assert!(ok, "oauth-client.py failed:\n{out}\nserver log:\n{}", srv.logs());
    assert_report(&out, "py-stored");
    let (status, stdout, stderr) = srv.cli(&["clients", "list"]);
    assert!(
        status.success() && stdout.contains("py-stored") && stdout.contains("private_key_jwt"),
        "{stdout}{stderr}"
    );
    // Revoked with the CLI: the running server refuses it at once.
    let (status, _, stderr) = srv.cli(&["clients", "revoke", "py-stored"]);
    assert!(status.success(), "{stderr}");
    let (ok, out) = flow(&srv, "py-stored", &key);
    assert!(!ok && out.contains("client_credentials: HTTP 401"), "{out}");
    // And the revocation feed names it, for resource servers.
    let feed = srv.get("/v1/revocations").await.json();
    assert!(
        feed["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["sid"] == "client:py-stored"),
        "{feed}"
    );
    // A secret client: the secret is printed once, and works.
    let (status, secret, stderr) = srv.cli(&["clients", "create", "svc-secret", "--audience", "api"]);
    assert!(status.success(), "{stderr}");
    let secret = secret.trim();
    assert!(secret.starts_with("tcs_") && secret.len() > 40, "{secret}");
    let r = srv
        .http
        .post(srv.url("/oauth2/token"))
        .basic_auth("svc-secret", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, list, _) = srv.cli(&["clients", "list"]);
    assert!(!list.contains(secret), "{list}");
    srv.finish().await;
}

/// RFC 8693 with the independent client: a service holding its own key
/// (`private_key_jwt`) trades a user's access token for a narrower one for
/// one downstream audience, and for a registered resource (RFC 8707); the
/// script checks `act`, the scope, `aud`, the expiry and every refusal
/// (`invalid_scope`, `invalid_target`, `invalid_grant`, `invalid_client`).
/// Logging the user out afterwards ends the exchanged token too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c8693_independent_python_token_exchange_with_private_key_jwt() {
    require_python();
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = keygen(dir.path());
    let clients = format!(
        "[{{client_id = \"py-gw\", kind = \"confidential\", token_endpoint_auth_method = \"private_key_jwt\", \
         jwks = '{jwks}', grant_types = [\"client_credentials\", \"urn:ietf:params:oauth:grant-type:token-exchange\"], \
         scopes = [\"read\", \"write\"], audiences = [\"orders\", \"https://orders.example\"]}}]"
    );
    let srv = TestServer::start(Opts::default().env("TESSERA_CLIENTS", &clients).env(
        "TESSERA_OAUTH_RESOURCES",
        "https://orders.example,https://billing.example",
    ))
    .await;
    // alice logs in through the app; the gateway receives her access token.
    let login = srv
        .create(serde_json::json!({"subject": "alice", "tokens": {"scope": "read write profile"}}))
        .await;
    let at = login.resp.json()["access_token"].as_str().unwrap().to_owned();
    srv.note_secrets(&at);
    let token_file = dir.path().join("subject-token");
    std::fs::write(&token_file, &at).unwrap();
    let run = || {
        python(&[
            "token-exchange",
            "--base",
            &srv.base,
            "--client-id",
            "py-gw",
            "--key",
            key.to_str().unwrap(),
            "--subject-token-file",
            token_file.to_str().unwrap(),
            "--audience",
            "orders",
            "--scope",
            "read",
            "--resource",
            "https://orders.example",
        ])
    };
    let out = run();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "oauth-client.py failed:\n{text}\nserver log:\n{}",
        srv.logs()
    );
    for line in [
        "exchanged: token_type=Bearer sub=alice aud=orders scope=read act.sub=py-gw refresh_token=none",
        "introspection: active=true act.sub=py-gw",
        "resource: aud=https://orders.example",
        "wider scope: 400 invalid_scope",
        "two audiences: 400 invalid_target",
        "unregistered resource: 400 invalid_target",
        "not an access token: 400 invalid_grant",
        "no client authentication: 401 invalid_client",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // alice logs out: her token can no longer be exchanged.
    srv.delete(&format!("/v1/sessions/{}", login.handle))
        .await
        .assert_status(204);
    let out = run();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && text.contains("invalid_grant"), "{text}");
    srv.finish().await;
}
