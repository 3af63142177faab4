//! A fixed-work driver for instruction counts, which stay comparable on a
//! busy machine where wall-clock benches do not:
//!
//! ```text
//! cargo bench -p tessera-sqlite --bench instr --no-run
//! valgrind --tool=callgrind target/release/deps/instr-* <op> <n>
//! ```
//!
//! Run once with `n = 0` and once with `n > 0`: the difference over `n` is
//! the cost of one operation (setup is the same in both). `op` is
//! `get_by_token` (10,000 sessions in turn), `get_hot` (one session),
//! `verify` (through `Sessions`, like the service), or
//! `rotate` (find, session read, rotation and its event, as a refresh grant
//! does), `rotate_concurrent` (64 rotations in flight at a time).
#![forbid(unsafe_code)]

use std::sync::Arc;

use serde_json::Map;
use tessera_core::{
    AuthInfo, CreateOptions, CreateSession, DeviceInfo, EventKind, NewEvent, RefreshFamily, RefreshStore,
    Rotation, SessionPolicy, SessionRecord, SessionStore, Sessions, SystemClock, Timestamp, TokenHash,
};
use tessera_sqlite::{SqliteOptions, SqliteStore};

const SESSIONS: u32 = 10_000;

fn hash(n: u32, salt: u32) -> TokenHash {
    // Spread like real hashes, so inserts land on scattered pages.
    let mut h = [0u8; 32];
    let mut x = (u64::from(n) << 32 | u64::from(salt)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in h.chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    TokenHash(h)
}

fn record(n: u32, now: Timestamp) -> SessionRecord {
    SessionRecord {
        handle: format!("ses_{n:022}"),
        token_hash: hash(n, 0),
        subject: format!("user{}", n % 1000),
        version: 0,
        created_at: now,
        last_seen_at: now,
        idle_timeout_ms: 3_600_000,
        idle_expires_at: now.plus_secs(3600),
        absolute_expires_at: now.plus_secs(86_400),
        auth: AuthInfo {
            level: 1,
            methods: vec!["pwd".into()],
            time: now,
        },
        device: DeviceInfo {
            user_agent: Some("wrk".into()),
            ip: Some("127.0.0.1".into()),
            label: "Unknown device".into(),
        },
        data: Map::new(),
        binding: None,
        revoked: None,
    }
}

fn family(n: u32, now: Timestamp) -> RefreshFamily {
    RefreshFamily {
        id: format!("rtf_{n:022}"),
        handle: format!("ses_{n:022}"),
        session_token_hash: hash(n, 0),
        client_id: "bench".into(),
        scope: vec!["openid".into(), "profile".into()],
        audience: vec!["tessera".into()],
        generation: 0,
        created_at: now,
        rotated_at: now,
        current_sealed: None,
        binding: None,
        revoked: None,
    }
}

#[inline(never)]
async fn rotate_one(store: &SqliteStore, n: u32, generation: u32) {
    let lookup = store
        .find_refresh(&hash(n, generation + 1))
        .await
        .expect("find")
        .expect("known");
    let session = store
        .get(&lookup.family.handle)
        .await
        .expect("get")
        .expect("live");
    let now = Timestamp::from_unix_millis(session.created_at.unix_millis() + i64::from(generation) + 1);
    let events = [NewEvent::new(EventKind::Refreshed, &session, now)];
    let sealed = [7u8; 96];
    let rotated = store
        .rotate_refresh(
            &Rotation::new(
                &lookup.family.id,
                lookup.generation,
                &hash(n, generation + 2),
                now,
            )
            .sealed(&sealed),
            &events,
        )
        .await
        .expect("rotate");
    assert!(rotated);
}

fn main() {
    // `cargo bench` runs every bench target with flags such as `--bench`;
    // this one only does something when given an operation.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let Some(op) = args.next() else {
        eprintln!("usage: instr <get_by_token|get_hot|verify|rotate|rotate_concurrent> [n]");
        return;
    };
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store =
        Arc::new(SqliteStore::open(dir.path().join("instr.db"), SqliteOptions::default()).expect("open"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let now = Timestamp::from_unix_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64,
    );
    rt.block_on(async {
        // Batched setup: 64 creates in flight share commits.
        for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(64) {
            let mut set = tokio::task::JoinSet::new();
            for &i in chunk {
                let s = Arc::clone(&store);
                set.spawn(async move {
                    s.create(
                        &record(i, now),
                        &CreateOptions {
                            now,
                            ..Default::default()
                        },
                        &[],
                    )
                    .await
                    .expect("create");
                    s.create_refresh_family(&family(i, now), &hash(i, 1), &[])
                        .await
                        .expect("family");
                });
            }
            while let Some(r) = set.join_next().await {
                r.expect("join");
            }
        }
    });
    match op.as_str() {
        "get_by_token" => rt.block_on(async {
            for i in 0..n {
                let s = store.get_by_token(&hash(i % SESSIONS, 0)).await.expect("get");
                assert!(s.is_some());
            }
        }),
        // One session over and over, as the service benchmark verifies one
        // token: what the read cache is for.
        "get_hot" => rt.block_on(async {
            for _ in 0..n {
                let s = store.get_by_token(&hash(7, 0)).await.expect("get");
                assert!(s.is_some());
            }
        }),
        "verify" => {
            let sessions = Sessions::new(
                Arc::clone(&store) as Arc<dyn SessionStore>,
                Arc::new(SystemClock),
                SessionPolicy {
                    max_sessions_per_subject: None,
                    ..SessionPolicy::default()
                },
            );
            let tokens: Vec<String> = rt.block_on(async {
                let mut v = Vec::new();
                for i in 0..1000 {
                    let t = sessions
                        .create(CreateSession {
                            subject: format!("user{i}"),
                            ..CreateSession::default()
                        })
                        .await
                        .expect("create");
                    v.push(t.token.expose().to_owned());
                }
                v
            });
            rt.block_on(async {
                for i in 0..n as usize {
                    sessions.verify(&tokens[i % tokens.len()]).await.expect("verify");
                }
            });
        }
        "rotate" => rt.block_on(async {
            for i in 0..n {
                rotate_one(&store, i % SESSIONS, i / SESSIONS).await;
            }
        }),
        "rotate_concurrent" => rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                let s = Arc::clone(&store);
                set.spawn(async move { rotate_one(&s, i % SESSIONS, i / SESSIONS).await });
                if set.len() >= 64 {
                    set.join_next().await.expect("some").expect("join");
                }
            }
            while let Some(r) = set.join_next().await {
                r.expect("join");
            }
        }),
        other => panic!("unknown op {other}"),
    }
}
