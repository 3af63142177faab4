//! Access-token minting, and the raw Ed25519 verification a resource-server
//! verifier is compared with.
//!
//! `cargo bench -p tessera-core --bench jwt`
#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, Validation};
use tessera_core::SigningAlg;
use tessera_core::access::{AccessClaims, Audience, mint, new_jti};
use tessera_core::keys::ActiveSigner;
use tessera_core::time::{Clock, SystemClock};

fn main() {
    divan::main();
}

fn claims() -> AccessClaims {
    let now = SystemClock.now().unix_secs();
    AccessClaims {
        iss: "https://auth.example.com".into(),
        sub: "user-4f1c2a".into(),
        aud: Audience::one("tessera"),
        exp: now + 3600,
        iat: now,
        nbf: None,
        jti: new_jti(),
        client_id: "default".into(),
        sid: Some("ses_Qx3m9ZtN0bVv1yLk2pWc8A".into()),
        scope: Some("read write".into()),
        auth_time: Some(now - 30),
        acr: Some("2".into()),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        cnf: None,
        act: None,
    }
}

fn signer(alg: SigningAlg) -> ActiveSigner {
    ActiveSigner::generate(alg).expect("key generation")
}

/// `access::mint` with a key parsed once (the service's path).
#[divan::bench(args = [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256])]
fn mint_at_jwt(bencher: divan::Bencher, alg: SigningAlg) {
    let s = signer(alg);
    let c = claims();
    bencher.bench_local(|| mint(divan::black_box(&s), divan::black_box(&c)).expect("mint"));
}

/// The same through `jsonwebtoken::encode`, which re-parses the DER key on
/// every call: why `ActiveSigner` keeps a parsed key pair.
#[divan::bench]
fn mint_eddsa_via_jsonwebtoken_encode(bencher: divan::Bencher) {
    let s = signer(SigningAlg::EdDSA);
    let c = claims();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some(s.kid.clone());
    bencher.bench_local(|| jsonwebtoken::encode(&h, divan::black_box(&c), &s.key).expect("encode"));
}

/// The signing input, signature and public key of one EdDSA access token.
fn eddsa_parts() -> (String, Vec<u8>, Vec<u8>, ActiveSigner) {
    let s = signer(SigningAlg::EdDSA);
    let token = mint(&s, &claims()).expect("mint");
    let (input, sig) = token.rsplit_once('.').expect("three segments");
    let sig = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    let jwk = s.public_jwk_json();
    let x = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().expect("x"))
        .expect("b64");
    (input.to_owned(), sig, x, s)
}

/// Baseline: one raw aws-lc-rs Ed25519 verification of an access token's
/// signing input (no base64, no JSON, no claim checks).
#[divan::bench]
fn verify_eddsa_raw_aws_lc(bencher: divan::Bencher) {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    let (input, sig, x, _) = eddsa_parts();
    let key = UnparsedPublicKey::new(&ED25519, x);
    bencher.bench_local(|| {
        key.verify(divan::black_box(input.as_bytes()), divan::black_box(&sig))
            .expect("valid")
    });
}

/// For comparison: a full `jsonwebtoken::decode` (base64, JSON, signature,
/// exp/iss/aud) of the same token.
#[divan::bench]
fn verify_eddsa_jsonwebtoken_decode(bencher: divan::Bencher) {
    let (input, sig, _, s) = eddsa_parts();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let key = DecodingKey::from_jwk(s.public_jwk()).expect("jwk");
    let mut v = Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["tessera"]);
    v.set_issuer(&["https://auth.example.com"]);
    bencher.bench_local(|| {
        jsonwebtoken::decode::<AccessClaims>(divan::black_box(&token), &key, &v).expect("valid")
    });
}
