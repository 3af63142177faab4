use super::pkcs8::{generate_pkcs8, rsa_pkcs1_from_pkcs8};
use super::*;
use crate::access::{AccessClaims, Audience, KeySource, mint, new_jti};
use crate::memory::MemoryStore;
use crate::model::SigningAlg;
use crate::seal::Sealer;
use crate::store::SigningKeyStore;
use crate::time::{Clock, ManualClock, SystemClock};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

const ISS: &str = "https://issuer.test";
const DAY: i64 = 86_400;

struct Fixture {
    store: Arc<MemoryStore>,
    clock: ManualClock,
    sealer: Arc<Sealer>,
}

impl Fixture {
    fn new() -> Self {
        // Start at the real time so tokens pass jsonwebtoken's `exp` check.
        Fixture {
            store: Arc::new(MemoryStore::new()),
            clock: ManualClock::new(SystemClock.now()),
            sealer: Arc::new(Sealer::new(&Sealer::generate_key())),
        }
    }

    fn manager(&self, alg: SigningAlg) -> KeyManager {
        KeyManager::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            self.sealer.clone(),
            KeyPolicy {
                alg,
                ..KeyPolicy::default()
            },
        )
    }
}

/// Claims valid by the real clock (jsonwebtoken checks `exp` against it).
fn claims() -> AccessClaims {
    let now = SystemClock.now().unix_secs();
    AccessClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: Audience::one("tessera"),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti: new_jti(),
        client_id: "default".into(),
        sid: Some("ses_x".into()),
        scope: Some("read write".into()),
        auth_time: Some(now - 10),
        acr: Some("2".into()),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        cnf: None,
        act: None,
    }
}

