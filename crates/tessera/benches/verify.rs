//! Access-token verification throughput (`tessera::resource`).
//!
//! ```text
//! cargo bench -p tessera --no-default-features --features resource --bench verify
//! ```
//!
//! - `raw_aws_lc_ed25519`: the floor — `UnparsedPublicKey::verify` of the
//!   same signing input and signature, nothing else.
//! - `first_sight_eddsa`: `Verifier::verify_sync` with the cache disabled:
//!   form checks, header, key lookup, signature, claims, revocation.
//! - `first_sight_fresh_token`: cache enabled, a new token every iteration
//!   (includes the cache insert).
//! - `jsonwebtoken_decode_eddsa`: `jsonwebtoken::decode` with an equivalent
//!   `Validation`, for reference (the alternative we did not choose).
//! - `cached`: the same token again and again (a cache hit re-checking
//!   expiry and revocation), on 1 and 2 threads.
//! - `raw_aws_lc_ed25519_twice`: the DPoP floor — two raw verifications
//!   (the token's signature and a proof's), nothing else.
//! - `dpop_request_first_sight`: one DPoP-protected request as the axum
//!   extractor checks it, `Verifier::verify_request`: a DPoP-bound EdDSA
//!   token seen for the first time (cache disabled) and a fresh Ed25519
//!   proof (signed outside the timed part), its `jti` recorded in the
//!   default 1 000 000-entry replay cache (never full here).
//! - `dpop_request_cached_token`: the same with the token already cached,
//!   so only the proof is verified: a client's second request.
//!
//! After divan's table, an interleaved A/B run prints the ratios
//! first-sight / raw throughput (goal ≥ 0.95), DPoP request / two raw
//! verifications (goal ≥ 0.9) and the cached rate per core.
#![forbid(unsafe_code)]

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use divan::Bencher;
use serde_json::json;
use tessera::resource::{ProofHeader, ResourceRequest, Scheme, Verifier, VerifierConfig};
use tessera_core::dpop::{PublicJwk, jwk_thumbprint};

const ISS: &str = "http://127.0.0.1:8080";
const BASE: &str = "https://api.example.com";
const PATH: &str = "/v1/orders";

struct Fixture {
    kp: Ed25519KeyPair,
    public: Vec<u8>,
    jwks: serde_json::Value,
    token: String,
    now: i64,
    /// The client's DPoP key and its public half.
    dpop_kp: Ed25519KeyPair,
    dpop_public: Vec<u8>,
    /// A token bound to `dpop_kp`.
    dpop_token: String,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fixture() -> Fixture {
    let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let public = kp.public_key().as_ref().to_vec();
    let jwks = json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":URL_SAFE_NO_PAD.encode(&public),"kid":"k-2026-01","alg":"EdDSA","use":"sig"}]});
    let dpop_kp = Ed25519KeyPair::generate().unwrap();
    let dpop_public = dpop_kp.public_key().as_ref().to_vec();
    let mut f = Fixture {
        kp,
        public,
        jwks,
        token: String::new(),
        now: now(),
        dpop_kp,
        dpop_public,
        dpop_token: String::new(),
    };
    f.token = f.token(0);
    let jwk = json!({"kty":"OKP","crv":"Ed25519","x":URL_SAFE_NO_PAD.encode(&f.dpop_public)});
    let jkt = jwk_thumbprint(&PublicJwk::from_json(&jwk.to_string()).unwrap());
    f.dpop_token = f.sign_claims(&f.claims(0, Some(json!({"jkt": jkt}))));
    f
}

/// Runs a future that never waits (no JWKS fetch, an in-memory replay
/// cache) to completion, without a runtime's overhead in the timing.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("verify_request waited"),
    }
}

impl Fixture {
    /// A token like the ones the service mints; `n` varies `jti`.
    fn token(&self, n: u64) -> String {
        self.sign_claims(&self.claims(n, None))
    }

    fn claims(&self, n: u64, cnf: Option<serde_json::Value>) -> serde_json::Value {
        let mut claims = json!({
            "iss": ISS, "sub": "user-42", "aud": "tessera", "exp": self.now + 3600, "iat": self.now,
            "jti": format!("Jt{n:020}"), "client_id": "default",
            "sid": "ses_Qm9vdHN0cmFwLXNlc3Npb24taGFuZGxlLTAwMDAwMDAx", "scope": "read write",
            "auth_time": self.now - 5, "acr": "1", "amr": ["pwd"]
        });
        if let Some(cnf) = cnf {
            claims["cnf"] = cnf;
        }
        claims
    }

