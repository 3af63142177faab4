//! The attack catalogue (named after the checklist's JW ids), the cache, the
//! JWKS refetch and the revocation feed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tower::ServiceExt;

use tessera_core::access::{KeySet, KeySetError, KeySource};

use super::*;

const ISS: &str = "https://issuer.example";
const AUD: &str = "tessera";
const NOW: i64 = 1_750_000_000;
const SID: &str = "ses_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64j(v: &Value) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

struct TestKey {
    kid: String,
    alg: &'static str,
    signer: Signer,
    jwk: Value,
    /// Raw public key bytes (Ed25519: 32 bytes), for key-confusion tests.
    public: Vec<u8>,
}

impl TestKey {
    fn ed(kid: &str) -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let public = kp.public_key().as_ref().to_vec();
        let jwk = json!({"kty":"OKP","crv":"Ed25519","x": b64(&public),"kid":kid,"alg":"EdDSA","use":"sig"});
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            signer: Signer::Ed(kp),
            jwk,
            public,
        }
    }

    fn ec(kid: &str, alg: &'static str) -> Self {
        let (signing, crv, n) = match alg {
            "ES256" => (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            _ => (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
        };
        let doc = EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new()).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(signing, doc.as_ref()).unwrap();
        let public = kp.public_key().as_ref().to_vec();
        let (x, y) = public[1..].split_at(n);
        let jwk = json!({"kty":"EC","crv":crv,"x":b64(x),"y":b64(y),"kid":kid,"alg":alg,"use":"sig"});
        Self {
            kid: kid.into(),
            alg,
            signer: Signer::Ec(kp),
            jwk,
            public,
        }
    }

    fn rsa(kid: &str, alg: &'static str) -> Self {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
        let jwk = json!({"kty":"RSA","n":b64(&c.n),"e":b64(&c.e),"kid":kid,"alg":alg,"use":"sig"});
        Self {
            kid: kid.into(),
            alg,
            signer: Signer::Rsa(kp),
            jwk,
            public: c.n,
        }
    }

    /// Signs with this key; for RSA `as_alg` picks the padding.
    fn sign_as(&self, input: &[u8], as_alg: &str) -> Vec<u8> {
        match &self.signer {
            Signer::Ed(kp) => kp.sign(input).as_ref().to_vec(),
            Signer::Ec(kp) => kp.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match as_alg {
                    "PS256" => &aws_lc_rs::signature::RSA_PSS_SHA256,
                    _ => &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(padding, &SystemRandom::new(), input, &mut sig).unwrap();
                sig
            }
        }
    }

    fn header(&self) -> Value {
        json!({"alg": self.alg, "typ": "at+jwt", "kid": self.kid})
    }

    /// A token with this header and these claims, signed by this key.
    fn token(&self, header: &Value, claims: &Value) -> String {
        self.token_raw(
            &serde_json::to_string(header).unwrap(),
            &serde_json::to_string(claims).unwrap(),
        )
    }

    fn token_raw(&self, header: &str, claims: &str) -> String {
        let alg = serde_json::from_str::<Value>(header)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = self.sign_as(input.as_bytes(), &alg);
        format!("{input}.{}", b64(&sig))
    }

    fn good(&self) -> String {
        self.token(&self.header(), &claims())
    }
}

fn claims() -> Value {
    json!({
        "iss": ISS, "sub": "user-1", "aud": AUD, "exp": NOW + 300, "iat": NOW,
        "jti": "jti-0001", "client_id": "default", "sid": SID, "scope": "read write",
        "auth_time": NOW - 10, "acr": "1", "amr": ["pwd"]
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

fn config(clock: Arc<ManualClock>) -> VerifierConfig {
    let mut c = VerifierConfig::new(ISS, AUD, "http://127.0.0.1:9/jwks".parse().unwrap());
    c.clock = clock;
    c
}

fn verifier(keys: &[&TestKey]) -> (Verifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let v = Verifier::with_jwks(config(clock.clone()), jwks(keys)).unwrap();
    (v, clock)
}

fn err(v: &Verifier, token: &str) -> VerifyError {
    match v.verify_sync(token) {
        Ok(_) => panic!("token accepted"),
        Err(e) => e,
    }
}

/// Splits a token into its three segments.
fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    (
        it.next().unwrap().into(),
        it.next().unwrap().into(),
        it.next().unwrap().into(),
    )
}

// ---------------------------------------------------------------- positive

#[test]
fn good_tokens_verify_with_every_algorithm() {
    let ed = TestKey::ed("ed");
    let es = TestKey::ec("es", "ES256");
    let es384 = TestKey::ec("es384", "ES384");
    let rs = TestKey::rsa("rs", "RS256");
    let ps = TestKey::rsa("ps", "PS256");
    let (v, _) = verifier(&[&ed, &es, &es384, &rs, &ps]);
    for key in [&ed, &es, &es384, &rs, &ps] {
        let t = v
            .verify_sync(&key.good())
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg));
        assert_eq!(t.claims.sub, "user-1");
        assert_eq!(t.claims.sid.as_deref(), Some(SID));
        assert_eq!(t.claims.aud, Audience::one(AUD));
        assert_eq!(t.scopes, vec!["read".to_owned(), "write".to_owned()]);
        assert!(t.has_scope("write") && !t.has_scope("admin"));
    }
}

