//! Proof checks, named after the checklist's DP rows, with RFC 9449's and
//! RFC 7638's published examples as vectors.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::*;
use crate::b64url;
use crate::memory::MemoryStore;
use crate::seal::Sealer;
use crate::time::{Clock, ManualClock, Timestamp};

/// RFC 9449 §4.1 (Figure 4 / the token request of §5): ES256 proof for
/// `POST https://server.example.com/token` at iat 1562262616.
const RFC_TOKEN_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
/// RFC 9449 §7.1 (Figure 13): the proof for `GET
/// https://resource.example.org/protectedresource` with `ath` of
/// [`RFC_ACCESS_TOKEN`], iat 1562262618.
const RFC_RESOURCE_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
/// RFC 9449 §7.1 (Figure 12): the DPoP-bound access token.
const RFC_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
/// RFC 9449 §6.1: the `jkt` of the examples' key.
const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

const TOKEN_URI: &str = "https://server.example.com/token";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(secs * 1000)
}

fn token_req() -> ProofRequest<'static> {
    ProofRequest {
        method: "POST",
        uri: TOKEN_URI,
        access_token: None,
    }
}

fn check(proof: &str, req: &ProofRequest<'_>, now: Timestamp) -> Result<CheckedProof, DpopError> {
    check_proof(proof, req, &DpopPolicy::default(), now)
}

fn invalid(r: Result<CheckedProof, DpopError>) -> &'static str {
    match r {
        Err(DpopError::Invalid(why)) => why,
        other => panic!("expected invalid_dpop_proof, got {other:?}"),
    }
}

/// A client key that signs proofs as this test says.
enum Key {
    Es256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Key {
    fn es256() -> Key {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn ed25519() -> Key {
        Key::Ed(Ed25519KeyPair::generate().unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed(_) => "EdDSA",
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
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Key::Es256(k) => k.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(input).as_ref().to_vec(),
        }
    }

    fn jkt(&self) -> String {
        jwk_thumbprint(&PublicJwk::from_json(&self.jwk().to_string()).unwrap())
    }

    /// A proof with this exact header and payload.
    fn raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(claims.to_string().as_bytes())
        );
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64url::encode(&sig))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()})
    }

    fn claims(now: i64) -> Value {
        json!({"jti": crate::secret::new_id(""), "htm": "POST", "htu": TOKEN_URI, "iat": now})
    }

    fn proof(&self, now: i64) -> String {
        self.raw(&self.header(), &Key::claims(now))
    }
}

const NOW: i64 = 1_767_225_600;

#[test]
fn rfc_9449_token_request_proof_verifies_with_its_jkt() {
    let p = check(RFC_TOKEN_PROOF, &token_req(), at(1_562_262_616)).expect("the RFC's proof");
    assert_eq!(p.jkt, RFC_JKT);
    assert_eq!(p.jti, "-BwC3ESc6acc2lTc");
    assert_eq!(p.iat, 1_562_262_616);
}

#[test]
fn rfc_9449_resource_proof_verifies_with_its_access_token() {
    let req = ProofRequest {
        method: "GET",
        uri: "https://resource.example.org/protectedresource",
        access_token: Some(RFC_ACCESS_TOKEN),
    };
    let p = check(RFC_RESOURCE_PROOF, &req, at(1_562_262_618)).expect("the RFC's proof");
    assert_eq!(p.jkt, RFC_JKT);
}

