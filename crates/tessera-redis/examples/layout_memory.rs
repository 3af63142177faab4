//! Bytes per idle session under other key layouts (issue 11, item 2): a
//! study, not a store. Creates COUNT sessions through the real store (as
//! `memory_per_session` does), reads back what they wrote — records, token
//! index and subject index entries — and replays those bytes into a fresh
//! private `redis-server` per layout, printing the `used_memory` delta per
//! session. Event log not included (add the ~54 B a `created` event costs).
//!
//! `cargo run -p tessera-redis --example layout_memory [-- COUNT]`
#![forbid(unsafe_code)]

use tessera_redis::testing as support;

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use serde_json::json;
use tessera_core::{CreateSession, SessionPolicy, Sessions, SystemClock};
use tessera_redis::RedisStore;

async fn used_memory(conn: &mut MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

/// What the sessions wrote: (packed handle, record, TTL ms), token index
/// (bucket, field, handle), subject index (bucket, score, member).
struct Captured {
    records: Vec<(Vec<u8>, Vec<u8>, i64)>,
    tokens: Vec<(u32, Vec<u8>, Vec<u8>)>,
    subjects: Vec<(u32, f64, Vec<u8>)>,
}

async fn capture(count: usize) -> (Captured, u32, String) {
    let server = support::private_server();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let buckets = store.buckets().await.expect("buckets");
    let sessions = Sessions::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        SessionPolicy::default(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 32;
    for w in 0..workers {
        let sessions = sessions.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < count {
                let serde_json::Value::Object(data) = json!({"theme": "dark"}) else {
                    unreachable!()
                };
                sessions
                    .create(CreateSession {
                        subject: format!("user-{i:06}"),
                        data: Some(data),
                        ..CreateSession::default()
                    })
                    .await
                    .expect("create");
                i += workers;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }
    let prefix = store.options().prefix.clone();
    let mut conn = connect(&server.url()).await;
    let mut c = Captured {
        records: vec![],
        tokens: vec![],
        subjects: vec![],
    };
    let skey = [prefix.as_bytes(), b"s"].concat();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg([skey.as_slice(), b"*"].concat())
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    for k in keys {
        let (v, ttl): (Vec<u8>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&k)
            .cmd("PTTL")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .expect("GET");
        c.records.push((k[skey.len()..].to_vec(), v, ttl));
    }
    for b in 0..buckets {
        let t: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg([prefix.as_bytes(), format!("t{b}").as_bytes()].concat())
            .query_async(&mut conn)
            .await
            .expect("HGETALL");
        c.tokens.extend(t.into_iter().map(|(f, v)| (b, f, v)));
        let u: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg([prefix.as_bytes(), format!("u{b}").as_bytes()].concat())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .expect("ZRANGE");
        c.subjects.extend(u.into_iter().map(|(m, s)| (b, s, m)));
    }
    (c, buckets, prefix)
}

/// A layout to replay the captured session into.
struct Layout {
    name: &'static str,
    /// Records in hash buckets (field = packed handle) instead of one key each.
    hashed: bool,
    /// Bytes cut from each record (a smaller encoding, simulated by length).
    cut: usize,
    /// No token index (a layout that finds records by token hash directly).
    no_token_index: bool,
    /// Bytes cut from each token index field (a shorter selector).
    token_cut: usize,
    /// Bytes cut from each subject index member (subject kept elsewhere).
    member_cut: usize,
    /// `hash-max-listpack-value` for the run (Redis's default is 64).
    listpack_value: u32,
}

fn bucket_of(hc: &[u8], n: u32) -> u32 {
    // The packed handle's first random bytes (its last byte ends in
    // padding bits).
    let x = u32::from(hc[1]) << 8 | u32::from(hc[2]);
    x % n
}

async fn replay(c: &Captured, buckets: u32, prefix: &str, l: &Layout) -> f64 {
    let server = support::private_server();
    let mut conn = connect(&server.url()).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hash-max-listpack-value")
        .arg(l.listpack_value)
        .query_async(&mut conn)
        .await
        .expect("CONFIG");
    let before = used_memory(&mut conn).await;
    let p = prefix.as_bytes();
    for chunk in c.records.chunks(1000) {
        let mut pipe = redis::pipe();
        for (hc, rec, ttl) in chunk {
            let rec = &rec[..rec.len() - l.cut];
            if l.hashed {
                let k = [p, format!("s{}", bucket_of(hc, buckets)).as_bytes()].concat();
                pipe.cmd("HSET").arg(&k).arg(hc).arg(rec).ignore();
                pipe.cmd("PEXPIRE").arg(&k).arg(*ttl).ignore();
            } else {
                pipe.cmd("SET")
                    .arg([p, b"s", hc].concat())
                    .arg(rec)
                    .arg("PX")
                    .arg(*ttl)
                    .ignore();
            }
        }
        let _: () = pipe.query_async(&mut conn).await.expect("records");
    }
    if !l.no_token_index {
        for chunk in c.tokens.chunks(1000) {
            let mut pipe = redis::pipe();
            for (b, f, v) in chunk {
                pipe.cmd("HSET")
                    .arg([p, format!("t{b}").as_bytes()].concat())
                    .arg(&f[l.token_cut..])
                    .arg(v)
                    .ignore();
            }
            let _: () = pipe.query_async(&mut conn).await.expect("tokens");
        }
    }
    for chunk in c.subjects.chunks(1000) {
        let mut pipe = redis::pipe();
        for (b, s, m) in chunk {
            pipe.cmd("ZADD")
                .arg([p, format!("u{b}").as_bytes()].concat())
                .arg(*s)
                .arg(&m[l.member_cut..])
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("subjects");
    }
    let after = used_memory(&mut conn).await;
    (after - before) as f64 / c.records.len() as f64
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("COUNT"))
        .unwrap_or(100_000);
    let (c, buckets, prefix) = capture(count).await;
    let lens: Vec<usize> = c.records.iter().map(|r| r.1.len()).collect();
    println!(
        "sessions: {} ({} buckets); record {}..{} B; subject member {} B",
        c.records.len(),
        buckets,
        lens.iter().min().unwrap_or(&0),
        lens.iter().max().unwrap_or(&0),
        c.subjects.first().map_or(0, |s| s.2.len()),
    );
    let max = *lens.iter().max().unwrap_or(&0);
    let to64 = max.saturating_sub(64);
    let base = Layout {
        name: "",
        hashed: false,
        cut: 0,
        no_token_index: false,
        token_cut: 0,
        member_cut: 0,
        listpack_value: 64,
    };
    let layouts = [
        Layout {
            name: "current: record key with TTL + token idx + subject idx",
            ..base
        },
        Layout {
            name: "1. records in hash buckets (hashtable: value > 64)",
            hashed: true,
            ..base
        },
        Layout {
            name: "1. records in hash buckets, hash-max-listpack-value 128",
            hashed: true,
            listpack_value: 128,
            ..base
        },
        Layout {
            name: "1. records in hash buckets, record cut to 64 B",
            hashed: true,
            cut: to64,
            ..base
        },
        Layout {
            name: "2. record -16 B (hash half in token idx field)",
            cut: 16,
            ..base
        },
        Layout {
            name: "2. record -16 B -12 B subject (64 B class)",
            cut: 28,
            ..base
        },
        Layout {
            name: "2. record -28 B, member without subject",
            cut: 28,
            member_cut: 12,
            ..base
        },
        Layout {
            name: "1+2. hash buckets, record -28 B",
            hashed: true,
            cut: 28,
            ..base
        },
        Layout {
            name: "1+2. hash buckets, record 64 B, 8-byte token selector",
            hashed: true,
            cut: to64,
            token_cut: 8,
            ..base
        },
        Layout {
            name: "3. no token index (record found by token hash)",
            no_token_index: true,
            ..base
        },
        Layout {
            name: "1+3. hash buckets, no token index",
            hashed: true,
            no_token_index: true,
            ..base
        },
        Layout {
            name: "1+2+3. hash buckets, record -28 B, no token index",
            hashed: true,
            cut: 28,
            no_token_index: true,
            ..base
        },
    ];
    for l in &layouts {
        let b = replay(&c, buckets, &prefix, l).await;
        println!("{b:7.1}  {}", l.name);
    }
}
