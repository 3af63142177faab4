//! SQLite-specific behaviour the shared conformance suite cannot see: the
//! file, its schema version, durability across reopen, group commit under
//! a burst, and failing closed on a damaged file.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, json};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, ApiKeyStore, AuthInfo, CreateOptions, CreateOutcome, CreateSession,
    DeviceInfo, EventKind, EventQuery, EventStore, NewEvent, SessionPolicy, SessionRecord, SessionStore,
    Sessions, StoreError, StoreHealth, SystemClock, Timestamp, TokenHash,
};
use tessera_sqlite::{SqliteOptions, SqliteStore, Synchronous};

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("tessera.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).expect("open")
}

fn hash(n: u32, salt: u8) -> TokenHash {
    let mut h = [salt; 32];
    h[..4].copy_from_slice(&n.to_be_bytes());
    TokenHash(h)
}

fn record(n: u32, subject: &str) -> SessionRecord {
    SessionRecord {
        handle: format!("ses_{n:022}"),
        token_hash: hash(n, 0xab),
        subject: subject.into(),
        version: 0,
        created_at: T0,
        last_seen_at: T0,
        idle_timeout_ms: 600_000,
        idle_expires_at: T0.plus_secs(600),
        absolute_expires_at: T0.plus_secs(3600),
        auth: AuthInfo {
            level: 2,
            methods: vec!["pwd".into(), "otp".into()],
            time: T0,
        },
        device: DeviceInfo {
            user_agent: Some("curl/8".into()),
            ip: Some("192.0.2.1".into()),
            label: "Unknown device".into(),
        },
        data: json!({"cart": [1, 2], "ü": "ß"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        binding: Some(tessera_core::Binding::Dpop { jkt: "abc".into() }),
        revoked: None,
    }
}

fn opts() -> CreateOptions {
    CreateOptions {
        now: T0,
        ..CreateOptions::default()
    }
}

fn all_events() -> EventQuery {
    EventQuery {
        limit: 1000,
        ..EventQuery::default()
    }
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

fn user_version(path: &Path) -> i64 {
    raw(path)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

#[tokio::test]
async fn migrations_apply_once_and_reopen_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(open(&path));
    assert_eq!(user_version(&path), 11);
    let tables: Vec<String> = raw(&path)
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "api_keys",
            "clients",
            "ended_sessions",
            "events",
            "leases",
            "rate_counters",
            "refresh_families",
            "refresh_tokens",
            "refresh_tokens_gc",
            "sessions",
            "signing_keys",
            "used_markers"
        ]
    );
    // Re-running a migration would fail on CREATE TABLE; reopening must not.
    for _ in 0..3 {
        let s = open(&path);
        s.ping().await.unwrap();
    }
    assert_eq!(user_version(&path), 11);
    let mode: String = raw(&path)
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(open(&path));
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("newer"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Refusing did not touch it.
    assert_eq!(user_version(&path), 99);
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let s = open(&path);
    s.create(&record(1, "alice"), &opts(), &[]).await.unwrap();
    for p in [path.clone(), dir.path().join("tessera.db-wal")] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let a = record(1, "alice");
    let mut b = record(2, "alice");
    b.data = Map::new();
    b.binding = None;
    b.device.user_agent = None;
    let key = ApiKeyRecord {
        id: "key_1".into(),
        name: "ci".into(),
        hash: hash(7, 0x11),
        created_at: T0,
        revoked_at: None,
        scopes: vec![ApiKeyScope::Events, ApiKeyScope::Revocations],
    };
    {
        let s = open(&path);
        s.create(&a, &opts(), &[NewEvent::new(EventKind::Created, &a, T0)])
            .await
            .unwrap();
        s.create(&b, &opts(), &[NewEvent::new(EventKind::Created, &b, T0)])
            .await
            .unwrap();
        assert_eq!(
            s.revoke_subject(
                "alice",
                Some(&a.handle),
                tessera_core::RevokeReason::RevokeAll,
                T0.plus_secs(1)
            )
            .await
            .unwrap(),
            vec![b.handle.clone()]
        );
        s.insert_api_key(&key).await.unwrap();
    }
    let s = open(&path);
    assert_eq!(*s.get(&a.handle).await.unwrap().unwrap(), a);
    assert_eq!(*s.get_by_token(&a.token_hash).await.unwrap().unwrap(), a);
    let b2 = s.get(&b.handle).await.unwrap().unwrap();
    assert_eq!(b2.version, 1);
    assert_eq!(
        b2.revoked.map(|r| r.reason),
        Some(tessera_core::RevokeReason::RevokeAll)
    );
    let ev = s.events(&all_events()).await.unwrap();
    assert_eq!(
        ev.iter().map(|e| (e.id, e.event.kind)).collect::<Vec<_>>(),
        [
            (1, EventKind::Created),
            (2, EventKind::Created),
            (3, EventKind::Revoked)
        ]
    );
    assert_eq!(s.list_api_keys().await.unwrap(), std::slice::from_ref(&key));
    assert_eq!(s.api_key_by_hash(&key.hash).await.unwrap(), Some(key));
    assert_eq!(s.count_active(T0.plus_secs(2)).await.unwrap(), 1);
    // Ids keep increasing after a reopen, even past deleted rows.
    s.create(
        &record(3, "bob"),
        &opts(),
        &[NewEvent::new(EventKind::Created, &record(3, "bob"), T0)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.events(&all_events()).await.unwrap().last().map(|e| e.id),
        Some(4)
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_file_holds_token_hashes_never_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store: Arc<dyn SessionStore> = Arc::new(open(&path));
    let sessions = Sessions::new(
        Arc::clone(&store),
        Arc::new(SystemClock),
        SessionPolicy::default(),
    );
    let mut issued = Vec::new();
    for _ in 0..20 {
        issued.push(
            sessions
                .create(CreateSession {
                    subject: "alice".into(),
                    ..CreateSession::default()
                })
                .await
                .unwrap(),
        );
    }
    let elevated = sessions
        .elevate(issued[0].token.expose(), tessera_core::AuthInput::default())
        .await
        .unwrap();
    issued.push(elevated);
    let files: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let all: Vec<u8> = files.concat();
    assert!(!all.is_empty());
    for i in &issued {
        let token = i.token.expose();
        assert!(!contains(&all, token.as_bytes()), "raw token found on disk");
        assert!(
            !contains(&all, &token.as_bytes()[4..]),
            "token body found on disk"
        );
        assert!(
            contains(&all, i.token.hash().as_bytes()),
            "hash missing from the files"
        );
    }
}

/// 256 creates at once: the writer folds them into a few transactions, and
/// every one of them is acknowledged and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_burst_of_256_concurrent_creates_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for sync in [Synchronous::Normal, Synchronous::Full] {
        let path = dir.path().join(format!("{sync:?}.db"));
        let store = Arc::new(
            SqliteStore::open(
                &path,
                SqliteOptions {
                    synchronous: sync,
                    readers: 2,
                },
            )
            .unwrap(),
        );
        let mut set = tokio::task::JoinSet::new();
        for n in 0..256u32 {
            let store = Arc::clone(&store);
            set.spawn(async move {
                let r = record(n, &format!("user{}", n % 16));
                let ev = [NewEvent::new(EventKind::Created, &r, T0)];
                let o = CreateOptions {
                    max_per_subject: Some(100),
                    ..opts()
                };
                store.create(&r, &o, &ev).await
            });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().unwrap(), CreateOutcome::Created { evicted: vec![] });
        }
        assert_eq!(store.count_active(T0).await.unwrap(), 256);
        let ev = store.events(&all_events()).await.unwrap();
        assert_eq!(ev.len(), 256);
        assert!(ev.windows(2).all(|w| w[0].id < w[1].id));
        drop(store);
        assert_eq!(open(&path).count_active(T0).await.unwrap(), 256, "{sync:?}");
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    assert!(matches!(
        SqliteStore::open(&path, SqliteOptions::default()),
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let r = SqliteStore::open(dir.path().join("no/such/dir/t.db"), SqliteOptions::default());
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

#[tokio::test]
async fn undecodable_rows_are_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let s = open(&path);
    for n in 1..=3 {
        s.create(&record(n, "alice"), &opts(), &[]).await.unwrap();
    }
    let c = raw(&path);
    c.execute(
        "UPDATE sessions SET data = 'not json' WHERE handle = ?1",
        [&record(1, "x").handle],
    )
    .unwrap();
    c.execute(
        "UPDATE sessions SET auth_level = 300 WHERE handle = ?1",
        [&record(2, "x").handle],
    )
    .unwrap();
    c.execute(
        "INSERT INTO events (at, kind, subject, handle) VALUES (0, 'bogus', 'alice', 'h')",
        [],
    )
    .unwrap();
    drop(c);
    assert!(matches!(
        s.get(&record(1, "x").handle).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.get_by_token(&record(2, "x").token_hash).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.list_by_subject("alice").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.events(&all_events()).await,
        Err(StoreError::Corrupt(_))
    ));
    // The intact row still reads.
    assert!(s.get(&record(3, "x").handle).await.unwrap().is_some());
}

/// After the file is overwritten under a live store, every call returns
/// (Ok from cached pages, or an error), never panics or hangs, and the file
/// is refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_damaged_while_open_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let s = open(&path);
    for n in 1..=50 {
        s.create(&record(n, "alice"), &opts(), &[]).await.unwrap();
    }
    for f in ["tessera.db", "tessera.db-wal", "tessera.db-shm"] {
        let p = dir.path().join(f);
        if let Ok(m) = std::fs::metadata(&p) {
            std::fs::write(&p, vec![0xee; m.len() as usize]).unwrap();
        }
    }
    for n in 100..110 {
        let results = [
            s.create(&record(n, "alice"), &opts(), &[]).await.err(),
            s.get(&record(1, "alice").handle).await.err(),
            s.list_by_subject("alice").await.err(),
            s.count_active(T0).await.err(),
            s.ping().await.err(),
        ];
        for e in results.into_iter().flatten() {
            assert!(
                matches!(e, StoreError::Unavailable(_) | StoreError::Corrupt(_)),
                "{e:?}"
            );
        }
    }
    // The live store may go on answering from pages it holds in memory
    // (which of its calls notice the wipe depends on timing), but the file
    // itself is refused.
    assert!(
        SqliteStore::open(&path, SqliteOptions::default()).is_err(),
        "a wiped file opened as a store"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn an_unreadable_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(open(&path));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        // Running as root: permissions do not apply, nothing to check.
        return;
    }
    assert!(matches!(
        SqliteStore::open(&path, SqliteOptions::default()),
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn events_page_by_id_and_use_every_filter() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db(&dir));
    for n in 0..30u32 {
        let r = record(n, if n % 2 == 0 { "alice" } else { "bob" });
        s.create(&r, &opts(), &[NewEvent::new(EventKind::Created, &r, T0)])
            .await
            .unwrap();
    }
    s.revoke_subject("bob", None, tessera_core::RevokeReason::Operator, T0)
        .await
        .unwrap();
    let full = s.events(&all_events()).await.unwrap();
    assert_eq!(full.len(), 45);
    // Paging with `after` reassembles the whole log.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = s
            .events(&EventQuery {
                after,
                limit: 7,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        paged.extend(page);
    }
    assert_eq!(paged, full);
    let q = EventQuery {
        subject: Some("bob".into()),
        kind: Some(EventKind::Revoked),
        after: full[20].id,
        limit: 3,
        ..EventQuery::default()
    };
    let want: Vec<_> = full
        .iter()
        .filter(|e| e.id > q.after && e.event.subject == "bob" && e.event.kind == EventKind::Revoked)
        .take(3)
        .cloned()
        .collect();
    assert_eq!(s.events(&q).await.unwrap(), want);
    let h = record(5, "x").handle;
    let by_handle = s
        .events(&EventQuery {
            handle: Some(h.clone()),
            ..all_events()
        })
        .await
        .unwrap();
    assert_eq!(by_handle.len(), 2);
    assert!(by_handle.iter().all(|e| e.event.handle == h));
    assert_eq!(s.events(&EventQuery::default()).await.unwrap(), [], "limit 0");
    assert_eq!(
        s.events(&EventQuery {
            after: u64::MAX,
            ..all_events()
        })
        .await
        .unwrap(),
        []
    );
}

#[tokio::test]
async fn sweep_takes_the_earliest_expiries_first_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db(&dir));
    for n in 0..10u32 {
        let mut r = record(n, "alice");
        // Expiries out of insertion order; session 9 never expires in range.
        r.idle_expires_at = T0.plus_secs(i64::from((n * 7) % 10) + 1);
        if n == 9 {
            r.idle_expires_at = T0.plus_secs(10_000);
            r.absolute_expires_at = T0.plus_secs(10_000);
        }
        s.create(&r, &opts(), &[]).await.unwrap();
    }
    s.revoke_subject("alice", None, tessera_core::RevokeReason::Revoked, T0)
        .await
        .unwrap();
    let s_now = T0.plus_secs(100);
    assert_eq!(s.sweep(s_now, 4).await.unwrap(), 4);
    // The four earliest expiries went first: sessions 0, 3, 6, 2 (1, 2, 3, 5 s).
    let mut left = Vec::new();
    for n in 0..10u32 {
        if s.get(&record(n, "x").handle).await.unwrap().is_some() {
            left.push(n);
        }
    }
    assert_eq!(left, [1, 4, 5, 7, 8, 9]);
    assert_eq!(s.sweep(s_now, 4).await.unwrap(), 4);
    assert_eq!(s.sweep(s_now, 4).await.unwrap(), 1);
    assert_eq!(s.sweep(s_now, 4).await.unwrap(), 0);
    // All were revoked before expiring: no `expired` events.
    let expired = s
        .events(&EventQuery {
            kind: Some(EventKind::Expired),
            ..all_events()
        })
        .await
        .unwrap();
    assert!(expired.is_empty());
}

/// Reads by token hash may be answered from memory, but only while nothing
/// at all has been committed: a revocation by this store, or by another
/// connection to the file (standing in for another process), is seen by
/// the very next read.
#[tokio::test]
async fn cached_session_reads_never_outlive_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    // One reader thread: each thread has its own cache, so with several
    // the second read could land on a thread that has not seen the session.
    let store = SqliteStore::open(
        &path,
        SqliteOptions {
            readers: 1,
            ..SqliteOptions::default()
        },
    )
    .expect("open");
    for n in 1..=2 {
        store.create(&record(n, "alice"), &opts(), &[]).await.unwrap();
    }
    let h1 = record(1, "alice").token_hash;
    let first = store.get_by_token(&h1).await.unwrap().unwrap();
    let again = store.get_by_token(&h1).await.unwrap().unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "an unchanged database should be answered from memory"
    );

    // A revocation by this store's writer.
    let revoked = store
        .revoke_subject(
            "alice",
            Some(&record(2, "alice").handle),
            tessera_core::RevokeReason::Logout,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(revoked, [record(1, "alice").handle]);
    assert!(store.get_by_token(&h1).await.unwrap().unwrap().revoked.is_some());

    // A revocation committed by another connection, as another process would.
    let h2 = record(2, "alice").token_hash;
    assert!(store.get_by_token(&h2).await.unwrap().unwrap().revoked.is_none());
    assert!(store.get_by_token(&h2).await.unwrap().unwrap().revoked.is_none());
    let other = raw(&path);
    other
        .execute(
            "UPDATE sessions SET version = version + 1, revoked_at = ?1, revoke_reason = 'logout' \
             WHERE token_hash = ?2",
            rusqlite::params![T0.unix_millis(), h2.as_bytes()],
        )
        .unwrap();
    let seen = store.get_by_token(&h2).await.unwrap().unwrap();
    assert!(
        seen.revoked.is_some(),
        "a commit by another connection was not seen"
    );
    assert_eq!(seen.version, 1);

    // So is a deletion, and a commit that touches another table entirely
    // (every commit invalidates, which keeps the rule simple).
    other
        .execute("DELETE FROM sessions WHERE token_hash = ?1", [h2.as_bytes()])
        .unwrap();
    assert!(store.get_by_token(&h2).await.unwrap().is_none());
    let kept = store.get_by_token(&h1).await.unwrap().unwrap();
    other
        .execute(
            "INSERT INTO events (at, kind, subject, handle) VALUES (1, 'created', 'x', 'y')",
            [],
        )
        .unwrap();
    let after = store.get_by_token(&h1).await.unwrap().unwrap();
    assert!(!Arc::ptr_eq(&kept, &after));
    assert_eq!(*kept, *after);
}