#[test]
fn rfc_7638_thumbprint_example() {
    let jwk = PublicJwk::from_json(
        r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
    )
    .unwrap();
    assert_eq!(
        jwk_thumbprint(&jwk),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn thumbprints_agree_with_jsonwebtoken() {
    // An independent implementation of RFC 7638 for the key types we verify.
    for key in [Key::es256(), Key::ed25519()] {
        let theirs: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk()).unwrap();
        assert_eq!(
            key.jkt(),
            theirs
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            "{}",
            key.alg()
        );
    }
}

#[test]
fn es256_and_eddsa_proofs_verify() {
    for key in [Key::es256(), Key::ed25519()] {
        let p = check(&key.proof(NOW), &token_req(), at(NOW)).unwrap();
        assert_eq!(p.jkt, key.jkt());
        assert_eq!(p.nonce, None);
    }
}

#[test]
fn dp_02_each_required_claim_is_required() {
    let key = Key::es256();
    for claim in ["jti", "htm", "htu", "iat"] {
        let mut claims = Key::claims(NOW);
        claims.as_object_mut().unwrap().remove(claim);
        let why = invalid(check(&key.raw(&key.header(), &claims), &token_req(), at(NOW)));
        assert!(why.contains(claim), "{claim}: {why}");
    }
    for not_a_jwt in ["", "abc", "a.b", "a.b.c.d", "..", "e30.e30.", "!!.!!.!!"] {
        invalid(check(not_a_jwt, &token_req(), at(NOW)));
    }
    // At a resource server `ath` is required too.
    let req = ProofRequest {
        access_token: Some("tok"),
        ..token_req()
    };
    assert_eq!(invalid(check(&key.proof(NOW), &req, at(NOW))), "no ath");
}

#[test]
fn dp_03_typ_must_be_dpop_jwt() {
    let key = Key::es256();
    for typ in [json!("JWT"), json!("DPOP+JWT"), json!("at+jwt"), Value::Null] {
        let mut h = key.header();
        h["typ"] = typ.clone();
        invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW)));
    }
    let mut h = key.header();
    h.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW))),
        "typ must be dpop+jwt"
    );
}

#[test]
fn dp_04_alg_must_be_an_allowed_asymmetric_algorithm() {
    let key = Key::es256();
    // HS256 with an `oct` key (signed with the "key" as a MAC).
    let secret = b"0123456789abcdef0123456789abcdef";
    let h = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64url::encode(secret)}});
    let input = format!(
        "{}.{}",
        b64url::encode(h.to_string().as_bytes()),
        b64url::encode(Key::claims(NOW).to_string().as_bytes())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", b64url::encode(tag.as_ref()));
    invalid(check(&hs, &token_req(), at(NOW)));
    // alg none, with no signature or an empty one.
    let mut h = key.header();
    h["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        b64url::encode(h.to_string().as_bytes()),
        b64url::encode(Key::claims(NOW).to_string().as_bytes())
    );
    invalid(check(&unsigned, &token_req(), at(NOW)));
    invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW)));
    // EdDSA when the deployment allows only ES256.
    let ed = Key::ed25519();
    let only_es256 = DpopPolicy {
        algs: vec![DpopAlg::Es256],
        ..DpopPolicy::default()
    };
    assert!(matches!(
        check_proof(&ed.proof(NOW), &token_req(), &only_es256, at(NOW)),
        Err(DpopError::Invalid(_))
    ));
    // An alg that does not fit the key: ES256 header over an Ed25519 jwk.
    let mut h = ed.header();
    h["alg"] = json!("ES256");
    invalid(check(&ed.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW)));
}

#[test]
fn dp_05_signature_must_verify_with_the_header_jwk() {
    let (k1, k2) = (Key::es256(), Key::es256());
    // Signed by K2 with K1 in `jwk`.
    let forged = k2.raw(&k1.header(), &Key::claims(NOW));
    assert_eq!(
        invalid(check(&forged, &token_req(), at(NOW))),
        "signature does not verify with the jwk"
    );
    // The RFC's proof with one payload byte changed.
    let mut parts: Vec<String> = RFC_TOKEN_PROOF.split('.').map(str::to_owned).collect();
    parts[1] = b64url::encode(
        br#"{"jti":"-BwC3ESc6acc2lTc","htm":"GET","htu":"https://server.example.com/token","iat":1562262616}"#,
    );
    invalid(check(&parts.join("."), &token_req(), at(1_562_262_616)));
}

#[test]
fn dp_06_private_key_in_the_jwk_is_refused() {
    let key = Key::es256();
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut h = key.header();
        h["jwk"][member] = json!("AAAA");
        assert_eq!(
            invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW))),
            "the jwk holds a private key",
            "{member}"
        );
    }
}

#[test]
fn dp_07_htm_must_match_the_method() {
    let key = Key::es256();
    let req = ProofRequest {
        method: "GET",
        ..token_req()
    };
    assert_eq!(
        invalid(check(&key.proof(NOW), &req, at(NOW))),
        "htm does not match the request method"
    );
}

