//! The one conformance suite every Tessera store must pass, whatever it is
//! backed by, organised by the store capabilities of
//! [`tessera_core::store`].
//!
//! A complete store (every capability: [`tessera_core::Store`]) runs all of
//! it from one of its integration tests:
//!
//! ```ignore
//! async fn make_store() -> std::sync::Arc<tessera_core::MemoryStore> {
//!     std::sync::Arc::new(tessera_core::MemoryStore::new())
//! }
//! tessera_conformance::conformance_suite!(make_store);
//! ```
//!
//! A store that implements only some capabilities runs their macros
//! instead, e.g. `sessions_cases!(make_store); events_cases!(make_store);`.
//! Each case is bound by exactly the capabilities it uses, so whatever a
//! store implements, the cases of it compile and run:
//!
//! | macro | module | the store needs |
//! |---|---|---|
//! | [`sessions_cases!`] | [`cases::sessions`] | `SessionStore + EventStore` |
//! | [`refresh_cases!`] | [`cases::refresh`] | `RefreshStore + EventStore` |
//! | [`signing_keys_cases!`] | [`cases::signing_keys`] | `SigningKeyStore` |
//! | [`api_keys_cases!`] | [`cases::api_keys`] | `ApiKeyStore` |
//! | [`clients_cases!`] | [`cases::clients`] | `ClientStore` |
//! | [`events_cases!`] | [`cases::events`] | `SessionStore + EventStore` |
//! | [`leases_cases!`] | [`cases::leases`] | `LeaseStore` |
//! | [`replay_cases!`] | [`cases::replay`] | `ReplayStore` |
//! | [`rate_limits_cases!`] | [`cases::rate_limits`] | `RateLimitStore` |
//! | [`health_cases!`] | [`cases::health`] | `StoreHealth` |
//! | [`domain_cases!`] | [`cases::domain`] | `RefreshStore + SigningKeyStore + EventStore` |
//! | [`concurrency_cases!`] | [`cases::concurrency`] | `SessionStore + EventStore` |
//! | [`model_cases!`] | [`cases::model`] | `SessionStore + RefreshStore + SigningKeyStore + EventStore` |
//!
//! The factory is a path, from the invoking module, to an `async fn()`
//! returning a fresh, empty `Arc<S>` of the concrete store type. Every macro
//! expands to a module named after its case module with one
//! `#[tokio::test]` per case on a 4-worker multi-thread runtime, so the
//! concurrency cases race for real. Under [`conformance_suite!`] a case also
//! sees the store as a complete one ([`support::complete_store`]), and its
//! "nothing was written" checks cover the record kinds outside its
//! capability as well.
//!
//! Cases named `sc_*`, `ex_*`, `fx_*` and `rt_*` prove the checklist item
//! of that ID through the services with a
//! [`ManualClock`](tessera_core::ManualClock) (time is moved, never slept
//! through); `store_*` cases pin a trait's contract directly; `concurrent_*`
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

/// Expands to every case of every capability, each on a fresh store from
/// `$factory` (a path to `async fn() -> Arc<S>` where `S` implements
/// [`tessera_core::Store`]).
///
/// The lists in the capability macros below are the suite:
/// `tests/case_list.rs` checks that each names every `pub async fn` of its
/// module under `src/cases/`, and that this macro runs every capability
/// macro, so a case cannot be written and then silently never run.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::sessions_cases!(@complete $factory);
        $crate::refresh_cases!(@complete $factory);
        $crate::signing_keys_cases!(@complete $factory);
        $crate::api_keys_cases!(@complete $factory);
        $crate::clients_cases!(@complete $factory);
        $crate::events_cases!(@complete $factory);
        $crate::leases_cases!(@complete $factory);
        $crate::replay_cases!(@complete $factory);
        $crate::rate_limits_cases!(@complete $factory);
        $crate::health_cases!(@complete $factory);
        $crate::domain_cases!(@complete $factory);
        $crate::concurrency_cases!(@complete $factory);
        $crate::model_cases!(@complete $factory);
    };
}

/// [`SessionStore`](tessera_core::SessionStore), method by method:
/// [`cases::sessions`].
#[macro_export]
macro_rules! sessions_cases {
    ($($how:tt)+) => {
        $crate::__cases! { sessions; $($how)+;
            store_fresh_store_is_empty,
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
            store_sweep_in_batches,
            store_count_active,
        }
    };
}

