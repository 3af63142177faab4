//! Core verification cost on the memory store: the ceiling every face and
//! store adds its own cost to.
//!
//! `cargo bench -p tessera-core --bench core`
#![forbid(unsafe_code)]

use std::sync::Arc;

use tessera_core::{CreateSession, ManualClock, MemoryStore, SessionPolicy, Sessions, Timestamp};

fn main() {
    divan::main();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Runs a future that never waits (the memory store never does) with a
/// no-op waker, so the figure is the core's cost and not an executor's.
fn run_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("memory-store futures complete on first poll"),
    }
}

fn sessions() -> Sessions {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let policy = SessionPolicy {
        max_sessions_per_subject: None,
        ..Default::default()
    };
    Sessions::new(Arc::new(MemoryStore::new()), Arc::new(clock), policy)
}

/// Verify one of 10,000 live sessions (a pure read: within the touch interval).
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn verify_memory(bencher: divan::Bencher) {
    let rt = runtime();
    let s = sessions();
    let tokens: Vec<String> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..10_000 {
            let t = s
                .create(CreateSession {
                    subject: format!("user{i}"),
                    ..Default::default()
                })
                .await
                .expect("create");
            v.push(t.token.expose().to_owned());
        }
        v
    });
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = (i + 1) % tokens.len();
        rt.block_on(s.verify(divan::black_box(&tokens[i])))
            .expect("verify")
    });
}

/// Refusing an unknown (well-formed) token: parse, hash, miss.
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn verify_unknown_memory(bencher: divan::Bencher) {
    let s = sessions();
    let t = tessera_core::SecretToken::generate(tessera_core::TokenKind::Session);
    bencher.bench_local(|| run_ready(s.verify(divan::black_box(t.expose()))).is_err());
}

#[divan::bench(sample_count = 100, sample_size = 500)]
fn create_memory(bencher: divan::Bencher) {
    let s = sessions();
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        run_ready(s.create(CreateSession {
            subject: format!("user{}", i % 1000),
            ..Default::default()
        }))
        .expect("create")
    });
}

/// The abuse limit's decision on the hot path (`RateLimiter::check`, what
/// the service adds to every `/v1` request for its API key), beside
/// `verify_memory`: one of 1,000 subjects counted, none over the limit.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn rate_limit_check(bencher: divan::Bencher) {
    use tessera_core::ratelimit::{Limit, RateLimiter, Rule};
    let limiter = RateLimiter::new(
        Arc::new(MemoryStore::new()),
        Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000))),
    );
    let rule = Rule {
        name: "bench",
        tag: 1,
        limit: Limit::new(u64::MAX / 2, 1),
    };
    let subjects: Vec<String> = (0..1000).map(|i| format!("key_{i:08}")).collect();
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = (i + 1) % subjects.len();
        limiter.check(&rule, divan::black_box(subjects[i].as_bytes()))
    });
}