#[test]
fn official_vectors_verify_through_the_key_import() {
    // RFC 7515 A.3 (ES256) and RFC 8037 A.4 (Ed25519): the imported keys
    // verify the published signatures over their signing inputs.
    let set = KeySet::from_jwks(&json!({"keys":[
        {"kty":"EC","crv":"P-256","kid":"a3","alg":"ES256",
         "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty":"OKP","crv":"Ed25519","kid":"a4","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    ]}))
    .unwrap();
    let a3 = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let a4 = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    for (kid, jws) in [("a3", a3), ("a4", a4)] {
        let (input, sig) = jws.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let key = set.key(kid).unwrap();
        assert!(key.verify(input.as_bytes(), &sig), "{kid}");
        assert!(!key.verify(b"other input", &sig), "{kid}");
    }
    // As access tokens both are refused: no typ, no kid.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_300_819_000)));
    let v = Verifier::with_jwks(
        config(clock),
        json!({"keys":[{"kty":"EC","crv":"P-256","kid":"a3","alg":"ES256",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}),
    )
    .unwrap();
    assert_eq!(err(&v, a3), VerifyError::WrongType);
}

// ------------------------------------------------------------- catalogue

#[test]
fn jw_01_alg_none_in_every_spelling() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    // RFC 7519 §6.1, verbatim.
    let rfc = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
    assert_eq!(err(&v, rfc), VerifyError::Malformed);
    for alg in ["none", "None", "NONE", "nOnE", "noNE"] {
        let header = b64j(&json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}));
        let body = b64j(&claims());
        // Unsecured form (empty signature) and with some signature bytes.
        assert_eq!(
            err(&v, &format!("{header}.{body}.")),
            VerifyError::Malformed,
            "{alg}"
        );
        assert_eq!(
            err(&v, &format!("{header}.{body}.AAAA")),
            VerifyError::AlgorithmMismatch,
            "{alg}"
        );
        // Even with a real signature of the right key.
        let t = key.token(&json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}), &claims());
        assert_eq!(err(&v, &t), VerifyError::AlgorithmMismatch, "{alg}");
    }
    // No alg at all, alg null, alg not a string.
    for h in [
        json!({"typ":"at+jwt","kid":"k1"}),
        json!({"alg":null,"typ":"at+jwt","kid":"k1"}),
    ] {
        assert_eq!(err(&v, &key.token(&h, &claims())), VerifyError::AlgorithmMismatch);
    }
    assert_eq!(
        err(
            &v,
            &key.token(&json!({"alg":1,"typ":"at+jwt","kid":"k1"}), &claims())
        ),
        VerifyError::BadHeader
    );
}

#[test]
fn jw_02_alg_comes_from_the_key() {
    let es = TestKey::ec("es", "ES256");
    let ed = TestKey::ed("ed");
    let rs = TestKey::rsa("rs", "RS256");
    let (v, _) = verifier(&[&es, &ed, &rs]);
    // A P-384 key signs ES384 under the ES256 key's kid.
    let p384 = TestKey::ec("es", "ES384");
    assert_eq!(
        err(
            &v,
            &p384.token(&json!({"alg":"ES384","typ":"at+jwt","kid":"es"}), &claims())
        ),
        VerifyError::AlgorithmMismatch
    );
    // Case variants of the right algorithm, with valid signatures.
    for alg in ["es256", "Es256", "ES256 "] {
        assert_eq!(
            err(
                &v,
                &es.token(&json!({"alg":alg,"typ":"at+jwt","kid":"es"}), &claims())
            ),
            VerifyError::AlgorithmMismatch,
            "{alg}"
        );
    }
    for alg in ["eddsa", "EDDSA", "Ed25519", "ES256"] {
        assert_eq!(
            err(
                &v,
                &ed.token(&json!({"alg":alg,"typ":"at+jwt","kid":"ed"}), &claims())
            ),
            VerifyError::AlgorithmMismatch,
            "{alg}"
        );
    }
    // The RS256 key's holder signs PS256: a valid PSS signature by the same
    // key, still refused because the key is RS256 only.
    let ps = rs.token(&json!({"alg":"PS256","typ":"at+jwt","kid":"rs"}), &claims());
    assert_eq!(err(&v, &ps), VerifyError::AlgorithmMismatch);
    assert!(v.verify_sync(&rs.good()).is_ok());
    // An ES256 token claiming the EdDSA key.
    assert_eq!(
        err(
            &v,
            &es.token(&json!({"alg":"ES256","typ":"at+jwt","kid":"ed"}), &claims())
        ),
        VerifyError::AlgorithmMismatch
    );
}

#[test]
fn jw_03_no_mac_with_a_public_key() {
    use aws_lc_rs::hmac;
    let ed = TestKey::ed("ed");
    let es = TestKey::ec("es", "ES256");
    let (v, _) = verifier(&[&ed, &es]);
    let mut der = hex_decode("302a300506032b6570032100");
    der.extend_from_slice(&ed.public);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&der)
    );
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("pem", pem.into_bytes()),
        ("der", der),
        ("raw", ed.public.clone()),
        ("jwk", serde_json::to_vec(&ed.jwk).unwrap()),
        ("es-jwk", serde_json::to_vec(&es.jwk).unwrap()),
        ("es-raw", es.public.clone()),
    ];
    for (name, secret) in secrets {
        for (alg, kid) in [("HS256", "ed"), ("HS256", "es"), ("HS384", "ed"), ("HS512", "es")] {
            let h = b64j(&json!({"alg":alg,"typ":"at+jwt","kid":kid}));
            let input = format!("{h}.{}", b64j(&claims()));
            let algo = match alg {
                "HS256" => hmac::HMAC_SHA256,
                "HS384" => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            let tag = hmac::sign(&hmac::Key::new(algo, &secret), input.as_bytes());
            let t = format!("{input}.{}", b64(tag.as_ref()));
            assert_eq!(err(&v, &t), VerifyError::AlgorithmMismatch, "{name} {alg} {kid}");
        }
    }
    // A symmetric key in the JWKS is never imported, so no HS* token can
    // find a key.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let v2 = Verifier::with_jwks(
        config(clock),
        json!({"keys":[ed.jwk.clone(), {"kty":"oct","k": b64(b"0123456789abcdef0123456789abcdef"),"kid":"hs","alg":"HS256"}]}),
    )
    .unwrap();
    assert_eq!(v2.key_ids(), vec!["ed".to_owned()]);
    let h = b64j(&json!({"alg":"HS256","typ":"at+jwt","kid":"hs"}));
    let input = format!("{h}.{}", b64j(&claims()));
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef"),
        input.as_bytes(),
    );
    assert_eq!(
        err(&v2, &format!("{input}.{}", b64(tag.as_ref()))),
        VerifyError::UnknownKid
    );
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn jw_04_keys_named_by_the_token_are_never_used() {
    let ours = TestKey::ed("ours");
    let attacker = TestKey::ed("attacker");
    // Our JWKS and the attacker's, both counting requests.
    let (our_url, our_hits, _) = jwks_server(jwks(&[&ours])).await;
    let (evil_url, evil_hits, _) = jwks_server(jwks(&[&attacker])).await;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock);
    c.jwks_url = our_url;
    let v = Verifier::new(c).unwrap();
    v.refresh_jwks().await.unwrap();
    let fetched = our_hits.load(Ordering::SeqCst);

    let mut attacker_jwk = attacker.jwk.clone();
    attacker_jwk.as_object_mut().unwrap().remove("kid");
    let headers = [
        json!({"alg":"EdDSA","typ":"at+jwt","jwk": attacker_jwk}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"ours","jwk": attacker_jwk}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"attacker","jku": evil_url.as_str()}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"ours","jku": evil_url.as_str()}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"attacker","x5u": evil_url.as_str()}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"attacker","x5c": ["MIIB"]}),
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"ours","jwk": null}),
    ];
    for h in &headers {
        assert_eq!(
            v.verify(&attacker.token(h, &claims())).await.unwrap_err(),
            VerifyError::UnsupportedHeader,
            "{h}"
        );
    }
    // And with our own key's signature, the header is still refused.
    let h = json!({"alg":"EdDSA","typ":"at+jwt","kid":"ours","jku": evil_url.as_str()});
    assert_eq!(
        v.verify(&ours.token(&h, &claims())).await.unwrap_err(),
        VerifyError::UnsupportedHeader
    );
    // The attacker's own kid without key hints: unknown, after at most the
    // one allowed refetch of OUR JWKS.
    let t = attacker.token(&attacker.header(), &claims());
    assert_eq!(v.verify(&t).await.unwrap_err(), VerifyError::UnknownKid);
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        0,
        "no request to a URL named by a token"
    );
    assert!(our_hits.load(Ordering::SeqCst) <= fetched + 1);
}

