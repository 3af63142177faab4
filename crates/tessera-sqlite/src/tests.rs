//! Tests that need the store's insides: the writer thread and its batches.

use std::sync::Arc;

use serde_json::Map;
use tessera_core::{
    ApiKeyStore, AuthInfo, ClientStore, CreateOptions, DeviceInfo, EventQuery, EventStore, RefreshStore,
    Rotation, SessionRecord, SessionStore, StoreError, StoreHealth, Timestamp, TokenHash,
};

use super::*;

fn record(n: u32) -> SessionRecord {
    let now = Timestamp::from_unix_secs(1_000_000);
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_be_bytes());
    SessionRecord {
        handle: format!("ses_{n:022}"),
        token_hash: TokenHash(hash),
        subject: "alice".into(),
        version: 0,
        created_at: now,
        last_seen_at: now,
        idle_timeout_ms: 60_000,
        idle_expires_at: now.plus_secs(60),
        absolute_expires_at: now.plus_secs(3600),
        auth: AuthInfo {
            level: 1,
            methods: vec!["pwd".into()],
            time: now,
        },
        device: DeviceInfo {
            user_agent: None,
            ip: None,
            label: "Unknown device".into(),
        },
        data: Map::new(),
        binding: None,
        revoked: None,
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db"), SqliteOptions::default()).unwrap();
    (dir, store)
}

fn opts() -> CreateOptions {
    CreateOptions {
        now: Timestamp::from_unix_secs(1_000_000),
        ..CreateOptions::default()
    }
}

#[tokio::test]
async fn stopped_writer_is_unavailable_not_a_panic() {
    let (_dir, mut store) = open();
    store.create(&record(1), &opts(), &[]).await.unwrap();
    store.stop_writer();
    assert!(matches!(
        store.create(&record(2), &opts(), &[]).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.sweep(Timestamp::from_unix_secs(2_000_000), 10).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    // Reads still answer from the file.
    assert!(store.get(&record(1).handle).await.unwrap().is_some());
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_the_writer_lives_on() {
    let (_dir, store) = open();
    let r: StoreResult<()> = store
        .writer
        .call(|c| {
            c.execute(
                "INSERT INTO api_keys (id, name, hash, created_at) VALUES ('k', 'n', zeroblob(32), 0)",
                [],
            )
            .map_err(error::map)?;
            panic!("boom");
        })
        .await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))));
    // Its savepoint was rolled back.
    assert!(store.list_api_keys().await.unwrap().is_empty());
    store.create(&record(1), &opts(), &[]).await.unwrap();
    store.ping().await.unwrap();
}

