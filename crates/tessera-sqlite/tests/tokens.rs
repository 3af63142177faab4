//! SQLite-specific behaviour of refresh families and signing keys that the
//! shared conformance suite cannot see: durability across reopen, the tie
//! between a family and its session, and failing closed on bad rows.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use serde_json::Map;
use tessera_core::{
    AuthInfo, Binding, CreateOptions, DeviceInfo, EventKind, EventQuery, EventStore, NewEvent, RefreshFamily,
    RefreshStore, RevokeReason, Rotation, SessionRecord, SessionStore, SigningAlg, SigningKeyRecord,
    SigningKeyStore, StoreError, Timestamp, TokenHash,
};
use tessera_sqlite::{SqliteOptions, SqliteStore};

const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_123);

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("tessera.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).expect("open")
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

fn hash(n: u32, salt: u8) -> TokenHash {
    let mut h = [salt; 32];
    h[..4].copy_from_slice(&n.to_be_bytes());
    TokenHash(h)
}

fn record(n: u32) -> SessionRecord {
    SessionRecord {
        handle: format!("ses_{n:022}"),
        token_hash: hash(n, 0xab),
        subject: "alice".into(),
        version: 0,
        created_at: T0,
        last_seen_at: T0,
        idle_timeout_ms: 600_000,
        idle_expires_at: T0.plus_secs(600),
        absolute_expires_at: T0.plus_secs(3600),
        auth: AuthInfo {
            level: 1,
            methods: vec!["pwd".into()],
            time: T0,
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

fn family(n: u32, session: &SessionRecord) -> RefreshFamily {
    RefreshFamily {
        id: format!("rtf_{n:022}"),
        handle: session.handle.clone(),
        session_token_hash: session.token_hash,
        client_id: "app".into(),
        scope: vec!["openid".into(), "ünï".into()],
        audience: vec!["tessera".into()],
        generation: 0,
        created_at: T0,
        rotated_at: T0,
        current_sealed: None,
        binding: Some(Binding::Dpop { jkt: "jkt".into() }),
        revoked: None,
    }
}

fn key(kid: &str, activates_at: Timestamp) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: SigningAlg::ES256,
        created_at: T0,
        activates_at,
        private_sealed: vec![0, 1, 2, 0, 255],
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        revoked_at: None,
    }
}

async fn create_session(s: &SqliteStore, r: &SessionRecord) {
    let opts = CreateOptions {
        now: T0,
        ..CreateOptions::default()
    };
    s.create(r, &opts, &[]).await.expect("create");
}

#[tokio::test]
async fn families_and_keys_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let a = record(1);
    let f = family(1, &a);
    let (k1, k2) = (key("kid-1", T0), key("kid-2", T0.plus_secs(86_400)));
    {
        let s = open(&path);
        create_session(&s, &a).await;
        s.create_refresh_family(&f, &hash(1, 0x01), &[]).await.unwrap();
        assert!(
            s.rotate_refresh(
                &Rotation::new(&f.id, 0, &hash(2, 0x01), T0.plus_secs(1)).sealed(b"sealed\0two"),
                &[]
            )
            .await
            .unwrap()
        );
        assert!(s.insert_signing_key(&k1, None).await.unwrap());
        assert!(s.insert_signing_key(&k2, Some("kid-1")).await.unwrap());
    }
    let s = open(&path);
    let want = RefreshFamily {
        generation: 1,
        rotated_at: T0.plus_secs(1),
        current_sealed: Some(b"sealed\0two".to_vec()),
        ..f
    };
    let old = s.find_refresh(&hash(1, 0x01)).await.unwrap().unwrap();
    assert_eq!((&*old.family, old.generation), (&want, 0));
    let cur = s.find_refresh(&hash(2, 0x01)).await.unwrap().unwrap();
    assert_eq!((&*cur.family, cur.generation), (&want, 1));
    assert_eq!(s.signing_keys().await.unwrap(), vec![k1, k2.clone()]);
    // The CAS sees the reopened state.
    assert!(
        !s.insert_signing_key(&key("kid-3", T0), Some("kid-1"))
            .await
            .unwrap()
    );
    assert!(
        s.insert_signing_key(&key("kid-3", T0), Some("kid-2"))
            .await
            .unwrap()
    );
}

/// A family is tied to its session (the sweeper deletes them together), so
/// one for a session that is not stored, e.g. swept a moment ago, is
/// refused rather than left behind for good.
#[tokio::test]
async fn a_family_needs_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db(&dir));
    let a = record(1);
    let f = family(1, &a);
    let ev = [NewEvent::new(EventKind::Refreshed, &a, T0)];
    let r = s.create_refresh_family(&f, &hash(1, 0x01), &ev).await;
    match r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains(&a.handle), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(s.find_refresh(&hash(1, 0x01)).await.unwrap().is_none());
    let q = EventQuery {
        limit: 10,
        ..EventQuery::default()
    };
    assert!(s.events(&q).await.unwrap().is_empty(), "nothing written");
    // With the session stored, the same call goes through.
    create_session(&s, &a).await;
    s.create_refresh_family(&f, &hash(1, 0x01), &ev).await.unwrap();
}

