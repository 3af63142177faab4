//! The session cache on several nodes: two (or three) `RedisStore`s on one
//! private `redis-server` with the same prefix stand for processes behind a
//! load balancer. Every change made through one node is refused (or seen)
//! by the others within 100 ms; a lost subscription drops the cache; a
//! verification costs no Redis round trip and no write between touches.
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_conformance::support::{T0, refresh_family, session};
use tessera_core::{
    AuthInput, Clock, CreateOptions, CreateSession, Error, ManualClock, RefreshStore, RevokeReason, Rotation,
    SessionPolicy, SessionRecord, SessionStore, Sessions, TokenHash, Touch,
};
use tessera_redis::RedisStore;
use tessera_redis::testing::{self as support, Server};

/// The bound SPEC §4.6 sets for a change to reach every node.
const BOUND: Duration = Duration::from_millis(100);

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("c{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `n` stores (nodes) on `server`, sharing one prefix; `query` is added to
/// each URL (e.g. `&cache=off`). Each is subscribed before it is returned.
async fn nodes(server: &Server, n: usize, query: &str) -> Vec<RedisStore> {
    let url = format!("{}?prefix={}{query}", server.url(), prefix());
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(node(&url).await);
    }
    out
}

/// A store for `url`, subscribed (unless its cache is off).
async fn node(url: &str) -> RedisStore {
    let s = RedisStore::connect(url).await.expect("connect");
    if s.cache_stats().is_some() {
        assert!(s.wait_cache_live(Duration::from_secs(5)).await, "subscribed");
    }
    s
}

async fn insert(store: &RedisStore, rec: &SessionRecord) {
    let opts = CreateOptions {
        now: rec.created_at,
        ..CreateOptions::default()
    };
    store.create(rec, &opts, &[]).await.expect("create");
}

/// Reads `hash` through `store` twice; the second must be a cache hit.
async fn cached(store: &RedisStore, hash: &TokenHash) -> Arc<SessionRecord> {
    let first = store.get_by_token(hash).await.expect("read").expect("found");
    let hits = store.cache_stats().expect("cache on").hits;
    let second = store.get_by_token(hash).await.expect("read").expect("found");
    assert_eq!(first, second);
    assert_eq!(
        store.cache_stats().expect("cache on").hits,
        hits + 1,
        "the second read is a hit"
    );
    second
}

/// Polls `check` every millisecond until it holds; the time since `start`
/// (when the change was asked for), asserted under `BOUND`, or a failure
/// naming `what` (with margin, so a slow machine shows the figure rather
/// than a timeout).
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

fn sessions(store: &RedisStore, clock: &Arc<ManualClock>, policy: SessionPolicy) -> Sessions {
    Sessions::new(Arc::new(store.clone()), clock.clone(), policy)
}

fn login(subject: &str) -> CreateSession {
    CreateSession {
        subject: subject.into(),
        ..CreateSession::default()
    }
}

#[tokio::test]
async fn a_repeated_verify_is_answered_without_a_round_trip() {
    let server = support::private_server();
    let a = nodes(&server, 1, "").await.remove(0);
    let clock = Arc::new(ManualClock::new(T0));
    let s = sessions(&a, &clock, SessionPolicy::default());
    let issued = s.create(login("alice")).await.expect("create");
    let token = issued.token.expose().to_owned();
    s.verify(&token).await.expect("verify");
    let calls = evalsha_calls(&server).await;
    for _ in 0..100 {
        s.verify(&token).await.expect("verify");
    }
    assert_eq!(evalsha_calls(&server).await, calls, "no script ran");
    assert!(a.cache_stats().expect("on").hits >= 100);
}

