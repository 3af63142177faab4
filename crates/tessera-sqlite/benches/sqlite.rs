//! Session operations through `Sessions` on a SQLite file: what one service
//! instance can do against its embedded store.
//!
//! `cargo bench -p tessera-sqlite`
//!
//! The database lives under Cargo's target tmp dir (a real disk), not
//! /tmp, which may be a tmpfs where `synchronous = FULL` would cost nothing.

use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use tessera_core::{CreateSession, RevokeReason, SessionPolicy, Sessions, SystemClock};
use tessera_sqlite::{SqliteOptions, SqliteStore, Synchronous};

fn main() {
    divan::main();
}

struct Env {
    // Dropped last: the store must close before its directory goes.
    sessions: Sessions,
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
    Env {
        sessions: Sessions::new(Arc::new(store), Arc::new(SystemClock), policy),
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
