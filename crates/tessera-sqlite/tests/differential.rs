//! Differential test: a long random sequence of operations, run on the
//! reference `MemoryStore` and on `SqliteStore`, must give the same answers
//! and leave the same state. The conformance suite pins each method; this
//! catches the interactions between them (replace + limit + sweep + CAS,
//! refresh rotation and signing-key CAS against the sweeper).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, ApiKeyStore, AuthInfo, CreateOptions, DeviceInfo, EventKind, EventQuery,
    EventStore, MemoryStore, NewEvent, RefreshFamily, RefreshLookup, RefreshStore, Revocation, RevokeReason,
    Rotation, SessionRecord, SessionStore, SigningAlg, SigningKeyRecord, SigningKeyStore, StoreError,
    Timestamp, TokenHash,
};
use tessera_sqlite::{SqliteOptions, SqliteStore};

/// xorshift64*: deterministic, so a failure replays with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn hash(&mut self) -> TokenHash {
        let mut h = [0u8; 32];
        for c in h.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        TokenHash(h)
    }
}

const SUBJECTS: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn err_kind<T>(r: &Result<T, StoreError>) -> Option<&'static str> {
    match r {
        Ok(_) => None,
        Err(StoreError::Duplicate) => Some("duplicate"),
        Err(StoreError::Corrupt(_)) => Some("corrupt"),
        Err(StoreError::Unavailable(_)) => Some("unavailable"),
    }
}

/// Events without ids, with runs of same-time, same-kind, same-subject
/// events sorted by handle: the reference store emits those in hash-map
/// order, which the contract leaves open.
fn canonical(events: Vec<tessera_core::Event>) -> Vec<NewEvent> {
    let mut out: Vec<NewEvent> = events.into_iter().map(|e| e.event).collect();
    let mut i = 0;
    while i < out.len() {
        let mut j = i + 1;
        while j < out.len()
            && (out[j].at, out[j].kind, &out[j].subject, out[j].reason)
                == (out[i].at, out[i].kind, &out[i].subject, out[i].reason)
        {
            j += 1;
        }
        out[i..j].sort_by(|a, b| a.handle.cmp(&b.handle));
        i = j;
    }
    out
}

/// Expired events of one sweep differ in order across subjects too.
fn canonical_sorted_sweeps(events: Vec<tessera_core::Event>) -> Vec<NewEvent> {
    let mut out = canonical(events);
    let mut i = 0;
    while i < out.len() {
        let mut j = i + 1;
        while j < out.len() && out[j].kind == EventKind::Expired && out[i].kind == EventKind::Expired {
            j += 1;
        }
        out[i..j].sort_by(|a, b| (&a.subject, &a.handle).cmp(&(&b.subject, &b.handle)));
        i = j;
    }
    out
}

struct World {
    rng: Rng,
    now: Timestamp,
    handles: Vec<String>,
    mem: MemoryStore,
    sql: SqliteStore,
    next: u64,
    /// Refresh families ever created, oldest first: (id, session handle).
    families: Vec<(String, String)>,
    /// Every refresh token hash ever offered to a store.
    refresh_hashes: Vec<TokenHash>,
}

fn lookup(l: Option<RefreshLookup>) -> Option<(RefreshFamily, u64)> {
    l.map(|l| (RefreshFamily::clone(&l.family), l.generation))
}

impl World {
    fn record(&mut self) -> SessionRecord {
        self.next += 1;
        let now = self.now;
        let idle = 1000 * (30 + self.rng.below(300) as i64);
        let abs = now.plus_secs(60 + self.rng.below(1200) as i64);
        let mut data = Map::new();
        if self.rng.chance(50) {
            data.insert("n".into(), Value::from(self.next));
        }
        SessionRecord {
            handle: format!("ses_{:022}", self.next),
            token_hash: self.rng.hash(),
            subject: SUBJECTS[self.rng.below(4) as usize].into(),
            version: 0,
            created_at: now,
            last_seen_at: now,
            idle_timeout_ms: idle,
            idle_expires_at: now.plus_millis(idle).min(abs),
            absolute_expires_at: abs,
            auth: AuthInfo {
                level: 1 + self.rng.below(3) as u8,
                methods: vec!["pwd".into()],
                time: now,
            },
            device: DeviceInfo {
                user_agent: self.rng.chance(50).then(|| "ua".to_owned()),
                ip: None,
                label: "Unknown device".into(),
            },
            data,
            binding: None,
            revoked: None,
        }
    }

