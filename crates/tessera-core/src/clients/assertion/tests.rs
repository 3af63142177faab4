//! The `private_key_jwt` assertion checks, one failure mode per test
//! (RFC 7523 §3), and the single use of `jti`.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PSS_SHA256,
};
use serde_json::{Value, json};

use super::*;
use crate::b64url;
use crate::clients::{Client, ClientKind};
use crate::memory::MemoryStore;
use crate::time::ManualClock;

const ISSUER: &str = "https://auth.example";
const TOKEN_URL: &str = "https://auth.example/oauth2/token";
const NOW: i64 = 1_767_225_600;
const ID: &str = "svc";

enum Key {
    Es256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl Key {
    fn es256() -> Key {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed(_) => "EdDSA",
            Key::Rsa(_) => "PS256",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Key::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])})
            }
            Key::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url::encode(k.public_key().as_ref())})
            }
            Key::Rsa(k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "n": b64url::encode(&c.n), "e": b64url::encode(&c.e)})
            }
        }
    }

    /// The JWK with one more member.
    fn jwk_with(&self, name: &str, v: Value) -> Value {
        let mut j = self.jwk();
        j[name] = v;
        j
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Key::Es256(k) => k.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(input).as_ref().to_vec(),
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PSS_SHA256, &SystemRandom::new(), input, &mut sig)
                    .unwrap();
                sig
            }
        }
    }

    fn raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        );
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64url::encode(&sig))
    }

    fn assertion(&self, claims: &Value) -> String {
        self.raw(&json!({"alg": self.alg(), "typ": "JWT"}), claims)
    }
}

fn claims() -> Value {
    json!({"iss": ID, "sub": ID, "aud": TOKEN_URL, "exp": NOW + 60, "iat": NOW, "jti": crate::secret::new_id("")})
}

fn jwks(keys: &[&Key]) -> ClientJwks {
    ClientJwks::from_value(&json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})).unwrap()
}

fn audiences() -> Vec<String> {
    vec![ISSUER.into(), TOKEN_URL.into()]
}

fn check(set: &ClientJwks, assertion: &str) -> Result<CheckedAssertion, AssertionError> {
    let auds = audiences();
    let rules = AssertionRules {
        audiences: &auds,
        leeway_secs: 60,
    };
    check_assertion(ID, set, assertion, &rules, Timestamp::from_unix_secs(NOW))
}

fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims();
    f(c.as_object_mut().unwrap());
    c
}

#[test]
fn a_good_assertion_passes_with_either_audience_and_each_key_type() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let ok = check(&set, &k.assertion(&claims())).unwrap();
    assert!(!ok.jti.is_empty());
    assert_eq!(ok.exp, NOW + 60);
    let issuer_aud = with(|c| {
        c.insert("aud".into(), json!([ISSUER, "https://elsewhere"]));
    });
    check(&set, &k.assertion(&issuer_aud)).unwrap();
    let ed = Key::Ed(Ed25519KeyPair::generate().unwrap());
    check(&jwks(&[&ed]), &ed.assertion(&claims())).unwrap();
    let rsa = Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap());
    check(&jwks(&[&rsa]), &rsa.assertion(&claims())).unwrap();
    // Two keys, no kid: the one that fits and verifies is found.
    let other = Key::es256();
    check(&jwks(&[&other, &k]), &k.assertion(&claims())).unwrap();
}

#[test]
fn c7523_wrong_audience_is_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    for aud in [
        json!("https://auth.example/"),
        json!("https://other"),
        json!([]),
        json!(null),
    ] {
        let c = with(|c| {
            c.insert("aud".into(), aud.clone());
        });
        let r = check(&set, &k.assertion(&c));
        assert!(
            matches!(
                r,
                Err(AssertionError::WrongAudience | AssertionError::InvalidClaims)
            ),
            "{aud}: {r:?}"
        );
    }
    let c = with(|c| {
        c.remove("aud");
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::WrongAudience));
}

#[test]
fn c7523_expired_assertion_is_refused_after_the_leeway() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let c = with(|c| {
        c.insert("exp".into(), json!(NOW - 61));
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::Expired));
    let within = with(|c| {
        c.insert("exp".into(), json!(NOW - 30));
    });
    check(&set, &k.assertion(&within)).unwrap();
}