#[tokio::test]
async fn undecodable_family_and_key_rows_are_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let s = open(&path);
    let a = record(1);
    create_session(&s, &a).await;
    for n in 1..=3 {
        s.create_refresh_family(&family(n, &a), &hash(n, 0x01), &[])
            .await
            .unwrap();
    }
    assert!(s.insert_signing_key(&key("kid-1", T0), None).await.unwrap());
    let c = raw(&path);
    c.execute(
        "UPDATE refresh_families SET scope = 'not json' WHERE id = ?1",
        [&family(1, &a).id],
    )
    .unwrap();
    assert!(
        c.execute(
            "UPDATE refresh_families SET revoked_at = 5 WHERE id = ?1",
            [&family(2, &a).id],
        )
        .is_err(),
        "the CHECK keeps revoked_at and revoke_reason together"
    );
    c.execute(
        "UPDATE refresh_families SET revoked_at = 5, revoke_reason = 'bogus' WHERE id = ?1",
        [&family(2, &a).id],
    )
    .unwrap();
    c.execute("UPDATE signing_keys SET alg = 'HS256'", []).unwrap();
    drop(c);
    for n in [1, 2] {
        let r = s.find_refresh(&hash(n, 0x01)).await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "family {n}: {r:?}");
    }
    assert!(matches!(
        s.refresh_families_of(&a.handle).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(s.signing_keys().await, Err(StoreError::Corrupt(_))));
    // The intact family still reads and rotates.
    let ok = s.find_refresh(&hash(3, 0x01)).await.unwrap().unwrap();
    assert_eq!(*ok.family, family(3, &a));
    assert!(
        s.revoke_refresh_family(&family(3, &a).id, RevokeReason::Revoked, T0, &[])
            .await
            .unwrap()
    );
}

/// A token service with a signing key over `store`, reading `clock`.
async fn token_service(
    store: std::sync::Arc<SqliteStore>,
    clock: &tessera_core::ManualClock,
    grace_secs: i64,
) -> tessera_core::TokenService {
    use std::sync::Arc;
    let clock: Arc<dyn tessera_core::Clock> = Arc::new(clock.clone());
    let sessions = tessera_core::Sessions::new(store.clone(), clock.clone(), Default::default());
    let sealer = Arc::new(tessera_core::Sealer::new(&tessera_core::Sealer::generate_key()));
    let keys = Arc::new(tessera_core::KeyManager::new(
        store.clone(),
        clock,
        sealer.clone(),
        Default::default(),
    ));
    keys.ensure_key().await.expect("ensure_key");
    keys.reload().await.expect("reload");
    tessera_core::TokenService::new(
        sessions,
        store,
        keys,
        Arc::new(tessera_core::ClientRegistry::new(Vec::new()).expect("registry")),
        sealer,
        tessera_core::TokenPolicy {
            reuse_grace_secs: grace_secs,
            ..Default::default()
        },
    )
}

fn raw_sealed(path: &Path) -> Vec<Option<Vec<u8>>> {
    raw(path)
        .prepare("SELECT current_sealed FROM refresh_families ORDER BY id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// SPEC §5 on the file itself: the sealed successor is in the database only
/// while a retry may need it. A retry inside the grace window gets the same
/// successor; once the window has passed, the clearing step (the sweeper's)
/// leaves `current_sealed` NULL in the stored row; and at grace 0 no
/// rotation ever writes one.
#[tokio::test]
async fn sealed_successors_leave_the_file_after_the_grace_window() {
    for grace in [10, 0] {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let store = std::sync::Arc::new(open(&path));
        let clock = tessera_core::ManualClock::new(T0);
        let svc = token_service(store.clone(), &clock, grace).await;
        let client = svc.clients().get("default").unwrap().clone();
        let s = svc
            .sessions()
            .create(tessera_core::CreateSession {
                subject: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let rt1 = svc
            .issue_for_session(&s.session, &Default::default())
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        let rt2 = svc
            .refresh(rt1.expose(), &client, None)
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        if grace == 0 {
            assert_eq!(raw_sealed(&path), vec![None], "grace 0 stores nothing sealed");
            let e = svc.refresh(rt1.expose(), &client, None).await.unwrap_err();
            assert_eq!(e.code(), "invalid_grant", "strict rotation");
            continue;
        }
        let sealed = raw_sealed(&path)[0].clone().unwrap();
        clock.advance_secs(5);
        svc.clear_sealed_successors(100).await.unwrap();
        let again = svc.refresh(rt1.expose(), &client, None).await.unwrap();
        assert_eq!(again.refresh_token.unwrap().expose(), rt2.expose());

        clock.advance_secs(6);
        assert_eq!(svc.clear_sealed_successors(100).await.unwrap(), 1);
        assert_eq!(raw_sealed(&path), vec![None], "gone from the stored row");
        // And from the file's bytes, once the WAL is checkpointed into it
        // (the writer also runs with `secure_delete = FAST`, so freed space
        // in a page it writes is zeroed rather than kept).
        raw(&path)
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(sealed.len()).any(|w| w == sealed.as_slice()),
            "the cleared sealed successor is still in the file's free space"
        );
        svc.refresh(rt2.expose(), &client, None)
            .await
            .expect("the successor still rotates");
    }
}
