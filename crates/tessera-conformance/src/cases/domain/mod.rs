//! Domain rules (SPEC §1, §5 and the SC/EX/FX/RT checklist) through the
//! services (`Sessions`, `TokenService`) on the store under test. Time is a
//! `ManualClock`: cases move it, never sleep.

mod expiry;
mod login;
mod refresh;
mod revocation;

pub use expiry::*;
pub use login::*;
pub use refresh::*;
pub use revocation::*;

use serde_json::Value;
use tessera_core::{AuthInput, CreateSession, EventKind, EventQuery, EventStore, RevokeReason, SessionStore};

use crate::support::*;

pub(super) fn level(l: u8, methods: &[&str]) -> AuthInput {
    AuthInput {
        level: Some(l),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
    }
}

pub(super) fn with_data(subject: &str, data: Value) -> CreateSession {
    CreateSession {
        data: Some(obj(data)),
        ..login_request(subject)
    }
}

/// Events of `kind` with `reason` in the whole log.
pub(super) async fn revoked_events<S: SessionStore + EventStore>(
    h: &Harness<S>,
    reason: RevokeReason,
) -> Vec<String> {
    let q = EventQuery {
        kind: Some(EventKind::Revoked),
        ..EventQuery::default()
    };
    events_matching(&*h.store, q)
        .await
        .into_iter()
        .filter(|e| e.event.reason == Some(reason))
        .map(|e| e.event.handle)
        .collect()
}
