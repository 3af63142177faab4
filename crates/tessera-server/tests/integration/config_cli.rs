//! Configuration layering (file < env < flags), the plain-HTTP cookie
//! switch, refusal of unknown keys, and the operator CLI against a running
//! service's database.

use serde_json::{Value, json};

use crate::harness::{Opts, TestServer, parse_set_cookie, secs_between, serve_must_fail};

/// File < env < flags; `[cookie] secure = false` drops `Secure` and the
/// `__Host-` prefix and warns; `same_site` and `persistent` take effect.
#[tokio::test]
async fn config_file_env_and_flags_layering() {
    let srv = TestServer::start(
        Opts::default()
            .config(
                "[session]\nmax_sessions_per_subject = 5\nidle_timeout_secs = 120\n\n\
                 [cookie]\nsecure = false\nsame_site = \"strict\"\npersistent = false\n",
            )
            // env beats the file…
            .env("TESSERA_SESSION_MAX_SESSIONS_PER_SUBJECT", "2")
            // …and the --listen flag beats the env (port 1 would not bind).
            .env("TESSERA_LISTEN", "127.0.0.1:1"),
    )
    .await;
    let a = srv.create(json!({"subject": "uma"})).await;
    let idle = secs_between(
        a.session["created_at"].as_str().unwrap(),
        a.session["idle_expires_at"].as_str().unwrap(),
    );
    assert!(
        (idle - 120.0).abs() < 0.01,
        "idle_timeout_secs from the file, got {idle}"
    );
    let (name, value, attrs) = parse_set_cookie(&a.cookie);
    assert_eq!(
        name, "tessera",
        "secure = false drops the __Host- prefix: {}",
        a.cookie
    );
    assert_eq!(value, a.token);
    let has = |k: &str| attrs.iter().any(|(a, _)| a == k);
    assert!(!has("secure"), "secure = false drops Secure: {}", a.cookie);
    assert!(has("httponly"), "{}", a.cookie);
    assert!(!has("domain"), "{}", a.cookie);
    assert!(
        attrs
            .iter()
            .any(|(k, v)| k == "samesite" && v.eq_ignore_ascii_case("strict")),
        "same_site = strict: {}",
        a.cookie
    );
    assert!(attrs.iter().any(|(k, v)| k == "path" && v == "/"), "{}", a.cookie);
    assert!(
        !has("max-age") && !has("expires"),
        "persistent = false: a browser-session cookie: {}",
        a.cookie
    );
    let logs = srv.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.to_ascii_lowercase().contains("secure")),
        "startup warning about the insecure cookie:\n{logs}"
    );
    // The env limit (2), not the file's (5).
    let b = srv.create(json!({"subject": "uma"})).await;
    let c = srv.create(json!({"subject": "uma"})).await;
    srv.verify(&a.token).await.assert_problem(401, "session_revoked");
    srv.assert_verifies(&b.token).await;
    srv.assert_verifies(&c.token).await;

    // `config check` shows the effective values.
    let (st, out, err) = srv.cli(&["--config", &srv_config_path(&srv), "config", "check"]);
    assert!(st.success(), "config check: {out}\n{err}");
    assert!(out.contains("idle_timeout_secs = 120"), "{out}");
    srv.finish().await;
}

fn srv_config_path(srv: &TestServer) -> String {
    srv.data_dir()
        .parent()
        .unwrap()
        .join("tessera.toml")
        .display()
        .to_string()
}

/// Unknown keys and bad values are an error: the service refuses to start
/// and says which key.
#[tokio::test]
async fn bad_configuration_refuses_to_start() {
    let cases: Vec<(Opts, &str)> = vec![
        (Opts::default().config("[session]\nbogus_key = 1\n"), "bogus_key"),
        (
            Opts::default().config("[nosuchsection]\nx = 1\n"),
            "nosuchsection",
        ),
        (Opts::default().config("[session\n"), "config"),
        (Opts::default().env("TESSERA_SESSION_BOGUS_KEY", "1"), "BOGUS_KEY"),
        (
            Opts::default().env("TESSERA_SESSION_MAX_AUTH_LEVEL", "abc"),
            "MAX_AUTH_LEVEL",
        ),
        (
            Opts::default().env("TESSERA_COOKIE_SAME_SITE", "none"),
            "same_site",
        ),
        (
            Opts::default().env("TESSERA_SESSION_IDLE_TIMEOUT_SECS", "0"),
            "idle_timeout_secs",
        ),
    ];
    for (opts, word) in cases {
        let (status, out) = serve_must_fail(&opts);
        assert!(!status.success(), "{opts:?} must not start: {out}");
        assert!(
            out.to_ascii_lowercase().contains(&word.to_ascii_lowercase()),
            "{opts:?}: the error names {word:?}:\n{out}"
        );
    }
}