#[tokio::test]
async fn jw_05_kid_is_untrusted_input() {
    let key = TestKey::ed("k1");
    let (url, hits, _) = jwks_server(jwks(&[&key])).await;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock);
    c.jwks_url = url;
    c.jwks_min_refetch_interval = Duration::from_secs(3600);
    let v = Verifier::new(c).unwrap();
    v.refresh_jwks().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let long_kid = "k".repeat(300);
    let huge_kid = "A".repeat(10 * 1024);
    let cases = [
        (json!("../../dev/null"), VerifyError::UnknownKid),
        (json!("' OR 1=1--"), VerifyError::UnknownKid),
        (json!("k1\u{0000}"), VerifyError::UnknownKid),
        (json!(long_kid), VerifyError::BadKid),
        (json!("B".repeat(1200)), VerifyError::BadKid),
        (json!("C".repeat(3000)), VerifyError::BadHeader),
        (json!(huge_kid), VerifyError::TooLong),
        (json!(""), VerifyError::BadKid),
        (json!(7), VerifyError::BadHeader),
        (Value::Null, VerifyError::BadKid),
    ];
    for (kid, expected) in cases {
        let t = key.token(&json!({"alg":"EdDSA","typ":"at+jwt","kid": kid}), &claims());
        assert_eq!(
            v.verify(&t).await.unwrap_err(),
            expected,
            "{}",
            &kid.to_string()[..kid.to_string().len().min(40)]
        );
    }
    let t = key.token(&json!({"alg":"EdDSA","typ":"at+jwt"}), &claims());
    assert_eq!(v.verify(&t).await.unwrap_err(), VerifyError::BadKid);
    // The oversized kids never reached a lookup or a fetch; the unknown ones
    // were covered by the (rate-limited) initial fetch.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn jw_06_any_failed_crypto_step_rejects() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let good = key.good();
    v.verify_sync(&good).unwrap();
    let (h, p, s) = parts(&good);
    // One payload character changed.
    for i in [0, p.len() / 2, p.len() - 2] {
        let mut bytes = p.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = format!("{h}.{}.{s}", String::from_utf8(bytes).unwrap());
        assert_eq!(err(&v, &forged), VerifyError::BadSignature, "payload char {i}");
    }
    // One signature byte flipped.
    let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
    for i in [0, 31, 63] {
        sig[i] ^= 0x01;
        assert_eq!(
            err(&v, &format!("{h}.{p}.{}", b64(&sig))),
            VerifyError::BadSignature,
            "sig byte {i}"
        );
        sig[i] ^= 0x01;
    }
    // Non-canonical last character (same bytes, other unused bits).
    let mut s2 = s.clone().into_bytes();
    let last = s2.len() - 1;
    s2[last] = if s2[last] == b'A' { b'B' } else { b'A' };
    assert!(
        v.verify_sync(&format!("{h}.{p}.{}", String::from_utf8(s2).unwrap()))
            .is_err()
    );
    // Truncated or missing signature.
    assert_eq!(
        err(&v, &format!("{h}.{p}.{}", &s[..s.len() - 4])),
        VerifyError::BadSignature
    );
    assert_eq!(err(&v, &format!("{h}.{p}.")), VerifyError::Malformed);
    assert_eq!(err(&v, &format!("{h}.{p}")), VerifyError::Malformed);
    // A header swapped under a valid signature.
    let h2 = b64(br#"{"alg":"EdDSA", "typ":"at+jwt", "kid":"k1"}"#);
    assert_ne!(h2, h);
    assert_eq!(err(&v, &format!("{h2}.{p}.{s}")), VerifyError::BadSignature);
}

#[test]
fn jw_07_only_compact_jws() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let good = key.good();
    let (h, p, s) = parts(&good);
    let json_serialization = json!({"payload": p, "protected": h, "signature": s}).to_string();
    let flattened = json!({"payload": p, "signatures": [{"protected": h, "signature": s}]}).to_string();
    let cases = [
        json_serialization,
        flattened,
        format!("{h}.{p}.{s}.AAAA.BBBB"),
        format!("{h}..{p}.{s}.AAAA"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p} .{s}"),
        format!(" {good}"),
        format!("{good} "),
        format!("{good}\n"),
        format!("{h}.{p}.{s}=="),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}.+{}", &s[1..]),
        format!("{h}.{p}./{}", &s[1..]),
        format!("{h}.{p}.{s}+"),
        format!(".{p}.{s}"),
        format!("{h}.{p}.{s}\u{00e9}"),
        String::new(),
        "..".into(),
    ];
    for t in &cases {
        let e = err(&v, t);
        assert!(matches!(e, VerifyError::Malformed), "{t:?}: {e:?}");
    }
    // A 5-part JWE header is refused before anything else.
    let jwe = format!(
        "{}.AAAA.AAAA.AAAA.AAAA",
        b64j(&json!({"alg":"RSA-OAEP","enc":"A256GCM","kid":"k1"}))
    );
    assert_eq!(err(&v, &jwe), VerifyError::Malformed);
    // Too long, before parsing.
    let long = format!("{h}.{}.{s}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(err(&v, &long), VerifyError::TooLong);
    // JWE members in a 3-part header.
    let t = key.token(
        &json!({"alg":"EdDSA","typ":"at+jwt","kid":"k1","enc":"A256GCM"}),
        &claims(),
    );
    assert_eq!(err(&v, &t), VerifyError::UnsupportedHeader);
    // The header must be a JSON object, without trailing bytes or duplicates
    // (surrounding JSON whitespace is valid JSON and fine).
    for raw in [
        r#"["EdDSA"]"#,
        r#"["EdDSA","at+jwt","k1"]"#,
        r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}x"#,
        r#"{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1","kid":"k2"}"#,
    ] {
        let e = err(&v, &key.token_raw(raw, &claims().to_string()));
        assert!(matches!(e, VerifyError::BadHeader), "{raw}: {e:?}");
    }
}

#[test]
fn jw_08_unknown_crit_rejected() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    for crit in [
        json!(["x-unknown"]),
        json!(["exp"]),
        json!([]),
        json!(["b64"]),
        Value::Null,
    ] {
        let h = json!({"alg":"EdDSA","typ":"at+jwt","kid":"k1","crit": crit, "x-unknown": 1, "b64": true});
        assert_eq!(
            err(&v, &key.token(&h, &claims())),
            VerifyError::CriticalExtension,
            "{crit}"
        );
    }
}

#[test]
fn jw_09_exp_nbf_iat_with_leeway() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let t = |c: Value| key.token(&key.header(), &c);
    assert_eq!(
        err(&v, &t(with(claims(), "exp", json!(NOW - 120)))),
        VerifyError::Expired
    );
    assert_eq!(
        err(&v, &t(with(claims(), "exp", json!(NOW - 60)))),
        VerifyError::Expired
    );
    assert!(
        v.verify_sync(&t(with(claims(), "exp", json!(NOW - 59)))).is_ok(),
        "within the 60 s leeway"
    );
    assert_eq!(
        err(&v, &t(with(claims(), "nbf", json!(NOW + 120)))),
        VerifyError::NotYetValid
    );
    assert!(v.verify_sync(&t(with(claims(), "nbf", json!(NOW + 30)))).is_ok());
    assert_eq!(
        err(&v, &t(with(claims(), "iat", json!(NOW + 120)))),
        VerifyError::NotYetValid
    );
    assert_eq!(err(&v, &t(without(claims(), "exp"))), VerifyError::InvalidClaims);
    // CVE-2026-25537-style type confusion: a string exp is not skipped.
    assert_eq!(
        err(&v, &t(with(claims(), "exp", json!("99999999999")))),
        VerifyError::InvalidClaims
    );
    assert_eq!(
        err(&v, &t(with(claims(), "nbf", json!("99999999999")))),
        VerifyError::InvalidClaims
    );
    assert_eq!(
        err(&v, &t(with(claims(), "exp", json!(1.0e300)))),
        VerifyError::InvalidClaims
    );
    assert_eq!(
        err(&v, &t(with(claims(), "exp", Value::Null))),
        VerifyError::InvalidClaims
    );

    // Leeway is configurable, and capped at 60 s.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock);
    c.leeway_secs = 0;
    let strict = Verifier::with_jwks(c.clone(), jwks(&[&key])).unwrap();
    assert_eq!(
        err(&strict, &t(with(claims(), "exp", json!(NOW)))),
        VerifyError::Expired
    );
    assert!(
        strict
            .verify_sync(&t(with(claims(), "exp", json!(NOW + 1))))
            .is_ok()
    );
    c.leeway_secs = 61;
    assert_eq!(
        Verifier::with_jwks(c, jwks(&[&key])).unwrap_err(),
        ConfigError::LeewayTooLarge(61)
    );
}

