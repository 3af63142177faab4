//! The DBSC rules driven by a protocol-level client written here: key
//! generation, proof signing, mutated proofs, replayed and stale
//! challenges, another session's challenge, unknown session ids (checklist
//! DB rows as they apply to the core).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::*;
use crate::memory::MemoryStore;
use crate::policy::SessionPolicy;
use crate::sessions::CreateSession;
use crate::time::ManualClock;

/// A browser's DBSC key, signing proofs as the draft says (or not).
struct Device(EcdsaKeyPair);

impl Device {
    fn new() -> Device {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Device(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn jwk(&self) -> Value {
        let p = self.0.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url::encode(sig.as_ref()))
    }

    /// What Chromium sends to the registration endpoint.
    fn registration(&self, challenge: &str) -> String {
        self.sign(
            &json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": self.jwk()}),
            &json!({"jti": challenge}),
        )
    }

    /// What Chromium sends to the refresh endpoint (no `jwk`).
    fn refresh(&self, challenge: &str) -> String {
        self.sign(
            &json!({"alg": "ES256", "typ": "dbsc+jwt"}),
            &json!({"jti": challenge}),
        )
    }
}

struct H {
    dbsc: Dbsc,
    sessions: Sessions,
    clock: ManualClock,
    store: Arc<MemoryStore>,
}

fn setup() -> H {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let store = Arc::new(MemoryStore::new());
    let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), SessionPolicy::default());
    let dbsc = Dbsc::new(
        sessions.clone(),
        store.clone(),
        Arc::new(Sealer::new(&Sealer::generate_key())),
        DbscPolicy {
            required_level: Some(2),
            ..DbscPolicy::default()
        },
    )
    .with_events(store.clone());
    H {
        dbsc,
        sessions,
        clock,
        store,
    }
}

