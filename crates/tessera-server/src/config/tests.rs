use std::ffi::OsString;

use tessera_core::SessionPolicy;

use super::env::ENV_KEYS;
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let c = Config::default();
    if cfg!(feature = "sqlite") {
        c.validate().unwrap();
    }
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.store_url(), "sqlite://./data/tessera.db");
    assert_eq!(c.session.idle_timeout_secs, 1800);
    assert_eq!(c.session.absolute_timeout_secs, 28800);
    assert_eq!(c.session.max_sessions_per_subject, 50);
    assert_eq!(c.cookie.name, "__Host-tessera");
    assert!(c.cookie.secure && c.cookie.persistent);
    assert_eq!(c.cookie.same_site, SameSite::Lax);
    assert_eq!(c.http.max_body_bytes, 65536);
    assert_eq!(c.http.max_header_bytes, 16384);
    assert_eq!(c.sweeper.batch_size, 500);
    assert_eq!(c.events.retention_days, 90);
    assert_eq!(c.sqlite.synchronous, Synchronous::Normal);
    assert_eq!(c.policy(), SessionPolicy::default());
}

#[test]
fn parses_a_full_file() {
    let text = r#"
listen = "0.0.0.0:9000"
store = "memory://"
data_dir = "/var/lib/tessera"
log_format = "json"

[session]
idle_timeout_secs = 600
absolute_timeout_secs = 3600
max_sessions_per_subject = 0
max_auth_level = 3

[cookie]
name = "sid"
secure = false
same_site = "strict"
persistent = false

[http]
max_body_bytes = 1024
api_key_cache_secs = 0

[sweeper]
interval_secs = 5
batch_size = 10

[events]
retention_days = 0

[sqlite]
synchronous = "full"
"#;
    let c = Config::from_toml(text).unwrap();
    c.validate().unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.store_url(), "memory://");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.policy().max_sessions_per_subject, None);
    assert_eq!(c.policy().idle_timeout_secs, 600);
    assert_eq!(c.cookie.same_site, SameSite::Strict);
    assert_eq!(c.http.max_body_bytes, 1024);
    assert_eq!(c.http.max_header_bytes, 16384, "unset keys keep defaults");
    assert_eq!(c.sqlite.synchronous, Synchronous::Full);
    assert_eq!(c.events.retention_days, 0, "0: keep forever");
}

#[test]
fn unknown_keys_in_the_file_are_errors() {
    let e = Config::from_toml("[session]\nidle_timeout = 5\n").unwrap_err();
    assert!(e.contains("unknown field `idle_timeout`"), "{e}");
    let e = Config::from_toml("colour = \"red\"\n").unwrap_err();
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = Config::from_toml("[redis]\nurl = \"x\"\n").unwrap_err();
    assert!(e.contains("unknown field `redis`"), "{e}");
}

#[test]
fn wrong_types_in_the_file_are_errors() {
    let e = Config::from_toml("[session]\nidle_timeout_secs = \"long\"\n").unwrap_err();
    assert!(
        e.contains("idle_timeout_secs") || e.contains("invalid type"),
        "{e}"
    );
    let e = Config::from_toml("log_format = \"xml\"\n").unwrap_err();
    assert!(e.contains("xml"), "{e}");
}

#[test]
fn env_overlays_the_file_and_flags_overlay_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:1000\"\n[session]\nidle_timeout_secs = 100\n",
    )
    .unwrap();
    let vars = env(&[
        ("TESSERA_SESSION_IDLE_TIMEOUT_SECS", "200"),
        ("TESSERA_LISTEN", "127.0.0.1:2000"),
        ("TESSERA_COOKIE_SECURE", "false"),
        ("TESSERA_STORE", "memory://"),
        ("TESSERA_CONFIG", "ignored.toml"),
        ("PATH", "/bin"),
    ]);
    let flags = Overrides {
        listen: Some("127.0.0.1:3000".parse().unwrap()),
        ..Overrides::default()
    };
    let c = Config::load(Some(&path), vars.clone(), &flags).unwrap();
    assert_eq!(c.session.idle_timeout_secs, 200);
    assert_eq!(c.listen.port(), 3000);
    assert!(!c.cookie.secure);
    assert_eq!(c.cookie.effective_name(), "tessera");
    let c = Config::load(Some(&path), vars, &Overrides::default()).unwrap();
    assert_eq!(c.listen.port(), 2000);
}