    fn pick(&mut self) -> Option<String> {
        if self.handles.is_empty() {
            return None;
        }
        let i = self.rng.below(self.handles.len() as u64) as usize;
        Some(self.handles[i].clone())
    }

    async fn step(&mut self, step: usize) {
        let ctx = format!("step {step}");
        match self.rng.below(13) {
            0..=2 => {
                let mut r = self.record();
                let mut replace = None;
                if self.rng.chance(30)
                    && let Some(h) = self.pick()
                    && let Some(cur) = self.mem.get(&h).await.unwrap()
                {
                    let v = if self.rng.chance(70) {
                        cur.version
                    } else {
                        cur.version + 1
                    };
                    replace = Some((h, v));
                }
                if self.rng.chance(10)
                    && let Some(h) = self.pick()
                    && let Some(cur) = self.mem.get(&h).await.unwrap()
                {
                    // A duplicate handle or token hash.
                    if self.rng.chance(50) {
                        r.handle = cur.handle.clone();
                    } else {
                        r.token_hash = cur.token_hash;
                    }
                }
                let opts = CreateOptions {
                    replace,
                    max_per_subject: self.rng.chance(60).then(|| 1 + self.rng.below(4) as u32),
                    now: self.now,
                };
                let ev = [NewEvent::new(EventKind::Created, &r, self.now)];
                let a = self.mem.create(&r, &opts, &ev).await;
                let b = self.sql.create(&r, &opts, &ev).await;
                assert_eq!(err_kind(&a), err_kind(&b), "{ctx}: create");
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(a, b, "{ctx}: create outcome");
                    self.handles.push(r.handle);
                }
            }
            3 => {
                let Some(h) = self.pick() else { return };
                let Some(cur) = self.mem.get(&h).await.unwrap() else {
                    return;
                };
                let hash = if self.rng.chance(85) {
                    cur.token_hash
                } else {
                    self.rng.hash()
                };
                let back = self.rng.chance(20);
                let seen = if back { self.now.plus_secs(-100) } else { self.now };
                let idle = seen.plus_millis(cur.idle_timeout_ms).min(cur.absolute_expires_at);
                let a = self.mem.touch(&h, &hash, seen, idle).await.unwrap();
                let b = self.sql.touch(&h, &hash, seen, idle).await.unwrap();
                assert_eq!(a, b, "{ctx}: touch");
            }
            4 | 5 => {
                let Some(h) = self.pick() else { return };
                let Some(cur) = self.mem.get(&h).await.unwrap() else {
                    return;
                };
                let mut next = SessionRecord::clone(&cur);
                next.version += 1;
                let mut events = Vec::new();
                match self.rng.below(4) {
                    0 => {
                        next.token_hash = if self.rng.chance(10)
                            && let Some(o) = self.pick()
                            && let Some(o) = self.mem.get(&o).await.unwrap()
                        {
                            o.token_hash
                        } else {
                            self.rng.hash()
                        };
                        next.auth.level = 3;
                        next.last_seen_at = self.now;
                        events.push(NewEvent::new(EventKind::Elevated, &next, self.now));
                    }
                    1 => {
                        let reason = RevokeReason::ALL[self.rng.below(7) as usize];
                        next.revoked = Some(Revocation { at: self.now, reason });
                        events.push(NewEvent::revoked(&next, reason, self.now));
                    }
                    2 => {
                        next.data.insert("patched".into(), Value::from(step));
                        // An older view of the idle window must not win.
                        next.last_seen_at = cur.created_at;
                        next.idle_expires_at = cur.created_at;
                    }
                    _ => {
                        next.binding = Some(tessera_core::Binding::Mtls {
                            x5t_s256: "thumb".into(),
                        });
                    }
                }
                let expected = if self.rng.chance(85) {
                    cur.version
                } else {
                    cur.version + 3
                };
                let a = self.mem.update(&next, expected, &events).await;
                let b = self.sql.update(&next, expected, &events).await;
                assert_eq!(err_kind(&a), err_kind(&b), "{ctx}: update");
                assert_eq!(a.ok(), b.ok(), "{ctx}: update");
            }
            6 => {
                let subject = SUBJECTS[self.rng.below(4) as usize];
                let except = if self.rng.chance(50) { self.pick() } else { None };
                let reason = RevokeReason::ALL[self.rng.below(7) as usize];
                let mut a = self
                    .mem
                    .revoke_subject(subject, except.as_deref(), reason, self.now)
                    .await
                    .unwrap();
                let mut b = self
                    .sql
                    .revoke_subject(subject, except.as_deref(), reason, self.now)
                    .await
                    .unwrap();
                a.sort();
                b.sort();
                assert_eq!(a, b, "{ctx}: revoke_subject");
            }
            7 => {
                // A batch bigger than the store, so both sweep the same set.
                let a = self.mem.sweep(self.now, 100_000).await.unwrap();
                let b = self.sql.sweep(self.now, 100_000).await.unwrap();
                assert_eq!(a, b, "{ctx}: sweep");
            }
            8 => {
                let id = format!("key_{}", self.rng.below(20));
                if self.rng.chance(50) {
                    let key = ApiKeyRecord {
                        id: id.clone(),
                        name: "k".into(),
                        hash: if self.rng.chance(10) {
                            TokenHash([1; 32])
                        } else {
                            self.rng.hash()
                        },
                        created_at: self.now,
                        revoked_at: None,
                        scopes: vec![ApiKeyScope::Sessions],
                    };
                    let a = self.mem.insert_api_key(&key).await;
                    let b = self.sql.insert_api_key(&key).await;
                    assert_eq!(err_kind(&a), err_kind(&b), "{ctx}: insert_api_key");
                } else {
                    let a = self.mem.revoke_api_key(&id, self.now).await.unwrap();
                    let b = self.sql.revoke_api_key(&id, self.now).await.unwrap();
                    assert_eq!(a, b, "{ctx}: revoke_api_key");
                }
            }
            9 | 10 => self.refresh_step(&ctx).await,
            11 => self.signing_key_step(&ctx).await,
            _ => {
                self.now = self.now.plus_millis(self.rng.below(90_000) as i64);
            }
        }
        if step.is_multiple_of(25) {
            self.compare(&ctx).await;
        }
    }

    /// A refresh hash: usually new, sometimes one already issued.
    fn refresh_hash(&mut self) -> TokenHash {
        if self.rng.chance(10) && !self.refresh_hashes.is_empty() {
            let i = self.rng.below(self.refresh_hashes.len() as u64) as usize;
            return self.refresh_hashes[i];
        }
        let h = self.rng.hash();
        self.refresh_hashes.push(h);
        h
    }

    fn pick_family(&mut self) -> Option<(String, String)> {
        if self.families.is_empty() || self.rng.chance(5) {
            return Some(("rtf_unknown".into(), "ses_unknown".into()));
        }
        // Mostly a recent one: older families have mostly been swept.
        let n = self.families.len() as u64;
        let i = if self.rng.chance(80) {
            n - 1 - self.rng.below(n.min(6))
        } else {
            self.rng.below(n)
        };
        self.families.get(i as usize).cloned()
    }

    async fn refresh_step(&mut self, ctx: &str) {
        let roll = self.rng.below(100);
        if roll < 30 {
            // Families are only created for stored sessions, as the token
            // service does (SQLite ties them to their session).
            // Mostly a recent session: older ones have mostly been swept.
            let n = self.handles.len() as u64;
            if n == 0 {
                return;
            }
            let h = self.handles[(n - 1 - self.rng.below(n.min(6))) as usize].clone();
            let Some(session) = self.mem.get(&h).await.unwrap() else {
                return;
            };
            let id = match self.pick_family() {
                Some((f, _)) if self.rng.chance(10) => f,
                _ => {
                    self.next += 1;
                    format!("rtf_{:022}", self.next)
                }
            };
            let family = RefreshFamily {
                id: id.clone(),
                handle: h.clone(),
                session_token_hash: session.token_hash,
                client_id: "app".into(),
                scope: vec!["openid".into()],
                audience: vec!["tessera".into()],
                generation: 0,
                created_at: self.now,
                rotated_at: self.now,
                current_sealed: None,
                binding: self
                    .rng
                    .chance(30)
                    .then(|| tessera_core::Binding::Dpop { jkt: "j".into() }),
                revoked: None,
            };
            let first = self.refresh_hash();
            let ev = [NewEvent::new(EventKind::Refreshed, &session, self.now)];
            let a = self.mem.create_refresh_family(&family, &first, &ev).await;
            let b = self.sql.create_refresh_family(&family, &first, &ev).await;
            assert_eq!(err_kind(&a), err_kind(&b), "{ctx}: create_refresh_family");
            if a.is_ok() {
                self.families.push((id, h));
            }
        } else if roll < 75 {
            let Some((id, handle)) = self.pick_family() else {
                return;
            };
            let current = self
                .mem
                .refresh_families_of(&handle)
                .await
                .unwrap()
                .iter()
                .find(|f| f.id == id)
                .map_or(0, |f| f.generation);
            let expected = match self.rng.below(10) {
                0 => current + 1,
                1 => current.saturating_sub(1),
                _ => current,
            };
            let successor = self.refresh_hash();
            let sealed = self.rng.next().to_le_bytes();
            let ev = [NewEvent {
                at: self.now,
                kind: EventKind::Refreshed,
                subject: "alice".into(),
                handle: handle.clone(),
                reason: None,
            }];
            let a = self
                .mem
                .rotate_refresh(
                    &Rotation::new(&id, expected, &successor, self.now).sealed(&sealed),
                    &ev,
                )
                .await;
            let b = self
                .sql
                .rotate_refresh(
                    &Rotation::new(&id, expected, &successor, self.now).sealed(&sealed),
                    &ev,
                )
                .await;
            assert_eq!(err_kind(&a), err_kind(&b), "{ctx}: rotate_refresh");
            assert_eq!(a.ok(), b.ok(), "{ctx}: rotate_refresh");
        } else {
            let Some((id, _)) = self.pick_family() else { return };
            let reason = RevokeReason::ALL[self.rng.below(7) as usize];
            let a = self
                .mem
                .revoke_refresh_family(&id, reason, self.now, &[])
                .await
                .unwrap();
            let b = self
                .sql
                .revoke_refresh_family(&id, reason, self.now, &[])
                .await
                .unwrap();
            assert_eq!(a, b, "{ctx}: revoke_refresh_family");
        }
    }

    async fn signing_key_step(&mut self, ctx: &str) {
        let kid = format!("kid-{:02}", self.rng.below(16));
        if self.rng.chance(65) {
            let newest = self
                .mem
                .signing_keys()
                .await
                .unwrap()
                .last()
                .map(|k| k.kid.clone());
            let if_newest = match self.rng.below(10) {
                0 => None,
                1 => Some(format!("kid-{:02}", self.rng.below(16))),
                _ => newest,
            };
            let key = SigningKeyRecord {
                kid,
                alg: SigningAlg::EdDSA,
                created_at: self.now,
                // Ties in activates_at happen: the kid decides those.
                activates_at: self.now.plus_secs(self.rng.below(3) as i64 * 3600),
                private_sealed: self.rng.next().to_le_bytes().to_vec(),
                public_jwk: "{}".into(),
                revoked_at: None,
            };
            let a = self.mem.insert_signing_key(&key, if_newest.as_deref()).await;
            let b = self.sql.insert_signing_key(&key, if_newest.as_deref()).await;
            assert_eq!(err_kind(&a), err_kind(&b), "{ctx}: insert_signing_key");
            assert_eq!(a.ok(), b.ok(), "{ctx}: insert_signing_key");
        } else {
            let a = self.mem.delete_signing_key(&kid).await.unwrap();
            let b = self.sql.delete_signing_key(&kid).await.unwrap();
            assert_eq!(a, b, "{ctx}: delete_signing_key");
        }
    }

    async fn compare(&self, ctx: &str) {
        for h in &self.handles {
            let a = self.mem.get(h).await.unwrap();
            let b = self.sql.get(h).await.unwrap();
            assert_eq!(a, b, "{ctx}: get {h}");
            if let Some(a) = a {
                let b = self.sql.get_by_token(&a.token_hash).await.unwrap();
                assert_eq!(Some(&a), b.as_ref(), "{ctx}: get_by_token {h}");
            }
        }
        for s in SUBJECTS {
            let sorted = |v: Vec<Arc<SessionRecord>>| {
                v.into_iter()
                    .map(|r| (r.handle.clone(), r))
                    .collect::<BTreeMap<_, _>>()
            };
            assert_eq!(
                sorted(self.mem.list_by_subject(s).await.unwrap()),
                sorted(self.sql.list_by_subject(s).await.unwrap()),
                "{ctx}: list_by_subject {s}"
            );
            let q = EventQuery {
                subject: Some(s.into()),
                limit: 100_000,
                ..EventQuery::default()
            };
            assert_eq!(
                canonical_sorted_sweeps(self.mem.events(&q).await.unwrap()),
                canonical_sorted_sweeps(self.sql.events(&q).await.unwrap()),
                "{ctx}: events of {s}"
            );
        }
        for probe in [self.now, self.now.plus_secs(120), self.now.plus_secs(-60)] {
            assert_eq!(
                self.mem.count_active(probe).await.unwrap(),
                self.sql.count_active(probe).await.unwrap(),
                "{ctx}: count_active"
            );
        }
        let all = EventQuery {
            limit: 100_000,
            ..EventQuery::default()
        };
        let (a, b) = (
            self.mem.events(&all).await.unwrap(),
            self.sql.events(&all).await.unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{ctx}: event count");
        assert!(b.windows(2).all(|w| w[0].id < w[1].id), "{ctx}: ids increase");
        assert_eq!(
            canonical_sorted_sweeps(a),
            canonical_sorted_sweeps(b),
            "{ctx}: event log"
        );
        let keys = |mut v: Vec<ApiKeyRecord>| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        assert_eq!(
            keys(self.mem.list_api_keys().await.unwrap()),
            keys(self.sql.list_api_keys().await.unwrap()),
            "{ctx}: api keys"
        );
        for k in self.mem.list_api_keys().await.unwrap() {
            assert_eq!(
                self.sql.api_key_by_hash(&k.hash).await.unwrap(),
                Some(k),
                "{ctx}: key by hash"
            );
        }
        for h in self.handles.iter().chain(self.families.iter().map(|(_, h)| h)) {
            let by_id = |v: Vec<Arc<RefreshFamily>>| {
                v.into_iter()
                    .map(|f| (f.id.clone(), f))
                    .collect::<BTreeMap<_, _>>()
            };
            assert_eq!(
                by_id(self.mem.refresh_families_of(h).await.unwrap()),
                by_id(self.sql.refresh_families_of(h).await.unwrap()),
                "{ctx}: refresh_families_of {h}"
            );
        }
        for h in &self.refresh_hashes {
            assert_eq!(
                lookup(self.mem.find_refresh(h).await.unwrap()),
                lookup(self.sql.find_refresh(h).await.unwrap()),
                "{ctx}: find_refresh"
            );
        }
        assert_eq!(
            self.mem.signing_keys().await.unwrap(),
            self.sql.signing_keys().await.unwrap(),
            "{ctx}: signing keys"
        );
    }
}

#[tokio::test]
async fn sqlite_matches_the_reference_store() {
    for seed in [0x9E37_79B9_7F4A_7C15u64, 42, 7_777_777] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World {
            rng: Rng(seed),
            now: Timestamp::from_unix_secs(1_800_000_000),
            handles: Vec::new(),
            mem: MemoryStore::new(),
            sql: SqliteStore::open(dir.path().join("d.db"), SqliteOptions::default()).unwrap(),
            next: 0,
            families: Vec::new(),
            refresh_hashes: Vec::new(),
        };
        for step in 0..1500 {
            w.step(step).await;
        }
        w.compare("end").await;
    }
}
