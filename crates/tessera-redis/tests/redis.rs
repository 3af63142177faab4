//! What the Redis store does beyond the shared contract: TTLs, the index
//! entries that outlive a record Redis dropped, corrupt values, outages,
//! the key layout and the store URL's options.
#![forbid(unsafe_code)]

use tessera_redis::testing as support;

use std::time::Duration;

use tessera_conformance::support::{HOUR, MIN, T0, created_event, refresh_family, session};
use tessera_core::{
    CreateOptions, EventKind, EventQuery, EventStore, RefreshStore, SessionStore, StoreError, StoreHealth,
};
use tessera_redis::{RedisOptions, RedisStore};

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        out.extend(batch);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// `pattern` for the keys of one kind under `store`'s prefix: the prefix's
/// braces are glob characters, so they are escaped.
fn pattern(store: &RedisStore, kind: &str) -> Vec<u8> {
    let p = store.options().prefix.replace('{', "\\{").replace('}', "\\}");
    format!("{p}{kind}*").into_bytes()
}

async fn insert(store: &RedisStore, rec: &tessera_core::SessionRecord) {
    let opts = CreateOptions {
        now: rec.created_at,
        ..CreateOptions::default()
    };
    store
        .create(rec, &opts, &[created_event(rec)])
        .await
        .expect("create");
}

#[tokio::test]
async fn a_session_record_lives_until_its_expiry_plus_the_grace() {
    let store = support::fresh_store(None).await;
    let mut conn = support::raw().await;
    let (tok, rec) = session("alice", T0);
    insert(&store, &rec).await;
    let k = keys(&mut conn, &pattern(&store, "s")).await;
    assert_eq!(k.len(), 1, "one record key");
    let raw = conn.clone();
    let pttl = |k: Vec<u8>| {
        let mut conn = raw.clone();
        async move {
            redis::cmd("PTTL")
                .arg(k)
                .query_async::<i64>(&mut conn)
                .await
                .expect("PTTL")
        }
    };
    // Measured from the writer's clock: 30 min idle window + 1 h grace.
    let grace = 3_600_000;
    let ttl = pttl(k[0].clone()).await;
    assert!(
        (30 * MIN + grace - 5_000..=30 * MIN + grace).contains(&ttl),
        "TTL {ttl}"
    );
    // A slide moves the TTL by as much as the expiry moved.
    assert!(
        store
            .touch(
                &rec.handle,
                &tok.hash(),
                T0.plus_millis(MIN),
                T0.plus_millis(31 * MIN)
            )
            .await
            .expect("touch")
    );
    let ttl = pttl(k[0].clone()).await;
    assert!(
        (31 * MIN + grace - 5_000..=31 * MIN + grace).contains(&ttl),
        "TTL after the slide {ttl}"
    );
    // Nothing else carries a TTL: the index entries are removed by the
    // sweep or by trim on write, never by Redis on its own.
    let record = keys(&mut conn, &pattern(&store, "s")).await[0].clone();
    for k in keys(&mut conn, &pattern(&store, "")).await {
        if k != record {
            assert_eq!(pttl(k.clone()).await, -1, "{}", String::from_utf8_lossy(&k));
        }
    }
}