#[test]
fn c7523_missing_or_string_exp_is_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let c = with(|c| {
        c.remove("exp");
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::MissingExp));
    // CVE-2026-25537: a string-typed exp must not skip the check.
    let c = with(|c| {
        c.insert("exp".into(), json!("1"));
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::InvalidClaims));
}

#[test]
fn c7523_exp_too_far_ahead_is_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let c = with(|c| {
        c.insert("exp".into(), json!(NOW + MAX_ASSERTION_LIFETIME_SECS + 61));
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::TooLongLived));
    let c = with(|c| {
        c.insert("exp".into(), json!(NOW + MAX_ASSERTION_LIFETIME_SECS));
    });
    check(&set, &k.assertion(&c)).unwrap();
}

#[test]
fn c7523_future_iat_or_nbf_is_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    for claim in ["iat", "nbf"] {
        let c = with(|c| {
            c.insert(claim.into(), json!(NOW + 120));
        });
        assert_eq!(
            check(&set, &k.assertion(&c)),
            Err(AssertionError::NotYetValid),
            "{claim}"
        );
    }
}

#[test]
fn c7523_missing_empty_or_oversized_jti_is_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    for jti in [
        None,
        Some(json!("")),
        Some(json!("x".repeat(MAX_ASSERTION_JTI_BYTES + 1))),
    ] {
        let c = with(|c| match &jti {
            None => {
                c.remove("jti");
            }
            Some(v) => {
                c.insert("jti".into(), v.clone());
            }
        });
        assert_eq!(
            check(&set, &k.assertion(&c)),
            Err(AssertionError::BadJti),
            "{jti:?}"
        );
    }
}

#[test]
fn c7523_iss_or_sub_other_than_the_client_is_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let c = with(|c| {
        c.insert("iss".into(), json!("other"));
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::WrongIssuer));
    let c = with(|c| {
        c.insert("sub".into(), json!("other"));
    });
    assert_eq!(check(&set, &k.assertion(&c)), Err(AssertionError::WrongSubject));
}

#[test]
fn c7523_a_key_the_client_did_not_register_is_refused() {
    let registered = Key::es256();
    let attacker = Key::es256();
    let set = jwks(&[&registered]);
    assert_eq!(
        check(&set, &attacker.assertion(&claims())),
        Err(AssertionError::BadSignature)
    );
    // A kid naming no registered key.
    let h = json!({"alg": "ES256", "kid": "nope"});
    assert_eq!(
        check(&set, &registered.raw(&h, &claims())),
        Err(AssertionError::NoKey)
    );
    // The attacker's key in the header is never used.
    let h = json!({"alg": "ES256", "jwk": attacker.jwk()});
    assert_eq!(
        check(&set, &attacker.raw(&h, &claims())),
        Err(AssertionError::UnsupportedHeader)
    );
    // An algorithm the key does not fit (EdDSA header, EC key).
    let h = json!({"alg": "EdDSA"});
    assert_eq!(
        check(&set, &registered.raw(&h, &claims())),
        Err(AssertionError::NoKey)
    );
}

#[test]
fn c7523_alg_none_and_hs256_with_the_public_key_as_secret_are_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let payload = b64url::encode(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let h = b64url::encode(json!({"alg": alg}).to_string().as_bytes());
        assert_eq!(
            check(&set, &format!("{h}.{payload}.")),
            Err(AssertionError::Malformed),
            "{alg}"
        );
    }
    // HS256 keyed with the registered public key's JSON and with its point.
    let jwk_text = k.jwk().to_string();
    let Key::Es256(pair) = &k else { unreachable!() };
    for secret in [jwk_text.as_bytes(), pair.public_key().as_ref()] {
        let h = b64url::encode(json!({"alg": "HS256", "typ": "JWT"}).to_string().as_bytes());
        let input = format!("{h}.{payload}");
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            input.as_bytes(),
        );
        let forged = format!("{input}.{}", b64url::encode(tag.as_ref()));
        assert_eq!(check(&set, &forged), Err(AssertionError::Algorithm));
    }
}

#[test]
fn c7523_wrong_typ_and_crit_are_refused() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    for typ in ["at+jwt", "dpop+jwt"] {
        let h = json!({"alg": "ES256", "typ": typ});
        assert_eq!(check(&set, &k.raw(&h, &claims())), Err(AssertionError::WrongType));
    }
    let h = json!({"alg": "ES256", "typ": "client-authentication+jwt"});
    check(&set, &k.raw(&h, &claims())).unwrap();
    let h = json!({"alg": "ES256", "crit": ["exp"]});
    assert_eq!(
        check(&set, &k.raw(&h, &claims())),
        Err(AssertionError::UnsupportedHeader)
    );
}

