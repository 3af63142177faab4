use rusqlite::Connection;
use serde_json::Map;
use tessera_core::{
    AuthInfo, DeviceInfo, EventKind, EventQuery, RefreshFamily, RevokeReason, SessionRecord, Timestamp,
    TokenHash,
};

use super::events::{OLDEST_EVENTS, REVOKED_CURSOR_SINCE, events_statement};
use super::refresh::FIND_REFRESH_WITH_SESSION;
use super::*;
use crate::codec::{FamilyRow, SessionRow};

fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    crate::schema::migrate(&c).unwrap();
    c
}

fn session(now: Timestamp) -> SessionRecord {
    SessionRecord {
        handle: "ses_0000000000000000000001".into(),
        token_hash: TokenHash([7; 32]),
        subject: "alice".into(),
        version: 3,
        created_at: now,
        last_seen_at: now.plus_secs(1),
        idle_timeout_ms: 60_000,
        idle_expires_at: now.plus_secs(61),
        absolute_expires_at: now.plus_secs(3600),
        auth: AuthInfo {
            level: 2,
            methods: vec!["pwd".into(), "otp".into()],
            time: now,
        },
        device: DeviceInfo {
            user_agent: Some("ua".into()),
            ip: None,
            label: "Unknown device".into(),
        },
        data: Map::new(),
        binding: None,
        revoked: None,
    }
}

fn family(s: &SessionRecord) -> RefreshFamily {
    RefreshFamily {
        id: "rtf_1".into(),
        handle: s.handle.clone(),
        session_token_hash: s.token_hash,
        client_id: "app".into(),
        scope: vec!["read".into()],
        audience: vec!["tessera".into()],
        generation: 0,
        // Columns the session also has, set apart from its values, so a
        // join that read the wrong table's column would show.
        created_at: s.created_at.plus_secs(5),
        rotated_at: s.created_at.plus_secs(5),
        current_sealed: None,
        binding: None,
        revoked: Some(tessera_core::Revocation {
            at: s.created_at.plus_secs(6),
            reason: RevokeReason::Revoked,
        }),
    }
}

/// The joined read decodes the family and the session from their own
/// columns, and a family whose session row is missing (impossible
/// through the store, whose foreign key cascades) gives `None`.
#[test]
fn find_refresh_with_session_decodes_both_and_a_missing_session() {
    let c = db();
    let now = Timestamp::from_unix_secs(1_000_000);
    let s = session(now);
    let f = family(&s);
    let job = Create {
        row: SessionRow::encode(&s).unwrap(),
        replace: None,
        max_per_subject: None,
        now,
        events: Vec::new(),
    };
    create(&c, &job).unwrap();
    create_refresh_family(&c, &FamilyRow::encode(&f).unwrap(), &[1; 32], &[]).unwrap();

    assert_eq!(
        find_refresh_with_session(&c, &[1; 32]).unwrap(),
        Some((0, f.clone(), Some(s.clone())))
    );
    assert_eq!(find_refresh_with_session(&c, &[2; 32]).unwrap(), None);

    c.pragma_update(None, "foreign_keys", "OFF").unwrap();
    c.execute("DELETE FROM sessions WHERE handle = ?1", [&s.handle])
        .unwrap();
    assert_eq!(find_refresh(&c, &[1; 32]).unwrap(), Some((0, f.clone())));
    assert_eq!(
        find_refresh_with_session(&c, &[1; 32]).unwrap(),
        Some((0, f, None))
    );
}

fn plan(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
    c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(params, |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The revocation feed reads through the partial indexes of schema
/// version 4: the follow-up from `events_revoked_id` (not the whole
/// table from the cursor), the snapshot's start from `events_revoked_at`
/// (not the oldest revocations first), and retention reads the table's
/// first rows and deletes a rowid range.
#[test]
fn feed_and_retention_queries_use_their_indexes() {
    let c = db();
    // What `events` runs for the feed's follow-up (kind = revoked only).
    let q = EventQuery {
        kind: Some(EventKind::Revoked),
        limit: 10,
        ..EventQuery::default()
    };
    let (follow, _) = events_statement(&q, &0, &10, Some(&"revoked"));
    let p = plan(&c, &follow, [0i64, 10]);
    assert_eq!(
        p,
        vec!["SEARCH events USING INDEX events_revoked_id (id>?)".to_owned()],
        "{p:?}"
    );
    events(&c, &q).unwrap();
    let p = plan(&c, REVOKED_CURSOR_SINCE, [0i64]);
    assert!(
        p.iter()
            .any(|l| l.contains("USING INDEX events_revoked_at (at>?)")
                || l.contains("USING COVERING INDEX events_revoked_at (at>?)")),
        "{p:?}"
    );
    assert!(
        !p.iter()
            .any(|l| l.contains("events_revoked_id") || l.starts_with("SCAN events")),
        "{p:?}"
    );
    assert_eq!(plan(&c, OLDEST_EVENTS, [10i64]), vec!["SCAN events".to_owned()]);
    assert_eq!(
        plan(&c, "DELETE FROM events WHERE id <= ?1", [10i64]),
        vec!["SEARCH events USING INTEGER PRIMARY KEY (rowid<?)".to_owned()]
    );
}

/// A version-3 database gains the feed's indexes over its existing
/// revocations, and its signing keys read as not revoked.
#[test]
fn a_version_3_database_gains_the_feed_indexes_and_key_revocation() {
    let c = Connection::open_in_memory().unwrap();
    for m in &crate::schema::MIGRATIONS[..3] {
        c.execute_batch(m).unwrap();
    }
    c.pragma_update(None, "user_version", 3).unwrap();
    c.execute_batch(
        "INSERT INTO events (at, kind, subject, handle, reason) VALUES \
             (1000, 'revoked', 'a', 'ses_a', 'logout'), (2000, 'created', 'b', 'ses_b', NULL), \
             (3000, 'revoked', 'b', 'ses_b', 'logout'); \
         INSERT INTO signing_keys (kid, alg, created_at, activates_at, private_sealed, public_jwk) \
             VALUES ('k1', 'EdDSA', 1, 1, x'01', '{}');",
    )
    .unwrap();
    crate::schema::migrate(&c).unwrap();
    assert_eq!(
        events_cursor_since(&c, EventKind::Revoked, Timestamp::from_unix_millis(1500)).unwrap(),
        2
    );
    let keys = signing_keys(&c).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].revoked_at, None);
    assert!(revoke_signing_key(&c, "k1", Timestamp::from_unix_millis(9)).unwrap());
    let keys = signing_keys(&c).unwrap();
    assert_eq!(keys[0].revoked_at, Some(Timestamp::from_unix_millis(9)));
    assert!(keys[0].private_sealed.is_empty());
}

/// Three primary-key searches, no scan.
#[test]
fn find_refresh_with_session_searches_by_keys_only() {
    let c = db();
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {FIND_REFRESH_WITH_SESSION}"))
        .unwrap()
        .query_map([[0u8; 32]], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plan.len(), 3, "{plan:?}");
    assert!(plan.iter().all(|p| p.starts_with("SEARCH ")), "{plan:?}");
}