    fn sign_claims(&self, claims: &serde_json::Value) -> String {
        let header = json!({"alg":"EdDSA","typ":"at+jwt","kid":"k-2026-01"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        let sig = self.kp.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn verifier(&self, cache_capacity: usize) -> Verifier {
        let mut c = VerifierConfig::new(ISS, "tessera", "http://127.0.0.1:9/jwks".parse().unwrap());
        c.cache_capacity = cache_capacity;
        c.public_base_url = Some(BASE.parse().unwrap());
        Verifier::with_jwks(c, self.jwks.clone()).unwrap()
    }

    /// A fresh proof for `GET BASE/PATH` with `dpop_token`, as a client
    /// signs one per request; `n` varies `jti`.
    fn proof(&self, n: u64) -> String {
        let header = json!({"typ":"dpop+jwt","alg":"EdDSA",
            "jwk":{"kty":"OKP","crv":"Ed25519","x":URL_SAFE_NO_PAD.encode(&self.dpop_public)}});
        let ath = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.dpop_token.as_bytes()).as_ref(),
        );
        let claims = json!({"jti": format!("Pj{n:020}"), "htm": "GET", "htu": format!("{BASE}{PATH}"),
            "iat": now(), "ath": ath});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        let sig = self.dpop_kp.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// The proof's signing input and signature (for the raw floor).
    fn proof_input_and_signature(&self) -> (Vec<u8>, Vec<u8>) {
        let proof = self.proof(0);
        let (input, sig) = proof.rsplit_once('.').unwrap();
        (input.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(sig).unwrap())
    }

    fn signing_input_and_signature(&self) -> (Vec<u8>, Vec<u8>) {
        let (input, sig) = self.token.rsplit_once('.').unwrap();
        (input.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(sig).unwrap())
    }
}

fn main() {
    // `VERIFY_LOOP=raw|first|fresh|cached|raw2|dpop:N` runs just that loop N times and
    // exits: a fixed amount of work for `valgrind --tool=callgrind`, whose
    // instruction counts stay comparable when the machine is busy.
    // `VERIFY_LOOP=ab` runs only the A/B summary.
    if let Ok(spec) = std::env::var("VERIFY_LOOP") {
        fixed_loop(&spec);
        return;
    }
    divan::main();
    // Only on a full run (no name filter given).
    if !std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        ab_summary();
    }
}

#[divan::bench]
fn raw_aws_lc_ed25519(b: Bencher) {
    let f = fixture();
    let (input, sig) = f.signing_input_and_signature();
    b.bench(|| {
        UnparsedPublicKey::new(&ED25519, &f.public)
            .verify(black_box(&input), black_box(&sig))
            .is_ok()
    });
}

#[divan::bench]
fn first_sight_eddsa(b: Bencher) {
    let f = fixture();
    let v = f.verifier(0);
    b.bench(|| v.verify_sync(black_box(&f.token)).is_ok());
}

#[divan::bench]
fn first_sight_fresh_token(b: Bencher) {
    let f = fixture();
    let v = f.verifier(10_000);
    let mut n = 0;
    b.with_inputs(|| {
        n += 1;
        f.token(n)
    })
    .bench_local_refs(|t| v.verify_sync(t).is_ok());
}

#[divan::bench]
fn jsonwebtoken_decode_eddsa(b: Bencher) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let f = fixture();
    let key = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(&f.public)).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&["tessera"]);
    b.bench(|| jsonwebtoken::decode::<serde_json::Value>(black_box(&f.token), &key, &validation).is_ok());
}

#[divan::bench(threads = [1, 2])]
fn cached(b: Bencher) {
    let f = fixture();
    let v = f.verifier(10_000);
    v.verify_sync(&f.token).unwrap();
    b.bench(|| v.verify_sync(black_box(&f.token)).is_ok());
}

