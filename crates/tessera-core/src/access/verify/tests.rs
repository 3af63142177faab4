//! The one verifier against both key sources: the service's own signing
//! keys ([`KeyManager::verification_keys`]) and a resource server's JWKS
//! ([`KeySet`] from [`KeyManager::jwks`]). The same token gets the same
//! answer from both, so every face refuses alike.

use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::access::{Audience, KeySet};
use crate::keys::{ActiveSigner, KeyManager, KeyPolicy};
use crate::memory::MemoryStore;
use crate::model::SigningAlg;
use crate::seal::Sealer;
use crate::time::{Clock, ManualClock, Timestamp};

const ISS: &str = "https://issuer.test";
const AUD: &str = "tessera";
const NOW: i64 = 1_800_000_000;

/// What a resource server expects (the library's defaults).
const EXPECTED: Expected<'static> = Expected {
    issuer: ISS,
    audience: AudienceRule::Contains(AUD),
    leeway_secs: 60,
    accept_sender_constrained: false,
};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Fixture {
    clock: ManualClock,
    manager: KeyManager,
    signer: Arc<ActiveSigner>,
    jwks: KeySet,
}

impl Fixture {
    async fn new(alg: SigningAlg) -> Self {
        let clock = ManualClock::new(Timestamp::from_unix_secs(NOW));
        let manager = KeyManager::new(
            Arc::new(MemoryStore::new()),
            Arc::new(clock.clone()),
            Arc::new(Sealer::new(&Sealer::generate_key())),
            KeyPolicy {
                alg,
                ..KeyPolicy::default()
            },
        );
        manager.ensure_key().await.unwrap();
        let signer = manager.signer().unwrap();
        let jwks = KeySet::from_jwks(&manager.jwks()).unwrap();
        Fixture {
            clock,
            manager,
            signer,
            jwks,
        }
    }

    fn header(&self) -> Value {
        json!({"typ": "at+jwt", "alg": self.signer.alg.as_str(), "kid": self.signer.kid})
    }

    /// `header` and `claims` signed with the service's signing key, whatever
    /// they say.
    fn token(&self, header: &Value, claims: &Value) -> String {
        self.token_raw(&header.to_string(), &claims.to_string())
    }

    fn token_raw(&self, header: &str, claims: &str) -> String {
        signed(&self.signer, header, claims)
    }

    fn good(&self) -> String {
        self.token(&self.header(), &claims())
    }

    /// Verifies with both key sources; they must agree.
    #[track_caller]
    fn verify_both(&self, token: &str, expected: &Expected<'_>) -> Result<AccessClaims, VerifyError> {
        let own = verify(token, &self.manager.verification_keys(), expected, &self.clock);
        let fetched = verify(token, &self.jwks, expected, &self.clock);
        assert_eq!(own, fetched, "the two key sources disagree on {token:?}");
        own
    }
}