/// [`RefreshStore`](tessera_core::RefreshStore): families, rotation and its
/// race: [`cases::refresh`].
#[macro_export]
macro_rules! refresh_cases {
    ($($how:tt)+) => {
        $crate::__cases! { refresh; $($how)+;
            store_refresh_fresh_store_is_empty,
            store_refresh_family_round_trip,
            store_refresh_family_duplicate_writes_nothing,
            store_create_with_refresh_family_stores_both,
            store_create_with_refresh_family_writes_nothing_when_either_fails,
            store_update_with_refresh_family_stores_both_or_neither,
            store_refresh_revoke_family,
            store_refresh_families_of,
            store_sweep_deletes_refresh_families,
            store_find_refresh_with_session_matches_separate_reads,
            store_refresh_rotate_cas,
            store_refresh_rotate_slides_the_session,
            store_refresh_rotate_binds_an_unbound_family_once,
            store_refresh_rotate_duplicate_successor_writes_nothing,
            store_clear_sealed_successors_in_batches,
            concurrent_refresh_rotation_exactly_one_wins,
        }
    };
}

/// [`SigningKeyStore`](tessera_core::SigningKeyStore): [`cases::signing_keys`].
#[macro_export]
macro_rules! signing_keys_cases {
    ($($how:tt)+) => {
        $crate::__cases! { signing_keys; $($how)+;
            store_signing_keys_fresh_store_is_empty,
            store_signing_keys,
            store_signing_key_revoke,
            concurrent_key_rotation_one_insert,
        }
    };
}

/// [`ApiKeyStore`](tessera_core::ApiKeyStore): [`cases::api_keys`].
#[macro_export]
macro_rules! api_keys_cases {
    ($($how:tt)+) => {
        $crate::__cases! { api_keys; $($how)+;
            store_api_keys_fresh_store_is_empty,
            store_api_keys,
        }
    };
}

/// [`ClientStore`](tessera_core::ClientStore): [`cases::clients`].
#[macro_export]
macro_rules! clients_cases {
    ($($how:tt)+) => {
        $crate::__cases! { clients; $($how)+;
            store_clients_fresh_store_is_empty,
            store_clients,
            concurrent_client_inserts_one_wins,
        }
    };
}

/// [`EventStore`](tessera_core::EventStore): [`cases::events`].
#[macro_export]
macro_rules! events_cases {
    ($($how:tt)+) => {
        $crate::__cases! { events; $($how)+;
            store_events_order_filters_paging,
            store_events_cursor_since,
            store_delete_events_before_in_batches,
            store_append_events_records_no_write_in_order,
        }
    };
}

/// [`LeaseStore`](tessera_core::LeaseStore): [`cases::leases`].
#[macro_export]
macro_rules! leases_cases {
    ($($how:tt)+) => {
        $crate::__cases! { leases; $($how)+;
            store_lease_is_exclusive_until_it_expires,
            store_lease_renew_only_by_its_live_holder,
            store_lease_release_only_by_its_holder,
            store_leases_are_independent_by_name,
            concurrent_lease_one_holder,
        }
    };
}

/// [`ReplayStore`](tessera_core::ReplayStore): [`cases::replay`].
#[macro_export]
macro_rules! replay_cases {
    ($($how:tt)+) => {
        $crate::__cases! { replay; $($how)+;
            store_marker_is_used_once_until_it_expires,
            store_sweep_markers_deletes_expired_in_batches,
            concurrent_marker_one_use,
        }
    };
}

/// [`RateLimitStore`](tessera_core::RateLimitStore): [`cases::rate_limits`].
#[macro_export]
macro_rules! rate_limits_cases {
    ($($how:tt)+) => {
        $crate::__cases! { rate_limits; $($how)+;
            store_hits_add_up_per_window_and_report_the_previous,
            store_sweep_counters_deletes_expired_in_batches,
            concurrent_hits_are_all_counted,
            gn_04_two_processes_share_one_limit,
        }
    };
}