/// The record of a session Redis deleted by its TTL (simulated with DEL)
/// before any sweep: the subject index entry still yields its `expired`
/// event, and its families and refresh tokens go with it.
#[tokio::test]
async fn a_record_dropped_by_redis_still_gets_its_event_and_cleanup() {
    let store = support::fresh_store(None).await;
    let mut conn = support::raw().await;
    let (_, rec) = session("alice", T0);
    insert(&store, &rec).await;
    let (t0, fam) = refresh_family(&rec, T0);
    store
        .create_refresh_family(&fam, &t0.hash(), &[])
        .await
        .expect("family");
    let k = keys(&mut conn, &pattern(&store, "s")).await;
    let _: () = redis::cmd("DEL")
        .arg(&k[0])
        .query_async(&mut conn)
        .await
        .expect("DEL");

    let now = T0.plus_millis(10 * HOUR);
    assert_eq!(store.sweep(now, 10).await.expect("sweep"), 1);
    let events = store
        .events(&EventQuery {
            kind: Some(EventKind::Expired),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.handle, rec.handle);
    assert_eq!(events[0].event.subject, "alice");
    assert_eq!(events[0].event.at, now);
    assert!(store.find_refresh(&t0.hash()).await.expect("find").is_none());
    assert!(
        store
            .refresh_families_of(&rec.handle)
            .await
            .expect("families")
            .is_empty()
    );
    for kind in ["f", "l", "F"] {
        assert!(
            keys(&mut conn, &pattern(&store, kind)).await.is_empty(),
            "no {kind} keys left"
        );
    }
    assert_eq!(store.sweep(now, 10).await.expect("sweep"), 0);
}

/// Without any sweep, the next write to a subject's index bucket drops
/// the entries whose record Redis deleted, logging their `expired` event.
#[tokio::test]
async fn the_subject_index_is_trimmed_on_write() {
    let store = support::fresh_store(Some(1)).await;
    let mut conn = support::raw().await;
    let (_, old) = session("alice", T0);
    insert(&store, &old).await;
    let k = keys(&mut conn, &pattern(&store, "s")).await;
    let _: () = redis::cmd("DEL")
        .arg(&k[0])
        .query_async(&mut conn)
        .await
        .expect("DEL");

    // Another subject's login, in the same (only) bucket, after the
    // dropped session's expiry.
    let (_, new) = session("bob", T0.plus_millis(HOUR));
    insert(&store, &new).await;
    let bucket: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(format!("{}u0", store.options().prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert_eq!(bucket.len(), 1, "only bob's entry is left");
    let expired = store
        .events(&EventQuery {
            kind: Some(EventKind::Expired),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.handle, old.handle);
}

/// Dead token index entries (records Redis dropped) are collected by the
/// creates that write their bucket.
#[tokio::test]
async fn dead_token_index_entries_are_collected_by_later_creates() {
    let store = support::fresh_store(Some(1)).await;
    let mut conn = support::raw().await;
    let (_, rec) = session("alice", T0);
    insert(&store, &rec).await;
    let k = keys(&mut conn, &pattern(&store, "s")).await;
    let _: () = redis::cmd("DEL")
        .arg(&k[0])
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let (_, next) = session("bob", T0);
    insert(&store, &next).await;
    let n: i64 = redis::cmd("HLEN")
        .arg(format!("{}t0", store.options().prefix))
        .query_async(&mut conn)
        .await
        .expect("HLEN");
    assert_eq!(n, 1, "the dead entry went, bob's stays");
}

#[tokio::test]
async fn a_corrupt_record_is_an_error_not_a_panic() {
    let store = support::fresh_store(Some(1)).await;
    let mut conn = support::raw().await;
    let (tok, rec) = session("alice", T0);
    insert(&store, &rec).await;
    let k = keys(&mut conn, &pattern(&store, "s")).await;
    for garbage in [
        &b""[..],
        b"\x01",
        b"\x01\xff\xff\xff",
        b"\x09hello",
        &[0xffu8; 200][..],
    ] {
        let _: () = redis::cmd("SET")
            .arg(&k[0])
            .arg(garbage)
            .query_async(&mut conn)
            .await
            .expect("SET");
        let what = format!("{garbage:?}");
        assert!(
            matches!(store.get(&rec.handle).await, Err(StoreError::Corrupt(_))),
            "get of {what}"
        );
        assert!(
            matches!(store.get_by_token(&tok.hash()).await, Err(StoreError::Corrupt(_))),
            "get_by_token of {what}"
        );
        assert!(
            matches!(store.list_by_subject("alice").await, Err(StoreError::Corrupt(_))),
            "list of {what}"
        );
        // Scripts that parse the record fail as corrupt too.
        let r = store
            .touch(&rec.handle, &tok.hash(), T0.plus_millis(1), T0.plus_millis(2))
            .await;
        assert!(
            matches!(r, Err(StoreError::Corrupt(_)) | Ok(false)),
            "touch of {what}: {r:?}"
        );
    }
}

#[tokio::test]
async fn redis_down_is_unavailable_and_back_up_recovers() {
    let server = support::private_server();
    let store = support::store_on(&server, RedisOptions::default()).await;
    store.ping().await.expect("ping");
    let port = server.port;
    drop(server);
    // The server is stopped asynchronously by its watchdog.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.ping().await {
            Err(StoreError::Unavailable(_)) => break,
            Ok(()) => assert!(std::time::Instant::now() < deadline, "Redis did not stop"),
            Err(e) => panic!("expected Unavailable, got {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        store.get("ses_x").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.count_active(T0).await,
        Err(StoreError::Unavailable(_))
    ));
    // Back up (empty, as a restarted Redis without persistence is): the
    // store reconnects by itself.
    let _server = support::restart_on(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.ping().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no recovery within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.get("ses_x").await.expect("get").is_none());
    // The scripts are loaded again (NOSCRIPT) without the caller noticing.
    assert_eq!(store.count_active(T0).await.expect("count_active"), 0);
}

#[tokio::test]
async fn every_key_carries_the_prefix() {
    let store = support::fresh_store(Some(16)).await;
    let mut conn = support::raw().await;
    let (_, rec) = session("user:42*?[x] {braces}", T0);
    insert(&store, &rec).await;
    let (t0, fam) = refresh_family(&rec, T0);
    store
        .create_refresh_family(&fam, &t0.hash(), &[])
        .await
        .expect("family");
    let prefix = store.options().prefix.as_bytes().to_vec();
    let ours = keys(&mut conn, &pattern(&store, "")).await;
    assert!(ours.len() >= 7, "{} keys", ours.len());
    // Keys of other cases have their own `{t…}` prefixes; none has none.
    for k in keys(&mut conn, b"*").await {
        assert!(k.starts_with(b"{t"), "{}", String::from_utf8_lossy(&k));
    }
    for k in ours {
        assert!(k.starts_with(&prefix));
    }
}

#[tokio::test]
async fn the_bucket_count_is_fixed_once_written() {
    let server = support::server();
    let options = |buckets| RedisOptions {
        prefix: RedisOptions::prefix_for(&format!("t{}-buckets", std::process::id())),
        buckets,
        ..RedisOptions::default()
    };
    let a = RedisStore::connect_with(&server.url(), options(Some(16)))
        .await
        .expect("first");
    assert_eq!(a.buckets().await.expect("buckets"), 16);
    let b = RedisStore::connect_with(&server.url(), options(None))
        .await
        .expect("keeps what is stored");
    assert_eq!(b.buckets().await.expect("buckets"), 16);
    let c = RedisStore::connect_with(&server.url(), options(Some(32))).await;
    assert!(matches!(c, Err(StoreError::Unavailable(m)) if m.contains("16 buckets")));
}

#[test]
fn store_url_options_are_taken_out_of_the_url() {
    let (url, o) =
        RedisOptions::from_url("redis://h:6379/2?prefix=myapp&buckets=16384&grace_secs=60&protocol=resp3")
            .expect("parse");
    assert_eq!(url, "redis://h:6379/2?protocol=resp3");
    assert_eq!(o.prefix, "{myapp}");
    assert_eq!(o.buckets, Some(16384));
    assert_eq!(o.grace, Duration::from_secs(60));
    let (url, o) = RedisOptions::from_url("rediss://:pw@h/").expect("parse");
    assert_eq!(url, "rediss://:pw@h/");
    assert_eq!(o, RedisOptions::default());
    for bad in [
        "redis://h/?buckets=1000",
        "redis://h/?buckets=131072",
        "redis://h/?prefix=",
        "redis://h/?prefix=a}b",
        "redis://h/?grace_secs=0",
        "not a url",
    ] {
        assert!(RedisOptions::from_url(bad).is_err(), "{bad}");
    }
}

/// A process may start before Redis: the lazily opened store answers
/// "unavailable" until Redis is there, then works without a restart.
#[tokio::test]
async fn a_lazily_opened_store_waits_for_redis() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let store = RedisStore::open_lazy(&format!("redis://127.0.0.1:{port}/?prefix=lazy")).expect("open_lazy");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.count_active(T0).await,
        Err(StoreError::Unavailable(_))
    ));
    let _server = support::restart_on(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.count_active(T0).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no recovery within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.buckets().await.expect("buckets"),
        RedisOptions::DEFAULT_BUCKETS
    );
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        RedisStore::open_lazy("redis://127.0.0.1:1/"),
        Err(StoreError::Unavailable(_))
    ));
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian: openssl) to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rediss://` with a private CA (`tls_ca`): the store works over TLS; a
/// server whose certificate the store does not trust is unavailable,
/// never connected to in the clear.
#[tokio::test]
async fn rediss_works_with_a_private_ca_and_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=tessera test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext file");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let server = support::tls_server(&d.join("server.pem"), &d.join("server.key"), &d.join("ca.pem"));
    let port = server.tls_port.expect("a TLS port");

    let url = format!(
        "rediss://127.0.0.1:{port}/?prefix=tls&tls_ca={}",
        d.join("ca.pem").display()
    );
    let store = RedisStore::connect(&url).await.expect("connect over TLS");
    let (_, rec) = session("alice", T0);
    insert(&store, &rec).await;
    assert_eq!(store.get(&rec.handle).await.expect("get").as_deref(), Some(&rec));

    // The system trust store does not know the test CA.
    let untrusted = RedisStore::connect(&format!("rediss://127.0.0.1:{port}/?prefix=tls")).await;
    assert!(
        matches!(untrusted, Err(StoreError::Unavailable(_))),
        "{untrusted:?}"
    );
}

