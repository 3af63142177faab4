//! The one conformance suite every [`SessionStore`](tessera_core::SessionStore)
//! must pass, whatever it is backed by.
//!
//! A backend crate runs it from one of its integration tests:
//!
//! ```ignore
//! async fn make_store() -> std::sync::Arc<dyn tessera_core::SessionStore> {
//!     std::sync::Arc::new(tessera_core::MemoryStore::new())
//! }
//! tessera_conformance::conformance_suite!(make_store);
//! ```
//!
//! The macro expands to one `#[tokio::test]` per case on a 4-worker
//! multi-thread runtime, so the concurrency cases race for real. Every case
//! gets a fresh, empty store from the factory.
//!
//! Cases live in [`cases`]; those named `sc_*`, `ex_*` and `fx_*` prove the
//! checklist item of that ID through [`Sessions`](tessera_core::Sessions) with
//! a [`ManualClock`](tessera_core::ManualClock) (time is moved, never slept
//! through); `store_*` cases pin the trait contract directly; `concurrent_*`
//! cases check atomicity under real parallelism.
#![forbid(unsafe_code)]

pub mod cases;
pub mod support;

/// Re-exported so the macro's expansion needs nothing from the caller's
/// dependencies but this crate.
#[doc(hidden)]
pub use tokio as __tokio;

/// Longest a single case may run. A store that deadlocks must fail the test
/// run instead of hanging CI until its global timeout.
pub const CASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Runs one case under [`CASE_TIMEOUT`]. Not public API; used by the macro.
#[doc(hidden)]
pub async fn __run_case(name: &str, case: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
        panic!(
            "conformance case `{name}` did not finish within {CASE_TIMEOUT:?} (deadlock or lost wake-up?)"
        );
    }
}

/// Expands to one test per conformance case, each on a fresh store from
/// `$factory`, a path to `async fn() -> Arc<dyn SessionStore>`.
///
/// The list below is the suite: `tests/case_list.rs` checks that it names
/// every `pub async fn` in `src/cases/`, so a case cannot be written and then
/// silently never run.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::__conformance_cases! { $factory;
            // Store contract, method by method.
            store_fresh_store_is_empty,
            store_ping_answers,
            store_create_get_round_trip,
            store_create_duplicate_rejected_writes_nothing,
            store_create_replace_revokes_previous_atomically,
            store_create_replace_conflict_writes_nothing,
            store_create_session_limit_evicts_oldest,
            store_create_session_limit_never_evicts_the_new_session,
            store_update_cas,
            store_update_never_regresses_last_seen,
            store_touch_conditional_and_monotonic,
            store_list_by_subject,
            store_revoke_subject_except_and_events,
            store_events_order_filters_paging,
            store_events_cursor_since,
            store_delete_events_before_in_batches,
            store_sweep_in_batches,
            store_count_active,
            store_api_keys,
            // Refresh-token families and signing keys (stateless tokens).
            store_tokens_fresh_store_is_empty,
            store_refresh_family_round_trip,
            store_refresh_family_duplicate_writes_nothing,
            store_refresh_rotate_cas,
            store_refresh_rotate_duplicate_successor_writes_nothing,
            store_refresh_rotate_slides_the_session,
            store_clear_sealed_successors_in_batches,
            store_refresh_revoke_family,
            store_refresh_families_of,
            store_sweep_deletes_refresh_families,
            store_find_refresh_with_session_matches_separate_reads,
            store_signing_keys,
            store_signing_key_revoke,
            // Domain rules through `Sessions`, named after the checklist.
            sc_01_tokens_unique_and_hashed_at_rest,
            sc_03_unknown_token_never_adopted,
            sc_12_two_logins_two_tokens,
            sc_13_malformed_tokens_rejected_without_write,
            ex_01_idle_timeout_slides,
            ex_02_absolute_timeout_never_moves,
            ex_03_expiry_checked_on_read_without_sweeper,
            ex_04_logout_invalidates,
            ex_07_revoke_all_ends_every_session,
            ex_08_revoke_all_except_current,
            ex_09_admin_revokes_one_subject,
            ex_09_operator_revokes_everyone_in_batches,
            ex_11_session_limit_revokes_oldest,
            fx_01_login_replaces_previous_session_and_carries_data,
            fx_01_login_of_another_subject_drops_previous_data,
            fx_02_elevate_rotates_token_keeps_handle,
            fx_03_old_token_dead_after_elevate,
            verify_failures_leave_store_unchanged,
            data_merge_patch_persists,
            sweep_through_sessions_loops_until_done,
            // Real concurrency on the multi-thread runtime.
            concurrent_50_verifies_and_1_revoke,
            concurrent_2_elevations_exactly_one_wins,
            concurrent_creates_respect_session_limit,
            concurrent_patches_lose_no_update,
            concurrent_touch_and_revoke_never_resurrects,
            concurrent_2_logins_replace_previous_once,
            concurrent_duplicate_creates_exactly_one_wins,
            // Refresh rotation through the token service.
            rt_11_concurrent_refreshes_rotate_once_and_share_the_successor,
            rt_11_strict_rotation_exactly_one_success,
            rt_02_reuse_after_grace_revokes_the_session,
            rt_sealed_successor_kept_only_for_the_grace_window,
            rt_grace_0_never_stores_a_sealed_successor,
            concurrent_refresh_rotation_exactly_one_wins,
            concurrent_key_rotation_one_insert,
        }
    };
}

/// The per-case expansion of [`conformance_suite!`]. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:path; $($case:ident),* $(,)?) => {
        $(
            // `crate = …` points tokio's test macro at our re-export, so the
            // caller needs no tokio dependency of its own.
            #[$crate::__tokio::test(
                flavor = "multi_thread",
                worker_threads = 4,
                crate = "tessera_conformance::__tokio"
            )]
            async fn $case() {
                $crate::__run_case(stringify!($case), async {
                    $crate::cases::$case($factory().await).await
                })
                .await;
            }
        )*
    };
}