/// The WHATWG URL parser strips leading and trailing C0 controls and spaces
/// and drops tabs and newlines anywhere, so `https://s/tok\nen\u{4}` used
/// to name `https://s/token`. No RFC 3986 URI contains them: such an `htu`
/// (or request URI) names nothing. Found by the dpop_proof fuzz target.
#[test]
fn dp_08_htu_with_control_characters_or_spaces_matches_nothing() {
    let uri = "https://server.example.com/token";
    for bad in [
        "https://server.example.com/token\u{4}",
        "https://server.example.com/token\u{0}",
        " https://server.example.com/token",
        "https://server.example.com/token ",
        "https://server.example.com/to\nken",
        "https://server.example.com/to\tken",
        "https://server.example.com/token\u{7f}",
    ] {
        assert!(!htu_matches(bad, uri), "{bad:?}");
        assert!(!htu_matches(uri, bad), "{bad:?}");
        assert!(!htu_matches(bad, bad), "{bad:?}");
    }
}

#[test]
fn dp_08_htu_is_compared_after_normalisation() {
    let uri = "https://server.example.com/token";
    for same in [
        "https://SERVER.example.com/token",
        "https://server.example.com:443/token",
        "HTTPS://server.example.com/token",
        "https://server.example.com/./token",
        "https://server.example.com/%74oken",
        "https://server.example.com/token?x=1",
        "https://server.example.com/token#frag",
    ] {
        assert!(htu_matches(same, uri), "{same}");
    }
    // A query string in the request but not in `htu`.
    assert!(htu_matches(uri, "https://server.example.com/token?a=b"));
    for other in [
        "http://server.example.com/token",
        "https://server.example.com/token2",
        "https://server.example.com/Token",
        "https://server.example.com:8443/token",
        "https://other.example.com/token",
        "https://server.example.com/token/",
        "/token",
        "urn:x:token",
        "",
    ] {
        assert!(!htu_matches(other, uri), "{other}");
    }
    let key = Key::es256();
    let mut claims = Key::claims(NOW);
    claims["htu"] = json!("https://server.example.com/other");
    assert_eq!(
        invalid(check(&key.raw(&key.header(), &claims), &token_req(), at(NOW))),
        "htu does not match the request URI"
    );
}

#[test]
fn dp_09_iat_must_be_inside_the_window() {
    let key = Key::es256();
    assert_eq!(
        invalid(check(&key.proof(NOW - 300), &token_req(), at(NOW))),
        "iat is too old"
    );
    assert_eq!(
        invalid(check(&key.proof(NOW + 60), &token_req(), at(NOW))),
        "iat is in the future"
    );
    check(&key.proof(NOW + 1), &token_req(), at(NOW)).expect("a second of skew");
    check(&key.proof(NOW - 59), &token_req(), at(NOW)).expect("inside the window");
}

fn verifier(clock: &ManualClock) -> DpopVerifier {
    DpopVerifier::new(
        DpopPolicy::default(),
        Arc::new(MemoryStore::new()),
        Arc::new(clock.clone()),
    )
}

#[tokio::test]
async fn dp_10_a_proof_is_used_once() {
    let clock = ManualClock::new(at(1_562_262_616));
    let v = verifier(&clock);
    v.verify(RFC_TOKEN_PROOF, &token_req()).await.expect("first use");
    assert!(matches!(
        v.verify(RFC_TOKEN_PROOF, &token_req()).await,
        Err(DpopError::Replayed)
    ));
    clock.advance_secs(30);
    assert!(
        matches!(
            v.verify(RFC_TOKEN_PROOF, &token_req()).await,
            Err(DpopError::Replayed)
        ),
        "still inside the window"
    );
    // A 10 KB jti: refused before anything is stored.
    let key = Key::es256();
    let mut claims = Key::claims(clock.now().unix_secs());
    claims["jti"] = json!("j".repeat(10 * 1024));
    invalid(check(&key.raw(&key.header(), &claims), &token_req(), clock.now()));
    let mut claims = Key::claims(clock.now().unix_secs());
    claims["jti"] = json!("j".repeat(257));
    invalid(check(&key.raw(&key.header(), &claims), &token_req(), clock.now()));
}

