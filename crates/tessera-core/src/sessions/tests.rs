use super::*;
use crate::error::{Error, Result};
use crate::memory::MemoryStore;
use crate::model::{EventKind, RevokeReason};
use crate::secret::{SecretToken, TokenKind};
use crate::store::{EventQuery, EventStore};
use crate::time::ManualClock;
use serde_json::{Value, json};

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

fn setup(policy: SessionPolicy) -> (Sessions, ManualClock, Arc<MemoryStore>) {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new());
    (
        Sessions::new(store.clone(), Arc::new(clock.clone()), policy),
        clock,
        store,
    )
}

fn login(subject: &str) -> CreateSession {
    CreateSession {
        subject: subject.into(),
        ..Default::default()
    }
}

async fn event_count(store: &MemoryStore) -> usize {
    store
        .events(&EventQuery {
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn ex_01_verify_slides_idle_expiry_only_after_touch_interval() {
    let (s, clock, store) = setup(SessionPolicy {
        idle_timeout_secs: 600,
        touch_interval_secs: 60,
        ..Default::default()
    });
    let issued = s.create(login("alice")).await.unwrap();
    let tok = issued.token.expose();
    // Within the touch interval, a verify is a pure read.
    clock.advance_secs(30);
    let v = s.verify(tok).await.unwrap();
    assert_eq!(v.last_seen_at, T0);
    // After it, the idle window is slid and written.
    clock.advance_secs(40);
    let v = s.verify(tok).await.unwrap();
    assert_eq!(v.last_seen_at, T0.plus_secs(70));
    assert_eq!(v.idle_expires_at, T0.plus_secs(670));
    let stored = store.get(&v.handle).await.unwrap().unwrap();
    assert_eq!(stored.idle_expires_at, T0.plus_secs(670));
    // Idle past the window: expired.
    clock.advance_secs(601);
    assert!(matches!(s.verify(tok).await, Err(Error::SessionExpired)));
}

#[tokio::test]
async fn ex_01_short_idle_windows_touch_at_a_quarter_of_the_window() {
    let (s, clock, _) = setup(SessionPolicy {
        touch_interval_secs: 60,
        ..Default::default()
    });
    let mut req = login("bob");
    req.ttl = Some(TtlInput {
        idle_secs: Some(8),
        absolute_secs: None,
    });
    let tok = s.create(req).await.unwrap().token;
    for _ in 0..10 {
        clock.advance_secs(4);
        s.verify(tok.expose()).await.unwrap();
    }
    clock.advance_secs(9);
    assert!(matches!(s.verify(tok.expose()).await, Err(Error::SessionExpired)));
}

#[tokio::test]
async fn ex_02_idle_never_extends_past_absolute() {
    let (s, clock, _) = setup(SessionPolicy::default());
    let mut req = login("carol");
    req.ttl = Some(TtlInput {
        idle_secs: Some(100),
        absolute_secs: Some(250),
    });
    let tok = s.create(req).await.unwrap().token;
    for _ in 0..4 {
        clock.advance_secs(60);
        let v = s.verify(tok.expose()).await.unwrap();
        assert!(v.idle_expires_at <= v.absolute_expires_at);
    }
    clock.advance_secs(10);
    assert!(matches!(s.verify(tok.expose()).await, Err(Error::SessionExpired)));
}

#[tokio::test]
async fn idle_longer_than_absolute_is_capped() {
    let (s, _, _) = setup(SessionPolicy::default());
    let mut req = login("dave");
    req.ttl = Some(TtlInput {
        idle_secs: Some(1000),
        absolute_secs: Some(10),
    });
    let rec = s.create(req).await.unwrap().session;
    assert_eq!(rec.idle_expires_at, rec.absolute_expires_at);
    assert_eq!(rec.idle_timeout_ms, 10_000);
}

#[tokio::test]
async fn failed_verification_writes_nothing() {
    let (s, clock, store) = setup(SessionPolicy::default());
    let tok = s.create(login("erin")).await.unwrap().token;
    let before = event_count(&store).await;
    let fake = SecretToken::generate(TokenKind::Session);
    assert!(matches!(
        s.verify(fake.expose()).await,
        Err(Error::SessionInvalid)
    ));
    assert!(matches!(s.verify("tss_short").await, Err(Error::SessionInvalid)));
    clock.advance_secs(9 * 3600);
    assert!(matches!(s.verify(tok.expose()).await, Err(Error::SessionExpired)));
    assert_eq!(event_count(&store).await, before);
}

#[tokio::test]
async fn validation_rules() {
    let (s, _, store) = setup(SessionPolicy::default());
    let bad: Vec<(CreateSession, &str)> = vec![
        (login(""), "subject"),
        (login(&"x".repeat(257)), "subject"),
        (login("a\0b"), "subject"),
        (login("a\nb"), "subject"),
        (
            CreateSession {
                auth: Some(AuthInput {
                    level: Some(0),
                    methods: vec![],
                }),
                ..login("u")
            },
            "auth.level",
        ),
        (
            CreateSession {
                auth: Some(AuthInput {
                    level: Some(10),
                    methods: vec![],
                }),
                ..login("u")
            },
            "auth.level",
        ),
        (
            CreateSession {
                auth: Some(AuthInput {
                    level: Some(1),
                    methods: vec!["p w d".into()],
                }),
                ..login("u")
            },
            "auth.methods",
        ),
        (
            CreateSession {
                device: Some(DeviceInput {
                    user_agent: None,
                    ip: Some("300.1.1.1".into()),
                }),
                ..login("u")
            },
            "device.ip",
        ),
        (
            CreateSession {
                device: Some(DeviceInput {
                    user_agent: Some("evil\u{0}agent".into()),
                    ip: None,
                }),
                ..login("u")
            },
            "device.user_agent",
        ),
        (
            CreateSession {
                ttl: Some(TtlInput {
                    idle_secs: Some(-5),
                    absolute_secs: None,
                }),
                ..login("u")
            },
            "ttl.idle_secs",
        ),
        (
            CreateSession {
                ttl: Some(TtlInput {
                    idle_secs: None,
                    absolute_secs: Some(i64::MAX),
                }),
                ..login("u")
            },
            "ttl.absolute_secs",
        ),
    ];
    for (req, field) in bad {
        match s.create(req).await {
            Err(Error::Validation { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a validation error on {field}, got {other:?}"),
        }
    }
    let big = json!({ "blob": "x".repeat(20_000) });
    let req = CreateSession {
        data: big.as_object().cloned(),
        ..login("u")
    };
    assert!(matches!(s.create(req).await, Err(Error::DataTooLarge { .. })));
    assert_eq!(event_count(&store).await, 0, "refused creates write nothing");
}

#[tokio::test]
async fn sql_looking_subjects_are_just_strings() {
    let (s, _, _) = setup(SessionPolicy::default());
    let subject = "'; DROP TABLE sessions;--";
    let t = s.create(login(subject)).await.unwrap();
    assert_eq!(s.list(subject).await.unwrap()[0].handle, t.session.handle);
}

#[tokio::test]
async fn user_agent_is_cut_at_a_char_boundary_and_labelled() {
    let (s, _, _) = setup(SessionPolicy::default());
    let ua = format!(
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36 {}",
        "é".repeat(400)
    );
    let req = CreateSession {
        device: Some(DeviceInput {
            user_agent: Some(ua),
            ip: Some("::ffff:10.0.0.1".into()),
        }),
        ..login("u")
    };
    let rec = s.create(req).await.unwrap().session;
    let kept = rec.device.user_agent.as_deref().unwrap();
    assert!(kept.len() <= MAX_USER_AGENT_BYTES);
    assert_eq!(rec.device.label, "Chrome on Linux");
}

#[tokio::test]
async fn elevate_merges_methods_and_stamps_auth_time() {
    let (s, clock, _) = setup(SessionPolicy::default());
    let req = CreateSession {
        auth: Some(AuthInput {
            level: Some(1),
            methods: vec!["pwd".into()],
        }),
        ..login("u")
    };
    let first = s.create(req).await.unwrap();
    clock.advance_secs(5);
    let up = s
        .elevate(
            first.token.expose(),
            AuthInput {
                level: Some(2),
                methods: vec!["otp".into(), "pwd".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(up.session.handle, first.session.handle);
    assert_eq!(up.session.auth.level, 2);
    assert_eq!(up.session.auth.methods, vec!["pwd", "otp"]);
    assert_eq!(up.session.auth.time, T0.plus_secs(5));
    assert_ne!(up.token.expose(), first.token.expose());
    assert!(matches!(
        s.verify(first.token.expose()).await,
        Err(Error::SessionInvalid)
    ));
    s.verify(up.token.expose()).await.unwrap();
}

#[tokio::test]
async fn logout_is_idempotent_and_unknown_tokens_are_refused() {
    let (s, _, _) = setup(SessionPolicy::default());
    let t = s.create(login("u")).await.unwrap().token;
    s.revoke_token(t.expose(), RevokeReason::Logout).await.unwrap();
    s.revoke_token(t.expose(), RevokeReason::Logout).await.unwrap();
    assert!(matches!(s.verify(t.expose()).await, Err(Error::SessionRevoked)));
    let unknown = SecretToken::generate(TokenKind::Session);
    assert!(matches!(
        s.revoke_token(unknown.expose(), RevokeReason::Logout).await,
        Err(Error::SessionInvalid)
    ));
}

/// FX-01 on a shared browser: alice's session presented as the previous
/// one at bob's login is ended in the same step, but none of its data
/// reaches bob; a re-login of the same subject still carries it over.
#[tokio::test]
async fn login_of_another_subject_revokes_previous_and_drops_its_data() {
    let (s, _, store) = setup(SessionPolicy::default());
    let alice = s
        .create(CreateSession {
            data: json!({"role": "admin", "cart": [1]}).as_object().cloned(),
            ..login("alice")
        })
        .await
        .unwrap();
    let bob = s
        .create(CreateSession {
            previous_session_token: Some(alice.token.expose().to_owned()),
            data: json!({"lang": "de"}).as_object().cloned(),
            ..login("bob")
        })
        .await
        .unwrap();
    assert_eq!(
        Value::Object(bob.session.data.clone()),
        json!({"lang": "de"}),
        "bob gets only his own request's data"
    );
    let stored = store.get(&bob.session.handle).await.unwrap().unwrap();
    assert_eq!(Value::Object(stored.data.clone()), json!({"lang": "de"}));
    assert!(matches!(
        s.verify(alice.token.expose()).await,
        Err(Error::SessionRevoked)
    ));
    let prev = store.get(&alice.session.handle).await.unwrap().unwrap();
    assert_eq!(prev.revoked.map(|r| r.reason), Some(RevokeReason::Replaced));

    let again = s
        .create(CreateSession {
            previous_session_token: Some(bob.token.expose().to_owned()),
            ..login("bob")
        })
        .await
        .unwrap();
    assert_eq!(
        Value::Object(again.session.data.clone()),
        json!({"lang": "de"}),
        "the same subject's data is carried over"
    );
}

#[tokio::test]
async fn patch_data_is_a_merge_patch_and_bounded() {
    let (s, _, _) = setup(SessionPolicy {
        max_data_bytes: 64,
        ..Default::default()
    });
    let req = CreateSession {
        data: json!({"a": 1, "b": {"c": 2, "d": 3}}).as_object().cloned(),
        ..login("u")
    };
    let h = s.create(req).await.unwrap().session.handle.clone();
    let r = s
        .patch_data(&h, &json!({"a": null, "b": {"c": 9}, "e": [1]}))
        .await
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(r.data.clone()),
        json!({"b": {"c": 9, "d": 3}, "e": [1]})
    );
    assert!(matches!(
        s.patch_data(&h, &json!([1])).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        s.patch_data(&h, &json!({"big": "y".repeat(100)})).await,
        Err(Error::DataTooLarge { .. })
    ));
    assert!(matches!(
        s.patch_data("ses_nope", &json!({})).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn ex_08_revoke_all_refuses_a_malformed_except() {
    let (s, _, _) = setup(SessionPolicy::default());
    let kept = s.create(login("u")).await.unwrap();
    for bad in ["", "ses_typo", "tss_x"] {
        assert!(matches!(
            s.revoke_all("u", Some(bad), RevokeReason::RevokeAll).await,
            Err(Error::Validation { field: "except", .. })
        ));
    }
    s.verify(kept.token.expose()).await.unwrap();
}

#[tokio::test]
async fn sweep_removes_expired_in_batches_and_records_expiry() {
    let (s, clock, store) = setup(SessionPolicy::default());
    for i in 0..25 {
        s.create(login(&format!("u{i}"))).await.unwrap();
    }
    clock.advance_secs(9 * 3600);
    assert_eq!(s.sweep(10).await.unwrap(), 25);
    assert_eq!(store.count_active(clock.now()).await.unwrap(), 0);
    let q = EventQuery {
        kind: Some(EventKind::Expired),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.events(&q).await.unwrap().len(), 25);
}

#[test]
fn policy_validation() {
    assert!(SessionPolicy::default().validate().is_ok());
    let bad = [
        SessionPolicy {
            idle_timeout_secs: 0,
            ..Default::default()
        },
        SessionPolicy {
            max_sessions_per_subject: Some(0),
            ..Default::default()
        },
        SessionPolicy {
            absolute_timeout_secs: 10,
            max_absolute_timeout_secs: 5,
            ..Default::default()
        },
        SessionPolicy {
            max_auth_level: 0,
            ..Default::default()
        },
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
    }
}

#[test]
fn merge_patch_follows_rfc_7396_examples() {
    // RFC 7396 Appendix A, a selection.
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        ),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        ),
    ];
    for (mut target, patch, want) in cases {
        merge_patch(&mut target, &patch);
        assert_eq!(target, want);
    }
}

/// Model-based property test of the session state machine: random
/// sequences of create / verify / elevate / revoke / revoke-all / clock moves
/// / sweeps, checked step by step against a plain model of SPEC §1.
mod state_machine {
    use super::*;
    use proptest::prelude::*;

    const MAX_PER_SUBJECT: u32 = 3;
    const TOUCH_SECS: i64 = 60;

    #[derive(Debug, Clone)]
    enum Op {
        Create { subject: u8, idle: i64, abs: i64 },
        Verify(usize),
        Elevate(usize),
        Logout(usize),
        RevokeAll(u8),
        Advance(i64),
        Sweep,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..3, 1i64..400, 1i64..1200).prop_map(|(subject, idle, abs)| Op::Create { subject, idle, abs }),
            5 => any::<usize>().prop_map(Op::Verify),
            2 => any::<usize>().prop_map(Op::Elevate),
            1 => any::<usize>().prop_map(Op::Logout),
            1 => (0u8..3).prop_map(Op::RevokeAll),
            3 => (0i64..300).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
        ]
    }

    #[derive(Debug, Clone)]
    struct ModelSession {
        subject: u8,
        created_ms: i64,
        handle: String,
        last_seen_ms: i64,
        idle_ms: i64,
        idle_exp_ms: i64,
        abs_exp_ms: i64,
        revoked: bool,
        current: String,
        deleted: bool,
    }

    impl ModelSession {
        fn expired(&self, now: i64) -> bool {
            now >= self.idle_exp_ms.min(self.abs_exp_ms)
        }
        fn active(&self, now: i64) -> bool {
            !self.revoked && !self.deleted && !self.expired(now)
        }
    }

    #[derive(Debug, PartialEq)]
    enum Outcome {
        Ok,
        Invalid,
        Expired,
        Revoked,
    }

    fn outcome<T>(r: &Result<T>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(Error::SessionInvalid) => Outcome::Invalid,
            Err(Error::SessionExpired) => Outcome::Expired,
            Err(Error::SessionRevoked) => Outcome::Revoked,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    /// What presenting `token` should give, per the model.
    fn expect(model: &[ModelSession], token: &str, now: i64) -> (Outcome, Option<usize>) {
        match model.iter().position(|m| m.current == token && !m.deleted) {
            None => (Outcome::Invalid, None),
            Some(i) if model[i].revoked => (Outcome::Revoked, Some(i)),
            Some(i) if model[i].expired(now) => (Outcome::Expired, Some(i)),
            Some(i) => (Outcome::Ok, Some(i)),
        }
    }

    fn slide(m: &mut ModelSession, now: i64) {
        if now - m.last_seen_ms >= (TOUCH_SECS * 1000).min(m.idle_ms / 4) {
            m.last_seen_ms = now;
            m.idle_exp_ms = m.idle_exp_ms.max((now + m.idle_ms).min(m.abs_exp_ms));
        }
    }

    async fn run(ops: Vec<Op>) {
        let (s, clock, store) = setup(SessionPolicy {
            touch_interval_secs: TOUCH_SECS,
            max_sessions_per_subject: Some(MAX_PER_SUBJECT),
            ..Default::default()
        });
        let mut model: Vec<ModelSession> = Vec::new();
        // Every token ever issued, so old ones get presented too.
        let mut tokens: Vec<String> = Vec::new();
        for op in ops {
            let now = clock.now().unix_millis();
            match op {
                Op::Create { subject, idle, abs } => {
                    let req = CreateSession {
                        subject: format!("s{subject}"),
                        ttl: Some(TtlInput {
                            idle_secs: Some(idle),
                            absolute_secs: Some(abs),
                        }),
                        ..Default::default()
                    };
                    let got = s.create(req).await.unwrap();
                    let idle_ms = idle.min(abs) * 1000;
                    model.push(ModelSession {
                        subject,
                        created_ms: now,
                        handle: got.session.handle.clone(),
                        last_seen_ms: now,
                        idle_ms,
                        idle_exp_ms: now + idle_ms,
                        abs_exp_ms: now + abs * 1000,
                        revoked: false,
                        current: got.token.expose().to_owned(),
                        deleted: false,
                    });
                    // The limit: the oldest active ones beyond it are revoked,
                    // never the session just created.
                    let new_idx = model.len() - 1;
                    let n_active = (0..model.len())
                        .filter(|&i| model[i].subject == subject && model[i].active(now))
                        .count();
                    let mut active: Vec<usize> = (0..new_idx)
                        .filter(|&i| model[i].subject == subject && model[i].active(now))
                        .collect();
                    active.sort_by(|&a, &b| {
                        (model[a].created_ms, &model[a].handle).cmp(&(model[b].created_ms, &model[b].handle))
                    });
                    let excess = n_active.saturating_sub(MAX_PER_SUBJECT as usize);
                    for &i in active.iter().take(excess) {
                        model[i].revoked = true;
                    }
                    tokens.push(got.token.expose().to_owned());
                }
                Op::Verify(i) if !tokens.is_empty() => {
                    let t = &tokens[i % tokens.len()];
                    let (want, idx) = expect(&model, t, now);
                    let got = s.verify(t).await;
                    assert_eq!(outcome(&got), want, "verify");
                    if let (Ok(rec), Some(idx)) = (got, idx) {
                        slide(&mut model[idx], now);
                        assert_eq!(rec.last_seen_at.unix_millis(), model[idx].last_seen_ms);
                        assert_eq!(rec.idle_expires_at.unix_millis(), model[idx].idle_exp_ms);
                    }
                }
                Op::Elevate(i) if !tokens.is_empty() => {
                    let t = tokens[i % tokens.len()].clone();
                    let (want, idx) = expect(&model, &t, now);
                    let got = s
                        .elevate(
                            &t,
                            AuthInput {
                                level: Some(2),
                                methods: vec!["otp".into()],
                            },
                        )
                        .await;
                    assert_eq!(outcome(&got), want, "elevate");
                    if let (Ok(issued), Some(idx)) = (got, idx) {
                        let m = &mut model[idx];
                        assert_eq!(issued.session.handle, m.handle);
                        m.current = issued.token.expose().to_owned();
                        m.last_seen_ms = now;
                        m.idle_exp_ms = m.idle_exp_ms.max((now + m.idle_ms).min(m.abs_exp_ms));
                        tokens.push(m.current.clone());
                    }
                }
                Op::Logout(i) if !tokens.is_empty() => {
                    let t = tokens[i % tokens.len()].clone();
                    let (want, idx) = expect(&model, &t, now);
                    let got = s.revoke_token(&t, RevokeReason::Logout).await;
                    // Logout of a revoked or expired session succeeds.
                    let want = if want == Outcome::Invalid {
                        Outcome::Invalid
                    } else {
                        Outcome::Ok
                    };
                    assert_eq!(outcome(&got), want, "logout");
                    if let Some(idx) = idx {
                        model[idx].revoked = true;
                    }
                }
                Op::RevokeAll(subject) => {
                    let n = s
                        .revoke_all(&format!("s{subject}"), None, RevokeReason::RevokeAll)
                        .await
                        .unwrap();
                    let mut want = 0;
                    for m in model.iter_mut().filter(|m| m.subject == subject && m.active(now)) {
                        m.revoked = true;
                        want += 1;
                    }
                    assert_eq!(n, want, "revoke_all count");
                }
                Op::Advance(secs) => clock.advance_secs(secs),
                Op::Sweep => {
                    s.sweep(2).await.unwrap();
                    for m in model.iter_mut().filter(|m| m.expired(now)) {
                        m.deleted = true;
                    }
                }
                _ => {}
            }
            // Invariants after every step.
            let now = clock.now().unix_millis();
            for subject in 0..3u8 {
                let listed = s.list(&format!("s{subject}")).await.unwrap();
                let want = model
                    .iter()
                    .filter(|m| m.subject == subject && m.active(now))
                    .count();
                assert_eq!(listed.len(), want, "active sessions of s{subject}");
                assert!(listed.len() <= MAX_PER_SUBJECT as usize);
            }
            let active = model.iter().filter(|m| m.active(now)).count() as u64;
            assert_eq!(store.count_active(clock.now()).await.unwrap(), active);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn sessions_follow_the_model(ops in proptest::collection::vec(op(), 1..60)) {
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run(ops));
        }
    }
}
