use super::*;
use crate::model::SigningAlg;
use crate::time::{Clock, SystemClock};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use std::collections::HashSet;

fn base(now: i64) -> AccessClaims {
    AccessClaims {
        iss: "https://issuer.test".into(),
        sub: "user-1".into(),
        aud: Audience::one("tessera"),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti: new_jti(),
        client_id: "default".into(),
        sid: Some("ses_abc".into()),
        scope: None,
        auth_time: None,
        acr: None,
        amr: None,
        cnf: None,
        act: None,
    }
}

fn payload(token: &str) -> Value {
    let seg = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

#[test]
fn audience_is_a_string_for_one_and_an_array_for_many() {
    assert_eq!(
        serde_json::to_value(Audience::one("a")).unwrap(),
        serde_json::json!("a")
    );
    let two = Audience::new(vec!["a".into(), "b".into()]);
    assert_eq!(serde_json::to_value(&two).unwrap(), serde_json::json!(["a", "b"]));
    assert_eq!(
        serde_json::from_str::<Audience>(r#""a""#).unwrap(),
        Audience::one("a")
    );
    assert_eq!(serde_json::from_str::<Audience>(r#"["a","b"]"#).unwrap(), two);
    assert_eq!(
        serde_json::from_str::<Audience>(r#"["a"]"#).unwrap(),
        Audience::one("a")
    );
    assert!(serde_json::from_str::<Audience>("1").is_err());
    assert!(serde_json::from_str::<Audience>("[1]").is_err());
    assert!(two.contains("b") && !two.contains("c"));
}

#[test]
fn jw_13_minted_tokens_carry_the_required_claims_and_unique_jti() {
    let signer = ActiveSigner::generate(SigningAlg::EdDSA).unwrap();
    let now = SystemClock.now().unix_secs();
    let mut jtis = HashSet::new();
    for _ in 0..1000 {
        let t = mint(&signer, &base(now)).unwrap();
        let p = payload(&t);
        for c in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti", "sid"] {
            assert!(p.get(c).is_some(), "{c} missing in {p}");
        }
        let jti = p["jti"].as_str().unwrap().to_owned();
        assert_eq!(URL_SAFE_NO_PAD.decode(&jti).unwrap().len(), 16, "128-bit jti");
        assert!(jtis.insert(jti), "jti repeated");
    }
    // Optional claims: absent when unknown or empty, present when known.
    let p = payload(
        &mint(
            &signer,
            &AccessClaims {
                scope: Some(String::new()),
                amr: Some(vec![]),
                ..base(now)
            },
        )
        .unwrap(),
    );
    for c in ["scope", "auth_time", "acr", "amr", "cnf"] {
        assert!(p.get(c).is_none(), "{c} present in {p}");
    }
    let full = AccessClaims {
        scope: Some("read write".into()),
        auth_time: Some(now - 5),
        acr: Some("2".into()),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        cnf: Some(serde_json::json!({"jkt": "abc"})),
        aud: Audience::new(vec!["a".into(), "b".into()]),
        ..base(now)
    };
    let p = payload(&mint(&signer, &full).unwrap());
    assert_eq!(p["scope"], "read write");
    assert_eq!(p["auth_time"], now - 5);
    assert_eq!(p["acr"], "2");
    assert_eq!(p["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(p["cnf"]["jkt"], "abc");
    assert_eq!(p["aud"], serde_json::json!(["a", "b"]));
    // No PII beyond what the caller put in (JW-21): exactly these keys.
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "acr",
            "amr",
            "aud",
            "auth_time",
            "client_id",
            "cnf",
            "exp",
            "iat",
            "iss",
            "jti",
            "scope",
            "sid",
            "sub"
        ]
    );
}

#[test]
fn jw_14_each_alg_mints_at_jwt_verifiable_with_its_jwk() {
    let now = SystemClock.now().unix_secs();
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
        let signer = ActiveSigner::generate(alg).unwrap();
        let claims = base(now);
        let token = mint(&signer, &claims).unwrap();
        let h = decode_header(&token).unwrap();
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        assert_eq!(h.alg, signer.algorithm());
        let set = JwkSet {
            keys: vec![signer.public_jwk().clone()],
        };
        let jwk = set.find(h.kid.as_deref().unwrap()).expect("kid resolves");
        let mut v = Validation::new(signer.algorithm());
        v.set_audience(&["tessera"]);
        v.set_issuer(&["https://issuer.test"]);
        let got = decode::<AccessClaims>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
        assert_eq!(got.claims, claims);
        // Wrong audience and wrong issuer are refused.
        let mut other = v.clone();
        other.set_audience(&["https://other-rs"]);
        assert!(decode::<AccessClaims>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &other).is_err());
        let mut other = v.clone();
        other.set_issuer(&["https://issuer.test/"]);
        assert!(decode::<AccessClaims>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &other).is_err());
    }
}

#[test]
fn mint_refuses_claims_a_verifier_would_reject() {
    let signer = ActiveSigner::generate(SigningAlg::EdDSA).unwrap();
    let now = 1_800_000_000;
    for bad in [
        AccessClaims {
            aud: Audience::new(vec![]),
            ..base(now)
        },
        AccessClaims {
            aud: Audience::one(""),
            ..base(now)
        },
        AccessClaims {
            iss: String::new(),
            ..base(now)
        },
        AccessClaims {
            sub: String::new(),
            ..base(now)
        },
        AccessClaims {
            jti: String::new(),
            ..base(now)
        },
        AccessClaims {
            exp: now,
            ..base(now)
        },
    ] {
        assert!(
            matches!(mint(&signer, &bad), Err(KeyError::InvalidClaims(_))),
            "{bad:?}"
        );
    }
}