/// One DPoP request, exactly as the extractor checks it.
fn dpop_request(v: &Verifier, token: &str, proof: &str) -> bool {
    let request = ResourceRequest {
        scheme: Scheme::Dpop,
        proof: ProofHeader::One(proof),
        method: "GET",
        path: PATH,
        host: None,
        client_cert: None,
    };
    ready(v.verify_request(token, &request)).is_ok()
}

fn raw_twice(f: &Fixture, token: &(Vec<u8>, Vec<u8>), proof: &(Vec<u8>, Vec<u8>)) -> bool {
    UnparsedPublicKey::new(&ED25519, &f.public)
        .verify(black_box(&token.0), black_box(&token.1))
        .is_ok()
        && UnparsedPublicKey::new(&ED25519, &f.dpop_public)
            .verify(black_box(&proof.0), black_box(&proof.1))
            .is_ok()
}

#[divan::bench]
fn raw_aws_lc_ed25519_twice(b: Bencher) {
    let f = fixture();
    let (token, proof) = (f.signing_input_and_signature(), f.proof_input_and_signature());
    b.bench(|| raw_twice(&f, &token, &proof));
}

#[divan::bench]
fn dpop_request_first_sight(b: Bencher) {
    let f = fixture();
    let v = f.verifier(0);
    let mut n = 0;
    b.with_inputs(|| {
        n += 1;
        f.proof(n)
    })
    .bench_local_refs(|p| assert!(dpop_request(&v, &f.dpop_token, p)));
}

#[divan::bench]
fn dpop_request_cached_token(b: Bencher) {
    let f = fixture();
    let v = f.verifier(10_000);
    assert!(dpop_request(&v, &f.dpop_token, &f.proof(0)));
    let mut n = 0;
    b.with_inputs(|| {
        n += 1;
        f.proof(n)
    })
    .bench_local_refs(|p| assert!(dpop_request(&v, &f.dpop_token, p)));
}