#[test]
fn jw_10_audience() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let t = |c: Value| key.token(&key.header(), &c);
    assert_eq!(
        err(&v, &t(with(claims(), "aud", json!("https://other-rs")))),
        VerifyError::WrongAudience
    );
    assert_eq!(
        err(&v, &t(with(claims(), "aud", json!(["https://other-rs"])))),
        VerifyError::WrongAudience
    );
    assert_eq!(
        err(&v, &t(with(claims(), "aud", json!([])))),
        VerifyError::WrongAudience
    );
    assert_eq!(
        err(&v, &t(with(claims(), "aud", json!("Tessera")))),
        VerifyError::WrongAudience
    );
    assert_eq!(err(&v, &t(without(claims(), "aud"))), VerifyError::InvalidClaims);
    assert_eq!(
        err(&v, &t(with(claims(), "aud", json!(5)))),
        VerifyError::InvalidClaims
    );
    let ok = v
        .verify_sync(&t(with(claims(), "aud", json!(["https://other-rs", AUD]))))
        .unwrap();
    assert_eq!(ok.claims.aud.len(), 2);
}

#[test]
fn jw_11_issuer_exact() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let t = |c: Value| key.token(&key.header(), &c);
    for iss in [
        "https://issuer.example/",
        "HTTPS://issuer.example",
        "https://issuer.example.evil",
        "https://issuer.example ",
        "",
    ] {
        assert_eq!(
            err(&v, &t(with(claims(), "iss", json!(iss)))),
            VerifyError::WrongIssuer,
            "{iss:?}"
        );
    }
    assert_eq!(err(&v, &t(without(claims(), "iss"))), VerifyError::InvalidClaims);
    // Configured with a trailing slash, a token without one is refused too.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock);
    c.issuer = format!("{ISS}/");
    let slash = Verifier::with_jwks(c, jwks(&[&key])).unwrap();
    assert_eq!(err(&slash, &key.good()), VerifyError::WrongIssuer);
}

#[test]
fn jw_12_typ_must_be_at_jwt() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let t = |typ: Option<&str>| {
        let mut h = key.header();
        match typ {
            Some(typ) => h["typ"] = json!(typ),
            None => {
                h.as_object_mut().unwrap().remove("typ");
            }
        }
        key.token(&h, &claims())
    };
    for typ in [
        Some("JWT"),
        None,
        Some("dpop+jwt"),
        Some("dbsc+jwt"),
        Some("at+jwt "),
        Some("application/jwt"),
        Some(""),
    ] {
        assert_eq!(err(&v, &t(typ)), VerifyError::WrongType, "{typ:?}");
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"] {
        assert!(v.verify_sync(&t(Some(typ))).is_ok(), "{typ}");
    }
}

#[test]
fn required_claims_and_sender_constraint() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let t = |c: Value| key.token(&key.header(), &c);
    for claim in ["sub", "client_id", "jti", "iat", "iss", "aud", "exp"] {
        assert_eq!(
            err(&v, &t(without(claims(), claim))),
            VerifyError::InvalidClaims,
            "{claim}"
        );
    }
    // No `sid`: a client's own (client_credentials) token, valid until
    // `exp`; an empty one is refused below.
    let client_token = v.verify_sync(&t(without(claims(), "sid"))).unwrap();
    assert_eq!(client_token.claims.sid, None);
    for claim in ["sub", "sid", "client_id", "jti"] {
        assert_eq!(
            err(&v, &t(with(claims(), claim, json!("")))),
            VerifyError::InvalidClaims,
            "{claim}"
        );
    }
    let dup = r#"{"iss":"https://issuer.example","sub":"user-1","sub":"admin","aud":"tessera","exp":1750000300,"iat":1750000000,"jti":"j","client_id":"c","sid":"s"}"#;
    assert_eq!(
        err(&v, &key.token_raw(&key.header().to_string(), dup)),
        VerifyError::InvalidClaims
    );
    assert_eq!(
        err(&v, &key.token_raw(&key.header().to_string(), "[1,2]")),
        VerifyError::InvalidClaims
    );
    // serde would map an array onto the struct positionally: refused.
    let positional = format!(
        r#"["{ISS}","user-1","{AUD}",{},{NOW},null,"j","c","s"]"#,
        NOW + 300
    );
    assert_eq!(
        err(&v, &key.token_raw(&key.header().to_string(), &positional)),
        VerifyError::InvalidClaims
    );
    let bound = with(
        claims(),
        "cnf",
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
    );
    assert_eq!(err(&v, &t(bound)), VerifyError::SenderConstrained);
    // Scope absent → no scopes; extra claims ignored.
    let ok = v
        .verify_sync(&t(with(without(claims(), "scope"), "extra", json!({"x": 1}))))
        .unwrap();
    assert!(ok.scopes.is_empty());
}

#[test]
fn jwks_import_skips_unusable_keys() {
    let ed = TestKey::ed("ed");
    let doc = json!({"keys": [
        ed.jwk,
        {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed","alg":"EdDSA"},
        {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"private"},
        {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","use":"enc"},
        {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"wrongalg","alg":"ES256"},
        {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"p256-as-384","alg":"ES384"},
        {"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"short"},
        {"kty":"RSA","n":"0vx7","e":"AQAB","kid":"rsa-no-alg"},
        {"kty":"XYZ","kid":"weird"},
        "not an object"
    ]});
    let set = KeySet::from_jwks(&doc).unwrap();
    let mut kids: Vec<_> = set.kids().collect();
    kids.sort_unstable();
    assert_eq!(kids, vec!["ed"]);
    assert_eq!(
        KeySet::from_jwks(&json!({"keys": []})).err(),
        Some(KeySetError::NoUsableKeys)
    );
    assert!(matches!(
        KeySet::from_jwks(&json!([])).err(),
        Some(KeySetError::Malformed(_))
    ));
}

#[test]
fn garbage_never_panics() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let good = key.good();
    let alphabet = b"ABCxyz019-_.=+/ {}\"\0\xff";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..20_000 {
        let mut bytes = good.clone().into_bytes();
        let edits = 1 + (next() % 4) as usize;
        for _ in 0..edits {
            let pos = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[pos] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    bytes.remove(pos);
                }
                _ => bytes.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        let s = String::from_utf8_lossy(&bytes);
        if let Ok(t) = v.verify_sync(&s) {
            // Only a no-op edit can pass.
            assert_eq!(t.claims.sub, "user-1", "iteration {i}");
            assert_eq!(s, good, "iteration {i}: an edited token verified");
        }
    }
}

// ------------------------------------------------------------------ cache

#[test]
fn cache_rechecks_expiry_on_every_hit() {
    let key = TestKey::ed("k1");
    let (v, clock) = verifier(&[&key]);
    let t = key.good();
    v.verify_sync(&t).unwrap();
    assert_eq!(v.inner.cache.len(), 1);
    // Remove every key behind the cache's back: from now on only a cache hit
    // can answer for this token.
    *write(&v.inner.keys) = Arc::new(KeySet::default());
    assert!(v.verify_sync(&t).is_ok(), "served from the cache");
    clock.set(Timestamp::from_unix_secs(NOW + 300 + 59));
    assert!(v.verify_sync(&t).is_ok());
    clock.set(Timestamp::from_unix_secs(NOW + 300 + 60));
    assert_eq!(err(&v, &t), VerifyError::Expired);
    // A different token with the same signature is not a hit.
    let (h, p, s) = parts(&t);
    let mut pb = p.into_bytes();
    pb[3] = if pb[3] == b'A' { b'B' } else { b'A' };
    let forged = format!("{h}.{}.{s}", String::from_utf8(pb).unwrap());
    assert_eq!(err(&v, &forged), VerifyError::UnknownKid);
}

#[test]
fn cache_rechecks_revocation_on_every_hit() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let t = key.good();
    let other = key.token(&key.header(), &with(claims(), "sid", json!("ses_other")));
    v.verify_sync(&t).unwrap();
    v.verify_sync(&other).unwrap();
    *write(&v.inner.keys) = Arc::new(KeySet::default());
    assert!(v.verify_sync(&t).is_ok());
    v.insert_revocation(SID, NOW + 3600);
    assert!(v.is_revoked(SID));
    assert_eq!(err(&v, &t), VerifyError::Revoked);
    assert_eq!(err(&v, &t), VerifyError::Revoked);
    assert!(v.verify_sync(&other).is_ok(), "other sessions unaffected");
    // Revoked before first sight: refused too, and not cached.
    let (v2, _) = verifier(&[&key]);
    v2.insert_revocation(SID, NOW + 3600);
    assert_eq!(err(&v2, &t), VerifyError::Revoked);
    assert_eq!(v2.inner.cache.len(), 0);
}

#[test]
fn a_client_token_is_revoked_by_its_clients_feed_entry() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    // A service client's own token: no sid, sub = client_id.
    let client_token = |id: &str| {
        let c = with(
            with(without(claims(), "sid"), "client_id", json!(id)),
            "sub",
            json!(id),
        );
        key.token(&key.header(), &c)
    };
    let (svc, other) = (client_token("svc"), client_token("other"));
    v.verify_sync(&svc).unwrap();
    v.verify_sync(&other).unwrap();
    // A session handle equal to the client id revokes nothing of it.
    v.insert_revocation("svc", NOW + 3600);
    v.verify_sync(&svc).unwrap();
    // `tessera clients revoke svc` puts `client:svc` in the feed: the
    // cached token is refused on its next use, the other client's is not.
    v.insert_revocation("client:svc", NOW + 3600);
    assert_eq!(err(&v, &svc), VerifyError::Revoked);
    v.verify_sync(&other).unwrap();
}