/// Verifies `token` the way a resource server does: key by `kid` from
/// the JWKS, algorithm from the key, iss/aud/exp checked.
fn verify(jwks: &Value, token: &str) -> Result<AccessClaims, String> {
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("kid not in JWKS")?;
    let alg: Algorithm = match jwk.common.key_algorithm.ok_or("no alg")? {
        jsonwebtoken::jwk::KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        jsonwebtoken::jwk::KeyAlgorithm::ES256 => Algorithm::ES256,
        jsonwebtoken::jwk::KeyAlgorithm::RS256 => Algorithm::RS256,
        other => return Err(format!("unexpected alg {other:?}")),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(alg);
    v.set_audience(&["tessera"]);
    v.set_issuer(&[ISS]);
    v.leeway = 60;
    decode::<AccessClaims>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

const ALGS: [SigningAlg; 3] = [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256];

#[test]
fn policy_default_is_valid_and_bad_ones_are_refused() {
    let p = KeyPolicy::default();
    p.validate().unwrap();
    assert_eq!(p.rotation_interval_secs, 30 * DAY);
    assert_eq!(p.prepublish_secs, DAY);
    assert_eq!(p.access_token_ttl_secs, 300);
    assert_eq!(p.leeway_secs, 60);
    for bad in [
        KeyPolicy {
            rotation_interval_secs: 0,
            ..p.clone()
        },
        KeyPolicy {
            prepublish_secs: -1,
            ..p.clone()
        },
        KeyPolicy {
            prepublish_secs: 30 * DAY,
            ..p.clone()
        },
        KeyPolicy {
            access_token_ttl_secs: 0,
            ..p.clone()
        },
        KeyPolicy {
            leeway_secs: 61,
            ..p.clone()
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(KeyError::InvalidPolicy(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn jw_14_every_alg_signs_at_jwt_that_verifies_with_its_jwks_key() {
    for alg in ALGS {
        let f = Fixture::new();
        let m = f.manager(alg);
        let kid = m.ensure_key().await.unwrap().expect("first start creates a key");
        let signer = m.signer().unwrap();
        assert_eq!(signer.kid, kid);
        assert_eq!(signer.alg, alg);
        let c = claims();
        let token = mint(&signer, &c).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, jwt_algorithm(alg));
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        // Raw header: exactly typ, alg, kid in that order.
        let raw = URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            format!(r#"{{"typ":"at+jwt","alg":"{}","kid":"{kid}"}}"#, alg.as_str())
        );
        let jwks = m.jwks();
        assert_eq!(kids(&jwks), vec![kid.clone()]);
        assert_eq!(verify(&jwks, &token).unwrap(), c, "{alg:?}");
        // A flipped signature byte fails.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(verify(&jwks, &String::from_utf8(bad).unwrap()).is_err());
        // The jsonwebtoken-form key signs too and verifies with the JWK
        // (RS256: proves the PKCS#8 → PKCS#1 conversion).
        let mut h = jsonwebtoken::Header::new(jwt_algorithm(alg));
        h.kid = Some(kid.clone());
        h.typ = Some("at+jwt".into());
        let via_lib = jsonwebtoken::encode(&h, &c, &signer.key).unwrap();
        assert_eq!(
            verify(&jwks, &via_lib).unwrap(),
            c,
            "{alg:?} via jsonwebtoken::encode"
        );
    }
}

#[tokio::test]
async fn jw_19_jwks_has_public_members_only_and_unique_kids() {
    // One store, keys of all three algorithms (an operator who changed
    // `[keys] alg` twice).
    let f = Fixture::new();
    let mut seen = Vec::new();
    for (i, alg) in ALGS.into_iter().enumerate() {
        let m = f.manager(alg);
        if i == 0 {
            seen.push(m.ensure_key().await.unwrap().unwrap());
        } else {
            seen.push(m.rotate(3600).await.unwrap());
        }
    }
    let m = f.manager(SigningAlg::EdDSA);
    m.reload().await.unwrap();
    let jwks = m.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let mut unique = HashSet::new();
    for k in keys {
        let obj = k.as_object().unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(!obj.contains_key(private), "private member {private} in {k}");
        }
        assert_eq!(k["use"], "sig");
        assert!(
            ["EdDSA", "ES256", "RS256"].contains(&k["alg"].as_str().unwrap()),
            "{k}"
        );
        let kid = k["kid"].as_str().unwrap();
        assert!(unique.insert(kid.to_owned()), "duplicate kid {kid}");
        // kid = RFC 7638 thumbprint of the public key.
        let jwk: Jwk = serde_json::from_value(k.clone()).unwrap();
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), kid);
        let kty = k["kty"].as_str().unwrap();
        let expected: &[&str] = match kty {
            "OKP" => &["kty", "crv", "x", "kid", "alg", "use"],
            "EC" => &["kty", "crv", "x", "y", "kid", "alg", "use"],
            "RSA" => &["kty", "n", "e", "kid", "alg", "use"],
            other => panic!("kty {other}"),
        };
        let mut got: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut want = expected.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{k}");
    }
    seen.sort();
    let mut listed: Vec<String> = unique.into_iter().collect();
    listed.sort();
    assert_eq!(listed, seen);
    // The stored public JWK is the published one.
    for r in f.store.signing_keys().await.unwrap() {
        let stored: Value = serde_json::from_str(&r.public_jwk).unwrap();
        assert!(keys.contains(&stored), "{stored}");
    }
}

#[tokio::test]
async fn jw_20_rotation_schedule_prepublish_switch_retire_prune() {
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    let t0 = f.clock.now();
    let k1 = m.ensure_key().await.unwrap().unwrap();
    assert_eq!(m.ensure_key().await.unwrap(), None, "idempotent");
    assert_eq!(m.rotate_if_due().await.unwrap(), None);

    // Not due one second before rotation_interval - prepublish.
    f.clock.set(t0.plus_secs(29 * DAY - 1));
    assert_eq!(m.rotate_if_due().await.unwrap(), None);
    f.clock.set(t0.plus_secs(29 * DAY));
    let k2 = m.rotate_if_due().await.unwrap().expect("due");
    assert_eq!(m.rotate_if_due().await.unwrap(), None, "one rotation per period");
    let k1_token = mint(&m.signer().unwrap(), &claims()).unwrap();

    // Pre-publication: K2 is in the JWKS a day before it signs.
    assert_eq!(m.signer().unwrap().kid, k1);
    assert_eq!(kids(&m.jwks()), vec![k1.clone(), k2.clone()], "active key first");
    let list = m.list();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].kid.as_str(), list[0].state),
        (k1.as_str(), KeyState::Active)
    );
    assert_eq!(list[0].retires_at, Some(t0.plus_secs(30 * DAY)));
    assert_eq!(
        (list[1].kid.as_str(), list[1].state),
        (k2.as_str(), KeyState::Pending)
    );
    assert_eq!(list[1].activates_at, t0.plus_secs(30 * DAY));
    assert_eq!(list[1].retires_at, None);

    // Switch exactly at activation.
    f.clock.set(t0.plus_secs(30 * DAY).plus_millis(-1));
    assert_eq!(m.signer().unwrap().kid, k1);
    f.clock.set(t0.plus_secs(30 * DAY));
    assert_eq!(m.signer().unwrap().kid, k2);
    let k2_token = mint(&m.signer().unwrap(), &claims()).unwrap();
    let jwks = m.jwks();
    assert_eq!(kids(&jwks), vec![k2.clone(), k1.clone()]);
    verify(&jwks, &k1_token).unwrap();
    verify(&jwks, &k2_token).unwrap();
    assert_eq!(m.list()[0].state, KeyState::Retired);
    assert_eq!(m.list()[1].state, KeyState::Active);

    // The retired key stays published for ttl + leeway after the switch.
    f.clock.set(t0.plus_secs(30 * DAY + 360));
    assert_eq!(kids(&m.jwks()).len(), 2);
    assert!(m.list()[0].published);
    assert_eq!(m.prune().await.unwrap(), Vec::<String>::new());
    f.clock.set(t0.plus_secs(30 * DAY + 360).plus_millis(1));
    let jwks = m.jwks();
    assert_eq!(kids(&jwks), vec![k2.clone()]);
    assert!(verify(&jwks, &k1_token).unwrap_err().contains("kid not in JWKS"));
    assert!(!m.list()[0].published);
    assert_eq!(m.prune().await.unwrap(), vec![k1.clone()]);
    assert_eq!(m.prune().await.unwrap(), Vec::<String>::new());
    let stored: Vec<String> = f
        .store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kid)
        .collect();
    assert_eq!(stored, vec![k2.clone()]);
    assert_eq!(m.list().len(), 1);

    // The next period: due at K2 + 29 d, activating at K2 + 30 d.
    f.clock.set(t0.plus_secs(59 * DAY));
    let k3 = m.rotate_if_due().await.unwrap().unwrap();
    assert_eq!(m.list()[1].kid, k3);
    assert_eq!(m.list()[1].activates_at, t0.plus_secs(60 * DAY));
}

