//! What the conformance suite does not cover on PostgreSQL: several nodes
//! on one database, the database going away and coming back, migrations
//! started by several nodes at once, and the event log's commit order.
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_conformance::support::T0;
use tessera_core::{
    CreateSession, Error, EventQuery, EventStore, ManualClock, NewEvent, RevokeReason, SessionPolicy,
    SessionStore, Sessions, StoreError, StoreHealth,
};
use tessera_postgres::testing::{self as support};
use tessera_postgres::{PostgresOptions, PostgresStore};

/// The bound SPEC §4.6 sets for a change to reach every node.
const BOUND: Duration = Duration::from_millis(100);

fn sessions(store: &PostgresStore, clock: &Arc<ManualClock>) -> Sessions {
    Sessions::new(Arc::new(store.clone()), clock.clone(), SessionPolicy::default())
}

fn login(subject: &str) -> CreateSession {
    CreateSession {
        subject: subject.into(),
        ..CreateSession::default()
    }
}

/// Polls `check` until it holds; the time since `start`, asserted under
/// `BOUND` (with margin before giving up, so a slow machine shows the
/// figure rather than a timeout).
async fn within_bound<F, Fut>(what: &str, start: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if check().await {
            let took = start.elapsed();
            assert!(took < BOUND, "{what}: took {took:?}, over {BOUND:?}");
            return took;
        }
        assert!(
            start.elapsed() < BOUND * 3,
            "{what}: not seen within {:?}",
            BOUND * 3
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_revocation_through_one_node_is_refused_by_another_within_100ms() {
    let url = support::fresh_url();
    let (a, b) = (support::store_at(&url).await, support::store_at(&url).await);
    let clock = Arc::new(ManualClock::new(T0));
    let (sa, sb) = (sessions(&a, &clock), sessions(&b, &clock));
    let mut took = Vec::new();
    for i in 0..20 {
        let issued = sa.create(login(&format!("u{i}"))).await.expect("create on A");
        let token = issued.token.expose().to_owned();
        sa.verify(&token).await.expect("verify on A");
        let start = Instant::now();
        assert!(
            sb.revoke(&issued.session.handle, RevokeReason::Revoked)
                .await
                .expect("revoke on B")
        );
        took.push(
            within_bound("revocation through B refused on A", start, || async {
                matches!(sa.verify(&token).await, Err(Error::SessionRevoked))
            })
            .await,
        );
    }
    took.sort();
    println!(
        "revocation through B, refused on A: p50 {:?}, max {:?} over {} trials",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
}

#[tokio::test]
async fn database_down_is_unavailable_and_back_up_recovers() {
    let server = support::private_server();
    let url = format!(
        "{}?connect_timeout_ms=500&statement_timeout_ms=2000",
        server.url()
    );
    let store = support::store_at(&url).await;
    let clock = Arc::new(ManualClock::new(T0));
    let s = sessions(&store, &clock);
    let issued = s.create(login("alice")).await.expect("create");
    let stopped = server.stop();
    // Every kind of call fails closed, in bounded time.
    let start = Instant::now();
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.get(&issued.session.handle).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.count_active(T0).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        s.verify(issued.token.expose()).await,
        Err(Error::Store(StoreError::Unavailable(_)))
    ));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // Back up: the pool reconnects by itself and nothing was lost.
    let _server = stopped.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.verify(issued.token.expose())
        .await
        .expect("verify after the restart");
}

#[tokio::test]
async fn a_lazily_opened_store_answers_unavailable_until_the_database_is_up() {
    let server = support::private_server();
    let url = format!("{}?connect_timeout_ms=500", server.url());
    let stopped = server.stop();
    let store = PostgresStore::open_lazy(&url).expect("open_lazy needs no database");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.count_active(T0).await,
        Err(StoreError::Unavailable(_))
    ));
    let _server = stopped.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.count_active(T0).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn several_nodes_starting_at_once_migrate_once() {
    let url = support::fresh_url();
    let nodes: Vec<PostgresStore> = (0..6)
        .map(|_| PostgresStore::open_lazy(&url).expect("open"))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for n in &nodes {
        let n = n.clone();
        set.spawn(async move { n.ping().await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("every node starts");
    }
    // One row per migration, each applied once; a later start changes nothing.
    let again = support::store_at(&url).await;
    let versions = again.schema_versions().await.expect("versions");
    assert_eq!(versions, (1..=versions.len() as i32).collect::<Vec<_>>());
    assert!(!versions.is_empty());
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let url = support::fresh_url();
    let store = support::store_at(&url).await;
    store
        .execute_for_test("INSERT INTO schema_version (version) VALUES (9999)")
        .await
        .expect("insert");
    let other = PostgresStore::open_lazy(&url).expect("open");
    match other.ping().await {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("newer than this build"), "{why}"),
        r => panic!("expected a refusal, got {r:?}"),
    }
}

/// The property the log's lock exists for: a follower that moves its
/// cursor to the newest id it read never misses an event committed later
/// with a smaller id (see `events.rs`).
#[tokio::test]
async fn a_follower_of_the_event_log_never_misses_an_event_committed_under_concurrency() {
    let store = Arc::new(support::fresh_store().await);
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        set.spawn(async move {
            for i in 0..EACH {
                let e = NewEvent {
                    at: T0,
                    kind: tessera_core::EventKind::BindingFailed,
                    subject: format!("w{w}"),
                    handle: format!("ses_{w}_{i}"),
                    reason: None,
                };
                store.append_events(&[e]).await.expect("append");
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    loop {
        // Whether every writer has finished, checked before the read so
        // that an empty page after it means nothing more will come.
        while let Some(r) = set.try_join_next() {
            r.expect("a writer failed");
        }
        let finished = set.is_empty();
        let page = store
            .events(&EventQuery {
                after: cursor,
                limit: 1000,
                ..EventQuery::default()
            })
            .await
            .expect("events");
        for e in &page {
            assert!(e.id > cursor);
            cursor = e.id;
            seen.push(e.id);
        }
        if finished && page.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writers did not finish within 60 s"
        );
    }
    assert_eq!(seen.len(), WRITERS * EACH, "the follower saw every event");
    assert_eq!(
        seen,
        (1..=(WRITERS * EACH) as u64).collect::<Vec<_>>(),
        "no gaps, no reordering"
    );
}

#[test]
fn the_debug_form_never_shows_the_password() {
    let store = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { PostgresStore::open_lazy("postgres://u:hunter2@127.0.0.1:1/db?pool_size=2") })
        .expect("open_lazy");
    let shown = format!("{store:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("u:***@"), "{shown}");
}

#[test]
fn bad_store_options_fail_at_open() {
    let e = PostgresStore::open_lazy("postgres://h/db?pool_size=zero").expect_err("refused");
    assert!(e.to_string().contains("pool_size"), "{e}");
    assert_eq!(PostgresOptions::default().pool_size, 16);
}

/// A database emptied under a running store (dropped and created again,
/// or restored from before Tessera): calls fail as unavailable, and the
/// store creates its tables again by itself instead of failing forever.
#[tokio::test]
async fn a_schema_dropped_under_a_running_store_is_created_again() {
    let schema = support::fresh_schema();
    let url = support::with_schema(&support::server_url(), &schema);
    let store = support::store_at(&url).await;
    let other = support::store_at(&url).await;
    other
        .execute_for_test(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop");
    assert!(matches!(
        store.count_active(T0).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(store.count_active(T0).await.expect("migrated again"), 0);
    store.ping().await.expect("ping");
}

/// A test CA, and a server certificate for 127.0.0.1 it signed.
fn pki(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, ca.pem()).expect("write ca");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("sign");
    (ca_file, cert.pem(), key.serialize_pem())
}

/// `sslmode=require` with the CA that signed the server's certificate
/// connects over TLS; with another CA, or with the system's trust store
/// (which does not know a private CA), the store refuses the server and
/// answers unavailable rather than talk to it.
#[tokio::test]
async fn tls_with_a_private_ca_works_and_an_untrusted_server_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = pki(dir.path(), "right");
    let (other_ca, _, _) = pki(dir.path(), "wrong");
    let server = support::private_tls_server(&cert, &key);
    let base = format!("{}?connect_timeout_ms=2000", server.url());

    let url = format!("{base}&sslmode=require&tls_ca={}", ca.display());
    let store = support::store_at(&url).await;
    assert!(
        store.tls_in_use().await.expect("pg_stat_ssl"),
        "the connection uses TLS"
    );
    assert_eq!(store.count_active(T0).await.expect("works over TLS"), 0);

    for (what, url) in [
        (
            "another CA",
            format!("{base}&sslmode=verify-full&tls_ca={}", other_ca.display()),
        ),
        ("the system's trust store", format!("{base}&sslmode=require")),
    ] {
        let store = PostgresStore::open_lazy(&url).expect("open");
        match store.ping().await {
            Err(StoreError::Unavailable(why)) => println!("{what}: refused: {why}"),
            r => panic!("{what}: expected the server to be refused, got {r:?}"),
        }
    }

    let plain = support::store_at(&format!("{base}&sslmode=disable")).await;
    assert!(
        !plain.tls_in_use().await.expect("pg_stat_ssl"),
        "sslmode=disable is plain TCP"
    );
}

/// A database that holds a lock the store needs (a long migration, an
/// operator's `LOCK TABLE`) makes calls fail as unavailable once
/// `statement_timeout_ms` has passed, instead of queueing forever; the
/// store works again as soon as the lock is gone.
#[tokio::test]
async fn a_locked_table_fails_closed_after_the_statement_timeout() {
    let schema = support::fresh_schema();
    let url = support::with_schema(&support::server_url(), &schema);
    let store = support::store_at(&format!("{url}&statement_timeout_ms=300")).await;
    let (mut client, conn) = tokio_postgres::connect(&support::server_url(), tokio_postgres::NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(conn);
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute(&format!("LOCK TABLE {schema}.sessions IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("lock");
    let start = Instant::now();
    match store.count_active(T0).await {
        Err(StoreError::Unavailable(why)) => println!("refused after {:?}: {why}", start.elapsed()),
        r => panic!("expected unavailable, got {r:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "{took:?}: the timeout, not another error"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    tx.rollback().await.expect("unlock");
    assert_eq!(store.count_active(T0).await.expect("works again"), 0);
}
