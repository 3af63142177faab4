//! End-to-end tests of `tessera-demo` in headless Chromium, driven like a user
//! through chromedriver (fantoccini). Each scenario is named after the items of
//! shared/reference/standards-checklist.md it checks.
//!
//! One `#[tokio::test]` runs every scenario in turn against one demo process and
//! one chromedriver, so the heavy set-up happens once per run; each simulated
//! device is a fresh Chromium profile. A failing scenario does not stop the
//! others: the test reports every failure at the end.
//!
//! Needs Debian's `chromium` and `chromium-driver` (./scripts/test installs
//! them); without them the test fails and says so. Screenshots and the demo's
//! and chromedriver's logs go to `<repo>/test-artifacts/`.
//!
//! `TESSERA_E2E_ONLY=fx_02,ex_08` runs only the scenarios whose names contain
//! one of the given words.
#![forbid(unsafe_code)]

mod dbsc;
mod harness;
mod scenarios;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Harness;

type ScenarioFn = fn(Arc<Harness>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! scenarios {
    ($($path:path),* $(,)?) => {
        vec![$((stringify!($path).rsplit("::").next().unwrap().trim(), (|h| Box::pin($path(h))) as ScenarioFn)),*]
    };
}

/// Time limit of one scenario, so a hung page cannot stall the run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_e2e() {
    let all: Vec<(&str, ScenarioFn)> = scenarios![
        scenarios::sc_07_cookie_httponly_secure_lax,
        scenarios::fx_01_fx_04_sc_03_login_rotates_and_planted_value_is_refused,
        scenarios::fx_02_step_up_rotates_and_old_value_dies,
        scenarios::ex_10_two_devices_list_and_revoke_other,
        scenarios::ex_08_password_change_ends_other_sessions,
        scenarios::cs_02_cs_03_cross_origin_forms_are_refused,
        scenarios::ex_12_ex_04_ex_13_logout_clears_and_back_shows_login,
        scenarios::ex_07_account_deletion_ends_all_sessions,
        dbsc::db_e2e_register_refresh_replay_logout,
    ];
    let only: Vec<String> = std::env::var("TESSERA_E2E_ONLY")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| name.contains(o.as_str())))
        .collect();

    let t0 = Instant::now();
    let harness = match Harness::start().await {
        Ok(h) => Arc::new(h),
        Err(e) => panic!("browser E2E set-up failed: {e:#}"),
    };
    eprintln!(
        "e2e: demo on {}, chromedriver on {} (set-up {:.1}s)",
        harness.demo.base,
        harness.driver.url,
        t0.elapsed().as_secs_f64()
    );

    let mut failures = Vec::new();
    for (name, run) in &chosen {
        let t = Instant::now();
        // A task of its own turns a panic into an error and keeps the others running.
        let task = tokio::spawn(tokio::time::timeout(SCENARIO_TIMEOUT, run(harness.clone())));
        let outcome = match task.await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("{e:#}")),
            Ok(Err(_)) => Err(format!("timed out after {SCENARIO_TIMEOUT:?}")),
            Err(e) => Err(format!("panicked: {e}")),
        };
        let secs = t.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("e2e: {name} ... ok ({secs:.1}s)"),
            Err(msg) => {
                eprintln!("e2e: {name} ... FAILED ({secs:.1}s)\n    {msg}");
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    let demo_log = harness.demo_log_tail();
    drop(harness);
    eprintln!(
        "e2e: {} scenario(s), {} failed, {:.1}s in all",
        chosen.len(),
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} browser scenario(s) failed:\n  - {}\n\nlast lines of the demo's log \
             (all of it in test-artifacts/e2e-demo.log):\n{demo_log}",
            failures.len(),
            chosen.len(),
            failures.join("\n  - ")
        );
    }
}
