//! Session operations through `Sessions` on a SQLite file: what one service
//! instance can do against its embedded store.
//!
//! `cargo bench -p tessera-sqlite`
//!
//! The database lives under Cargo's target tmp dir (a real disk), not
//! /tmp, which may be a tmpfs where `synchronous = FULL` would cost nothing.
#![forbid(unsafe_code)]

use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use tessera_core::{
    CreateSession, EventKind, NewEvent, RefreshFamily, RefreshStore, RevokeReason, Rotation, SessionPolicy,
    Sessions, SystemClock, TokenHash,
};
use tessera_sqlite::{SqliteOptions, SqliteStore, Synchronous};

fn main() {
    divan::main();
}

struct Env {
    // Dropped last: the store must close before its directory goes.
    sessions: Sessions,
    /// The store under `sessions`, for the refresh-family benches.
    store: Arc<SqliteStore>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn env(sync: Synchronous, worker_threads: Option<usize>) -> Env {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = SqliteStore::open(
        dir.path().join("bench.db"),
        SqliteOptions {
            synchronous: sync,
            ..SqliteOptions::default()
        },
    )
    .expect("open");
    let policy = SessionPolicy {
        max_sessions_per_subject: None,
        ..SessionPolicy::default()
    };
    let rt = match worker_threads {
        None => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("runtime");
    let store = Arc::new(store);
    Env {
        sessions: Sessions::new(store.clone(), Arc::new(SystemClock), policy),
        store,
        rt,
        _dir: dir,
    }
}

fn login(i: u64) -> CreateSession {
    CreateSession {
        subject: format!("user{}", i % 1000),
        ..CreateSession::default()
    }
}

const SYNC: [Synchronous; 2] = [Synchronous::Normal, Synchronous::Full];

/// One login at a time: every create waits for its own commit.
#[divan::bench(args = SYNC, sample_count = 50, sample_size = 100)]
fn create(bencher: Bencher, sync: Synchronous) {
    let e = env(sync, None);
    let mut i = 0u64;
    bencher.counter(ItemsCount::new(1u32)).bench_local(|| {
        i += 1;
        e.rt.block_on(e.sessions.create(login(i))).expect("create")
    });
}

/// 64 logins in flight at once on a multi-thread runtime: the writer folds
/// the queued ones into shared commits (group commit).
#[divan::bench(args = SYNC, sample_count = 30, sample_size = 5)]
fn concurrent_creates_64(bencher: Bencher, sync: Synchronous) {
    let e = env(sync, Some(4));
    let mut i = 0u64;
    bencher.counter(ItemsCount::new(64u32)).bench_local(|| {
        i += 64;
        e.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for k in 0..64 {
                let s = e.sessions.clone();
                set.spawn(async move { s.create(login(i + k)).await.map(drop) });
            }
            while let Some(r) = set.join_next().await {
                r.expect("join").expect("create");
            }
        });
    });
}

/// Verify one of 10,000 live sessions: parse, hash, one indexed read
/// (within the touch interval, so no write).
#[divan::bench(sample_count = 100, sample_size = 1000)]
fn verify(bencher: Bencher) {
    let e = env(Synchronous::Normal, None);
    let tokens: Vec<String> = e.rt.block_on(async {
        let mut v = Vec::with_capacity(10_000);
        for i in 0..10_000 {
            let t = e.sessions.create(login(i)).await.expect("create");
            v.push(t.token.expose().to_owned());
        }
        v
    });
    let mut i = 0usize;
    bencher.counter(ItemsCount::new(1u32)).bench_local(|| {
        i = (i + 1) % tokens.len();
        e.rt.block_on(e.sessions.verify(divan::black_box(&tokens[i])))
            .expect("verify")
    });
}

/// Logout: a read by token hash, then a compare-and-swap update plus its
/// event, committed.
#[divan::bench(args = SYNC, sample_count = 50, sample_size = 100)]
fn revoke(bencher: Bencher, sync: Synchronous) {
    let e = env(sync, None);
    let mut i = 0u64;
    bencher
        .counter(ItemsCount::new(1u32))
        .with_inputs(|| {
            i += 1;
            let t = e.rt.block_on(e.sessions.create(login(i))).expect("create");
            t.token.expose().to_owned()
        })
        .bench_local_refs(|token| {
            e.rt.block_on(e.sessions.revoke_token(token, RevokeReason::Logout))
                .expect("revoke")
        });
}