/// Jobs queued together share one transaction; one that fails must roll
/// back its own changes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_job_in_a_batch_rolls_back_only_itself() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    store.create(&record(0), &opts(), &[]).await.unwrap();
    // Hold the writer busy so the next jobs queue up into one batch.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let blocker = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .writer
                .call(move |_| {
                    let _ = hold.recv();
                    Ok(())
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut tasks = Vec::new();
    for n in 1..=20u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            // Every third one reuses session 0's token hash: a duplicate
            // detected after its `created` event would otherwise be written.
            let mut r = record(n);
            if n.is_multiple_of(3) {
                r.token_hash = record(0).token_hash;
            }
            let ev = [tessera_core::NewEvent::new(
                tessera_core::EventKind::Created,
                &r,
                r.created_at,
            )];
            store.create(&r, &opts(), &ev).await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    for (i, t) in tasks.into_iter().enumerate() {
        let n = i as u32 + 1;
        let r = t.await.unwrap();
        if n.is_multiple_of(3) {
            assert!(matches!(r, Err(StoreError::Duplicate)), "{n}: {r:?}");
            assert!(store.get(&record(n).handle).await.unwrap().is_none());
        } else {
            assert!(r.is_ok(), "{n}: {r:?}");
        }
    }
    let events = store
        .events(&EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 14, "only the successful creates logged events");
    assert_eq!(store.list_by_subject("alice").await.unwrap().len(), 15);
}

/// The background checkpointer copies the WAL into the main file while the
/// store is open, so the WAL does not just grow until the backstop.
#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    let (dir, store) = open();
    let main = dir.path().join("t.db");
    let before = std::fs::metadata(&main).unwrap().len();
    for n in 1..=500 {
        store.create(&record(n), &opts(), &[]).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&main).unwrap().len() < before + 64 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint reached the main file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes `rec` with raw SQL, as an older build would have stored it.
fn insert_session_row(c: &rusqlite::Connection, rec: &SessionRecord) {
    let row = SessionRow::encode(rec).unwrap();
    c.execute(
        concat!(
            "INSERT INTO sessions (",
            codec::session_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        &row.params()[..],
    )
    .unwrap();
}

/// A database written by the previous release (schema version 1) is brought
/// to the current version on open, keeps its sessions, and takes refresh
/// families for them.
#[tokio::test]
async fn a_version_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        insert_session_row(&c, &record(1));
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    assert_eq!(version, 11);
    assert_eq!(*store.get(&record(1).handle).await.unwrap().unwrap(), record(1));
    assert!(
        store.list_clients().await.unwrap().is_empty(),
        "version 11 added the clients"
    );

    let now = Timestamp::from_unix_secs(1_000_000);
    let family = tessera_core::RefreshFamily {
        id: "rtf_1".into(),
        handle: record(1).handle,
        session_token_hash: record(1).token_hash,
        client_id: "app".into(),
        scope: vec![],
        audience: vec!["tessera".into()],
        generation: 0,
        created_at: now,
        rotated_at: now,
        current_sealed: None,
        binding: None,
        revoked: None,
    };
    let first = TokenHash([9; 32]);
    store.create_refresh_family(&family, &first, &[]).await.unwrap();
    // The sweeper takes the family with its session.
    assert_eq!(store.sweep(now.plus_secs(7200), 10).await.unwrap(), 1);
    assert!(store.find_refresh(&first).await.unwrap().is_none());
}

fn family(n: u32, generation: u64) -> tessera_core::RefreshFamily {
    let now = Timestamp::from_unix_secs(1_000_000);
    tessera_core::RefreshFamily {
        id: format!("rtf_{n}"),
        handle: record(n).handle,
        session_token_hash: record(n).token_hash,
        client_id: "app".into(),
        scope: vec!["read".into()],
        audience: vec!["tessera".into()],
        generation,
        created_at: now,
        rotated_at: now,
        current_sealed: None,
        binding: None,
        revoked: None,
    }
}

/// Token hash `g` of family `f`, distinct across families and generations.
fn hash(f: u8, g: u8) -> [u8; 32] {
    let mut h = [f; 32];
    h[31] = g;
    h
}

fn count(c: &rusqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A version 2 database (refresh hashes found through a family index) is
/// upgraded to the chained layout: every stored hash still finds its family
/// and generation, the family keeps rotating, and when its session goes the
/// sweeper deletes the whole chain, including the hashes from before the
/// upgrade, and nothing of the other family (RT-02 reuse detection needs
/// every consumed hash of a live family).
#[tokio::test]
async fn a_version_2_database_keeps_its_refresh_chains_and_collects_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.execute_batch(schema::MIGRATIONS[1]).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        for (n, generations, absolute) in [(1u32, 3u8, 3600i64), (2, 2, 7200)] {
            let mut rec = record(n);
            rec.absolute_expires_at = rec.created_at.plus_secs(absolute);
            rec.idle_expires_at = rec.absolute_expires_at;
            insert_session_row(&c, &rec);
            let fam = FamilyRow::encode(&family(n, u64::from(generations) - 1)).unwrap();
            c.execute(
                concat!(
                    "INSERT INTO refresh_families (",
                    codec::family_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                &fam.params()[..],
            )
            .unwrap();
            for g in 0..generations {
                c.execute(
                    "INSERT INTO refresh_tokens (hash, family_id, generation) VALUES (?1, ?2, ?3)",
                    rusqlite::params![hash(n as u8, g), fam.id, g],
                )
                .unwrap();
            }
        }
    }
    {
        // The audit trail of a session swept before the upgrade.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO events (at, kind, subject, handle, reason) VALUES (1, 'expired', 'bob', 'ses_gone', NULL)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let gone = store
        .events(&EventQuery {
            handle: Some("ses_gone".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(gone.len(), 1, "found by handle alone after the upgrade");
    assert_eq!(gone[0].event.subject, "bob");
    for g in 0..3u8 {
        let found = store.find_refresh(&TokenHash(hash(1, g))).await.unwrap().unwrap();
        assert_eq!(
            (found.generation, found.family.id.as_str()),
            (u64::from(g), "rtf_1")
        );
        assert_eq!(found.family.generation, 2);
    }
    let now = Timestamp::from_unix_secs(1_000_010);
    assert!(
        store
            .rotate_refresh(
                &Rotation::new("rtf_1", 2, &TokenHash(hash(1, 3)), now).sealed(b"sealed"),
                &[]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .rotate_refresh(
                &Rotation::new("rtf_1", 2, &TokenHash(hash(1, 9)), now).sealed(b"sealed"),
                &[]
            )
            .await
            .unwrap(),
        "the swap still refuses a stale generation"
    );
    let found = store.find_refresh(&TokenHash(hash(1, 3))).await.unwrap().unwrap();
    assert_eq!((found.generation, found.family.generation), (3, 3));
    assert!(
        store
            .find_refresh(&TokenHash(hash(1, 9)))
            .await
            .unwrap()
            .is_none()
    );

    // Session 1 ends (absolute expiry), session 2 lives on.
    assert_eq!(
        store
            .sweep(Timestamp::from_unix_secs(1_000_000 + 4000), 10)
            .await
            .unwrap(),
        1
    );
    let raw = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM refresh_tokens WHERE family_id = 'rtf_1'"
        ),
        0
    );
    assert_eq!(count(&raw, "SELECT count(*) FROM refresh_tokens_gc"), 0);
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM refresh_tokens WHERE family_id = 'rtf_2'"
        ),
        2
    );
    for g in 0..2u8 {
        let found = store.find_refresh(&TokenHash(hash(2, g))).await.unwrap().unwrap();
        assert_eq!(found.generation, u64::from(g));
    }
    for g in 0..4u8 {
        assert!(
            store
                .find_refresh(&TokenHash(hash(1, g)))
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// A version 3 database kept the sealed successor of every family until its
/// next rotation. After the upgrade the clearing step finds them through
/// the new partial index, in bounded batches, and leaves nothing sealed in
/// the file; the families keep rotating.
#[tokio::test]
async fn a_version_3_database_gets_its_old_sealed_successors_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let then = Timestamp::from_unix_secs(1_000_000);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for m in &schema::MIGRATIONS[..3] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", 3).unwrap();
        for n in 1..=3u32 {
            insert_session_row(&c, &record(n));
            let fam = FamilyRow::encode(&tessera_core::RefreshFamily {
                current_sealed: Some(format!("sealed-{n}").into_bytes()),
                ..family(n, 1)
            })
            .unwrap();
            let mut params = fam.params().to_vec();
            let head = hash(n as u8, 1);
            params.push(&head);
            c.execute(
                concat!(
                    "INSERT INTO refresh_families (",
                    codec::family_columns!(),
                    ", current_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                &params[..],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let sealed = "SELECT count(*) FROM refresh_families WHERE current_sealed IS NOT NULL";
    assert_eq!(count(&raw, sealed), 3, "the upgrade itself keeps the rows");
    let before = then.plus_secs(1);
    assert_eq!(store.clear_sealed_successors(before, 2).await.unwrap(), 2);
    assert_eq!(store.clear_sealed_successors(before, 2).await.unwrap(), 1);
    assert_eq!(store.clear_sealed_successors(before, 2).await.unwrap(), 0);
    assert_eq!(count(&raw, sealed), 0);
    let next = TokenHash(hash(1, 2));
    assert!(
        store
            .rotate_refresh(&Rotation::new("rtf_1", 1, &next, before), &[])
            .await
            .unwrap()
    );
}

/// The clearing step reads only the partial index of sealed successors:
/// its cost follows the sealed rows, not the number of families.
#[test]
fn clearing_sealed_successors_searches_the_partial_index() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    schema::migrate(&c).unwrap();
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", ops::SEALED_BEFORE))
        .unwrap()
        .query_map(rusqlite::params![0, 10], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(
        plan[0].starts_with("SEARCH refresh_families USING COVERING INDEX refresh_families_sealed")
            || plan[0].starts_with("SEARCH refresh_families USING INDEX refresh_families_sealed"),
        "{plan:?}"
    );
}

/// API keys stored before scopes existed get `admin` on upgrade, the power
/// they had, so an upgrade breaks no deployment; keys written after it keep
/// exactly their scopes, and an unknown scope name grants nothing.
#[tokio::test]
async fn api_keys_from_before_scopes_are_admin_after_the_upgrade() {
    use tessera_core::ApiKeyScope;
    let before = schema::MIGRATIONS
        .iter()
        .position(|m| m.contains("ALTER TABLE api_keys ADD COLUMN scopes"))
        .expect("the scopes migration");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for m in &schema::MIGRATIONS[..before] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", before as i64).unwrap();
        for (id, hash, revoked_at) in [("key_old", [1u8; 32], None), ("key_gone", [2u8; 32], Some(5i64))] {
            c.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at) VALUES (?1, 'deploy', ?2, 1, ?3)",
                rusqlite::params![id, hash, revoked_at],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let old = store.api_key_by_hash(&TokenHash([1; 32])).await.unwrap().unwrap();
    assert_eq!(old.scopes, [ApiKeyScope::Admin]);
    assert!(old.allows(ApiKeyScope::Sessions) && old.allows(ApiKeyScope::Revocations));
    let listed = store.list_api_keys().await.unwrap();
    assert!(
        listed.iter().all(|k| k.scopes == [ApiKeyScope::Admin]),
        "{listed:?}"
    );

    let new = tessera_core::ApiKeyRecord {
        id: "key_new".into(),
        name: "feed".into(),
        hash: TokenHash([3; 32]),
        created_at: Timestamp::from_unix_secs(10),
        revoked_at: None,
        scopes: vec![ApiKeyScope::Revocations],
    };
    store.insert_api_key(&new).await.unwrap();
    assert_eq!(store.api_key_by_hash(&new.hash).await.unwrap(), Some(new.clone()));
    assert!(!new.allows(ApiKeyScope::Sessions));

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE api_keys SET scopes = 'revocations teleport' WHERE id = 'key_new'",
        [],
    )
    .unwrap();
    let read = store.api_key_by_hash(&new.hash).await.unwrap().unwrap();
    assert_eq!(
        read.scopes,
        [ApiKeyScope::Revocations],
        "unknown names grant nothing"
    );
}

/// The collector walks a long chain in bounded steps, resuming where it
/// stopped; until it reaches them the orphaned hashes find nothing.
#[tokio::test]
async fn refresh_chains_are_collected_in_bounded_steps() {
    let (dir, store) = open();
    let now = Timestamp::from_unix_secs(1_000_000);
    for n in [1u32, 2] {
        store.create(&record(n), &opts(), &[]).await.unwrap();
        store
            .create_refresh_family(&family(n, 0), &TokenHash(hash(n as u8, 0)), &[])
            .await
            .unwrap();
        for g in 0..7u8 {
            let id = format!("rtf_{n}");
            let next = TokenHash(hash(n as u8, g + 1));
            assert!(
                store
                    .rotate_refresh(&Rotation::new(&id, g.into(), &next, now).sealed(b"s"), &[])
                    .await
                    .unwrap()
            );
        }
    }
    // Deleting the session (as the sweeper does) queues the chain's head.
    let raw = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    raw.pragma_update(None, "foreign_keys", "ON").unwrap();
    raw.execute("DELETE FROM sessions WHERE handle = ?1", [record(1).handle])
        .unwrap();
    assert_eq!(count(&raw, "SELECT count(*) FROM refresh_tokens_gc"), 1);
    assert_eq!(count(&raw, "SELECT count(*) FROM refresh_tokens"), 16);
    assert!(
        store
            .find_refresh(&TokenHash(hash(1, 5)))
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(ops::collect_refresh_tokens(&raw, 3).unwrap(), 3);
    assert_eq!(count(&raw, "SELECT count(*) FROM refresh_tokens"), 13);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM refresh_tokens_gc"),
        1,
        "resumes later"
    );
    assert_eq!(ops::collect_refresh_tokens(&raw, 3).unwrap(), 3);
    assert_eq!(ops::collect_refresh_tokens(&raw, 3).unwrap(), 2, "queue empty");
    assert_eq!(ops::collect_refresh_tokens(&raw, 3).unwrap(), 0);
    assert_eq!(count(&raw, "SELECT count(*) FROM refresh_tokens_gc"), 0);
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM refresh_tokens WHERE family_id = 'rtf_1'"
        ),
        0
    );
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM refresh_tokens WHERE family_id = 'rtf_2'"
        ),
        8
    );
    let found = store.find_refresh(&TokenHash(hash(2, 0))).await.unwrap().unwrap();
    assert_eq!((found.generation, found.family.generation), (0, 7));
}

/// Events have no handle index: a query by handle alone goes through the
/// handle's subject, from the live session or, once it is swept, from
/// `ended_sessions`, and walks the subject index rather than the table.
#[tokio::test]
async fn events_by_handle_alone_outlive_the_session_and_use_the_subject_index() {
    let (dir, store) = open();
    let t0 = Timestamp::from_unix_secs(1_000_000);
    let mut recs = Vec::new();
    for (n, subject) in [(1u32, "alice"), (2, "alice"), (3, "bob")] {
        let mut r = record(n);
        r.subject = subject.into();
        if n == 1 {
            r.absolute_expires_at = t0.plus_secs(10);
        }
        store
            .create(
                &r,
                &opts(),
                &[tessera_core::NewEvent::new(
                    tessera_core::EventKind::Created,
                    &r,
                    t0,
                )],
            )
            .await
            .unwrap();
        recs.push(r);
    }
    let by = |handle: &str, subject: Option<&str>| EventQuery {
        handle: Some(handle.to_owned()),
        subject: subject.map(str::to_owned),
        limit: 100,
        ..EventQuery::default()
    };
    let live = store.events(&by(&recs[0].handle, None)).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(store.sweep(t0.plus_secs(20), 10).await.unwrap(), 1);
    let ended = store.events(&by(&recs[0].handle, None)).await.unwrap();
    assert_eq!(ended.len(), 2, "created and expired, after the session is gone");
    assert!(
        ended
            .iter()
            .all(|e| e.event.handle == recs[0].handle && e.event.subject == "alice")
    );
    assert_eq!(store.events(&by(&recs[1].handle, None)).await.unwrap().len(), 1);
    assert_eq!(
        store
            .events(&by(&recs[2].handle, Some("bob")))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .events(&by(&recs[2].handle, Some("alice")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.events(&by("ses_never", None)).await.unwrap().is_empty());

    let raw = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    let plan: Vec<String> = raw
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM events WHERE id > 0 AND subject = \
             (SELECT subject FROM sessions WHERE handle = ?1 \
              UNION ALL SELECT subject FROM ended_sessions WHERE handle = ?1 LIMIT 1) \
             AND handle = ?1 ORDER BY id LIMIT 10",
        )
        .unwrap()
        .query_map(["ses_x"], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("USING INDEX events_subject")),
        "{plan:?}"
    );
}

/// A transaction of several megabytes commits whole: another connection
/// sees all of it at once, and the file stays intact.
#[tokio::test]
async fn large_transactions_commit_whole() {
    let (dir, store) = open();
    let reason = "x".repeat(1000);
    let n = store
        .writer
        .call(move |c| {
            let mut stmt = c
                .prepare("INSERT INTO events (at, kind, subject, handle, reason) VALUES (?1, 'created', ?2, ?3, ?4)")
                .map_err(error::map)?;
            for i in 0..5000i64 {
                stmt.execute(rusqlite::params![i, format!("s{}", i % 97), format!("ses_{i}"), reason])
                    .map_err(error::map)?;
            }
            Ok(5000)
        })
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    assert_eq!(count(&raw, "SELECT count(*) FROM events"), n);
    let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    // Small commits after the big one still land where readers look.
    store.create(&record(1), &opts(), &[]).await.unwrap();
    assert_eq!(count(&raw, "SELECT count(*) FROM sessions"), 1);
    drop(store);
    let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// Inserts 3000 events of ~300 bytes with a 16-page cache, so the
/// transaction spills pages into the WAL before it commits.
fn spill_3000_events(c: &rusqlite::Connection) -> StoreResult<()> {
    c.pragma_update(None, "cache_size", 16).map_err(error::map)?;
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO events (at, kind, subject, handle, reason) \
         SELECT i, 'created', 's' || (i % 50), 'h' || i, printf('%.300c', 'x') FROM n;",
    )
    .map_err(error::map)
}

/// A write that spills pages into the WAL and is then rolled back (a large
/// sweep or revoke-all that fails half-way) leaves nothing behind that a
/// later commit could write over another process's commit: a revocation
/// committed by another connection in between survives the store's next
/// commit, in the live file and in a copy taken as a crash would leave it.
#[tokio::test]
async fn a_rolled_back_spill_never_overwrites_another_commit() {
    let (dir, store) = open();
    store.create(&record(1), &opts(), &[]).await.unwrap();
    let failed = store
        .writer
        .call(|c| {
            spill_3000_events(c)?;
            Err::<(), _>(StoreError::Unavailable("fails after spilling".into()))
        })
        .await;
    assert!(failed.is_err());
    store
        .writer
        .call(|c| c.pragma_update(None, "cache_size", -2000).map_err(error::map))
        .await
        .unwrap();

    // Another process revokes the session.
    let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    other.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    other
        .execute(
            "UPDATE sessions SET version = version + 1, revoked_at = 1, revoke_reason = 'logout' \
             WHERE handle = ?1",
            [&record(1).handle],
        )
        .unwrap();
    // The store commits again, more than a page's worth.
    for n in 2..40 {
        store.create(&record(n), &opts(), &[]).await.unwrap();
    }

    let copy = tempfile::tempdir().unwrap();
    for name in ["t.db", "t.db-wal"] {
        std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
    }
    for path in [dir.path().join("t.db"), copy.path().join("t.db")] {
        let raw = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(
            count(&raw, "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL"),
            1,
            "the other process's revocation is lost in {}",
            path.display()
        );
        assert_eq!(count(&raw, "SELECT count(*) FROM sessions"), 39);
        assert_eq!(count(&raw, "SELECT count(*) FROM events"), 0);
        let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
    let seen = store.get_by_token(&record(1).token_hash).await.unwrap().unwrap();
    assert!(seen.revoked.is_some());
}

/// No SQLite call runs on the caller's thread: with a one-thread runtime,
/// a write that waits for a lock another process holds leaves the runtime
/// free to run reads and timers meanwhile.
#[test]
fn a_write_waiting_for_a_lock_does_not_stall_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (dir, store) = open();
        let store = Arc::new(store);
        store.create(&record(1), &opts(), &[]).await.unwrap();
        let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writing = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.create(&record(2), &opts(), &[]).await }
        });
        let started = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!writing.is_finished(), "the write should wait for the lock");
        // Reads and timers ran while the write waited.
        assert!(store.get_by_token(&record(1).token_hash).await.unwrap().is_some());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        other.execute_batch("COMMIT").unwrap();
        writing.await.unwrap().unwrap();
        assert!(store.get_by_token(&record(2).token_hash).await.unwrap().is_some());
    });
}