#[tokio::test]
async fn late_rotation_still_prepublishes() {
    // A service that was down past the due date: the new key still
    // waits `prepublish` before signing.
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    let t0 = f.clock.now();
    let k1 = m.ensure_key().await.unwrap().unwrap();
    f.clock.set(t0.plus_secs(45 * DAY));
    m.rotate_if_due().await.unwrap().unwrap();
    assert_eq!(m.list()[1].activates_at, t0.plus_secs(46 * DAY));
    assert_eq!(m.signer().unwrap().kid, k1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jw_20_concurrent_rotate_if_due_adds_exactly_one_key() {
    let f = Fixture::new();
    let t0 = f.clock.now();
    f.manager(SigningAlg::EdDSA).ensure_key().await.unwrap().unwrap();
    f.clock.set(t0.plus_secs(29 * DAY + 5));
    // Eight "processes" (managers) on one store, all due at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let m = f.manager(SigningAlg::EdDSA);
            let b = barrier.clone();
            tokio::spawn(async move {
                m.reload().await.unwrap();
                b.wait().await;
                m.rotate_if_due().await.unwrap()
            })
        })
        .collect();
    let mut added = Vec::new();
    for t in tasks {
        if let Some(kid) = t.await.unwrap() {
            added.push(kid);
        }
    }
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(f.store.signing_keys().await.unwrap().len(), 2);
    // And eight tasks sharing one manager, a period later.
    f.clock.set(t0.plus_secs(59 * DAY + 5));
    let m = Arc::new(f.manager(SigningAlg::EdDSA));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.rotate_if_due().await.unwrap() })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(n, 1);
    assert_eq!(f.store.signing_keys().await.unwrap().len(), 3);
}

#[tokio::test]
async fn second_manager_sees_rotation_after_reload() {
    let f = Fixture::new();
    let a = f.manager(SigningAlg::EdDSA);
    let b = f.manager(SigningAlg::EdDSA);
    let k1 = a.ensure_key().await.unwrap().unwrap();
    assert_eq!(b.ensure_key().await.unwrap(), None, "b loads a's key");
    assert_eq!(b.signer().unwrap().kid, k1);
    f.clock.advance_secs(1);
    let k2 = a.rotate(0).await.unwrap();
    assert_eq!(a.signer().unwrap().kid, k2);
    assert_eq!(
        b.signer().unwrap().kid,
        k1,
        "b's snapshot is unchanged until reload"
    );
    b.reload().await.unwrap();
    assert_eq!(b.signer().unwrap().kid, k2);
    assert_eq!(kids(&b.jwks()), vec![k2.clone(), k1.clone()]);
    // Tokens from either manager verify with the other's JWKS.
    let t = mint(&a.signer().unwrap(), &claims()).unwrap();
    verify(&b.jwks(), &t).unwrap();
}

