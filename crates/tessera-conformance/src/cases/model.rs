//! A model check of the session state machine (issue 14, item 3): random
//! sequences of create / verify / refresh / elevate / logout / revoke /
//! revoke-all / clock moves / sweep / access-token checks / key rotation,
//! revocation and pruning run against the core's services over the store
//! under test, and after every step every answer and every observable part
//! of the state (per-subject lists, the active count, every record, the
//! step's events, the JWKS) is compared with a plain reference
//! (`reference.rs`) written from the spec.
//!
//! The sequences come from proptest strategies (`ops.rs`), driven here by
//! hand because the cases are async: each generated case runs on a fresh
//! store from the factory, and a failing one is shrunk (fewer operations,
//! smaller selectors) with proptest's own `simplify`/`complicate` to a
//! minimal failing sequence, which the panic prints with the seed.
//!
//! No failure-persistence files: this is a library crate whose cases run
//! from other crates' test binaries, so there is no one source file to put
//! a `proptest-regressions` next to. A failure is reproduced from the
//! printed seed (`TESSERA_MODEL_SEED`), and every disagreement found is
//! kept as a plain, named regression test instead.
//!
//! Knobs (environment): `PROPTEST_CASES` (default [`DEFAULT_CASES`]),
//! `TESSERA_MODEL_MAX_OPS` (default [`DEFAULT_MAX_OPS`]),
//! `TESSERA_MODEL_SEED` (64 hex digits; default random). Whatever they
//! say, new cases stop being generated after [`GENERATE_BUDGET`] and
//! shrinking stops at [`SHRINK_DEADLINE`], so the case stays inside
//! [`CASE_TIMEOUT`](crate::CASE_TIMEOUT).

mod ops;
mod real;
mod reference;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tessera_core::{EventStore, RefreshStore, SecretToken, SessionStore, SigningKeyStore, TokenKind};

use ops::{Scenario, scenario};
use real::Real;
use reference::Reference;

/// Generated cases per run unless `PROPTEST_CASES` says otherwise.
pub const DEFAULT_CASES: u32 = 64;
/// Longest generated sequence unless `TESSERA_MODEL_MAX_OPS` says otherwise.
pub const DEFAULT_MAX_OPS: usize = 40;
/// No new case starts after this much time (a slow store runs fewer).
pub const GENERATE_BUDGET: Duration = Duration::from_secs(90);
/// Shrinking stops here (from the start), leaving room in `CASE_TIMEOUT`.
pub const SHRINK_DEADLINE: Duration = Duration::from_secs(160);
const _: () = assert!(SHRINK_DEADLINE.as_secs() < crate::CASE_TIMEOUT.as_secs());

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seed() -> [u8; 32] {
    let parsed = std::env::var("TESSERA_MODEL_SEED").ok().and_then(|hex| {
        let hex = hex.trim();
        let mut out = [0u8; 32];
        (hex.len() == 64).then_some(())?;
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    });
    // Random otherwise, from the OS CSPRNG behind token generation.
    parsed.unwrap_or_else(|| SecretToken::generate(TokenKind::Session).hash().0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one scenario on a fresh store; `Err` describes the first step
/// where the code and the reference disagree.
async fn run<S, F, Fut>(make: &F, sc: &Scenario) -> Result<(), String>
where
    S: SessionStore + RefreshStore + SigningKeyStore + EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let (mut real, kid) = Real::start(make().await, sc.grace_secs).await?;
    let mut model = Reference::new(crate::support::T0.unix_millis(), sc.grace_secs, kid);
    let first_real = real.observe().await?;
    let first_model = model.observe();
    if first_real != first_model {
        return Err(format!(
            "the first start differs:\n  code:  {first_real:?}\n  model: {first_model:?}"
        ));
    }
    for (i, op) in sc.ops.iter().enumerate() {
        let (got, fresh) = real.apply(op).await;
        let want = model.apply(op, fresh);
        if got != want {
            return Err(format!(
                "step {i} {op:?} answers differ:\n  code:  {got:?}\n  model: {want:?}"
            ));
        }
        let got = real.observe().await?;
        let want = model.observe();
        if got != want {
            return Err(format!(
                "after step {i} {op:?} the state differs:\n  code:  {got:?}\n  model: {want:?}"
            ));
        }
    }
    Ok(())
}

/// The model check: see the module docs. `make` returns a fresh, empty
/// store each call.
pub async fn model_session_state_machine<S, F, Fut>(make: F)
where
    S: SessionStore + RefreshStore + SigningKeyStore + EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let cases = env::<u32>("PROPTEST_CASES").unwrap_or(DEFAULT_CASES);
    let max_ops = env::<usize>("TESSERA_MODEL_MAX_OPS").unwrap_or(DEFAULT_MAX_OPS);
    let seed = seed();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let strategy = scenario(max_ops);
    let start = Instant::now();
    let mut ops_run = 0usize;
    for case in 0..cases {
        if start.elapsed() > GENERATE_BUDGET {
            eprintln!(
                "model check: time budget {GENERATE_BUDGET:?} reached after {case} of {cases} cases ({ops_run} operations)"
            );
            return;
        }
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(e) => panic!("model check: cannot generate a case: {e}"),
        };
        let sc = tree.current();
        ops_run += sc.ops.len();
        let Err(failure) = run(&make, &sc).await else {
            continue;
        };
        let (minimal, why, tries) = shrink(&make, &mut tree, sc, failure, start).await;
        let steps: Vec<String> = minimal.ops.iter().map(|o| format!("    {o:?}")).collect();
        panic!(
            "model check failed (case {case}, seed {seed}; rerun with TESSERA_MODEL_SEED={seed}).\n\
             Minimal sequence after {tries} shrink runs, grace {grace} s:\n{steps}\n{why}",
            seed = hex(&seed),
            grace = minimal.grace_secs,
            steps = steps.join("\n"),
        );
    }
    eprintln!(
        "model check: {cases} cases, {ops_run} operations, seed {} in {:?}",
        hex(&seed),
        start.elapsed()
    );
}

/// proptest's shrinking loop: simplify while the case still fails,
/// complicate back when it passes; the last failing value is minimal.
async fn shrink<S, F, Fut, T>(
    make: &F,
    tree: &mut T,
    mut best: Scenario,
    mut why: String,
    start: Instant,
) -> (Scenario, String, usize)
where
    S: SessionStore + RefreshStore + SigningKeyStore + EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
    T: ValueTree<Value = Scenario>,
{
    let mut tries = 0;
    if !tree.simplify() {
        return (best, why, tries);
    }
    while start.elapsed() < SHRINK_DEADLINE {
        tries += 1;
        let candidate = tree.current();
        match run(make, &candidate).await {
            Err(w) => {
                best = candidate;
                why = w;
                if !tree.simplify() {
                    break;
                }
            }
            Ok(()) => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    (best, why, tries)
}