/// Interleaved rounds of raw verification and first-sight verification, so
/// both see the same machine load; reports the median ratio.
fn ab_summary() {
    let f = fixture();
    let (input, sig) = f.signing_input_and_signature();
    let v = f.verifier(0);
    assert!(v.verify_sync(&f.token).is_ok());
    const N: u32 = 1_000;
    const ROUNDS: usize = 30;
    let mut ratios = Vec::new();
    let (mut raw_best, mut ours_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..N {
            black_box(
                UnparsedPublicKey::new(&ED25519, &f.public)
                    .verify(black_box(&input), black_box(&sig))
                    .is_ok(),
            );
        }
        let raw = t.elapsed();
        let t = Instant::now();
        for _ in 0..N {
            black_box(v.verify_sync(black_box(&f.token)).is_ok());
        }
        let ours = t.elapsed();
        raw_best = raw_best.min(raw);
        ours_best = ours_best.min(ours);
        ratios.push(raw.as_secs_f64() / ours.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let per_sec = |d: Duration| f64::from(N) / d.as_secs_f64();
    println!();
    println!("A/B (interleaved, {N} verifications × {ROUNDS} rounds, one thread):");
    println!(
        "  raw aws-lc-rs Ed25519 verify : {:>9.0}/s (best round)",
        per_sec(raw_best)
    );
    println!(
        "  Verifier first sight (EdDSA) : {:>9.0}/s (best round)",
        per_sec(ours_best)
    );
    println!(
        "  throughput ratio first-sight/raw: median {:.3}, best-vs-best {:.3} (goal ≥ 0.95)",
        ratios[ratios.len() / 2],
        raw_best.as_secs_f64() / ours_best.as_secs_f64()
    );

    ab_dpop(&f);

    let cached = f.verifier(10_000);
    assert!(cached.verify_sync(&f.token).is_ok());
    const M: u32 = 2_000_000;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..M {
            black_box(cached.verify_sync(black_box(&f.token)).is_ok());
        }
        best = best.min(t.elapsed());
    }
    println!(
        "  Verifier cached hit          : {:>9.0}/s on one thread (goal ≥ 2M/s)",
        per_sec_m(M, best)
    );
}

/// The same for a DPoP request (first sight of the token, fresh proof)
/// against two raw verifications; the proofs of a round are signed before
/// it.
fn ab_dpop(f: &Fixture) {
    let (token, proof) = (f.signing_input_and_signature(), f.proof_input_and_signature());
    let v = f.verifier(0);
    const N: u32 = 1_000;
    const ROUNDS: usize = 30;
    let mut ratios = Vec::new();
    let (mut raw_best, mut ours_best) = (Duration::MAX, Duration::MAX);
    let mut n = 0u64;
    for _ in 0..ROUNDS {
        let proofs: Vec<String> = (0..N)
            .map(|_| {
                n += 1;
                f.proof(n)
            })
            .collect();
        let t = Instant::now();
        for _ in 0..N {
            black_box(raw_twice(f, &token, &proof));
        }
        let raw = t.elapsed();
        let t = Instant::now();
        for p in &proofs {
            assert!(dpop_request(&v, black_box(&f.dpop_token), black_box(p)));
        }
        let ours = t.elapsed();
        raw_best = raw_best.min(raw);
        ours_best = ours_best.min(ours);
        ratios.push(raw.as_secs_f64() / ours.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let per_sec = |d: Duration| f64::from(N) / d.as_secs_f64();
    println!(
        "  2 × raw aws-lc-rs Ed25519     : {:>9.0}/s (best round)",
        per_sec(raw_best)
    );
    println!(
        "  DPoP request (first sight)    : {:>9.0}/s (best round)",
        per_sec(ours_best)
    );
    println!(
        "  throughput ratio DPoP/2×raw: median {:.3}, best-vs-best {:.3} (goal ≥ 0.9)",
        ratios[ratios.len() / 2],
        raw_best.as_secs_f64() / ours_best.as_secs_f64()
    );
}

fn fixed_loop(spec: &str) {
    if spec == "ab" {
        ab_summary();
        return;
    }
    let (what, n) = spec.split_once(':').unwrap_or((spec, "10000"));
    let n: u64 = n.parse().unwrap();
    let f = fixture();
    match what {
        "raw" => {
            let (input, sig) = f.signing_input_and_signature();
            counted_raw(&f.public, &input, &sig, n);
        }
        "first" => counted_verify(&f.verifier(0), std::iter::repeat_n(&f.token, n as usize)),
        "fresh" => {
            let tokens: Vec<String> = (1..=n).map(|i| f.token(i)).collect();
            counted_verify(&f.verifier(10_000), tokens.iter());
        }
        "raw2" => {
            let (token, proof) = (f.signing_input_and_signature(), f.proof_input_and_signature());
            counted_raw_twice(&f, &token, &proof, n);
        }
        "dpop" => {
            let v = f.verifier(0);
            let proofs: Vec<String> = (1..=n).map(|i| f.proof(i)).collect();
            counted_dpop(&v, &f.dpop_token, &proofs);
        }
        "cached" => {
            let v = f.verifier(10_000);
            v.verify_sync(&f.token).unwrap();
            counted_verify(&v, std::iter::repeat_n(&f.token, n as usize));
        }
        other => panic!("VERIFY_LOOP: unknown loop {other}"),
    }
}

// The two loops are separate functions so that callgrind can count only them
// (`--toggle-collect='*counted_*'`); the result is dropped inside, as in the
// timed loops.
#[inline(never)]
fn counted_raw(public: &[u8], input: &[u8], sig: &[u8], n: u64) {
    for _ in 0..n {
        black_box(
            UnparsedPublicKey::new(&ED25519, public)
                .verify(black_box(input), black_box(sig))
                .is_ok(),
        );
    }
}

#[inline(never)]
fn counted_verify<'a>(v: &Verifier, tokens: impl Iterator<Item = &'a String>) {
    for t in tokens {
        assert!(v.verify_sync(black_box(t)).is_ok());
    }
}

#[inline(never)]
fn counted_raw_twice(f: &Fixture, token: &(Vec<u8>, Vec<u8>), proof: &(Vec<u8>, Vec<u8>), n: u64) {
    for _ in 0..n {
        black_box(raw_twice(f, token, proof));
    }
}

#[inline(never)]
fn counted_dpop(v: &Verifier, token: &str, proofs: &[String]) {
    for p in proofs {
        assert!(dpop_request(v, black_box(token), black_box(p)));
    }
}

fn per_sec_m(n: u32, d: Duration) -> f64 {
    f64::from(n) / d.as_secs_f64()
}