/// The operator CLI works on the running service's database.
#[tokio::test]
async fn cli_sessions_list_and_revoke() {
    let srv = TestServer::start(Opts::default()).await;
    let a = srv.create(json!({"subject": "vera"})).await;
    let b = srv.create(json!({"subject": "vera"})).await;
    let c = srv.create(json!({"subject": "vera"})).await;

    let (st, out, err) = srv.cli(&["sessions", "list", "--subject", "vera", "--json"]);
    assert!(st.success(), "sessions list: {out}\n{err}");
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("--json output is JSON ({e}): {out}"));
    let arr = v
        .as_array()
        .or_else(|| v["sessions"].as_array())
        .expect("a list of sessions");
    let hs: Vec<&str> = arr.iter().map(|s| s["handle"].as_str().unwrap()).collect();
    assert_eq!(hs, vec![c.handle.as_str(), b.handle.as_str(), a.handle.as_str()]);
    assert!(!out.contains("tss_"), "no token in the CLI listing");

    let (st, out, err) = srv.cli(&["sessions", "revoke", &a.handle]);
    assert!(st.success(), "sessions revoke: {out}\n{err}");
    srv.verify(&a.token).await.assert_problem(401, "session_revoked");
    srv.assert_verifies(&b.token).await;
    let ev = srv.all_events("&subject=vera").await;
    assert!(
        ev.iter()
            .any(|e| e["kind"] == "revoked" && e["handle"] == a.handle.as_str() && e["reason"] == "operator"),
        "revoked/operator event: {ev:?}"
    );

    let (st, out, err) = srv.cli(&["sessions", "revoke", "--subject", "vera"]);
    assert!(st.success(), "sessions revoke --subject: {out}\n{err}");
    srv.verify(&b.token).await.assert_problem(401, "session_revoked");
    srv.verify(&c.token).await.assert_problem(401, "session_revoked");
    let (st, _, _) = srv.cli(&["sessions", "revoke", "ses_AAAAAAAAAAAAAAAAAAAAAA"]);
    assert!(!st.success(), "revoking an unknown handle is an error");

    // EX-09: every subject's sessions at once.
    let d = srv.create(json!({"subject": "walt"})).await;
    let e = srv.create(json!({"subject": "xena"})).await;
    let (st, out, err) = srv.cli(&["sessions", "revoke", "--all"]);
    assert!(st.success(), "sessions revoke --all: {out}\n{err}");
    srv.verify(&d.token).await.assert_problem(401, "session_revoked");
    srv.verify(&e.token).await.assert_problem(401, "session_revoked");
    let (st, _, _) = srv.cli(&["sessions", "revoke", "--all", "--subject", "walt"]);
    assert!(!st.success(), "--all and --subject conflict");
    srv.finish().await;
}

/// The server answers repeated verifies of a session from its read cache,
/// but a revocation committed by another process on the same SQLite file
/// (here the operator CLI) is refused by the very next verify, on both
/// faces: the backend API and forward auth.
#[tokio::test]
async fn another_process_revocation_is_refused_by_the_very_next_verify() {
    let srv = TestServer::start(Opts::default()).await;
    let a = srv.create(json!({"subject": "nina"})).await;
    let b = srv.create(json!({"subject": "nina"})).await;
    let forward = |token: &str| {
        srv.req(reqwest::Method::GET, "/auth/verify")
            .header("Cookie", format!("__Host-tessera={token}"))
            .header("X-Forwarded-Method", "GET")
    };
    for _ in 0..5 {
        srv.assert_verifies(&a.token).await;
        srv.send(forward(&a.token)).await.assert_status(200);
    }

    let (st, out, err) = srv.cli(&["sessions", "revoke", &a.handle]);
    assert!(st.success(), "sessions revoke: {out}\n{err}");
    srv.verify(&a.token).await.assert_problem(401, "session_revoked");
    srv.send(forward(&a.token)).await.assert_status(401);

    // And the other face first, for the second session.
    srv.send(forward(&b.token)).await.assert_status(200);
    srv.assert_verifies(&b.token).await;
    let (st, out, err) = srv.cli(&["sessions", "revoke", &b.handle]);
    assert!(st.success(), "sessions revoke: {out}\n{err}");
    srv.send(forward(&b.token)).await.assert_status(401);
    srv.verify(&b.token).await.assert_problem(401, "session_revoked");
    srv.finish().await;
}

/// The default key-encryption key file lies in the data directory, beside
/// the database: `serve` warns about it at start. A key passed in the
/// configuration gives no such warning.
#[tokio::test]
async fn serve_warns_when_the_key_encryption_key_is_beside_the_data() {
    const WARNING: &str = "key-encryption key file is inside the data directory";
    let srv = TestServer::start(Opts::default()).await;
    let logs = srv.logs();
    assert!(
        logs.lines().any(|l| l.contains("WARN") && l.contains(WARNING)),
        "{logs}"
    );
    srv.finish().await;

    let srv = TestServer::start(Opts::default().env("TESSERA_KEYS_ENCRYPTION_KEY", &"A".repeat(43))).await;
    let logs = srv.logs();
    assert!(!logs.contains(WARNING), "{logs}");
    srv.finish().await;
}