#[tokio::test]
async fn emergency_rotation_activates_now_even_with_a_pending_key() {
    let f = Fixture::new();
    let m = f.manager(SigningAlg::ES256);
    let t0 = f.clock.now();
    let k1 = m.ensure_key().await.unwrap().unwrap();
    f.clock.set(t0.plus_secs(29 * DAY));
    let pending = m.rotate_if_due().await.unwrap().unwrap();
    f.clock.advance_secs(10);
    let k3 = m.rotate(0).await.unwrap();
    assert_eq!(m.signer().unwrap().kid, k3);
    let states: Vec<(String, KeyState)> = m.list().into_iter().map(|k| (k.kid, k.state)).collect();
    assert_eq!(
        states,
        vec![
            (k1.clone(), KeyState::Retired),
            (k3.clone(), KeyState::Active),
            (pending.clone(), KeyState::Pending)
        ]
    );
    // The pending key still takes over on schedule.
    f.clock.set(t0.plus_secs(30 * DAY));
    assert_eq!(m.signer().unwrap().kid, pending);
    assert!(matches!(m.rotate(-1).await, Err(KeyError::InvalidPolicy(_))));
}

#[tokio::test]
async fn revoked_key_stops_signing_leaves_the_jwks_and_its_tokens_fail() {
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    let other_process = f.manager(SigningAlg::EdDSA);
    let t0 = f.clock.now();
    let compromised = m.ensure_key().await.unwrap().unwrap();
    other_process.reload().await.unwrap();
    let pending = m.rotate(3600).await.unwrap();
    f.clock.advance_secs(5);
    let token = mint(&m.signer().unwrap(), &claims()).unwrap();
    verify(&m.jwks(), &token).unwrap();

    // The signing key is revoked: a fresh key signs at once, the pending
    // key stays pending, and the revoked one is gone from the JWKS.
    let fresh = m.revoke(&compromised).await.unwrap().expect("a replacement");
    assert_ne!(fresh, compromised);
    assert_eq!(m.signer().unwrap().kid, fresh);
    assert_eq!(kids(&m.jwks()), vec![fresh.clone(), pending.clone()]);
    assert!(verify(&m.jwks(), &token).is_err(), "its tokens no longer verify");
    // The service's own verifier forgets it at once too.
    assert!(m.verification_keys().key(&compromised).is_none());
    assert!(m.verification_keys().key(&fresh).is_some());
    // The record stays, without its private part, and `list` shows it.
    let stored = f.store.signing_keys().await.unwrap();
    let rec = stored.iter().find(|r| r.kid == compromised).unwrap();
    assert!(rec.private_sealed.is_empty());
    assert_eq!(rec.revoked_at, Some(t0.plus_secs(5)));
    let listed = m.list();
    let info = listed.iter().find(|k| k.kid == compromised).unwrap();
    assert_eq!(info.state, KeyState::Revoked);
    assert!(!info.published);
    assert_eq!(info.revoked_at, Some(t0.plus_secs(5)));
    assert_eq!(listed.len(), 3);

    // Another process signs with the revoked key until its next reload
    // (the service's key maintenance), then with the fresh one.
    assert_eq!(other_process.signer().unwrap().kid, compromised);
    other_process.reload().await.unwrap();
    assert_eq!(other_process.signer().unwrap().kid, fresh);
    assert!(verify(&other_process.jwks(), &token).is_err());

    // Twice, or an unknown kid: clear errors, nothing changes.
    assert!(matches!(
        m.revoke(&compromised).await,
        Err(KeyError::AlreadyRevoked(_))
    ));
    assert!(matches!(
        m.revoke("no-such-kid").await,
        Err(KeyError::UnknownKey(_))
    ));

    // A key that does not sign (here the pending one) is withdrawn
    // without a replacement; the schedule goes on without it.
    assert_eq!(m.revoke(&pending).await.unwrap(), None);
    assert_eq!(m.signer().unwrap().kid, fresh);
    assert_eq!(kids(&m.jwks()), vec![fresh.clone()]);
    f.clock.set(t0.plus_secs(2 * 3600));
    assert_eq!(
        m.signer().unwrap().kid,
        fresh,
        "the revoked pending key never signs"
    );

    // Revoked records survive pruning and rotation keeps working.
    f.clock.set(t0.plus_secs(40 * DAY));
    let next = m.rotate_if_due().await.unwrap().expect("due");
    f.clock.set(t0.plus_secs(80 * DAY));
    m.prune().await.unwrap();
    let states: Vec<KeyState> = m.list().into_iter().map(|k| k.state).collect();
    assert_eq!(states.iter().filter(|s| **s == KeyState::Revoked).count(), 2);
    assert_eq!(m.signer().unwrap().kid, next);
}

