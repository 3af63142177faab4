//! The operations of the model check and how proptest generates them.
//!
//! An operation names what it acts on by a selector ([`Pick`]), read modulo
//! the number of things of that kind created so far (one more than that
//! number means "a well-formed token nobody issued"), so every generated
//! sequence is meaningful whatever came before, and shrinking (fewer
//! operations, smaller selectors) keeps it meaningful.

use std::fmt;

use proptest::prelude::*;

/// Subjects the sequences log in: two, so "revoke all of a subject" and the
/// per-subject session limit have a bystander.
pub const SUBJECTS: [&str; 2] = ["alice", "bob"];

/// A selector among the things of one kind issued so far.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pick(pub u8);

impl Pick {
    /// The index it names among `len` things, or `None` for "one nobody
    /// issued" (also whenever nothing was issued yet).
    pub fn among(self, len: usize) -> Option<usize> {
        let i = usize::from(self.0) % (len + 1);
        (i < len).then_some(i)
    }
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which kind of token an introspection presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    Access(Pick),
    Refresh(Pick),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `Sessions::create` for `SUBJECTS[subject]`; with `refresh`, the token
    /// service then issues an access token and a refresh-token family for it.
    Create {
        subject: usize,
        level: u8,
        ttl: Option<(i64, i64)>,
        previous: Option<Pick>,
        refresh: bool,
    },
    /// `Sessions::verify` of a session token.
    Verify(Pick),
    /// `Sessions::elevate` (step-up) of a session token.
    Elevate {
        token: Pick,
        level: u8,
        method: &'static str,
    },
    /// `Sessions::revoke_token` (logout).
    Logout(Pick),
    /// `Sessions::revoke` by handle (`DELETE /v1/sessions/{handle}`).
    RevokeHandle(Pick),
    /// `Sessions::revoke_all` of a subject, maybe except one session.
    RevokeAll { subject: usize, except: Option<Pick> },
    /// `TokenService::refresh` with a refresh token (the default client).
    Refresh(Pick),
    /// `TokenService::verify_access_token` with the issuer's own rules.
    VerifyAccess(Pick),
    /// `TokenService::introspect` (RFC 7662).
    Introspect(Presented),
    /// Moves the `ManualClock` forward.
    Advance { ms: i64 },
    /// The sweeper: `Sessions::sweep`, then
    /// `TokenService::clear_sealed_successors`.
    Sweep,
    /// `KeyManager::rotate` (operator rotation, activating in `secs`).
    RotateKey { secs: i64 },
    /// `KeyManager::rotate_if_due` (the scheduled rotation).
    RotateIfDue,
    /// `KeyManager::revoke` (emergency withdrawal of a key).
    RevokeKey(Pick),
    /// `KeyManager::prune`.
    PruneKeys,
}

fn pick() -> impl Strategy<Value = Pick> {
    any::<u8>().prop_map(Pick)
}

/// TTLs around the suite policy (600 s idle, 3600 s absolute, at most 1 day
/// idle and 7 days absolute), with a few out of range.
fn ttl() -> impl Strategy<Value = Option<(i64, i64)>> {
    let idle = prop_oneof![Just(600), Just(1), Just(30), Just(3600), Just(0), Just(86_401)];
    let abs = prop_oneof![Just(3600), Just(1), Just(60), Just(900), Just(7200), Just(0)];
    proptest::option::weighted(0.6, (idle, abs))
}

/// Steps of the clock that sit on the interesting edges: the touch
/// throttle (60 s), the grace window (10 s), the idle window (600 s), the
/// access-token lifetime (300 s, + 60 s leeway for key publication), the
/// absolute lifetime (3600 s) and the key schedule (3000 s lead).
fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => prop_oneof![
            Just(1_000),
            Just(9_999),
            Just(10_000),
            Just(10_001),
            Just(60_000),
            Just(300_000),
            Just(360_001),
            Just(600_000),
            Just(3_000_000),
            Just(3_600_000),
        ],
        1 => 1i64..4_000_000,
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    let level = prop_oneof![Just(2u8), Just(1), Just(9), Just(0), Just(10)];
    let create = (
        0..SUBJECTS.len(),
        prop_oneof![4 => Just(1u8), 1 => Just(0), 1 => Just(2)],
        ttl(),
        proptest::option::weighted(0.2, pick()),
        proptest::bool::weighted(0.7),
    )
        .prop_map(|(subject, level, ttl, previous, refresh)| Op::Create {
            subject,
            level,
            ttl,
            previous,
            refresh,
        });
    let elevate = (pick(), level, prop_oneof![Just("otp"), Just("pwd"), Just("hwk")])
        .prop_map(|(token, level, method)| Op::Elevate { token, level, method });
    let revoke_all = (0..SUBJECTS.len(), proptest::option::of(pick()))
        .prop_map(|(subject, except)| Op::RevokeAll { subject, except });
    let introspect = prop_oneof![
        pick().prop_map(Presented::Access),
        pick().prop_map(Presented::Refresh)
    ]
    .prop_map(Op::Introspect);
    let rotate = prop_oneof![Just(0i64), Just(600), Just(30)].prop_map(|secs| Op::RotateKey { secs });
    prop_oneof![
        6 => create,
        6 => pick().prop_map(Op::Verify),
        6 => pick().prop_map(Op::Refresh),
        6 => advance().prop_map(|ms| Op::Advance { ms }),
        3 => elevate,
        2 => pick().prop_map(Op::Logout),
        2 => pick().prop_map(Op::RevokeHandle),
        1 => revoke_all,
        3 => pick().prop_map(Op::VerifyAccess),
        2 => introspect,
        2 => Just(Op::Sweep),
        1 => rotate,
        1 => Just(Op::RotateIfDue),
        1 => pick().prop_map(Op::RevokeKey),
        1 => Just(Op::PruneKeys),
    ]
}

/// One generated case: the reuse grace window (0 disables it) and the
/// operations.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub grace_secs: i64,
    pub ops: Vec<Op>,
}

pub fn scenario(max_ops: usize) -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(10i64), Just(0)],
        proptest::collection::vec(op(), 1..=max_ops.max(1)),
    )
        .prop_map(|(grace_secs, ops)| Scenario { grace_secs, ops })
}
