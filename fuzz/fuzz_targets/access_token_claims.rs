//! Structured, arbitrary access-token claims signed with a real key (the
//! fixed Ed25519 key `ed`), then `tessera_core::access::verify` against the
//! JWKS: every claim check is reached, not just the parser.
//!
//! Invariants: `access::mint` signs only claims a resource server could
//! accept (iss, sub, jti, a non-empty audience, exp after iat); `verify`'s
//! verdict equals the claim rules of RFC 9068 / the module docs restated
//! here as a model (same error, in the same order); and an accepted token
//! returns exactly the claims that were signed (a serialize → sign →
//! verify → deserialize round trip, blank optional claims dropped).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tessera_core::access::{
    ACCESS_TOKEN_TYP, AudienceRule, Expected, KeySet, MAX_TOKEN_BYTES, VerifyError, mint, verify,
};
use tessera_core::keys::ActiveSigner;
use tessera_core::{AccessClaims, Audience, ManualClock, Timestamp};
use tessera_fuzz::{AUDIENCE, ISSUER, NOW, key_set, signers};

static FIXTURE: LazyLock<(ActiveSigner, KeySet)> = LazyLock::new(|| {
    let (ed, ec) = signers();
    let keys = key_set(&ed, &ec);
    (ed, keys)
});
static CLOCK: LazyLock<ManualClock> = LazyLock::new(|| ManualClock::new(Timestamp::from_unix_secs(NOW)));

/// A time claim: near now (where the rules bite) or anywhere.
#[derive(Arbitrary, Debug)]
enum Time {
    Near(i16),
    Any(i64),
}

impl Time {
    fn secs(&self) -> i64 {
        match self {
            Time::Near(d) => NOW + i64::from(*d),
            Time::Any(t) => *t,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    our_issuer: bool,
    iss: String,
    sub: String,
    with_our_audience: bool,
    aud: Vec<String>,
    exp: Time,
    iat: Time,
    nbf: Option<Time>,
    jti: String,
    client_id: String,
    /// `None`: a client's own token (no session).
    sid: Option<String>,
    scope: Option<String>,
    auth_time: Option<i64>,
    acr: Option<String>,
    amr: Option<Vec<String>>,
    /// `None`: no `cnf`; `Some(None)`: `"cnf": null`; else `{"jkt": …}`.
    cnf: Option<Option<String>>,
    leeway: u8,
    any_audience: bool,
    accept_sender_constrained: bool,
    via_mint: bool,
}

/// The claim rules in their documented order, on the claims as read back.
fn model(c: &AccessClaims, e: &Expected<'_>) -> Result<(), VerifyError> {
    if c.sub.is_empty() || c.sid.as_deref().is_some_and(str::is_empty) || c.client_id.is_empty() || c.jti.is_empty() {
        return Err(VerifyError::InvalidClaims);
    }
    if c.iss != e.issuer {
        return Err(VerifyError::WrongIssuer);
    }
    let aud_ok = match e.audience {
        AudienceRule::Contains(ours) => c.aud.iter().any(|a| a == ours),
        AudienceRule::Any => c.aud.iter().any(|a| !a.is_empty()),
    };
    if !aud_ok {
        return Err(VerifyError::WrongAudience);
    }
    let leeway = e.leeway_secs.min(60) as i64;
    if NOW >= c.exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    if c.nbf.is_some_and(|n| n > NOW + leeway) || c.iat > NOW + leeway {
        return Err(VerifyError::NotYetValid);
    }
    if c.cnf.is_some() && !e.accept_sender_constrained {
        return Err(VerifyError::SenderConstrained);
    }
    Ok(())
}

fuzz_target!(|input: Input| {
    let (signer, keys) = &*FIXTURE;
    let mut aud = input.aud;
    if input.with_our_audience {
        aud.push(AUDIENCE.to_owned());
    }
    let claims = AccessClaims {
        iss: if input.our_issuer {
            ISSUER.to_owned()
        } else {
            input.iss
        },
        sub: input.sub,
        aud: Audience::new(aud),
        exp: input.exp.secs(),
        iat: input.iat.secs(),
        nbf: input.nbf.map(|t| t.secs()),
        jti: input.jti,
        client_id: input.client_id,
        sid: input.sid,
        scope: input.scope,
        auth_time: input.auth_time,
        acr: input.acr,
        amr: input.amr,
        cnf: input
            .cnf
            .map(|c| c.map_or(Value::Null, |jkt| json!({ "jkt": jkt }))),
        act: None,
    };

    let token = if input.via_mint {
        match mint(signer, &claims) {
            Ok(t) => {
                assert!(!claims.iss.is_empty() && !claims.sub.is_empty() && !claims.jti.is_empty());
                assert!(!claims.aud.is_empty() && claims.aud.iter().all(|a| !a.is_empty()));
                assert!(claims.exp > claims.iat);
                t
            }
            Err(_) => {
                assert!(
                    claims.iss.is_empty()
                        || claims.sub.is_empty()
                        || claims.jti.is_empty()
                        || claims.aud.is_empty()
                        || claims.aud.iter().any(String::is_empty)
                        || claims.exp <= claims.iat
                );
                return;
            }
        }
    } else {
        signer
            .sign_jws(ACCESS_TOKEN_TYP, &claims)
            .expect("signing claims")
    };

    // What a reader gets back: blank optional claims are not serialized,
    // and `"cnf": null` reads as no `cnf`.
    let mut read_back = claims;
    read_back.scope = read_back.scope.filter(|s| !s.is_empty());
    read_back.amr = read_back.amr.filter(|a| !a.is_empty());
    read_back.cnf = read_back.cnf.filter(|c| !c.is_null());

    let expected = Expected {
        issuer: ISSUER,
        audience: if input.any_audience {
            AudienceRule::Any
        } else {
            AudienceRule::Contains(AUDIENCE)
        },
        leeway_secs: u64::from(input.leeway),
        accept_sender_constrained: input.accept_sender_constrained,
    };
    let clock: &ManualClock = &CLOCK;
    let got = verify(&token, keys, &expected, clock);
    if token.len() > MAX_TOKEN_BYTES {
        assert_eq!(got, Err(VerifyError::TooLong));
        return;
    }
    match model(&read_back, &expected) {
        Ok(()) => assert_eq!(got, Ok(read_back)),
        Err(e) => assert_eq!(got, Err(e), "{read_back:?}"),
    }
});