/// The store read behind a verify, the same session over and over with no
/// commit in between (as `scripts/bench-http` does): answered from memory.
#[divan::bench(sample_count = 100, sample_size = 1000)]
fn get_by_token_unchanged(bencher: Bencher) {
    let e = env(Synchronous::Normal, None);
    let hash = e.rt.block_on(async {
        let t = e.sessions.create(login(1)).await.expect("create");
        t.session.token_hash
    });
    let store = e.sessions.store();
    bencher.counter(ItemsCount::new(1u32)).bench_local(|| {
        e.rt.block_on(store.get_by_token(divan::black_box(&hash)))
            .expect("get")
            .expect("found")
    });
}

/// The same read when something was committed since (here: just before
/// every read), so it goes to SQLite. One read per sample: divan prepares
/// a whole sample's inputs (the commits) before timing it.
#[divan::bench(sample_count = 2000, sample_size = 1)]
fn get_by_token_after_a_commit(bencher: Bencher) {
    let e = env(Synchronous::Normal, None);
    let (hash, handle, mut at) = e.rt.block_on(async {
        let t = e.sessions.create(login(1)).await.expect("create");
        (
            t.session.token_hash,
            t.session.handle.clone(),
            t.session.created_at,
        )
    });
    let store = e.sessions.store();
    bencher
        .counter(ItemsCount::new(1u32))
        .with_inputs(|| {
            at = at.plus_millis(1);
            e.rt.block_on(store.touch(&handle, &hash, at, at)).expect("touch");
        })
        .bench_local_values(|()| {
            e.rt.block_on(store.get_by_token(divan::black_box(&hash)))
                .expect("get")
                .expect("found")
        });
}

fn family_of(s: &tessera_core::SessionRecord, n: u64) -> RefreshFamily {
    RefreshFamily {
        id: format!("rtf_bench_{n}"),
        handle: s.handle.clone(),
        session_token_hash: s.token_hash,
        client_id: "bench".into(),
        scope: vec!["openid".into()],
        audience: vec!["tessera".into()],
        generation: 0,
        created_at: s.created_at,
        rotated_at: s.created_at,
        current_sealed: None,
        binding: None,
        revoked: None,
    }
}

fn refresh_hash(n: u64, generation: u64) -> TokenHash {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&n.to_le_bytes());
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    h[16] = 0x5a;
    TokenHash(h)
}

/// 64 refresh grants in flight at once, as the store sees them: find the
/// token, read the session, rotate (compare-and-swap, successor hash and
/// `refreshed` event), sharing group commits.
#[divan::bench(sample_count = 30, sample_size = 5)]
fn concurrent_rotations_64(bencher: Bencher) {
    let e = env(Synchronous::Normal, Some(2));
    let store: Arc<dyn RefreshStore> = e.store.clone();
    let families: Vec<(u64, tessera_core::SessionRecord)> = e.rt.block_on(async {
        let mut v = Vec::new();
        for n in 0..64u64 {
            let t = e.sessions.create(login(n)).await.expect("create");
            let s = (*t.session).clone();
            store
                .create_refresh_family(&family_of(&s, n), &refresh_hash(n, 0), &[])
                .await
                .expect("family");
            v.push((n, s));
        }
        v
    });
    let families = Arc::new(families);
    let mut generation = 0u64;
    bencher.counter(ItemsCount::new(64u32)).bench_local(|| {
        let g = generation;
        generation += 1;
        e.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..64 {
                let store = Arc::clone(&store);
                let families = Arc::clone(&families);
                set.spawn(async move {
                    let (n, s) = &families[i];
                    let found = store.find_refresh(&refresh_hash(*n, g)).await?.expect("known");
                    let session = store.get(&found.family.handle).await?.expect("live");
                    let now = session.created_at.plus_millis(g as i64 + 1);
                    let events = [NewEvent::new(EventKind::Refreshed, s, now)];
                    store
                        .rotate_refresh(
                            &Rotation::new(&found.family.id, g, &refresh_hash(*n, g + 1), now)
                                .sealed(&[7; 96]),
                            &events,
                        )
                        .await
                });
            }
            while let Some(r) = set.join_next().await {
                assert!(r.expect("join").expect("rotate"));
            }
        });
    });
}