#[tokio::test]
async fn dp_10_replay_cache_holds_across_verifiers_on_one_store() {
    // Two service processes over one store: a proof used at one is a
    // replay at the other.
    let clock = ManualClock::new(at(NOW));
    let store = Arc::new(MemoryStore::new());
    let a = DpopVerifier::new(DpopPolicy::default(), store.clone(), Arc::new(clock.clone()));
    let b = DpopVerifier::new(DpopPolicy::default(), store, Arc::new(clock.clone()));
    let proof = Key::ed25519().proof(NOW);
    a.verify(&proof, &token_req()).await.unwrap();
    assert!(matches!(
        b.verify(&proof, &token_req()).await,
        Err(DpopError::Replayed)
    ));
}

#[tokio::test]
async fn dp_10_bounded_replay_cache_fails_closed_when_full() {
    let clock = ManualClock::new(at(NOW));
    let cache = Arc::new(BoundedReplayCache::new(2));
    let v = DpopVerifier::new(DpopPolicy::default(), cache.clone(), Arc::new(clock.clone()));
    let key = Key::es256();
    let (p1, p2, p3) = (key.proof(NOW), key.proof(NOW), key.proof(NOW));
    v.verify(&p1, &token_req()).await.unwrap();
    v.verify(&p2, &token_req()).await.unwrap();
    assert!(matches!(
        v.verify(&p3, &token_req()).await,
        Err(DpopError::Unavailable(_))
    ));
    assert!(matches!(
        v.verify(&p1, &token_req()).await,
        Err(DpopError::Replayed)
    ));
    // Once the first two are past their window, room is made.
    clock.advance_secs(62);
    let p4 = key.proof(NOW + 62);
    v.verify(&p4, &token_req()).await.unwrap();
    assert_eq!(cache.len(), 1);
}

fn nonces(sealer: &Arc<Sealer>, usage: NonceUse) -> NonceIssuer {
    NonceIssuer::new(sealer.clone(), usage, 300)
}

#[tokio::test]
async fn dp_11_token_endpoint_nonce_required_fresh_and_exact() {
    let clock = ManualClock::new(at(NOW));
    let sealer = Arc::new(Sealer::new(&Sealer::generate_key()));
    let v = verifier(&clock).with_nonces(nonces(&sealer, NonceUse::Token));
    let key = Key::es256();
    assert!(matches!(
        v.verify(&key.proof(NOW), &token_req()).await,
        Err(DpopError::UseNonce)
    ));
    let nonce = v.fresh_nonce().expect("nonces are on");
    let with = |n: &str, iat: i64| {
        let mut c = Key::claims(iat);
        c["nonce"] = json!(n);
        key.raw(&key.header(), &c)
    };
    v.verify(&with(&nonce, NOW), &token_req())
        .await
        .expect("with the nonce");
    // Not exactly an issued nonce.
    let mut altered = nonce.clone().into_bytes();
    altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert!(matches!(
        v.verify(&with(&altered, NOW), &token_req()).await,
        Err(DpopError::UseNonce)
    ));
    // An old nonce: the answer is use_dpop_nonce again (with a new one).
    clock.advance_secs(301);
    let later = clock.now().unix_secs();
    assert!(matches!(
        v.verify(&with(&nonce, later), &token_req()).await,
        Err(DpopError::UseNonce)
    ));
    assert_eq!(DpopError::UseNonce.error_code(), Some("use_dpop_nonce"));
    let fresh = v.fresh_nonce().unwrap();
    assert_ne!(fresh, nonce);
    v.verify(&with(&fresh, later), &token_req())
        .await
        .expect("the new nonce");
}

#[test]
fn dp_12_token_and_resource_nonces_are_not_interchangeable() {
    let sealer = Arc::new(Sealer::new(&Sealer::generate_key()));
    let (token, resource) = (
        nonces(&sealer, NonceUse::Token),
        nonces(&sealer, NonceUse::Resource),
    );
    let n = token.issue(at(NOW));
    assert!(token.is_fresh(&n, at(NOW)));
    assert!(!resource.is_fresh(&n, at(NOW)));
    let m = resource.issue(at(NOW));
    assert!(!token.is_fresh(&m, at(NOW)));
    // Another deployment's key.
    let other = nonces(&Arc::new(Sealer::new(&Sealer::generate_key())), NonceUse::Token);
    assert!(!other.is_fresh(&n, at(NOW)));
}

