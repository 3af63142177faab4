//! The crate layering docs/architecture.md draws, checked: the domain core
//! knows no HTTP and no database driver, the HTTP rules crate no web
//! framework and no store, and a store depends on the core only. A rule two
//! faces need then has nowhere to go but a shared crate.
#![forbid(unsafe_code)]

use std::path::Path;

/// The names under `[dependencies]` of a crate in this workspace.
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        names.push(name.trim_matches('"').to_owned());
    }
    assert!(
        !names.is_empty(),
        "{krate} lists no dependencies: the parse is wrong"
    );
    names
}

fn assert_none_of(krate: &str, forbidden: &[&str]) {
    let deps = dependencies(krate);
    for f in forbidden {
        assert!(!deps.iter().any(|d| d == f), "{krate} depends on {f}: {deps:?}");
    }
}

const WEB: &[&str] = &[
    "axum",
    "axum-core",
    "axum-extra",
    "hyper",
    "hyper-util",
    "tower",
    "tower-http",
];
const DB: &[&str] = &[
    "rusqlite",
    "redis",
    "sqlx",
    "tokio-postgres",
    "postgres",
    "memcache",
];
const FACES: &[&str] = &["tessera", "tessera-server", "tessera-demo"];

#[test]
fn core_knows_no_http_and_no_database() {
    assert_none_of("tessera-core", WEB);
    assert_none_of(
        "tessera-core",
        &[
            "http",
            "cookie",
            "tessera-http",
            "tessera-sqlite",
            "tessera-redis",
        ],
    );
    assert_none_of("tessera-core", DB);
    assert_none_of("tessera-core", FACES);
}

#[test]
fn http_rules_know_no_framework_and_no_store() {
    assert_none_of("tessera-http", WEB);
    assert_none_of("tessera-http", DB);
    assert_none_of("tessera-http", &["tessera-sqlite", "tessera-redis"]);
    assert_none_of("tessera-http", FACES);
}

#[test]
fn stores_depend_on_the_core_only() {
    for store in ["tessera-sqlite", "tessera-redis"] {
        assert_none_of(store, WEB);
        assert_none_of(store, &["http", "cookie", "tessera-http"]);
        assert_none_of(store, FACES);
        assert!(dependencies(store).iter().any(|d| d == "tessera-core"));
    }
}

#[test]
fn both_faces_use_the_rules_crate() {
    assert!(dependencies("tessera-server").iter().any(|d| d == "tessera-http"));
    assert!(dependencies("tessera").iter().any(|d| d == "tessera-http"));
}