impl H {
    async fn login(&self, who: &str) -> Arc<SessionRecord> {
        self.sessions
            .create(CreateSession {
                subject: who.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .session
    }

    async fn registered(&self, device: &Device) -> (Arc<SessionRecord>, BoundCookie) {
        let s = self.login("alice").await;
        let c = self.dbsc.registration_challenge(&s);
        let cookie = self.dbsc.register(&s, &device.registration(&c)).await.unwrap();
        (s, cookie)
    }

    async fn record(&self, handle: &str) -> Arc<SessionRecord> {
        self.sessions.lookup(handle).await.unwrap().unwrap()
    }
}

fn invalid(r: Result<BoundCookie, DbscError>) -> &'static str {
    match r {
        Err(DbscError::InvalidProof(why)) => why,
        other => panic!("expected an invalid proof, got {other:?}"),
    }
}

#[tokio::test]
async fn db_03_db_05_registration_binds_the_session_to_the_key() {
    let h = setup();
    let device = Device::new();
    let (s, cookie) = h.registered(&device).await;
    assert_eq!(cookie.session_id, s.handle, "the DBSC session id is the handle");
    let rec = h.record(&s.handle).await;
    let Some(Binding::Dbsc { jkt, jwk, .. }) = &rec.binding else {
        panic!("bound: {:?}", rec.binding);
    };
    let key = PublicJwk::from_json(&device.jwk().to_string()).unwrap();
    assert_eq!(*jkt, jwk_thumbprint(&key));
    assert_eq!(PublicJwk::from_json(jwk).unwrap(), key);
    assert!(h.dbsc.admits(&rec, Some(cookie.value.as_bytes())));
    // DB-05: a second registration never swaps the key.
    let other = Device::new();
    let c = h.dbsc.registration_challenge(&rec);
    assert!(matches!(
        h.dbsc.register(&rec, &other.registration(&c)).await,
        Err(DbscError::AlreadyBound)
    ));
    assert_eq!(h.record(&s.handle).await.binding, rec.binding);
}

#[tokio::test]
async fn db_02_registration_challenge_is_single_use_short_lived_and_session_bound() {
    let h = setup();
    let device = Device::new();
    let (a, b) = (h.login("alice").await, h.login("bob").await);
    let ca = h.dbsc.registration_challenge(&a);
    // Another session's challenge.
    assert_eq!(
        invalid(h.dbsc.register(&b, &device.registration(&ca)).await),
        "the challenge belongs to another session"
    );
    // Past its lifetime.
    h.clock.advance_secs(301);
    assert_eq!(
        invalid(h.dbsc.register(&a, &device.registration(&ca)).await),
        "unknown or stale registration challenge"
    );
    // Used twice (on an unbound session, so only the challenge decides).
    let c = h.dbsc.registration_challenge(&b);
    h.dbsc.register(&b, &device.registration(&c)).await.unwrap();
    assert_eq!(
        invalid(h.dbsc.register(&b, &device.registration(&c)).await),
        "the registration challenge was used before"
    );
    let c2 = h.dbsc.registration_challenge(&a);
    h.dbsc
        .register(&a, &Device::new().registration(&c2))
        .await
        .unwrap();
    let a2 = h.login("carol").await;
    assert_eq!(
        invalid(h.dbsc.register(&a2, &device.registration(&c2)).await),
        "the challenge belongs to another session"
    );
    // A refresh challenge is not a registration challenge.
    let rc = h.dbsc.refresh_challenge(&a2.handle);
    invalid(h.dbsc.register(&a2, &device.registration(&rc)).await);
}

#[tokio::test]
async fn db_03_mutated_registration_proofs_bind_nothing() {
    let h = setup();
    let device = Device::new();
    let s = h.login("alice").await;
    let c = h.dbsc.registration_challenge(&s);
    let good_header = json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": device.jwk()});
    let cases: Vec<(&str, String)> = vec![
        (
            "typ",
            device.sign(
                &json!({"alg": "ES256", "typ": "JWT", "jwk": device.jwk()}),
                &json!({"jti": c}),
            ),
        ),
        (
            "no jwk",
            device.sign(&json!({"alg": "ES256", "typ": "dbsc+jwt"}), &json!({"jti": c})),
        ),
        (
            "alg",
            device.sign(
                &json!({"alg": "ES384", "typ": "dbsc+jwt", "jwk": device.jwk()}),
                &json!({"jti": c}),
            ),
        ),
        (
            "alg none",
            device.sign(
                &json!({"alg": "none", "typ": "dbsc+jwt", "jwk": device.jwk()}),
                &json!({"jti": c}),
            ),
        ),
        ("private jwk", {
            let mut jwk = device.jwk();
            jwk["d"] = json!("AAAA");
            device.sign(
                &json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": jwk}),
                &json!({"jti": c}),
            )
        }),
        (
            "another key's jwk",
            device.sign(
                &json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": Device::new().jwk()}),
                &json!({"jti": c}),
            ),
        ),
        (
            "jti",
            device.sign(&good_header, &json!({"jti": "not-the-challenge"})),
        ),
        ("no jti", device.sign(&good_header, &json!({}))),
        ("not a JWS", "a.b".into()),
        (
            "huge",
            device.sign(&good_header, &json!({"jti": c, "pad": "x".repeat(5000)})),
        ),
    ];
    for (what, proof) in cases {
        assert!(
            matches!(h.dbsc.register(&s, &proof).await, Err(DbscError::InvalidProof(_))),
            "{what}"
        );
        assert_eq!(h.record(&s.handle).await.binding, None, "{what}: nothing bound");
    }
    // The unspent challenge still works with a good proof.
    h.dbsc.register(&s, &device.registration(&c)).await.unwrap();
}

#[tokio::test]
async fn db_06_db_07_db_08_refresh_with_challenges() {
    let h = setup();
    let device = Device::new();
    let (s, _) = h.registered(&device).await;
    // DB-06: no proof → a challenge for this session.
    let Err(DbscError::ChallengeNeeded(c)) = h.dbsc.refresh(&s.handle, None).await else {
        panic!("challenge expected");
    };
    let cookie = h
        .dbsc
        .refresh(&s.handle, Some(&device.refresh(&c)))
        .await
        .unwrap();
    assert_eq!(cookie.session_id, s.handle, "DB-08: the same session id");
    assert!(
        h.dbsc
            .admits(&*h.record(&s.handle).await, Some(cookie.value.as_bytes()))
    );
    // The same challenge again: spent → a new challenge, no cookie.
    assert!(matches!(
        h.dbsc.refresh(&s.handle, Some(&device.refresh(&c))).await,
        Err(DbscError::ChallengeNeeded(_))
    ));
    // DB-07: another key, a proof with jwk, a stale challenge.
    let c = h.dbsc.refresh_challenge(&s.handle);
    assert_eq!(
        invalid(h.dbsc.refresh(&s.handle, Some(&Device::new().refresh(&c))).await),
        "signature does not verify"
    );
    assert_eq!(
        invalid(h.dbsc.refresh(&s.handle, Some(&device.registration(&c))).await),
        "a refresh proof must not carry a jwk"
    );
    h.clock.advance_secs(301);
    assert!(matches!(
        h.dbsc.refresh(&s.handle, Some(&device.refresh(&c))).await,
        Err(DbscError::ChallengeNeeded(_))
    ));
    // DB-08: a challenge pushed early is accepted without a 403 round trip.
    let early = h.dbsc.refresh_challenge(&s.handle);
    h.dbsc
        .refresh(&s.handle, Some(&device.refresh(&early)))
        .await
        .unwrap();
}

#[tokio::test]
async fn db_13_a_challenge_of_session_a_fails_for_session_b() {
    let h = setup();
    let (da, db) = (Device::new(), Device::new());
    let (a, _) = h.registered(&da).await;
    let (b, _) = h.registered(&db).await;
    let ca = h.dbsc.refresh_challenge(&a.handle);
    assert_eq!(
        invalid(h.dbsc.refresh(&b.handle, Some(&db.refresh(&ca))).await),
        "the challenge belongs to another session"
    );
}

#[tokio::test]
async fn db_09_bound_sessions_need_their_own_fresh_bound_cookie() {
    let h = setup();
    let (da, db) = (Device::new(), Device::new());
    let (a, ca) = h.registered(&da).await;
    let (_, cb) = h.registered(&db).await;
    let a = h.record(&a.handle).await;
    assert!(h.dbsc.admits(&a, Some(ca.value.as_bytes())));
    assert!(!h.dbsc.admits(&a, None), "the session cookie alone is not enough");
    assert!(
        !h.dbsc.admits(&a, Some(cb.value.as_bytes())),
        "SC-14: B's bound cookie with A's session"
    );
    assert!(!h.dbsc.admits(&a, Some(b"garbage")));
    h.clock.advance_secs(600);
    assert!(!h.dbsc.admits(&a, Some(ca.value.as_bytes())), "expired");
    // DB-14: an unbound session needs no bound cookie.
    let plain = h.login("dave").await;
    assert!(h.dbsc.admits(&plain, None));
}

#[tokio::test]
async fn db_10_db_11_ended_and_unknown_sessions() {
    let h = setup();
    let device = Device::new();
    let (s, _) = h.registered(&device).await;
    assert!(matches!(
        h.dbsc.refresh("ses_unknown", None).await,
        Err(DbscError::UnknownSession)
    ));
    let plain = h.login("bob").await;
    assert!(
        matches!(
            h.dbsc.refresh(&plain.handle, None).await,
            Err(DbscError::UnknownSession)
        ),
        "an unbound session is no DBSC session"
    );
    let c = h.dbsc.refresh_challenge(&s.handle);
    h.sessions
        .revoke(&s.handle, crate::model::RevokeReason::Logout)
        .await
        .unwrap();
    assert!(matches!(
        h.dbsc.refresh(&s.handle, Some(&device.refresh(&c))).await,
        Err(DbscError::Ended)
    ));
}

#[tokio::test]
async fn required_level_needs_a_bound_session() {
    let h = setup();
    let plain = h.login("bob").await;
    assert!(h.dbsc.may_elevate_to(&plain, 1));
    assert!(!h.dbsc.may_elevate_to(&plain, 2));
    let (s, _) = h.registered(&Device::new()).await;
    assert!(h.dbsc.may_elevate_to(&*h.record(&s.handle).await, 3));
}

#[tokio::test]
async fn refused_proofs_are_binding_failed_events() {
    use crate::store::{EventQuery, EventStore};
    let h = setup();
    let device = Device::new();
    let (s, _) = h.registered(&device).await;
    let c = h.dbsc.refresh_challenge(&s.handle);
    invalid(h.dbsc.refresh(&s.handle, Some(&Device::new().refresh(&c))).await);
    let other = h.login("bob").await;
    let c = h.dbsc.registration_challenge(&other);
    invalid(h.dbsc.register(&other, &device.refresh(&c)).await);
    let failed = || async {
        h.store
            .events(&EventQuery {
                kind: Some(crate::model::EventKind::BindingFailed),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    let who: Vec<String> = failed().await.into_iter().map(|e| e.event.subject).collect();
    assert_eq!(who, ["alice", "bob"]);
    // A challenge that is merely stale is not a failure of the binding.
    h.clock.advance_secs(400);
    let c = h.dbsc.refresh_challenge(&s.handle);
    h.clock.advance_secs(400);
    let _ = h.dbsc.refresh(&s.handle, Some(&device.refresh(&c))).await;
    assert_eq!(failed().await.len(), 2);
}