#[test]
fn cache_is_bounded_and_follows_key_removal() {
    let key = TestKey::ed("k1");
    let other = TestKey::ed("k2");
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock.clone());
    c.cache_capacity = 32;
    let v = Verifier::with_jwks(c, jwks(&[&key, &other])).unwrap();
    for i in 0..500 {
        let t = key.token(&key.header(), &with(claims(), "jti", json!(format!("j{i}"))));
        v.verify_sync(&t).unwrap();
        assert!(v.inner.cache.len() <= 32);
    }
    let t = key.good();
    v.verify_sync(&t).unwrap();
    // The issuer withdraws k1: cached tokens signed with it stop verifying.
    install_keys(&v.inner, KeySet::from_jwks(&jwks(&[&other])).unwrap());
    assert_eq!(v.inner.cache.len(), 0);
    assert_eq!(err(&v, &t), VerifyError::UnknownKid);
    // The same kid re-published with other key material: also dropped.
    let t2 = other.good();
    v.verify_sync(&t2).unwrap();
    let mut impostor = TestKey::ed("k2").jwk;
    impostor["kid"] = json!("k2");
    install_keys(&v.inner, KeySet::from_jwks(&json!({"keys": [impostor]})).unwrap());
    assert_eq!(v.inner.cache.len(), 0);
    assert_eq!(err(&v, &t2), VerifyError::BadSignature);
    // Re-installing identical keys keeps the cache.
    let same = TestKey::ed("k3");
    install_keys(&v.inner, KeySet::from_jwks(&jwks(&[&same])).unwrap());
    v.verify_sync(&same.good()).unwrap();
    install_keys(&v.inner, KeySet::from_jwks(&jwks(&[&same])).unwrap());
    assert_eq!(v.inner.cache.len(), 1);
    // Disabled cache.
    let mut c = config(clock);
    c.cache_capacity = 0;
    let v = Verifier::with_jwks(c, jwks(&[&key])).unwrap();
    v.verify_sync(&t).unwrap();
    v.verify_sync(&t).unwrap();
    assert_eq!(v.inner.cache.len(), 0);
}

// --------------------------------------------------------- JWKS refetch