fn signed(signer: &ActiveSigner, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

fn claims() -> Value {
    json!({
        "iss": ISS, "sub": "user-1", "aud": AUD, "exp": NOW + 300, "iat": NOW,
        "jti": "j-1", "client_id": "default", "sid": "ses_x", "scope": "read"
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

#[tokio::test]
async fn good_tokens_verify_with_both_key_sources_for_every_alg() {
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
        let f = Fixture::new(alg).await;
        let c = f.verify_both(&f.good(), &EXPECTED).unwrap();
        assert_eq!(c.sub, "user-1");
        assert_eq!(c.aud, Audience::one(AUD));
        // What the issuer mints verifies too.
        let minted = AccessClaims {
            iss: ISS.into(),
            sub: "user-2".into(),
            aud: Audience::one(AUD),
            exp: NOW + 300,
            iat: NOW,
            nbf: None,
            jti: crate::access::new_jti(),
            client_id: "default".into(),
            sid: Some("ses_y".into()),
            scope: None,
            auth_time: None,
            acr: None,
            amr: None,
            cnf: None,
            act: None,
        };
        let token = crate::access::mint(&f.signer, &minted).unwrap();
        assert_eq!(f.verify_both(&token, &EXPECTED).unwrap(), minted, "{alg:?}");
    }
}

/// The brief's catalogue: every bad token gets the same error from the
/// service's own keys as from its JWKS (JW-01 … JW-12, and the size limits).
#[tokio::test]
async fn jw_01_to_jw_12_same_error_from_both_key_sources() {
    let f = Fixture::new(SigningAlg::EdDSA).await;
    let h = f.header();
    let c = claims();
    let (hb, pb, sb) = {
        let good = f.good();
        let mut it = good.split('.').map(str::to_owned);
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    // HS256 MACed with the public key's bytes (JW-03).
    let hs = {
        let public = URL_SAFE_NO_PAD
            .decode(f.signer.public_jwk_json()["x"].as_str().unwrap())
            .unwrap();
        let header = with(h.clone(), "alg", json!("HS256"));
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &public), input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let none_unsigned = format!("{}.{pb}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#));
    let cases: Vec<(&str, String, VerifyError)> = vec![
        (
            "crit",
            f.token(&with(h.clone(), "crit", json!(["x-unknown"])), &c),
            VerifyError::CriticalExtension,
        ),
        (
            "typ JWT",
            f.token(&with(h.clone(), "typ", json!("JWT")), &c),
            VerifyError::WrongType,
        ),
        (
            "no typ",
            f.token(&without(h.clone(), "typ"), &c),
            VerifyError::WrongType,
        ),
        (
            "alg none, signed",
            f.token(&with(h.clone(), "alg", json!("none")), &c),
            VerifyError::AlgorithmMismatch,
        ),
        ("alg none, unsigned", none_unsigned, VerifyError::Malformed),
        (
            "alg eddsa",
            f.token(&with(h.clone(), "alg", json!("eddsa")), &c),
            VerifyError::AlgorithmMismatch,
        ),
        ("HS256 with the public key", hs, VerifyError::AlgorithmMismatch),
        (
            "wrong kid",
            f.token(&with(h.clone(), "kid", json!("no-such-key")), &c),
            VerifyError::UnknownKid,
        ),
        (
            "kid too long",
            f.token(&with(h.clone(), "kid", json!("k".repeat(MAX_KID_BYTES + 1))), &c),
            VerifyError::BadKid,
        ),
        (
            "jwk in the header",
            f.token(&with(h.clone(), "jwk", f.signer.public_jwk_json()), &c),
            VerifyError::UnsupportedHeader,
        ),
        (
            "expired",
            f.token(&h, &with(c.clone(), "exp", json!(NOW - 60))),
            VerifyError::Expired,
        ),
        (
            "not yet valid (nbf)",
            f.token(&h, &with(c.clone(), "nbf", json!(NOW + 61))),
            VerifyError::NotYetValid,
        ),
        (
            "issued in the future",
            f.token(&h, &with(c.clone(), "iat", json!(NOW + 61))),
            VerifyError::NotYetValid,
        ),
        (
            "wrong iss",
            f.token(&h, &with(c.clone(), "iss", json!(format!("{ISS}/")))),
            VerifyError::WrongIssuer,
        ),
        (
            "wrong aud",
            f.token(&h, &with(c.clone(), "aud", json!("https://other-rs"))),
            VerifyError::WrongAudience,
        ),
        (
            "no sub",
            f.token(&h, &without(c.clone(), "sub")),
            VerifyError::InvalidClaims,
        ),
        (
            "empty sid",
            f.token(&h, &with(c.clone(), "sid", json!(""))),
            VerifyError::InvalidClaims,
        ),
        (
            "bound as Bearer",
            f.token(&h, &with(c.clone(), "cnf", json!({"jkt": "abc"}))),
            VerifyError::SenderConstrained,
        ),
        (
            "bad base64 (+)",
            format!("{hb}.{}+.{sb}", &pb[..pb.len() - 1]),
            VerifyError::Malformed,
        ),
        (
            "bad base64 (padding)",
            format!("{hb}.{pb}.{sb}="),
            VerifyError::Malformed,
        ),
        ("whitespace", format!("{hb}.{pb} .{sb}"), VerifyError::Malformed),
        (
            "five segments (JWE)",
            format!("{hb}.{pb}.{sb}.{sb}.{sb}"),
            VerifyError::Malformed,
        ),
        (
            "oversized header",
            f.token(&with(h.clone(), "pad", json!("p".repeat(MAX_HEADER_B64))), &c),
            VerifyError::BadHeader,
        ),
        (
            "too long",
            format!("{hb}.{}.{sb}", "A".repeat(MAX_TOKEN_BYTES)),
            VerifyError::TooLong,
        ),
        (
            "flipped payload",
            format!(
                "{hb}.{}.{sb}",
                b64(with(c.clone(), "sub", json!("admin")).to_string().as_bytes())
            ),
            VerifyError::BadSignature,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(f.verify_both(&token, &EXPECTED), Err(want), "{what}");
    }
}

#[tokio::test]
async fn jw_09_leeway_is_the_callers_and_capped_at_60_s() {
    let f = Fixture::new(SigningAlg::EdDSA).await;
    let t = f.good();
    let strict = Expected {
        leeway_secs: 0,
        ..EXPECTED
    };
    f.clock.set(Timestamp::from_unix_secs(NOW + 299));
    assert!(f.verify_both(&t, &strict).is_ok());
    f.clock.set(Timestamp::from_unix_secs(NOW + 300));
    assert_eq!(f.verify_both(&t, &strict), Err(VerifyError::Expired));
    assert!(f.verify_both(&t, &EXPECTED).is_ok(), "inside 60 s of leeway");
    assert!(strict.is_expired(NOW + 300, NOW + 300) && !EXPECTED.is_expired(NOW + 300, NOW + 359));
    // More than 60 s of leeway counts as 60.
    let lax = Expected {
        leeway_secs: 3600,
        ..EXPECTED
    };
    f.clock.set(Timestamp::from_unix_secs(NOW + 360));
    assert_eq!(f.verify_both(&t, &lax), Err(VerifyError::Expired));
}

#[tokio::test]
async fn jw_10_any_audience_still_needs_one_and_cnf_is_the_callers_choice() {
    let f = Fixture::new(SigningAlg::EdDSA).await;
    let issuer = Expected {
        audience: AudienceRule::Any,
        accept_sender_constrained: true,
        ..EXPECTED
    };
    let h = f.header();
    let other = f.token(&h, &with(claims(), "aud", json!(["https://other-rs"])));
    assert!(f.verify_both(&other, &issuer).is_ok());
    for aud in [json!([]), json!(""), json!([""])] {
        let t = f.token(&h, &with(claims(), "aud", aud.clone()));
        assert_eq!(
            f.verify_both(&t, &issuer),
            Err(VerifyError::WrongAudience),
            "{aud}"
        );
    }
    let empty_ours = Expected {
        audience: AudienceRule::Contains(""),
        ..EXPECTED
    };
    let t = f.token(&h, &with(claims(), "aud", json!("")));
    assert_eq!(f.verify_both(&t, &empty_ours), Err(VerifyError::WrongAudience));
    let bound = f.token(&h, &with(claims(), "cnf", json!({"jkt": "abc"})));
    assert_eq!(
        f.verify_both(&bound, &issuer).unwrap().cnf,
        Some(json!({"jkt": "abc"}))
    );
}

#[tokio::test]
async fn jw_20_a_revoked_or_retired_key_verifies_nothing() {
    let f = Fixture::new(SigningAlg::EdDSA).await;
    let t = f.good();
    assert!(verify(&t, &f.manager.verification_keys(), &EXPECTED, &f.clock).is_ok());
    // Rotation keeps the old key published while its tokens may live.
    let new_kid = f.manager.rotate(0).await.unwrap();
    assert!(verify(&t, &f.manager.verification_keys(), &EXPECTED, &f.clock).is_ok());
    // Past the publication window the old key is gone from the service's
    // key source, as from its JWKS.
    let keep = KeyPolicy::default().retired_key_publish_secs();
    f.clock.advance_secs(keep + 1);
    assert_eq!(
        verify(&t, &f.manager.verification_keys(), &EXPECTED, &f.clock),
        Err(VerifyError::UnknownKid)
    );
    assert!(!f.manager.jwks()["keys"].to_string().contains(&f.signer.kid));
    // A revoked key, at once.
    let fresh = f.manager.signer().unwrap();
    assert_eq!(fresh.kid, new_kid);
    let now = f.clock.now().unix_secs();
    let t2 = signed(
        &fresh,
        &json!({"typ": "at+jwt", "alg": fresh.alg.as_str(), "kid": fresh.kid}).to_string(),
        &with(with(claims(), "iat", json!(now)), "exp", json!(now + 300)).to_string(),
    );
    assert!(verify(&t2, &f.manager.verification_keys(), &EXPECTED, &f.clock).is_ok());
    f.manager.revoke(&new_kid).await.unwrap();
    assert_eq!(
        verify(&t2, &f.manager.verification_keys(), &EXPECTED, &f.clock),
        Err(VerifyError::UnknownKid)
    );
}