#[test]
fn dp_13_nonces_are_unpredictable_nqchar() {
    let n = nonces(&Arc::new(Sealer::new(&Sealer::generate_key())), NonceUse::Token);
    let (a, b) = (n.issue(at(NOW)), n.issue(at(NOW)));
    assert_ne!(a, b, "two nonces of one instant differ");
    for c in a.chars() {
        // NQCHAR = %x21 / %x23-5B / %x5D-7E
        assert!(matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'), "{c:?}");
    }
}

#[test]
fn dp_14_ath_must_hash_the_presented_access_token() {
    let req = ProofRequest {
        method: "GET",
        uri: "https://resource.example.org/protectedresource",
        access_token: Some("another-access-token"),
    };
    assert_eq!(
        invalid(check(RFC_RESOURCE_PROOF, &req, at(1_562_262_618))),
        "ath does not match the access token"
    );
    // A proof with `ath` at the token endpoint (where no token is presented).
    let req = ProofRequest {
        method: "GET",
        uri: "https://resource.example.org/protectedresource",
        access_token: None,
    };
    assert_eq!(
        invalid(check(RFC_RESOURCE_PROOF, &req, at(1_562_262_618))),
        "ath without an access token"
    );
}

#[test]
fn oversized_and_malformed_proofs_are_refused_not_panicking() {
    let key = Key::es256();
    let mut claims = Key::claims(NOW);
    claims["pad"] = json!("x".repeat(20 * 1024));
    assert_eq!(
        invalid(check(&key.raw(&key.header(), &claims), &token_req(), at(NOW))),
        "proof too long"
    );
    let mut h = key.header();
    h["jwk"]["x"] = json!("AAAA");
    invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW)));
    let mut h = key.header();
    h["jwk"]["x"] = json!(format!("{}=", key.jwk()["x"].as_str().unwrap()));
    invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW)));
    let mut h = key.header();
    h["crit"] = json!(["exp"]);
    invalid(check(&key.raw(&h, &Key::claims(NOW)), &token_req(), at(NOW)));
    // A duplicated member.
    let dup = format!(
        "{}.{}.AAAA",
        b64url::encode(br#"{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256"}"#),
        b64url::encode(b"{}")
    );
    invalid(check(&dup, &token_req(), at(NOW)));
}

// --- Resource servers: how a bound token is presented ---

fn claims_bound(cnf: Option<Value>) -> crate::access::AccessClaims {
    crate::access::AccessClaims {
        iss: "https://issuer.test".into(),
        sub: "alice".into(),
        aud: crate::access::Audience::one("api"),
        exp: NOW + 300,
        iat: NOW,
        nbf: None,
        jti: "j".into(),
        client_id: "default".into(),
        sid: Some("ses_x".into()),
        scope: None,
        auth_time: None,
        acr: None,
        amr: None,
        cnf,
        act: None,
    }
}

const RS_URI: &str = "https://api.example.com/things";

fn rs_proof(key: &Key, token: &str, iat: i64) -> String {
    let ath =
        b64url::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
    key.raw(
        &key.header(),
        &json!({"jti": crate::secret::new_id(""), "htm": "GET", "htu": RS_URI, "iat": iat, "ath": ath}),
    )
}

fn presentation<'a>(scheme: Scheme, proof: ProofHeader<'a>, cert: Option<&'a str>) -> Presentation<'a> {
    Presentation {
        scheme,
        proof,
        method: "GET",
        uri: RS_URI,
        client_cert: cert,
    }
}

fn rs_verifier(clock: &ManualClock) -> DpopVerifier {
    DpopVerifier::new(
        DpopPolicy::default(),
        Arc::new(BoundedReplayCache::new(100)),
        Arc::new(clock.clone()),
    )
}