/// A JWKS server on 127.0.0.1:0 that counts requests; the document can be
/// replaced through the returned handle.
async fn jwks_server(doc: Value) -> (Url, Arc<AtomicUsize>, Arc<Mutex<Value>>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let doc = Arc::new(Mutex::new(doc));
    let (h, d) = (hits.clone(), doc.clone());
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let (h, d) = (h.clone(), d.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let body = d.lock().unwrap().clone();
                Json(body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/jwks").parse().unwrap(), hits, doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jw_20_unknown_kid_refetch_is_rate_limited() {
    let old = TestKey::ed("old");
    let new = TestKey::ed("new");
    let (url, hits, doc) = jwks_server(jwks(&[&old])).await;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock);
    c.jwks_url = url;
    c.jwks_min_refetch_interval = Duration::from_millis(500);
    let v = Verifier::new(c).unwrap();

    // The first token fetches the JWKS (lazily).
    v.verify(&old.good()).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // 100 tokens with unknown kids, concurrently: at most one more fetch.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let v = v.clone();
        let t = old.token(
            &json!({"alg":"EdDSA","typ":"at+jwt","kid": format!("unknown-{i}")}),
            &claims(),
        );
        tasks.push(tokio::spawn(async move { v.verify(&t).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err(), VerifyError::UnknownKid);
    }
    assert!(
        hits.load(Ordering::SeqCst) <= 2,
        "{} fetches",
        hits.load(Ordering::SeqCst)
    );

    // Rotation: the issuer publishes a new key; once the interval has
    // passed, the first token with the new kid triggers a refetch and verifies.
    *doc.lock().unwrap() = jwks(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = hits.load(Ordering::SeqCst);
    v.verify(&new.good()).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), before + 1);
    // The old key keeps verifying while published.
    v.clear_cache();
    v.verify(&old.good()).await.unwrap();

    // Another burst, sequential this time, 100 unknown kids: ≤ 1 fetch.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = hits.load(Ordering::SeqCst);
    for i in 0..100 {
        let t = old.token(
            &json!({"alg":"EdDSA","typ":"at+jwt","kid": format!("x{i}")}),
            &claims(),
        );
        assert_eq!(v.verify(&t).await.unwrap_err(), VerifyError::UnknownKid);
    }
    assert!(hits.load(Ordering::SeqCst) <= before + 1);

    // A JWKS server that fails: the keys in hand keep working.
    *doc.lock().unwrap() = json!({"keys": "broken"});
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(v.refresh_jwks().await.is_err());
    v.clear_cache();
    v.verify(&new.good()).await.unwrap();
}

// ------------------------------------------------------ revocation feed

#[derive(Clone, Default)]
struct FakeFeed {
    events: Arc<Mutex<Vec<(u64, String, String)>>>,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// Answer 503 to everything.
    down: Arc<std::sync::atomic::AtomicBool>,
    /// Answer at most this many revocations, with `more` (a paging
    /// service); `None`: everything at once, without `more` (a service
    /// older than paging).
    page: Option<usize>,
    /// While set, requests for a further page (`after`, no `wait`) are held
    /// until it is cleared.
    hold_pages: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeFeed {
    fn revoke(&self, sid: &str, until: &str) {
        let mut events = self.events.lock().unwrap();
        let id = events.len() as u64 + 1;
        events.push((id, sid.to_owned(), until.to_owned()));
    }

    fn paged(page: usize) -> Self {
        Self {
            page: Some(page),
            ..Self::default()
        }
    }
}

async fn feed_server(feed: FakeFeed, api_key: &'static str) -> Url {
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    async fn handler(
        State(feed): State<FakeFeed>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
        key: axum::extract::Extension<&'static str>,
    ) -> Result<Json<Value>, StatusCode> {
        if feed.down.load(Ordering::SeqCst) {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {}", key.0)) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        feed.requests.lock().unwrap().push(q.clone());
        let after: u64 = match q.get("after") {
            Some(a) => a.parse().map_err(|_| StatusCode::BAD_REQUEST)?,
            None => 0,
        };
        if q.contains_key("after") && !q.contains_key("wait") {
            while feed.hold_pages.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let wait: u64 = q.get("wait").map(|w| w.parse().unwrap_or(0)).unwrap_or(0).min(30);
        let deadline = Instant::now() + Duration::from_secs(wait);
        loop {
            let (page, next, more) = {
                let events = feed.events.lock().unwrap();
                let last = events.last().map(|e| e.0).unwrap_or(0);
                let newer: Vec<_> = events.iter().filter(|e| e.0 > after).collect();
                let take = feed.page.unwrap_or(usize::MAX).min(newer.len());
                let more = take < newer.len();
                let next = if more { newer[take - 1].0 } else { last.max(after) };
                let page: Vec<Value> = newer[..take]
                    .iter()
                    .map(|(_, sid, until)| json!({"sid": sid, "revoked_at": "2025-06-15T00:00:00Z", "until": until}))
                    .collect();
                (page, next, more)
            };
            if !page.is_empty() || Instant::now() >= deadline {
                let mut body = json!({"revocations": page, "next": next.to_string()});
                if feed.page.is_some() {
                    body["more"] = json!(more);
                }
                return Ok(Json(body));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let app = Router::new()
        .route("/v1/revocations", get(handler))
        .layer(axum::Extension(api_key))
        .with_state(feed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1/revocations").parse().unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A verifier following `url` with `key`, on a manual clock.
fn fed(key: &TestKey, url: Url, api_key: &str) -> (Verifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock.clone());
    c.revocations_url = Some(url);
    c.api_key = Some(api_key.into());
    (Verifier::with_jwks(c, jwks(&[key])).unwrap(), clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_revocation_applies_within_a_second() {
    let key = TestKey::ed("k1");
    let feed = FakeFeed::default();
    // Revoked before we start: part of the initial snapshot.
    feed.revoke("ses_old", "2099-01-01T00:00:00Z");
    // Long gone: dropped (until in the past).
    feed.revoke("ses_ancient", "2001-01-01T00:00:00Z");
    let url = feed_server(feed.clone(), "tsk_test").await;
    let (v, _) = fed(&key, url, "tsk_test");
    assert!(!v.feed_healthy());
    let task = v.spawn_feed();
    v.feed_synced().await;
    assert!(v.feed_healthy());
    assert!(v.is_revoked("ses_old"));
    assert!(!v.is_revoked("ses_ancient"));
    let old = key.token(&key.header(), &with(claims(), "sid", json!("ses_old")));
    assert_eq!(v.verify(&old).await.unwrap_err(), VerifyError::Revoked);

    let t = key.good();
    v.verify(&t).await.unwrap();
    v.verify(&t).await.unwrap(); // cached
    // Let the follower settle into its long-poll.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let revoked_at = Instant::now();
    feed.revoke(SID, "2099-01-01T00:00:00Z");
    loop {
        match v.verify(&t).await {
            Err(VerifyError::Revoked) => break,
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "still accepted after 1 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(v.feed_healthy());

    // The protocol: first request without `after`, then `after` + `wait=25`.
    let requests = feed.requests.lock().unwrap().clone();
    assert!(!requests[0].contains_key("after"));
    assert!(
        requests[1..]
            .iter()
            .all(|q| q.contains_key("after") && q.get("wait").map(String::as_str) == Some("25"))
    );
    task.abort();
}

/// SPEC §3, fail closed: before the first complete snapshot (every page of
/// it) no token is accepted, and the pages are read one after the other
/// (`after`, no `wait`) before the follower long-polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_refuses_until_every_page_of_the_snapshot_is_read() {
    let key = TestKey::ed("k1");
    let feed = FakeFeed::paged(2);
    for i in 0..5 {
        feed.revoke(&format!("ses_{i}"), "2099-01-01T00:00:00Z");
    }
    feed.hold_pages.store(true, Ordering::SeqCst);
    let url = feed_server(feed.clone(), "tsk_test").await;
    let (v, _) = fed(&key, url, "tsk_test");
    let t = key.good();
    // Not following yet: refused.
    assert_eq!(v.feed_status(), FeedStatus::Syncing);
    assert_eq!(err(&v, &t), VerifyError::RevocationStatusUnavailable);
    let task = v.spawn_feed();
    // The first page is in, the second held: still refused.
    wait_until("the second page requested", || {
        feed.requests.lock().unwrap().len() >= 2
    })
    .await;
    assert!(v.is_revoked("ses_0") && v.is_revoked("ses_1"));
    assert_eq!(v.feed_status(), FeedStatus::Syncing);
    assert_eq!(
        v.verify(&t).await.unwrap_err(),
        VerifyError::RevocationStatusUnavailable
    );
    let app = app(v.clone());
    let (status, _, body) = call(&app, "/me", &[&format!("Bearer {t}")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    feed.hold_pages.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), v.feed_synced())
        .await
        .expect("synced");
    for i in 0..5 {
        assert!(
            v.is_revoked(&format!("ses_{i}")),
            "ses_{i} from page {}",
            i / 2 + 1
        );
    }
    v.verify(&t).await.unwrap();
    assert_eq!(
        call(&app, "/me", &[&format!("Bearer {t}")]).await.0,
        StatusCode::OK
    );
    // First without `after`, then each further page at once (no `wait`),
    // then the long-poll.
    let requests = feed.requests.lock().unwrap().clone();
    assert!(!requests[0].contains_key("after"), "{requests:?}");
    assert_eq!(
        requests[1].get("after").map(String::as_str),
        Some("2"),
        "{requests:?}"
    );
    assert!(!requests[1].contains_key("wait") && !requests[2].contains_key("wait"));
    assert_eq!(requests[2].get("after").map(String::as_str), Some("4"));
    wait_until("the long-poll", || feed.requests.lock().unwrap().len() >= 4).await;
    assert_eq!(
        feed.requests.lock().unwrap()[3].get("wait").map(String::as_str),
        Some("25")
    );
    task.abort();
}

/// A test recorder for the `metrics` facade: counter increments by name
/// and labels.
#[derive(Default, Clone)]
struct Counted(Arc<Mutex<HashMap<String, u64>>>);

struct CountedFn(String, Arc<Mutex<HashMap<String, u64>>>);

impl metrics::CounterFn for CountedFn {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::Recorder for Counted {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        metrics::Counter::from_arc(Arc::new(CountedFn(name, self.0.clone())))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

impl Counted {
    fn get(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// SPEC §3, fail closed (defect: the library kept accepting tokens of
/// revoked sessions while the feed was down): within the staleness bound
/// the last set is used; past it every token is refused with a 503, each
/// refusal counted; once the feed answers again tokens verify again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_fails_closed_once_the_feed_is_stale() {
    let key = TestKey::ed("k1");
    let feed = FakeFeed::default();
    let url = feed_server(feed.clone(), "tsk_test").await;
    let (v, clock) = fed(&key, url, "tsk_test");
    let task = v.spawn_feed();
    v.feed_synced().await;
    let t = key.good();
    v.verify(&t).await.unwrap();

    // The service goes away; a session is revoked meanwhile, unseen.
    feed.down.store(true, Ordering::SeqCst);
    feed.revoke(SID, "2099-01-01T00:00:00Z");
    // Within the bound (75 s by default): the last known set, still accepted.
    clock.advance_secs(70);
    v.verify(&t).await.unwrap();
    assert_eq!(v.feed_status(), FeedStatus::InSync);
    // Past it: refused, 503, and counted.
    clock.advance_secs(10);
    assert_eq!(v.feed_status(), FeedStatus::Stale);
    assert!(!v.feed_healthy());
    let counted = Counted::default();
    let refused = metrics::with_local_recorder(&counted, || v.verify_sync(&t));
    assert_eq!(refused.unwrap_err(), VerifyError::RevocationStatusUnavailable);
    assert_eq!(
        counted.get("tessera_resource_feed_refusals_total{reason=stale}"),
        1
    );
    let (status, _, body) = call(&app(v.clone()), "/me", &[&format!("Bearer {t}")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("temporarily_unavailable"), "{body}");

    // Back: the follower catches up, the revocation applies.
    feed.down.store(false, Ordering::SeqCst);
    wait_until("feed back in sync", || v.feed_healthy()).await;
    assert_eq!(v.verify(&t).await.unwrap_err(), VerifyError::Revoked);
    v.verify(&key.token(&key.header(), &with(claims(), "sid", json!("ses_other"))))
        .await
        .unwrap();
    task.abort();
}

/// A 401/403 from the feed is a configuration error: tokens are refused at
/// once, not after the staleness bound, even with the opt-in to accept a
/// stale set; a right key recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_refuses_at_once_when_the_feed_refuses_the_api_key() {
    let key = TestKey::ed("k1");
    let feed = FakeFeed::default();
    let url = feed_server(feed.clone(), "tsk_right").await;
    for accept_stale in [false, true] {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
        let mut c = config(clock);
        c.revocations_url = Some(url.clone());
        c.api_key = Some("tsk_wrong".into());
        c.accept_when_feed_stale = accept_stale;
        let v = Verifier::with_jwks(c, jwks(&[&key])).unwrap();
        let task = v.spawn_feed();
        wait_until("the key refused", || v.feed_status() == FeedStatus::Unauthorized).await;
        let counted = Counted::default();
        let refused = metrics::with_local_recorder(&counted, || v.verify_sync(&key.good()));
        assert_eq!(
            refused.unwrap_err(),
            VerifyError::RevocationStatusUnavailable,
            "accept_when_feed_stale = {accept_stale}"
        );
        assert_eq!(
            counted.get("tessera_resource_feed_refusals_total{reason=unauthorized}"),
            1
        );
        task.abort();
    }
    let (ok, _) = fed(&key, url, "tsk_right");
    let task = ok.spawn_feed();
    ok.feed_synced().await;
    ok.verify(&key.good()).await.unwrap();
    task.abort();
}

/// The opt-in: accept with whatever set is at hand while the feed is down
/// (here: never reached), and say so.
#[tokio::test]
async fn rs_accepts_a_stale_set_only_when_opted_in() {
    let key = TestKey::ed("k1");
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock.clone());
    c.revocations_url = Some("http://127.0.0.1:9/v1/revocations".parse().unwrap());
    c.api_key = Some("tsk_x".into());
    let closed = Verifier::with_jwks(c.clone(), jwks(&[&key])).unwrap();
    assert_eq!(
        err(&closed, &key.good()),
        VerifyError::RevocationStatusUnavailable
    );
    c.accept_when_feed_stale = true;
    let open = Verifier::with_jwks(c, jwks(&[&key])).unwrap();
    let t = key.token(&key.header(), &with(claims(), "exp", json!(NOW + 7200)));
    open.verify_sync(&t).unwrap();
    clock.advance_secs(3600);
    open.verify_sync(&t).unwrap();
    open.insert_revocation(SID, NOW + 7200);
    assert_eq!(
        err(&open, &t),
        VerifyError::Revoked,
        "the set in hand still applies"
    );
    assert_eq!(open.feed_status(), FeedStatus::Syncing);
}

#[test]
fn feed_max_staleness_must_outlast_a_long_poll() {
    let mut c = config(Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW))));
    c.feed_max_staleness = Duration::from_secs(29);
    assert!(matches!(
        Verifier::with_jwks(c.clone(), json!({"keys": [TestKey::ed("k").jwk]})),
        Err(ConfigError::Invalid(_))
    ));
    c.feed_max_staleness = Duration::from_secs(30);
    assert!(Verifier::with_jwks(c, json!({"keys": [TestKey::ed("k").jwk]})).is_ok());
    let d = VerifierConfig::new(ISS, AUD, "http://127.0.0.1:9/jwks".parse().unwrap());
    assert_eq!(d.feed_max_staleness, Duration::from_secs(3 * d.feed_wait_secs));
    assert!(!d.accept_when_feed_stale);
}

/// A verifier without a feed does not check revocation and never refuses
/// for it.
#[test]
fn no_feed_configured_never_refuses_for_it() {
    let key = TestKey::ed("k1");
    let (v, clock) = verifier(&[&key]);
    assert_eq!(v.feed_status(), FeedStatus::NotConfigured);
    clock.advance_secs(3600);
    let t = key.token(&key.header(), &with(claims(), "exp", json!(NOW + 7200)));
    v.verify_sync(&t).unwrap();
}

// ------------------------------------------------------- key withdrawal

/// A clock that runs a hook once, at the first reading after it is armed:
/// lets a test act at an exact point inside a verification.
#[derive(Default)]
struct HookClock {
    armed: std::sync::atomic::AtomicBool,
    hook: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Clock for HookClock {
    fn now(&self) -> Timestamp {
        if self.armed.swap(false, Ordering::SeqCst)
            && let Some(hook) = self.hook.get()
        {
            hook();
        }
        Timestamp::from_unix_secs(NOW)
    }
}

/// The issuer withdraws a key (`tessera keys revoke`) while a verification
/// with that key is under way: it read the old key set, the JWKS install
/// empties the cache, and then the verification caches its result. That
/// entry must not keep the withdrawn key's token alive.
#[test]
fn withdrawn_key_stays_withdrawn_when_a_verification_races_the_install() {
    let key = TestKey::ed("k1");
    let other = TestKey::ed("k2");
    let clock = Arc::new(HookClock::default());
    let mut c = VerifierConfig::new(ISS, AUD, "http://127.0.0.1:9/jwks".parse().unwrap());
    c.clock = clock.clone();
    let v = Verifier::with_jwks(c, jwks(&[&key, &other])).unwrap();
    let installer = v.clone();
    let without_k1 = jwks(&[&other]);
    assert!(
        clock
            .hook
            .set(Box::new(move || {
                install_keys(&installer.inner, KeySet::from_jwks(&without_k1).unwrap());
            }))
            .is_ok()
    );
    let t = key.good();
    // The first clock reading of this verification comes after its
    // signature check (the `exp` check): the withdrawal lands there.
    clock.armed.store(true, Ordering::SeqCst);
    let _ = v.verify_sync(&t);
    assert_eq!(v.key_ids(), vec!["k2".to_owned()]);
    assert_eq!(err(&v, &t), VerifyError::UnknownKid);
    assert_eq!(err(&v, &t), VerifyError::UnknownKid);
    v.verify_sync(&other.good()).unwrap();
}

/// The JWKS refresh drops a withdrawn key and the tokens cached under it.
#[tokio::test]
async fn a_key_gone_from_the_jwks_is_refused_after_the_refresh() {
    let key = TestKey::ed("k1");
    let fresh = TestKey::ed("k2");
    let (url, _, doc) = jwks_server(jwks(&[&key])).await;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW)));
    let mut c = config(clock);
    c.jwks_url = url;
    let v = Verifier::new(c).unwrap();
    v.refresh_jwks().await.unwrap();
    let t = key.good();
    v.verify(&t).await.unwrap();
    v.verify(&t).await.unwrap(); // cached
    // The key is revoked at the issuer: the JWKS now lists the fresh key only.
    *doc.lock().unwrap() = jwks(&[&fresh]);
    v.refresh_jwks().await.unwrap();
    assert_eq!(v.key_ids(), vec!["k2".to_owned()]);
    assert_eq!(v.verify(&t).await.unwrap_err(), VerifyError::UnknownKid);
    v.verify(&fresh.good()).await.unwrap();
    let d = VerifierConfig::new(ISS, AUD, "http://127.0.0.1:9/jwks".parse().unwrap());
    assert_eq!(
        d.jwks_refresh_interval,
        Duration::from_secs(60),
        "the documented bound"
    );
}

// ------------------------------------------------------------------ axum

fn app(v: Verifier) -> Router {
    async fn me(Authenticated(t): Authenticated) -> String {
        t.claims.sub.clone()
    }
    async fn write_scope(Authenticated(t): Authenticated) -> Result<&'static str, AuthRejection> {
        require_scope(&t, "write")?;
        Ok("written")
    }
    async fn admin(auth: Authenticated) -> Result<&'static str, AuthRejection> {
        require_scope(&auth, "admin")?;
        Ok("admin")
    }
    async fn maybe(auth: Option<Authenticated>) -> String {
        auth.map(|a| a.claims.sub.clone())
            .unwrap_or_else(|| "anonymous".into())
    }
    Router::new()
        .route("/me", get(me))
        .route("/write", get(write_scope))
        .route("/admin", get(admin))
        .route("/maybe", get(maybe))
        .with_state(v)
}

async fn call(app: &Router, path: &str, auth: &[&str]) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder().uri(path);
    for a in auth {
        req = req.header(header::AUTHORIZATION, *a);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    (status, www, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn jw_18_www_authenticate_forms() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let app = app(v);
    let good = key.good();

    let (s, www, body) = call(&app, "/me", &[&format!("Bearer {good}")]).await;
    assert_eq!((s, www, body.as_str()), (StatusCode::OK, None, "user-1"));
    // Scheme is case-insensitive.
    assert_eq!(
        call(&app, "/me", &[&format!("bearer {good}")]).await.0,
        StatusCode::OK
    );

    // No credentials at all: 401, `Bearer` without an error attribute (and
    // DPoP offered, RFC 9449 §7.1).
    let no_credentials = Some(r#"Bearer, DPoP algs="ES256 EdDSA ES384""#);
    let (s, www, _) = call(&app, "/me", &[]).await;
    assert_eq!((s, www.as_deref()), (StatusCode::UNAUTHORIZED, no_credentials));
    // Another scheme is not Bearer credentials.
    let (s, www, _) = call(&app, "/me", &["Basic dXNlcjpwYXNz"]).await;
    assert_eq!((s, www.as_deref()), (StatusCode::UNAUTHORIZED, no_credentials));
    // An unbound token with the DPoP scheme: refused in that scheme.
    let (s, www, _) = call(&app, "/me", &[&format!("DPoP {good}")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www.unwrap().starts_with("DPoP error=\"invalid_token\""));
    // A token in the query string is never read.
    let (s, www, _) = call(&app, &format!("/me?access_token={good}"), &[]).await;
    assert_eq!((s, www.as_deref()), (StatusCode::UNAUTHORIZED, no_credentials));

    // Bad tokens: 401 invalid_token.
    let expired = key.token(&key.header(), &with(claims(), "exp", json!(NOW - 3600)));
    for bad in [
        "garbage".to_owned(),
        format!("{good}x"),
        expired,
        format!("{good}.AAAA.BBBB"),
    ] {
        let (s, www, body) = call(&app, "/me", &[&format!("Bearer {bad}")]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let www = www.unwrap();
        assert!(www.starts_with("Bearer error=\"invalid_token\""), "{www}");
        assert!(body.contains("invalid_token"));
        assert!(
            !www.contains(&bad) && !body.contains(&bad),
            "the token is never echoed"
        );
    }
    // Malformed Authorization: 400 invalid_request.
    for auth in [vec!["Bearer "], vec!["Bearer"], vec!["Bearer    "]] {
        let (s, www, _) = call(&app, "/me", &auth).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{auth:?}");
        assert!(www.unwrap().starts_with("Bearer error=\"invalid_request\""));
    }
    let two = format!("Bearer {good}");
    let (s, www, _) = call(&app, "/me", &[&two, &two]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(www.unwrap().contains("invalid_request"));

    // Option<Authenticated>: None without credentials, still 401 for a bad token.
    assert_eq!(call(&app, "/maybe", &[]).await.2, "anonymous");
    assert_eq!(
        call(&app, "/maybe", &[&format!("Bearer {good}")]).await.2,
        "user-1"
    );
    assert_eq!(
        call(&app, "/maybe", &["Bearer nope"]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn jw_17_scope_check_is_403_insufficient_scope() {
    let key = TestKey::ed("k1");
    let (v, _) = verifier(&[&key]);
    let app = app(v);
    let read_only = key.token(&key.header(), &with(claims(), "scope", json!("read")));
    let (s, www, body) = call(&app, "/write", &[&format!("Bearer {read_only}")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let www = www.unwrap();
    assert!(www.starts_with("Bearer error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"write\""), "{www}");
    assert!(body.contains("insufficient_scope"));
    let (s, _, body) = call(&app, "/write", &[&format!("Bearer {}", key.good())]).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "written"));
    assert_eq!(
        call(&app, "/admin", &[&format!("Bearer {}", key.good())]).await.0,
        StatusCode::FORBIDDEN
    );
    // Without a token a scoped route is 401, not 403.
    assert_eq!(call(&app, "/write", &[]).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn fail_closed_answers_503() {
    let response = AuthRejection::from(VerifyError::RevocationStatusUnavailable).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
}

#[test]
fn config_debug_masks_the_api_key() {
    let mut c = VerifierConfig::new(ISS, AUD, "http://127.0.0.1:9/jwks".parse().unwrap());
    c.api_key = Some("tsk_secret_value".into());
    let s = format!("{c:?}");
    assert!(!s.contains("tsk_secret_value"));
    assert!(s.contains("[redacted]"));
}

#[test]
fn header_memo_is_filled_only_by_verified_tokens_and_checks_still_apply() {
    let key = TestKey::ed("k1");
    let (v, clock) = verifier(&[&key]);
    let good = key.good();
    let (h, p, s) = parts(&good);
    let known = |v: &Verifier| read(&v.inner.keys).known_header(&h).is_some();
    // A valid header under a bad signature is not remembered.
    let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
    sig[0] ^= 0x01;
    assert_eq!(
        err(&v, &format!("{h}.{p}.{}", b64(&sig))),
        VerifyError::BadSignature
    );
    assert!(!known(&v));
    v.verify_sync(&good).unwrap();
    assert!(known(&v));
    // With the header remembered, everything after it is still checked.
    v.clear_cache();
    let mut forged = p.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(err(&v, &format!("{h}.{forged}.{s}")), VerifyError::BadSignature);
    for t in [
        format!("{h}.{p} .{s}"),
        format!("{h}.{p}.{s}="),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}..{s}"),
    ] {
        assert_eq!(err(&v, &t), VerifyError::Malformed, "{t:?}");
    }
    let other = key.token(&key.header(), &with(claims(), "aud", json!("someone-else")));
    assert!(other.starts_with(&format!("{h}.")));
    assert_eq!(err(&v, &other), VerifyError::WrongAudience);
    clock.advance_secs(3600);
    assert_eq!(err(&v, &good), VerifyError::Expired);
    // Any JWKS install starts with an empty memo.
    install_keys(&v.inner, KeySet::from_jwks(&jwks(&[&key])).unwrap());
    assert!(!known(&v));
}

mod dpop;