/// Overwrites the record of `handle` (found through the subject's index
/// by elimination: the only record key not among `keep`) with garbage.
async fn corrupt_record_of(store: &RedisStore, before: &[Vec<u8>]) -> Vec<u8> {
    let mut conn = support::raw().await;
    let now: Vec<Vec<u8>> = keys(&mut conn, &pattern(store, "s")).await;
    let k = now
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("the new record key");
    let _: () = redis::cmd("SET")
        .arg(&k)
        .arg(&b"\x01\xff"[..])
        .query_async(&mut conn)
        .await
        .expect("SET");
    k
}

async fn record_keys(store: &RedisStore) -> Vec<Vec<u8>> {
    keys(&mut support::raw().await, &pattern(store, "s")).await
}

async fn event_count(store: &RedisStore) -> usize {
    store
        .events(&EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .len()
}

/// A script that fails is not rolled back by Redis, so each reads and
/// decodes everything before it writes: a corrupt record met by a create
/// (checking the subject's limit) leaves nothing written.
#[tokio::test]
async fn a_create_that_meets_a_corrupt_record_writes_nothing() {
    let store = support::fresh_store(Some(1)).await;
    let (_, a) = session("alice", T0);
    insert(&store, &a).await;
    corrupt_record_of(&store, &[]).await;
    let events = event_count(&store).await;
    let (_, b) = session("alice", T0.plus_millis(1));
    let opts = CreateOptions {
        max_per_subject: Some(1),
        now: b.created_at,
        ..CreateOptions::default()
    };
    let r = store.create(&b, &opts, &[created_event(&b)]).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert!(store.get(&b.handle).await.expect("get").is_none(), "not inserted");
    assert_eq!(event_count(&store).await, events, "no event");
}

/// The same for revoking a subject: all of its sessions or none.
#[tokio::test]
async fn a_revocation_that_meets_a_corrupt_record_writes_nothing() {
    let store = support::fresh_store(Some(1)).await;
    let mut recs: Vec<_> = (0..3).map(|_| session("alice", T0).1).collect();
    recs.sort_by(|x, y| x.handle.cmp(&y.handle));
    let mut before = Vec::new();
    for r in &recs[..2] {
        insert(&store, r).await;
    }
    before.extend(record_keys(&store).await);
    insert(&store, &recs[2]).await;
    // The last in handle order, so a store revoking in order would have
    // revoked the other two first.
    corrupt_record_of(&store, &before).await;
    let events = event_count(&store).await;
    let r = store
        .revoke_subject("alice", None, tessera_core::RevokeReason::Operator, T0)
        .await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    for rec in &recs[..2] {
        let got = store.get(&rec.handle).await.expect("get").expect("stored");
        assert!(got.revoked.is_none(), "nothing revoked");
    }
    assert_eq!(event_count(&store).await, events, "no event");
}

/// A rotation whose slide meets a corrupt session record rotates nothing.
#[tokio::test]
async fn a_rotation_that_meets_a_corrupt_session_writes_nothing() {
    let store = support::fresh_store(Some(1)).await;
    let (tok, a) = session("alice", T0);
    insert(&store, &a).await;
    let (t0, fam) = refresh_family(&a, T0);
    store
        .create_refresh_family(&fam, &t0.hash(), &[])
        .await
        .expect("family");
    corrupt_record_of(&store, &[]).await;
    let t1 = tessera_core::SecretToken::generate(tessera_core::TokenKind::Refresh).hash();
    let at = T0.plus_millis(MIN);
    let slide = tessera_core::Touch {
        handle: &a.handle,
        token_hash: &tok.hash(),
        last_seen_at: at,
        idle_expires_at: at.plus_millis(30 * MIN),
    };
    let r = store
        .rotate_refresh(
            &tessera_core::Rotation::new(&fam.id, 0, &t1, at).touching(slide),
            &[],
        )
        .await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    let found = store
        .find_refresh(&t0.hash())
        .await
        .expect("find")
        .expect("family");
    assert_eq!(found.family.generation, 0, "not rotated");
    assert!(
        store.find_refresh(&t1).await.expect("find").is_none(),
        "no successor"
    );
}

/// One record that no longer decodes does not stop every later sweep: the
/// sweep deletes it from what its index entry says, with its event.
#[tokio::test]
async fn a_corrupt_record_does_not_stop_the_sweep() {
    let store = support::fresh_store(Some(1)).await;
    let (_, a) = session("alice", T0);
    insert(&store, &a).await;
    corrupt_record_of(&store, &[]).await;
    let (_, b) = session("bob", T0);
    insert(&store, &b).await;
    let now = T0.plus_millis(10 * HOUR);
    assert_eq!(store.sweep(now, 10).await.expect("sweep"), 2);
    assert!(record_keys(&store).await.is_empty());
    let expired = store
        .events(&EventQuery {
            kind: Some(EventKind::Expired),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let mut handles: Vec<String> = expired.into_iter().map(|e| e.event.handle).collect();
    handles.sort();
    let mut want = vec![a.handle.clone(), b.handle.clone()];
    want.sort();
    assert_eq!(handles, want);
}

/// A lease is one key with a TTL of its own, so Redis drops it once a dead
/// holder's lease has run out, whatever the processes' clocks say.
#[tokio::test]
async fn a_lease_is_a_key_with_a_ttl() {
    use tessera_core::LeaseStore;
    let store = support::fresh_store(None).await;
    let mut conn = support::raw().await;
    assert!(
        store
            .acquire_lease("sweep", "hld_a", Duration::from_secs(5), T0)
            .await
            .expect("acquire")
    );
    let key = format!("{}dsweep", store.options().prefix);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!((1..=5000).contains(&ttl), "PTTL {ttl}");
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(value, format!("{} hld_a", T0.unix_millis() + 5000));
    // What another version or a person wrote there is an error, not a panic.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("junk")
        .query_async(&mut conn)
        .await
        .expect("SET");
    assert!(matches!(
        store
            .acquire_lease("sweep", "hld_b", Duration::from_secs(5), T0)
            .await,
        Err(StoreError::Corrupt(_))
    ));
}