/// A transaction larger than the writer's page cache spills frames to the
/// WAL before it commits, and may write a page twice. When its commit
/// returns, everything must be in the file: a copy taken at that moment, as
/// a crashed process would leave it, recovers every row from the WAL.
#[tokio::test]
async fn a_spilled_transaction_is_whole_in_a_crash_copy() {
    let (dir, store) = open();
    store
        .writer
        .call(|c| {
            spill_3000_events(c)?;
            c.execute_batch("UPDATE events SET reason = printf('%.300c', 'y');")
                .map_err(error::map)
        })
        .await
        .unwrap();
    let copy = tempfile::tempdir().unwrap();
    for name in ["t.db", "t.db-wal"] {
        std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
    }
    let raw = rusqlite::Connection::open(copy.path().join("t.db")).unwrap();
    assert_eq!(count(&raw, "SELECT count(*) FROM events"), 3000);
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM events WHERE reason = printf('%.300c', 'y')"
        ),
        3000
    );
    let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(store);
}

/// `ended_sessions` (a swept session's subject, for queries by handle) does
/// not grow forever: event retention forgets a session once it ended
/// before the cutoff, when none of its events is left; until then its
/// events are still found by handle alone.
#[tokio::test]
async fn ended_sessions_are_forgotten_with_their_last_events() {
    let (dir, store) = open();
    let t0 = Timestamp::from_unix_secs(1_000_000);
    let mut r = record(1);
    r.absolute_expires_at = t0.plus_secs(10);
    let created = tessera_core::NewEvent::new(tessera_core::EventKind::Created, &r, t0);
    store.create(&r, &opts(), &[created]).await.unwrap();
    assert_eq!(store.sweep(t0.plus_secs(20), 10).await.unwrap(), 1);
    let raw = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    let ended = |raw: &rusqlite::Connection| count(raw, "SELECT count(*) FROM ended_sessions");
    assert_eq!(ended(&raw), 1);
    let by_handle = EventQuery {
        handle: Some(r.handle.clone()),
        limit: 100,
        ..EventQuery::default()
    };

    // The `created` event goes; the session ended after the cutoff, so
    // its `expired` event (at the sweep) is still found by handle.
    assert_eq!(
        store.delete_events_before(t0.plus_secs(15), 100).await.unwrap(),
        1
    );
    assert_eq!(ended(&raw), 1);
    let left = store.events(&by_handle).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.kind, tessera_core::EventKind::Expired);

    // Past the sweep's time both go.
    assert_eq!(
        store.delete_events_before(t0.plus_secs(21), 100).await.unwrap(),
        1
    );
    assert_eq!(ended(&raw), 0);
    assert!(store.events(&by_handle).await.unwrap().is_empty());
}