/// A revocation through B, seen on A (which had the session cached).
async fn revocation_reaches_the_other_node(query: &str) {
    let server = support::private_server();
    let v = nodes(&server, 2, query).await;
    let (a, b) = (&v[0], &v[1]);
    let clock = Arc::new(ManualClock::new(T0));
    let (sa, sb) = (
        sessions(a, &clock, SessionPolicy::default()),
        sessions(b, &clock, SessionPolicy::default()),
    );
    let mut took = Vec::new();
    for i in 0..20 {
        let issued = sa.create(login(&format!("u{i}"))).await.expect("create");
        let token = issued.token.expose().to_owned();
        sa.verify(&token).await.expect("verify on A");
        cached(a, &issued.session.token_hash).await;
        let start = Instant::now();
        assert!(
            sb.revoke(&issued.session.handle, RevokeReason::Revoked)
                .await
                .expect("revoke")
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
        "revocation asked through B, refused on A ({query:?}): p50 {:?}, max {:?} over {} trials",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
}

#[tokio::test]
async fn a_revocation_through_one_node_is_refused_by_another_within_100ms() {
    revocation_reaches_the_other_node("").await;
}

#[tokio::test]
async fn a_revocation_reaches_the_other_node_over_resp3_too() {
    revocation_reaches_the_other_node("&protocol=resp3").await;
}

#[tokio::test]
async fn a_token_replaced_through_one_node_is_refused_by_another() {
    let server = support::private_server();
    let v = nodes(&server, 2, "").await;
    let (a, b) = (&v[0], &v[1]);
    let clock = Arc::new(ManualClock::new(T0));
    let (sa, sb) = (
        sessions(a, &clock, SessionPolicy::default()),
        sessions(b, &clock, SessionPolicy::default()),
    );
    let issued = sa.create(login("bob")).await.expect("create");
    let old = issued.token.expose().to_owned();
    sa.verify(&old).await.expect("verify");
    cached(a, &issued.session.token_hash).await;
    let start = Instant::now();
    let next = sb
        .elevate(
            &old,
            AuthInput {
                level: Some(2),
                methods: vec!["otp".into()],
            },
        )
        .await
        .expect("elevate on B");
    let took = within_bound("the replaced token refused on A", start, || async {
        matches!(sa.verify(&old).await, Err(Error::SessionInvalid))
    })
    .await;
    println!("token replacement through B refused on A after {took:?}");
    let v = sa.verify(next.token.expose()).await.expect("the new token on A");
    assert_eq!(v.auth.level, 2);
}

/// One change a script makes to a session, through B.
type Change = for<'a> fn(&'a RedisStore, &'a SessionRecord) -> futures::future::BoxFuture<'a, ()>;

/// Whether what A reads shows the change.
type Seen = fn(Option<Arc<SessionRecord>>) -> bool;

/// Every kind of change a script makes to a session, each made through B
/// on a session A has cached: A sees it within the bound. `seen` says
/// whether what A reads now shows the change.
#[tokio::test]
async fn every_change_a_script_makes_to_a_session_reaches_the_other_node() {
    let server = support::private_server();
    let v = nodes(&server, 2, "").await;
    let (a, b) = (&v[0], &v[1]);
    let later = T0.plus_millis(60_000);
    let changes: Vec<(&str, Change, Seen)> = vec![
        (
            "touch",
            |b, r| {
                Box::pin(async move {
                    let t = r.created_at.plus_millis(60_000);
                    assert!(
                        b.touch(&r.handle, &r.token_hash, t, t.plus_millis(r.idle_timeout_ms))
                            .await
                            .unwrap()
                    );
                })
            },
            |s| s.is_some_and(|s| s.last_seen_at > s.created_at),
        ),
        (
            "update (data)",
            |b, r| {
                Box::pin(async move {
                    let mut n = r.clone();
                    n.version += 1;
                    n.data.insert("k".into(), "v".into());
                    assert!(b.update(&n, r.version, &[]).await.unwrap());
                })
            },
            |s| s.is_some_and(|s| s.version == 1),
        ),
        (
            "update (new token)",
            |b, r| {
                Box::pin(async move {
                    let mut n = r.clone();
                    n.version += 1;
                    n.token_hash = session("x", T0).1.token_hash;
                    assert!(b.update(&n, r.version, &[]).await.unwrap());
                })
            },
            |s| s.is_none(),
        ),
        (
            "revoke_subject",
            |b, r| {
                Box::pin(async move {
                    let n = b
                        .revoke_subject(&r.subject, None, RevokeReason::Revoked, r.created_at)
                        .await;
                    assert_eq!(n.unwrap().len(), 1);
                })
            },
            |s| s.is_some_and(|s| s.revoked.is_some()),
        ),
        (
            "revoke_all_active",
            |b, r| {
                Box::pin(async move {
                    let n = b
                        .revoke_all_active(RevokeReason::Revoked, r.created_at, 1000)
                        .await;
                    assert!(n.unwrap() >= 1);
                })
            },
            |s| s.is_some_and(|s| s.revoked.is_some()),
        ),
        (
            "sweep",
            |b, r| {
                Box::pin(async move {
                    let after = r.absolute_expires_at.plus_millis(1);
                    while b.sweep(after, 1000).await.unwrap() == 1000 {}
                })
            },
            |s| s.is_none(),
        ),
        (
            "create replacing it",
            |b, r| {
                Box::pin(async move {
                    let (_, n) = session(&r.subject, r.created_at);
                    let opts = CreateOptions {
                        replace: Some((r.handle.clone(), r.version)),
                        now: r.created_at,
                        ..CreateOptions::default()
                    };
                    b.create(&n, &opts, &[]).await.unwrap();
                })
            },
            |s| s.is_some_and(|s| s.revoked.is_some()),
        ),
        (
            "create evicting it (session limit)",
            |b, r| {
                Box::pin(async move {
                    let (_, n) = session(&r.subject, r.created_at.plus_millis(1));
                    let opts = CreateOptions {
                        max_per_subject: Some(1),
                        now: r.created_at.plus_millis(1),
                        ..CreateOptions::default()
                    };
                    b.create(&n, &opts, &[]).await.unwrap();
                })
            },
            |s| s.is_some_and(|s| s.revoked.is_some()),
        ),
        (
            "refresh rotation sliding it",
            |b, r| {
                Box::pin(async move {
                    let (first, fam) = refresh_family(r, r.created_at);
                    b.create_refresh_family(&fam, &first.hash(), &[]).await.unwrap();
                    let t = r.created_at.plus_millis(60_000);
                    let successor = session("y", T0).1.token_hash;
                    let rotation = Rotation {
                        family_id: &fam.id,
                        expected_generation: fam.generation,
                        successor: &successor,
                        successor_sealed: None,
                        now: t,
                        touch: Some(Touch {
                            handle: &r.handle,
                            token_hash: &r.token_hash,
                            last_seen_at: t,
                            idle_expires_at: t.plus_millis(r.idle_timeout_ms),
                        }),
                        bind: None,
                    };
                    assert!(b.rotate_refresh(&rotation, &[]).await.unwrap());
                })
            },
            |s| s.is_some_and(|s| s.last_seen_at > s.created_at),
        ),
    ];
    for (i, (what, change, seen)) in changes.into_iter().enumerate() {
        let (_, rec) = session(&format!("s{i}"), later);
        insert(a, &rec).await;
        let before = cached(a, &rec.token_hash).await;
        assert!(!seen(Some(before)), "{what}: the check holds before the change");
        let start = Instant::now();
        change(b, &rec).await;
        let took = within_bound(what, start, || async {
            seen(a.get_by_token(&rec.token_hash).await.unwrap())
        })
        .await;
        println!("{what} through B seen on A after {took:?}");
    }
}

async fn client_kill_pubsub(server: &Server) {
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 1, "a subscriber was killed");
}

/// Kills every pub/sub connection on the server; a session revoked right
/// after (its invalidation reaches nobody) is never served stale by A once
/// A has noticed, and an unchanged session is not served from the old
/// cache either: the whole cache went at once. Caching resumes once A is
/// subscribed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_drops_the_cache_and_a_revocation_made_meanwhile_is_never_served_stale() {
    let server = support::private_server();
    let v = nodes(&server, 2, "").await;
    let (a, b) = (&v[0], &v[1]);
    let (_, revoked) = session("carol", T0);
    let (_, kept) = session("dave", T0);
    for r in [&revoked, &kept] {
        insert(a, r).await;
        cached(a, &r.token_hash).await;
    }
    let before = a.cache_stats().expect("on");
    client_kill_pubsub(&server).await;
    let mut replaced = revoked.clone();
    replaced.version += 1;
    replaced.revoked = Some(tessera_core::Revocation {
        at: T0,
        reason: RevokeReason::Revoked,
    });
    // A's subscription is gone: this invalidation reaches nobody.
    assert!(b.update(&replaced, 0, &[]).await.expect("revoke through B"));

    // A notices (the connection closed) and drops everything at once.
    let start = Instant::now();
    while a.cache_stats().expect("on").losses == before.losses {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "A did not notice the loss"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("A noticed the lost subscription after {:?}", start.elapsed());
    let misses = a.cache_stats().expect("on").misses;
    let hits = a.cache_stats().expect("on").hits;
    let now = a.get_by_token(&revoked.token_hash).await.unwrap().unwrap();
    assert!(now.revoked.is_some(), "never the stale copy");
    let k = a.get_by_token(&kept.token_hash).await.unwrap().unwrap();
    assert_eq!(*k, kept);
    let s = a.cache_stats().expect("on");
    assert_eq!(
        (s.hits, s.misses),
        (hits, misses + 2),
        "both read from Redis: {s:?}"
    );

    // Back: caching resumes, and the revoked session stays revoked.
    assert!(
        a.wait_cache_live(Duration::from_secs(5)).await,
        "subscribed again"
    );
    for _ in 0..3 {
        let now = a.get_by_token(&revoked.token_hash).await.unwrap().unwrap();
        assert!(now.revoked.is_some());
    }
    assert!(a.cache_stats().expect("on").hits > hits, "caching again");
    // And invalidations flow again.
    let mut patched = kept.clone();
    patched.version += 1;
    cached(a, &kept.token_hash).await;
    let start = Instant::now();
    assert!(b.update(&patched, 0, &[]).await.unwrap());
    within_bound("a change after the new subscription", start, || async {
        a.get_by_token(&kept.token_hash).await.unwrap().unwrap().version == 1
    })
    .await;
}

/// A conditional write on A that loses to a change made through B: A's
/// next read is the new record, not the copy it had cached.
#[tokio::test]
async fn a_lost_compare_and_swap_reads_the_new_record_next() {
    let server = support::private_server();
    let v = nodes(&server, 2, "").await;
    let (a, b) = (&v[0], &v[1]);
    for i in 0..20 {
        let (_, rec) = session(&format!("e{i}"), T0);
        insert(a, &rec).await;
        cached(a, &rec.token_hash).await;
        let mut on_b = rec.clone();
        on_b.version += 1;
        on_b.data.insert("by".into(), "b".into());
        assert!(b.update(&on_b, 0, &[]).await.unwrap());
        let mut on_a = rec.clone();
        on_a.version += 1;
        on_a.data.insert("by".into(), "a".into());
        assert!(!a.update(&on_a, 0, &[]).await.unwrap(), "B won");
        let now = a.get_by_token(&rec.token_hash).await.unwrap().unwrap();
        assert_eq!(now.version, 1);
        assert_eq!(now.data["by"], "b");
    }
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_redis() {
    let server = support::private_server();
    let v = nodes(&server, 2, "&cache=off").await;
    let (a, b) = (&v[0], &v[1]);
    assert!(a.cache_stats().is_none());
    assert!(!a.options().cache.enabled);
    let (_, rec) = session("erin", T0);
    insert(a, &rec).await;
    // Loads the script (NOSCRIPT, then EVALSHA again) before counting.
    a.get_by_token(&rec.token_hash).await.unwrap().unwrap();
    let calls = evalsha_calls(&server).await;
    for _ in 0..10 {
        a.get_by_token(&rec.token_hash).await.unwrap().unwrap();
    }
    assert_eq!(evalsha_calls(&server).await, calls + 10);
    let mut r = rec.clone();
    r.version += 1;
    r.revoked = Some(tessera_core::Revocation {
        at: T0,
        reason: RevokeReason::Revoked,
    });
    assert!(b.update(&r, 0, &[]).await.unwrap());
    assert!(
        a.get_by_token(&rec.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
            .is_some()
    );
}

#[test]
fn the_cache_options_are_taken_out_of_the_url() {
    let (url, o) = tessera_redis::RedisOptions::from_url(
        "redis://h:6379/0?cache=off&cache_ttl_ms=1500&cache_size=5000&protocol=resp3",
    )
    .expect("parse");
    assert_eq!(url, "redis://h:6379/0?protocol=resp3");
    assert!(!o.cache.enabled);
    assert_eq!(o.cache.ttl, Duration::from_millis(1500));
    assert_eq!(o.cache.max_entries, 5000);
    for bad in [
        "redis://h/?cache=no",
        "redis://h/?cache_ttl_ms=0",
        "redis://h/?cache_size=0",
    ] {
        assert!(tessera_redis::RedisOptions::from_url(bad).is_err(), "{bad}");
    }
}

async fn info_field(server: &Server, section: &str, field: &str) -> u64 {
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| {
            // `cmdstat_evalsha:calls=12,usec=…` or `rdb_changes_since_last_save:3`
            let v = v.trim_start_matches(':').trim_start_matches("calls=");
            v.split(',')
                .next()
                .unwrap_or("0")
                .trim()
                .parse()
                .expect("a number")
        })
        .unwrap_or(0)
}

/// Scripts run so far (reads and writes alike).
async fn evalsha_calls(server: &Server) -> u64 {
    info_field(server, "commandstats", "cmdstat_evalsha").await
}

/// Writes to the data set so far (no saving is configured, so the count
/// only grows).
async fn writes(server: &Server) -> u64 {
    info_field(server, "persistence", "rdb_changes_since_last_save").await
}

/// Sliding idle expiry on Redis: verifications between two touches write
/// nothing (the core's touch rule) and, with the cache, read nothing; a
/// touch on A costs B one re-read, not a miss (or a write) per request.
#[tokio::test]
async fn sliding_idle_expiry_writes_nothing_between_touches_and_a_touch_costs_other_nodes_one_read() {
    let server = support::private_server();
    let url = format!("{}?prefix={}", server.url(), prefix());
    let (a, b) = (&node(&url).await, &node(&url).await);
    let off = node(&format!("{url}&cache=off")).await;
    let clock = Arc::new(ManualClock::new(T0));
    let policy = SessionPolicy {
        touch_interval_secs: 60,
        ..SessionPolicy::default()
    };
    let (sa, sb, s_off) = (
        sessions(a, &clock, policy.clone()),
        sessions(b, &clock, policy.clone()),
        sessions(&off, &clock, policy),
    );
    let issued = sa.create(login("frank")).await.expect("create");
    let token = issued.token.expose().to_owned();
    sb.verify(&token).await.expect("B reads it once");

    let (w0, c0) = (writes(&server).await, evalsha_calls(&server).await);
    for _ in 0..200 {
        clock.advance_millis(100);
        sa.verify(&token).await.expect("verify");
        sb.verify(&token).await.expect("verify");
    }
    assert_eq!(writes(&server).await, w0, "20 s of verifications wrote nothing");
    assert_eq!(
        evalsha_calls(&server).await,
        c0 + 1,
        "A read once, then served from memory"
    );

    // Without the cache the same holds for writes; every verify reads.
    let c1 = evalsha_calls(&server).await;
    for _ in 0..50 {
        s_off.verify(&token).await.expect("verify");
    }
    assert_eq!(writes(&server).await, w0, "no writes without the cache either");
    assert_eq!(evalsha_calls(&server).await, c1 + 50);

    // Past the touch interval: one touch (one write, through A).
    clock.advance_millis(61_000);
    let b_misses = b.cache_stats().expect("on").misses;
    sa.verify(&token).await.expect("verify");
    let w1 = writes(&server).await;
    assert!(w1 > w0, "the touch wrote");
    let c2 = evalsha_calls(&server).await;
    for _ in 0..200 {
        clock.advance_millis(100);
        sa.verify(&token).await.expect("verify");
        sb.verify(&token).await.expect("verify");
    }
    assert_eq!(
        writes(&server).await,
        w1,
        "no write until the next touch is due, on either node"
    );
    assert_eq!(
        b.cache_stats().expect("on").misses,
        b_misses + 1,
        "A's touch cost B one re-read"
    );
    assert!(
        evalsha_calls(&server).await <= c2 + 2,
        "one re-read on each node after the touch"
    );
    let now = clock.now();
    let s = a.get_by_token(&issued.session.token_hash).await.unwrap().unwrap();
    assert!(s.idle_expires_at > now, "the slide is stored");
}

/// The heartbeat (a PING on the subscription every second) is answered on
/// either protocol: a quiet subscription stays live and keeps its entries,
/// and a lost compare-and-swap (which waits on the same PING) works.
#[tokio::test]
async fn a_quiet_subscription_stays_live_on_resp2_and_resp3() {
    let server = support::private_server();
    let mut stores = Vec::new();
    for protocol in ["resp2", "resp3"] {
        let v = nodes(&server, 2, &format!("&protocol={protocol}")).await;
        let (_, rec) = session("gina", T0);
        insert(&v[0], &rec).await;
        cached(&v[0], &rec.token_hash).await;
        stores.push((v, rec));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (v, rec) in &stores {
        let s = v[0].cache_stats().expect("on");
        assert!(s.live && s.losses == 0, "{s:?}");
        cached(&v[0], &rec.token_hash).await;
        let mut on_b = rec.clone();
        on_b.version += 1;
        assert!(v[1].update(&on_b, 0, &[]).await.unwrap());
        assert!(!v[0].update(&on_b, 0, &[]).await.unwrap());
        assert_eq!(
            v[0].get_by_token(&rec.token_hash).await.unwrap().unwrap().version,
            1
        );
    }
}

/// A subscription that stops answering (Redis paused: the connection is
/// open but nothing comes back) is a lost one: the heartbeat drops the
/// cache within a second plus the response timeout, and caching resumes
/// once Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_heartbeat_drops_the_cache() {
    let server = support::private_server();
    let options = tessera_redis::RedisOptions {
        prefix: tessera_redis::RedisOptions::prefix_for(&prefix()),
        response_timeout: Duration::from_millis(300),
        ..tessera_redis::RedisOptions::default()
    };
    let a = RedisStore::connect_with(&server.url(), options)
        .await
        .expect("connect");
    assert!(a.wait_cache_live(Duration::from_secs(5)).await);
    let (_, rec) = session("hank", T0);
    insert(&a, &rec).await;
    cached(&a, &rec.token_hash).await;
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
    let start = Instant::now();
    while a.cache_stats().expect("on").losses == 0 {
        assert!(
            start.elapsed() < Duration::from_millis(2000),
            "no loss noticed while Redis was paused"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "an unanswered heartbeat dropped the cache after {:?}",
        start.elapsed()
    );
    assert!(!a.cache_stats().expect("on").live);
    assert!(
        a.wait_cache_live(Duration::from_secs(5)).await,
        "subscribed again"
    );
    cached(&a, &rec.token_hash).await;
}