#[test]
fn unknown_env_keys_are_errors_with_a_hint() {
    let e = Config::load(
        None,
        env(&[("TESSERA_SESSION_IDLE_TIMEOUT", "5")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("TESSERA_SESSION_IDLE_TIMEOUT"), "{e}");
    assert!(
        e.contains("did you mean TESSERA_SESSION_IDLE_TIMEOUT_SECS"),
        "{e}"
    );
    let e = Config::load(None, env(&[("TESSERA_NOPE", "5")]), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a configuration key"), "{e}");
}

#[test]
fn bad_env_values_are_errors() {
    let e = Config::load(
        None,
        env(&[("TESSERA_HTTP_MAX_BODY_BYTES", "lots")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("TESSERA_HTTP_MAX_BODY_BYTES") && e.contains("lots"),
        "{e}"
    );
    let e = Config::load(
        None,
        env(&[("TESSERA_COOKIE_SAME_SITE", "none")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lax, strict"), "{e}");
}

#[test]
fn every_key_has_an_env_variable() {
    // Serialize the defaults and check each key maps to a known variable.
    let mut c = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    // Optional keys are left out when unset; set them so each is counted.
    c.oauth.issuer = Some("https://auth.example".into());
    c.oauth.resources = vec!["https://api.example".into()];
    c.keys.encryption_key = Some("k".into());
    c.keys.encryption_key_file = Some("f".into());
    c.cookie.domain = Some("app.example".into());
    c.clients = tokens::parse_clients_env(r#"[{client_id = "x"}]"#).unwrap();
    c.forward_auth.client_cert_header = Some("x-ssl-client-cert".into());
    c.dbsc.required_level = Some(2);
    c.tls.cert_file = Some("c".into());
    c.tls.key_file = Some("k".into());
    c.tls.client_ca_file = Some("ca".into());
    c.tls.api_clients = tls::parse_api_clients_env(
        r#"[{name = "n", x5t_s256 = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}]"#,
    )
    .unwrap();
    let v: toml::Table = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    let mut n = 0;
    for (k, val) in &v {
        match val {
            toml::Value::Table(t) => {
                for sk in t.keys() {
                    let name = format!("TESSERA_{}_{}", k.to_uppercase(), sk.to_uppercase());
                    assert!(env_names().any(|e| e == name), "{name}");
                    n += 1;
                }
            }
            _ => {
                let name = format!("TESSERA_{}", k.to_uppercase());
                assert!(env_names().any(|e| e == name), "{name}");
                n += 1;
            }
        }
    }
    assert_eq!(n, ENV_KEYS.len());
}

#[test]
fn invalid_policies_and_values_are_refused() {
    let cases = [
        ("TESSERA_SESSION_IDLE_TIMEOUT_SECS", "0"),
        ("TESSERA_SESSION_ABSOLUTE_TIMEOUT_SECS", "999999999999"),
        ("TESSERA_COOKIE_NAME", "bad name"),
        ("TESSERA_STORE", "rediss+sentinel://localhost:26379/mymaster"),
        ("TESSERA_STORE", "redis:///0"),
        ("TESSERA_STORE", "postgres:///tessera"),
        ("TESSERA_STORE", "postgres://db/tessera?pool_size=0"),
        ("TESSERA_STORE", "postgres://db/tessera?sslmode=allow"),
        ("TESSERA_SWEEPER_BATCH_SIZE", "0"),
        ("TESSERA_EVENTS_RETENTION_DAYS", "36501"),
        ("TESSERA_HTTP_REQUEST_TIMEOUT_SECS", "0"),
    ];
    for (k, v) in cases {
        let r = Config::load(None, env(&[(k, v)]), &Overrides::default());
        assert!(matches!(r, Err(ConfigError::Invalid(_))), "{k}={v}: {r:?}");
    }
    for url in [
        "redis://localhost:6379/0?prefix=app",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/?prefix=app",
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster",
        "postgres://tessera:pw@db:5432/tessera?statement_timeout_ms=2000&pool_size=8&schema=app",
        "postgresql://db/tessera",
    ] {
        let redis = Config::load(None, env(&[("TESSERA_STORE", url)]), &Overrides::default());
        assert!(redis.is_ok(), "{url}: {redis:?}");
    }
}

/// `[cookie] domain` and `partitioned`, checked by the rule the library
/// checks its cookie with (`tessera_http::cookies::CookieConfig`).
#[test]
fn cookie_domain_and_partitioned_are_configurable_and_checked() {
    let c = Config::load(
        None,
        env(&[
            ("TESSERA_STORE", "memory://"),
            ("TESSERA_COOKIE_NAME", "__Secure-s"),
            ("TESSERA_COOKIE_DOMAIN", "app.example"),
            ("TESSERA_COOKIE_PARTITIONED", "true"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.cookie.domain.as_deref(), Some("app.example"));
    assert!(c.cookie.partitioned);
    assert_eq!(Config::from_toml(&c.to_masked_toml()).unwrap().cookie, c.cookie);
    for (vars, needle) in [
        (vec![("TESSERA_COOKIE_DOMAIN", "app.example")], "__Host-"),
        (
            vec![
                ("TESSERA_COOKIE_PARTITIONED", "true"),
                ("TESSERA_COOKIE_SECURE", "false"),
            ],
            "Partitioned",
        ),
        (vec![("TESSERA_COOKIE_NAME", &*"n".repeat(65))], "64 bytes"),
    ] {
        let mut all = vec![("TESSERA_STORE", "memory://")];
        all.extend(vars.iter().copied());
        let e = Config::load(None, env(&all), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[cookie]") && e.contains(needle), "{vars:?}: {e}");
    }
}

#[test]
fn the_listener_limits_are_configurable_and_bounded() {
    let c = Config::default();
    assert_eq!(c.http.header_read_timeout_secs, 10);
    assert_eq!(c.http.max_connections, 4096);
    let c = Config::from_toml("[http]\nheader_read_timeout_secs = 30\nmax_connections = 2\n").unwrap();
    assert_eq!((c.http.header_read_timeout_secs, c.http.max_connections), (30, 2));
    let c = Config::load(
        None,
        env(&[
            ("TESSERA_STORE", "memory://"),
            ("TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS", "1"),
            ("TESSERA_HTTP_MAX_CONNECTIONS", "100"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        (c.http.header_read_timeout_secs, c.http.max_connections),
        (1, 100)
    );
    for (k, v) in [
        ("TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS", "0"),
        ("TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS", "31"),
        ("TESSERA_HTTP_MAX_CONNECTIONS", "0"),
    ] {
        let r = Config::load(
            None,
            env(&[("TESSERA_STORE", "memory://"), (k, v)]),
            &Overrides::default(),
        );
        let e = r.expect_err(k).to_string();
        assert!(e.contains("[http]"), "{k}={v}: {e}");
    }
    let e = Config::from_toml("[http]\nheader_timeout_secs = 5\n").unwrap_err();
    assert!(e.contains("unknown field `header_timeout_secs`"), "{e}");
    let shown = Config::default().to_masked_toml();
    assert!(
        shown.contains("header_read_timeout_secs = 10") && shown.contains("max_connections = 4096"),
        "{shown}"
    );
}

#[test]
fn masked_toml_round_trips_and_hides_passwords() {
    let c = Config {
        store: Some("redis://user:hunter2@cache:6379/0".into()),
        ..Config::default()
    };
    let shown = c.to_masked_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("redis://user:****@cache:6379/0"), "{shown}");
    let c = Config::default();
    let back = Config::from_toml(&c.to_masked_toml()).unwrap();
    assert_eq!(back.store_url(), c.store_url());
    assert_eq!(back.session, c.session);
    assert_eq!(mask_url_password("sqlite://./data/x.db"), "sqlite://./data/x.db");
}

#[test]
fn masked_toml_hides_a_postgres_password_in_the_userinfo_or_the_query() {
    let c = Config {
        store: Some("postgres://tessera:hunter2@db:5432/tessera?pool_size=8".into()),
        ..Config::default()
    };
    let shown = c.to_masked_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres://tessera:****@db:5432/tessera?pool_size=8"),
        "{shown}"
    );
    assert_eq!(
        mask_url_password("postgresql://db/tessera?user=t&password=hunter2&sslmode=disable"),
        "postgresql://db/tessera?user=t&password=****&sslmode=disable"
    );
}

#[test]
fn the_default_issuer_follows_the_listeners_scheme() {
    let mut c = Config::default();
    assert_eq!(c.issuer(), "http://127.0.0.1:8080");
    c.tls.cert_file = Some("c.pem".into());
    c.tls.key_file = Some("k.pem".into());
    assert_eq!(
        c.issuer(),
        "https://127.0.0.1:8080",
        "DPoP htu and iss name the URL clients use"
    );
}

#[test]
fn tls_settings_are_checked() {
    let base = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    let bad = |f: &dyn Fn(&mut Config)| {
        let mut c = base.clone();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(bad(&|c| c.tls.cert_file = Some("c".into())).contains("both cert_file and key_file"));
    assert!(
        bad(&|c| {
            c.tls.cert_file = Some("c".into());
            c.tls.key_file = Some("k".into());
            c.tls.client_auth = ClientAuth::Required;
        })
        .contains("client_ca_file")
    );
    assert!(bad(&|c| c.dpop.algs = vec!["HS256".into()]).contains("HS256"));
    assert!(bad(&|c| c.dpop.max_age_secs = 0).contains("max_age_secs"));
    assert!(
        bad(&|c| c.forward_auth.client_cert_header = Some("bad header".into()))
            .contains("client_cert_header")
    );
}

#[test]
fn gn_04_rate_limits_from_toml_and_env_and_checked() {
    let c = Config::from_toml(
        "[rate_limits]\nenabled = false\noauth_per_ip = { requests = 5, window_secs = 10 }\n",
    )
    .unwrap();
    assert!(!c.rate_limits.enabled);
    assert_eq!(c.rate_limits.oauth_per_ip, crate::config::LimitConfig::new(5, 10));
    assert_eq!(
        c.rate_limits.api_key_failures_per_ip,
        crate::config::LimitConfig::new(20, 60),
        "the others keep their defaults"
    );
    assert_eq!(
        crate::config::LimitConfig::parse("600/60").unwrap(),
        crate::config::LimitConfig::new(600, 60)
    );
    assert_eq!(
        crate::config::LimitConfig::parse(" 3 / 10s ").unwrap(),
        crate::config::LimitConfig::new(3, 10)
    );
    assert!(crate::config::LimitConfig::parse("600").is_err());
    let mut bad = Config::default();
    bad.rate_limits.api_per_key.window_secs = 0;
    assert!(bad.validate().unwrap_err().to_string().contains("api_per_key"));
    let mut off = Config::default();
    off.rate_limits.api_per_key = crate::config::LimitConfig::new(0, 0);
    off.validate().unwrap();
    let mut header = Config::default();
    header.rate_limits.client_ip_header = "bad header".into();
    assert!(header.validate().is_err());
}

#[test]
fn max_in_flight_is_configurable_and_positive() {
    assert_eq!(Config::default().http.max_in_flight, 1024);
    let c = Config::from_toml("[http]\nmax_in_flight = 8\n").unwrap();
    assert_eq!(c.http.max_in_flight, 8);
    let load = |v: &str| {
        Config::load(
            None,
            env(&[("TESSERA_STORE", "memory://"), ("TESSERA_HTTP_MAX_IN_FLIGHT", v)]),
            &Overrides::default(),
        )
    };
    assert_eq!(load("100").unwrap().http.max_in_flight, 100);
    let e = load("0").unwrap_err().to_string();
    assert!(e.contains("[http] max_in_flight"), "{e}");
    assert!(
        Config::default()
            .to_masked_toml()
            .contains("max_in_flight = 1024")
    );
}
