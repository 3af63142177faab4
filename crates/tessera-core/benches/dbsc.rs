//! The DBSC refresh endpoint's own cost per core (issue 13, "Measured"):
//! one `Dbsc::refresh` with a valid ES256 proof over a fresh challenge —
//! session lookup, proof parsing and signature check with the registered
//! key, challenge opening, its single-use record, and a new sealed bound
//! cookie — on the memory store. Proofs are signed outside the timed part
//! (the browser signs them), one per iteration, since a challenge works
//! once.
//!
//! `cargo bench -p tessera-core --bench dbsc`
#![forbid(unsafe_code)]

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;
use tessera_core::b64url;
use tessera_core::dbsc::{Dbsc, DbscPolicy};
use tessera_core::{CreateSession, ManualClock, MemoryStore, Sealer, SessionPolicy, Sessions, Timestamp};

fn main() {
    divan::main();
}

fn run_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("memory-store futures complete on first poll"),
    }
}

struct Device(EcdsaKeyPair);

impl Device {
    fn sign(&self, header: serde_json::Value, jti: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(json!({ "jti": jti }).to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
        format!("{input}.{}", b64url::encode(sig.as_ref()))
    }
}

#[divan::bench(sample_count = 100, sample_size = 200)]
fn refresh_with_a_proof(bencher: divan::Bencher) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let store = Arc::new(MemoryStore::new());
    let sessions = Sessions::new(store.clone(), Arc::new(clock), SessionPolicy::default());
    let dbsc = Dbsc::new(
        sessions.clone(),
        store,
        Arc::new(Sealer::new(&Sealer::generate_key())),
        DbscPolicy::default(),
    );
    let doc =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("key");
    let device =
        Device(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("key"));
    let p = device.0.public_key().as_ref();
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])});
    let session = run_ready(sessions.create(CreateSession {
        subject: "alice".into(),
        ..Default::default()
    }))
    .expect("session")
    .session;
    let c = dbsc.registration_challenge(&session);
    run_ready(dbsc.register(
        &session,
        &device.sign(json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": jwk}), &c),
    ))
    .expect("registered");
    let handle = session.handle.clone();
    bencher
        .with_inputs(|| {
            let c = dbsc.refresh_challenge(&handle);
            device.sign(json!({"alg": "ES256", "typ": "dbsc+jwt"}), &c)
        })
        .bench_refs(|proof| run_ready(dbsc.refresh(&handle, Some(proof))).expect("refreshed"));
}