#[tokio::test]
async fn only_revoked_keys_left_means_a_fresh_key_on_start() {
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    let k1 = m.ensure_key().await.unwrap().unwrap();
    f.clock.advance_secs(1);
    // Withdrawn through the store alone (e.g. by an older build's CLI
    // that crashed before adding the replacement).
    assert!(f.store.revoke_signing_key(&k1, f.clock.now()).await.unwrap());
    let fresh = f.manager(SigningAlg::EdDSA);
    let k2 = fresh.ensure_key().await.unwrap().expect("a fresh key");
    assert_ne!(k2, k1);
    assert_eq!(fresh.signer().unwrap().kid, k2);
}

struct Yielding(Arc<MemoryStore>);

#[async_trait::async_trait]
impl SigningKeyStore for Yielding {
    async fn insert_signing_key(
        &self,
        key: &crate::model::SigningKeyRecord,
        if_newest: Option<&str>,
    ) -> crate::store::StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.insert_signing_key(key, if_newest).await
    }
    async fn signing_keys(&self) -> crate::store::StoreResult<Vec<crate::model::SigningKeyRecord>> {
        tokio::task::yield_now().await;
        self.0.signing_keys().await
    }
    async fn delete_signing_key(&self, kid: &str) -> crate::store::StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.delete_signing_key(kid).await
    }
    async fn revoke_signing_key(
        &self,
        kid: &str,
        now: crate::time::Timestamp,
    ) -> crate::store::StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.revoke_signing_key(kid, now).await
    }
}

#[tokio::test]
async fn two_processes_starting_on_only_revoked_keys_add_one_key() {
    let f = Fixture::new();
    let k1 = f.manager(SigningAlg::EdDSA).ensure_key().await.unwrap().unwrap();
    f.clock.advance_secs(1);
    assert!(f.store.revoke_signing_key(&k1, f.clock.now()).await.unwrap());
    // Two processes whose store calls really interleave: every call yields
    // first, as a network round trip would.
    let yielding = Arc::new(Yielding(f.store.clone()));
    let manager = || {
        KeyManager::new(
            yielding.clone(),
            Arc::new(f.clock.clone()),
            f.sealer.clone(),
            KeyPolicy::default(),
        )
    };
    let (a, b) = (manager(), manager());
    let (ra, rb) = tokio::join!(a.ensure_key(), b.ensure_key());
    let added: Vec<String> = [ra.unwrap(), rb.unwrap()].into_iter().flatten().collect();
    assert_eq!(added.len(), 1, "one of the two adds the key: {added:?}");
    let usable: Vec<_> = f
        .store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.revoked_at.is_none())
        .collect();
    assert_eq!(usable.len(), 1);
    assert_eq!(usable[0].kid, added[0]);
    assert_eq!(a.signer().unwrap().kid, added[0]);
    assert_eq!(b.signer().unwrap().kid, added[0]);
}

/// Found by the conformance model check: revoking the signing key in the
/// millisecond it activated must still leave a key that signs at once (the
/// replacement used to step past the revoked key's instant, leaving that
/// millisecond, and on a manual clock all time until it moved, without a
/// signer: every token issuance failed).
#[tokio::test]
async fn revoking_the_signing_key_in_its_first_millisecond_leaves_a_signer() {
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    let t0 = f.clock.now();
    let first = m.ensure_key().await.unwrap().unwrap();
    let fresh = m.revoke(&first).await.unwrap().expect("a replacement");
    assert_eq!(m.signer().unwrap().kid, fresh, "the replacement signs at once");
    assert_eq!(kids(&m.jwks()), vec![fresh.clone()]);
    let info = m.list().into_iter().find(|k| k.kid == fresh).unwrap();
    assert_eq!(info.activates_at, t0);
    // And again: the replacement revoked in its own first millisecond.
    let third = m.revoke(&fresh).await.unwrap().expect("a replacement");
    assert_eq!(m.signer().unwrap().kid, third);
}