/// Upgrading to schema version 7 dates the `ended_sessions` rows already
/// there by their session's last event, so retention forgets them once that
/// event is gone and not before; a row whose events are all gone goes at
/// the first pass.
#[tokio::test]
async fn version_7_dates_existing_ended_sessions_by_their_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let t0 = Timestamp::from_unix_secs(1_000_000);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for m in &schema::MIGRATIONS[..6] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        for (n, at) in [(1u32, Some(t0.plus_secs(30))), (2, None)] {
            let r = record(n);
            insert_session_row(&c, &r);
            if let Some(at) = at {
                c.execute(
                    "INSERT INTO events (at, kind, subject, handle, reason) VALUES (?1, 'revoked', ?2, ?3, NULL)",
                    rusqlite::params![at.unix_millis(), r.subject, r.handle],
                )
                .unwrap();
            }
            c.execute("DELETE FROM sessions WHERE handle = ?1", [&r.handle])
                .unwrap();
        }
        assert_eq!(count(&c, "SELECT count(*) FROM ended_sessions"), 2);
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let ended_at: i64 = raw
        .query_row(
            "SELECT ended_at FROM ended_sessions WHERE handle = ?1",
            [record(1).handle],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ended_at, t0.plus_secs(30).unix_millis());
    // The session without events goes at once; the other stays findable.
    assert_eq!(
        store.delete_events_before(t0.plus_secs(30), 100).await.unwrap(),
        0
    );
    assert_eq!(count(&raw, "SELECT count(*) FROM ended_sessions"), 1);
    let by_handle = EventQuery {
        handle: Some(record(1).handle),
        limit: 10,
        ..EventQuery::default()
    };
    assert_eq!(store.events(&by_handle).await.unwrap().len(), 1);
    assert_eq!(
        store.delete_events_before(t0.plus_secs(31), 100).await.unwrap(),
        1
    );
    assert_eq!(count(&raw, "SELECT count(*) FROM ended_sessions"), 0);
}