#[tokio::test]
async fn dp_15_to_17_resource_presentation_of_a_dpop_bound_token() {
    let clock = ManualClock::new(at(NOW));
    let v = rs_verifier(&clock);
    let key = Key::es256();
    let claims = claims_bound(Some(json!({"jkt": key.jkt()})));
    let token = "the.access.token";
    let proof = rs_proof(&key, token, NOW);
    // DP-17: a DPoP-bound token sent as Bearer.
    let e = check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Bearer, ProofHeader::One(&proof), None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_token");
    // DP-16: the DPoP scheme without a proof.
    let e = check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Dpop, ProofHeader::None, None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_dpop_proof");
    // DP-01: two DPoP headers.
    let e = check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Dpop, ProofHeader::Many, None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_dpop_proof");
    // DP-15: a valid proof by another key.
    let other = rs_proof(&Key::es256(), token, NOW);
    let e = check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Dpop, ProofHeader::One(&other), None),
    )
    .await
    .unwrap_err();
    assert_eq!(e, PresentationError::InvalidToken("Invalid DPoP key binding"));
    // DP-14: a proof for another token.
    let for_other = rs_proof(&key, "another.access.token", NOW);
    let e = check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Dpop, ProofHeader::One(&for_other), None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_dpop_proof");
    // The right one, once.
    check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Dpop, ProofHeader::One(&proof), None),
    )
    .await
    .expect("bound key, right token");
    let e = check_presentation(
        &v,
        &claims,
        token,
        &presentation(Scheme::Dpop, ProofHeader::One(&proof), None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_dpop_proof", "replayed");
}

#[tokio::test]
async fn unbound_tokens_only_as_bearer() {
    let clock = ManualClock::new(at(NOW));
    let v = rs_verifier(&clock);
    let claims = claims_bound(None);
    check_presentation(
        &v,
        &claims,
        "t",
        &presentation(Scheme::Bearer, ProofHeader::None, None),
    )
    .await
    .unwrap();
    let proof = rs_proof(&Key::es256(), "t", NOW);
    let e = check_presentation(
        &v,
        &claims,
        "t",
        &presentation(Scheme::Dpop, ProofHeader::One(&proof), None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_token");
}

#[tokio::test]
async fn mt_02_certificate_bound_token_needs_the_same_certificate() {
    let clock = ManualClock::new(at(NOW));
    let v = rs_verifier(&clock);
    let claims = claims_bound(Some(json!({"x5t#S256": "c1"})));
    check_presentation(
        &v,
        &claims,
        "t",
        &presentation(Scheme::Bearer, ProofHeader::None, Some("c1")),
    )
    .await
    .unwrap();
    for cert in [Some("c2"), None] {
        let e = check_presentation(
            &v,
            &claims,
            "t",
            &presentation(Scheme::Bearer, ProofHeader::None, cert),
        )
        .await
        .unwrap_err();
        assert_eq!(e.error_code(), "invalid_token", "{cert:?}");
    }
    let claims = claims_bound(Some(json!({"x5t#S999": "c1"})));
    let e = check_presentation(
        &v,
        &claims,
        "t",
        &presentation(Scheme::Bearer, ProofHeader::None, Some("c1")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_code(), "invalid_token", "unknown confirmation method");
}

#[tokio::test]
async fn a_full_replay_cache_is_scanned_at_most_once_a_second() {
    use crate::store::ReplayStore;
    let cache = BoundedReplayCache::new(2);
    let t0 = at(NOW);
    assert!(cache.use_once(&[1; 32], t0.plus_millis(100), t0).await.unwrap());
    assert!(
        cache
            .use_once(&[2; 32], t0.plus_millis(10_000), t0)
            .await
            .unwrap()
    );
    assert!(
        cache
            .use_once(&[3; 32], t0.plus_millis(10_000), t0)
            .await
            .is_err(),
        "full"
    );
    // [1] has expired, but the last scan was under a second ago.
    let t = t0.plus_millis(500);
    assert!(
        cache.use_once(&[3; 32], t.plus_millis(10_000), t).await.is_err(),
        "no scan yet"
    );
    let t = t0.plus_millis(1000);
    assert!(
        cache.use_once(&[3; 32], t.plus_millis(10_000), t).await.unwrap(),
        "scanned"
    );
    assert_eq!(cache.len(), 2);
}