#[test]
fn c7523_garbage_is_refused_without_panic() {
    let k = Key::es256();
    let set = jwks(&[&k]);
    let long = "A".repeat(MAX_ASSERTION_BYTES + 1);
    for bad in ["", ".", "..", "a.b.c", "a.b", "e30.e30.e30", long.as_str()] {
        assert!(check(&set, bad).is_err(), "{bad:?}");
        let _ = assertion_client_id(bad);
    }
}

#[test]
fn the_unverified_client_id_is_the_sub_else_the_iss() {
    let k = Key::es256();
    assert_eq!(assertion_client_id(&k.assertion(&claims())).as_deref(), Some(ID));
    let c = with(|c| {
        c.remove("sub");
    });
    assert_eq!(assertion_client_id(&k.assertion(&c)).as_deref(), Some(ID));
    let c = with(|c| {
        c.remove("sub");
        c.remove("iss");
    });
    assert_eq!(assertion_client_id(&k.assertion(&c)), None);
}

fn jwt_client(k: &Key) -> Client {
    Client {
        client_id: ID.into(),
        kind: ClientKind::Confidential,
        secret_sha256: None,
        scopes: vec!["read".into()],
        audiences: vec!["api".into()],
        refresh_tokens: false,
        dpop_bound_access_tokens: false,
        jwks: Some(jwks(&[k])),
        grant_types: vec!["client_credentials".into()],
    }
}

#[tokio::test]
async fn c7523_a_replayed_jti_is_refused_until_the_assertion_expires() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(NOW));
    let store = Arc::new(MemoryStore::new());
    let v = ClientAssertions::new(store, Arc::new(clock.clone()), audiences(), 60);
    let k = Key::es256();
    let client = jwt_client(&k);
    let a = k.assertion(&claims());
    v.verify(&client, &a).await.unwrap();
    assert_eq!(v.verify(&client, &a).await, Err(AssertionError::Replayed));
    // The same jti in a new assertion (another exp) is still a replay.
    let same_jti = |exp: i64| {
        k.assertion(&with(|c| {
            c.insert("exp".into(), json!(exp));
            c.insert("jti".into(), json!("fixed-jti"));
        }))
    };
    v.verify(&client, &same_jti(NOW + 30)).await.unwrap();
    assert_eq!(
        v.verify(&client, &same_jti(NOW + 90)).await,
        Err(AssertionError::Replayed)
    );
    // Still a replay inside the leeway after exp; once the assertion could
    // no longer be accepted anyway, the marker may go.
    clock.advance_secs(80);
    assert_eq!(
        v.verify(&client, &same_jti(NOW + 90)).await,
        Err(AssertionError::Replayed)
    );
    // The same jti from another client is that client's own.
    let mut other = jwt_client(&k);
    other.client_id = "svc2".into();
    let theirs = k.assertion(
        &json!({"iss": "svc2", "sub": "svc2", "aud": ISSUER, "exp": NOW + 100, "jti": "fixed-jti"}),
    );
    v.verify(&other, &theirs).await.unwrap();
    // A client registered with a secret has no keys to verify with.
    let mut secret_client = jwt_client(&k);
    secret_client.jwks = None;
    assert_eq!(
        v.verify(&secret_client, &k.assertion(&claims())).await,
        Err(AssertionError::NotRegistered)
    );
}

#[test]
fn registered_key_sets_are_checked() {
    let k = Key::es256();
    for bad in [
        json!({}),
        json!({"keys": []}),
        json!({"keys": [k.jwk_with("d", json!("AAAA"))]}),
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}),
        json!({"keys": [k.jwk_with("use", json!("enc"))]}),
        json!({"keys": [k.jwk_with("alg", json!("RS256"))]}),
        json!({"keys": [k.jwk_with("kid", json!("a")), Key::es256().jwk_with("kid", json!("a"))]}),
    ] {
        assert!(ClientJwks::from_value(&bad).is_err(), "{bad}");
    }
    assert!(ClientJwks::from_json(&json!({"keys": [k.jwk()]}).to_string()).is_ok());
    assert!(ClientJwks::from_value(&json!({"keys": [k.jwk_with("alg", json!("ES256"))]})).is_ok());
}