/// [`StoreHealth`](tessera_core::StoreHealth): [`cases::health`].
#[macro_export]
macro_rules! health_cases {
    ($($how:tt)+) => {
        $crate::__cases! { health; $($how)+;
            store_ping_answers,
        }
    };
}

/// The checklist's rules through the services: [`cases::domain`].
#[macro_export]
macro_rules! domain_cases {
    ($($how:tt)+) => {
        $crate::__cases! { domain; $($how)+;
            // Login and step-up.
            sc_01_tokens_unique_and_hashed_at_rest,
            sc_03_unknown_token_never_adopted,
            sc_12_two_logins_two_tokens,
            sc_13_malformed_tokens_rejected_without_write,
            fx_01_login_replaces_previous_session_and_carries_data,
            fx_01_login_of_another_subject_drops_previous_data,
            fx_02_elevate_rotates_token_keeps_handle,
            fx_03_old_token_dead_after_elevate,
            // Expiry.
            ex_01_idle_timeout_slides,
            ex_02_absolute_timeout_never_moves,
            ex_03_expiry_checked_on_read_without_sweeper,
            ex_04_logout_invalidates,
            verify_failures_leave_store_unchanged,
            sweep_through_sessions_loops_until_done,
            // Revocation of many.
            ex_07_revoke_all_ends_every_session,
            ex_08_revoke_all_except_current,
            ex_09_admin_revokes_one_subject,
            ex_09_operator_revokes_everyone_in_batches,
            ex_11_session_limit_revokes_oldest,
            data_merge_patch_persists,
            // Refresh rotation through the token service.
            rt_11_concurrent_refreshes_rotate_once_and_share_the_successor,
            rt_11_strict_rotation_exactly_one_success,
            rt_02_reuse_after_grace_revokes_the_session,
            rt_sealed_successor_kept_only_for_the_grace_window,
            rt_grace_0_never_stores_a_sealed_successor,
        }
    };
}

/// The session services under real parallelism: [`cases::concurrency`].
#[macro_export]
macro_rules! concurrency_cases {
    ($($how:tt)+) => {
        $crate::__cases! { concurrency; $($how)+;
            concurrent_50_verifies_and_1_revoke,
            concurrent_2_elevations_exactly_one_wins,
            concurrent_creates_respect_session_limit,
            concurrent_patches_lose_no_update,
            concurrent_touch_and_revoke_never_resurrects,
            concurrent_2_logins_replace_previous_once,
            concurrent_duplicate_creates_exactly_one_wins,
        }
    };
}

/// The model check of the session state machine: [`cases::model`]. Its
/// case takes the factory itself, since every generated sequence starts on
/// a fresh store.
#[macro_export]
macro_rules! model_cases {
    // The case needs no complete store; it builds its own from the factory.
    (@complete $factory:path) => {
        $crate::model_cases!($factory);
    };
    ($factory:path) => {
        $crate::__cases! { model; @factory $factory;
            model_session_state_machine,
        }
    };
}

/// The per-case expansion of the macros above. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __cases {
    // Cases that take the factory (a fresh store per generated sequence)
    // rather than one store. First: `@factory` is not a path.
    ($module:ident; @factory $factory:path; $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$crate::__tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "tessera_conformance::__tokio"
                )]
                async fn $case() {
                    $crate::__run_case(stringify!($case), $crate::cases::$module::$case(|| $factory()))
                        .await;
                }
            )*
        }
    };
    ($module:ident; @complete $factory:path; $($case:ident),* $(,)?) => {
        mod $module {
            // The factory is named from the invoking module.
            #[allow(unused_imports)]
            use super::*;
            $(
                // `crate = …` points tokio's test macro at our re-export, so
                // the caller needs no tokio dependency of its own.
                #[$crate::__tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "tessera_conformance::__tokio"
                )]
                async fn $case() {
                    $crate::__run_case(
                        stringify!($case),
                        $crate::support::__on_complete_store(
                            $factory().await,
                            $crate::cases::$module::$case,
                        ),
                    )
                    .await;
                }
            )*
        }
    };
    ($module:ident; $factory:path; $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$crate::__tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "tessera_conformance::__tokio"
                )]
                async fn $case() {
                    $crate::__run_case(stringify!($case), $crate::cases::$module::$case($factory().await))
                        .await;
                }
            )*
        }
    };
}