#[tokio::test]
async fn rotation_in_the_same_millisecond_steps_past_the_current_key() {
    // Same activation instant would leave the order to the kids; the new
    // key activates a millisecond later instead, and then signs.
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    let t0 = f.clock.now();
    m.ensure_key().await.unwrap().unwrap();
    let k2 = m.rotate(0).await.unwrap();
    assert_eq!(m.list()[1].kid, k2);
    assert_eq!(m.list()[1].activates_at, t0.plus_millis(1));
    f.clock.advance_millis(1);
    assert_eq!(m.signer().unwrap().kid, k2);
}

#[tokio::test]
async fn wrong_encryption_key_is_a_clear_error() {
    let f = Fixture::new();
    let kid = f.manager(SigningAlg::EdDSA).ensure_key().await.unwrap().unwrap();
    let other = KeyManager::new(
        f.store.clone(),
        Arc::new(f.clock.clone()),
        Arc::new(Sealer::new(&Sealer::generate_key())),
        KeyPolicy::default(),
    );
    let err = other.ensure_key().await.unwrap_err();
    assert!(matches!(&err, KeyError::Seal { kid: k } if *k == kid), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot decrypt signing key {kid}: wrong encryption key?")
    );
    assert!(matches!(other.reload().await, Err(KeyError::Seal { .. })));
    assert!(matches!(other.signer(), Err(KeyError::NoActiveKey)));
    assert_eq!(
        f.store.signing_keys().await.unwrap().len(),
        1,
        "no key added over it"
    );
}

#[tokio::test]
async fn no_key_means_no_signer_and_empty_jwks() {
    let f = Fixture::new();
    let m = f.manager(SigningAlg::EdDSA);
    assert!(matches!(m.signer(), Err(KeyError::NoActiveKey)));
    assert_eq!(m.jwks(), serde_json::json!({"keys": []}));
    assert!(m.list().is_empty());
    // rotate_if_due on an empty store acts as first start.
    let kid = m.rotate_if_due().await.unwrap().unwrap();
    assert_eq!(m.signer().unwrap().kid, kid);
}

#[tokio::test]
async fn sealed_private_key_is_bound_to_its_kid() {
    let f = Fixture::new();
    let a = f.manager(SigningAlg::EdDSA);
    a.ensure_key().await.unwrap();
    let mut rec = f.store.signing_keys().await.unwrap().remove(0);
    // Same sealed bytes under another kid: does not open (AAD = kid).
    rec.kid = "other".into();
    rec.activates_at = rec.activates_at.plus_secs(1);
    let newest = f.store.signing_keys().await.unwrap()[0].kid.clone();
    assert!(f.store.insert_signing_key(&rec, Some(&newest)).await.unwrap());
    let b = f.manager(SigningAlg::EdDSA);
    assert!(matches!(b.reload().await, Err(KeyError::Seal { kid }) if kid == "other"));
}

#[test]
fn rsa_pkcs1_extraction_and_garbage() {
    let pkcs8 = generate_pkcs8(SigningAlg::RS256).unwrap();
    let pkcs1 = rsa_pkcs1_from_pkcs8(&pkcs8).unwrap();
    assert!(RsaKeyPair::from_der(pkcs1).is_ok());
    assert!(rsa_pkcs1_from_pkcs8(&[]).is_none());
    assert!(rsa_pkcs1_from_pkcs8(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    let ec = generate_pkcs8(SigningAlg::ES256).unwrap();
    assert!(rsa_pkcs1_from_pkcs8(&ec).is_none(), "not RSA");
    for n in 0..pkcs8.len() {
        let _ = rsa_pkcs1_from_pkcs8(&pkcs8[..n]);
    }
    assert!(matches!(
        ActiveSigner::from_pkcs8("k", SigningAlg::RS256, &ec),
        Err(KeyError::BadKey { .. })
    ));
    assert!(matches!(
        ActiveSigner::from_pkcs8("k", SigningAlg::EdDSA, &pkcs8),
        Err(KeyError::BadKey { .. })
    ));
}

#[test]
fn ed25519_v2_documents_are_accepted_and_normalised() {
    let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let s = ActiveSigner::from_pkcs8("k", SigningAlg::EdDSA, v2.as_ref()).unwrap();
    assert_eq!(s.key.as_bytes().len(), 48, "v1 for jsonwebtoken");
    assert_eq!(s.public_jwk_json()["kid"], "k");
}

#[test]
fn debug_shows_no_key_material() {
    let s = ActiveSigner::generate(SigningAlg::EdDSA).unwrap();
    let dbg = format!("{s:?}");
    assert!(dbg.contains(&s.kid) && !dbg.contains("content"), "{dbg}");
}
