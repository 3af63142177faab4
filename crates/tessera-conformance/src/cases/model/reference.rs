//! The reference: what every operation must answer, worked out from
//! SPEC §1, §4.1, §5 and the core's documented rules with plain vectors and
//! integers. It never calls the code under test; the only things it takes
//! from the real run are the names the real run chose (session handles,
//! key ids), because the rules order ties by them.
//!
//! The rules it encodes, with where they are written down:
//!
//! - Lifetimes (SPEC §1, `SessionPolicy`): idle expiry slides with use and
//!   never passes the absolute expiry; expired at `now >= min(idle, abs)`.
//!   A request's TTLs are each 1..=the policy maximum, idle capped at
//!   absolute. Verification writes the slide only once `min(60 s, idle/4)`
//!   has passed since the last write (`touch_interval_secs`).
//! - Login (§4.1): always a new token; a live `previous_session_token` is
//!   revoked (`replaced`); over the per-subject limit the oldest other
//!   active sessions (by `created_at`, then handle) are revoked
//!   (`session_limit`).
//! - Step-up (§4.1): new token, same handle, the old token stops working at
//!   once; refresh families issued before it end with it
//!   (`TokenService::live_session`: tokens of the old privilege level).
//! - Logout is idempotent on a revoked or expired session, and an expired
//!   one is marked revoked (`Sessions::revoke_token`); an unknown token is
//!   `session_invalid`. Revoking by handle answers whether it revoked.
//! - Refresh (§1): each use rotates; the consumed token presented again
//!   inside the grace window gets the same successor; any other consumed
//!   token is theft: family and session revoked, `refresh_token_reuse`
//!   recorded. A rotation slides the idle window like a verification.
//! - Sweep (`SessionStore::sweep`): deletes sessions past expiry (revoked
//!   ones too) with their families, `expired` event for those not revoked;
//!   sealed successors older than the grace window are cleared.
//! - Keys (`tessera_core::keys` module docs): the newest key with
//!   `activates_at <= now` signs; a key stays published until its successor
//!   has been active for TTL + leeway (360 s); revoked keys never sign nor
//!   verify, revoking the signing key first adds one that signs at once
//!   (`KeyManager::revoke`: "a fresh key that signs at once");
//!   access tokens expire at `min(iat + 300 s, session absolute expiry)`.

use std::collections::BTreeMap;

use tessera_core::{EventKind, RevokeReason};

use super::ops::{Op, Pick, Presented, SUBJECTS};

pub const IDLE_SECS: i64 = 600;
pub const ABSOLUTE_SECS: i64 = 3600;
pub const MAX_IDLE_SECS: i64 = 24 * 3600;
pub const MAX_ABSOLUTE_SECS: i64 = 7 * 24 * 3600;
pub const SESSION_LIMIT: usize = 3;
pub const TOUCH_INTERVAL_SECS: i64 = 60;
pub const MAX_LEVEL: u8 = 9;
pub const ACCESS_TTL_SECS: i64 = 300;
pub const KEY_ROTATION_SECS: i64 = 3600;
pub const KEY_PREPUBLISH_SECS: i64 = 600;
pub const KEY_LEEWAY_SECS: i64 = 60;

/// What a session looks like to a caller (the public view of §4.1, less
/// device and data, which no operation here changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub handle: String,
    pub subject: String,
    pub level: u8,
    pub methods: Vec<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked: Option<RevokeReason>,
}

/// Which refresh token a refresh handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Successor {
    /// One never seen before (a rotation).
    New,
    /// The one already issued under this index (the grace window).
    Same(usize),
}

/// One operation's answer, as comparable data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A session from create, verify or elevate; for a create that asked for
    /// tokens, whether they were issued (or the OAuth error code).
    Session {
        view: View,
        tokens: Option<Result<(), &'static str>>,
    },
    /// An error: the `Error` kind of the session service, the OAuth error
    /// code of the token service, or the `KeyError` variant.
    Error(String),
    LoggedOut,
    Revoked(bool),
    RevokedCount(usize),
    Refreshed(Successor),
    /// The access token's `sid`, or the `VerifyError` variant.
    Access(Result<String, String>),
    /// RFC 7662: active (with its `sid`) or not.
    Introspection(Option<String>),
    Swept {
        sessions: u64,
        cleared: u64,
    },
    KeyAdded(bool),
    KeyRevoked {
        replaced: bool,
    },
    Pruned(Vec<String>),
    /// An operation with nothing to act on, or the clock moving.
    Nothing,
}

pub fn err(kind: &str) -> Answer {
    Answer::Error(kind.to_owned())
}

/// Everything observable about the whole state after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `Sessions::list` of each subject: active handles, newest first.
    pub lists: Vec<Vec<String>>,
    pub active: u64,
    /// Each session ever created, by handle: what the store holds, `None`
    /// once swept.
    pub records: Vec<(String, Option<View>)>,
    /// The events this step appended, by handle, in order.
    pub events: BTreeMap<String, Vec<(EventKind, Option<RevokeReason>)>>,
    /// The JWKS, in its order (the signing key first, then newest first).
    pub jwks: Vec<String>,
}

/// New names the real run chose during one operation, for the reference to
/// file its records under.
#[derive(Debug, Default)]
pub struct Fresh {
    pub handle: Option<String>,
    pub kids: Vec<String>,
}

struct Session {
    handle: String,
    subject: usize,
    token: usize,
    created_at: i64,
    last_seen_at: i64,
    idle_ms: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    level: u8,
    methods: Vec<String>,
    auth_time: i64,
    revoked: Option<RevokeReason>,
    swept: bool,
}

impl Session {
    fn expired(&self, now: i64) -> bool {
        now >= self.idle_expires_at.min(self.absolute_expires_at)
    }

    fn active(&self, now: i64) -> bool {
        !self.swept && self.revoked.is_none() && !self.expired(now)
    }
}

struct Family {
    session: usize,
    /// The session token it was issued under.
    session_token: usize,
    generation: u64,
    rotated_at: i64,
    sealed: bool,
    revoked: bool,
    deleted: bool,
}

struct Access {
    session: usize,
    key: usize,
    exp_secs: i64,
}

struct Key {
    kid: String,
    activates_at: i64,
    revoked: bool,
    pruned: bool,
}

pub struct Reference {
    now: i64,
    grace_ms: i64,
    sessions: Vec<Session>,
    /// Session token index → its session.
    tokens: Vec<usize>,
    families: Vec<Family>,
    /// Refresh token index → (family, generation).
    refresh: Vec<(usize, u64)>,
    access: Vec<Access>,
    keys: Vec<Key>,
    events: BTreeMap<String, Vec<(EventKind, Option<RevokeReason>)>>,
}

/// The next key id the real run added; a placeholder when it added fewer
/// than the reference expects, so the answers (not a panic) tell.
fn take(kids: &mut Vec<String>) -> String {
    if kids.is_empty() {
        "<no key was added>".to_owned()
    } else {
        kids.remove(0)
    }
}

impl Reference {
    /// The state after the first start: one key (`kid`) that signs from `now`.
    pub fn new(now: i64, grace_secs: i64, kid: String) -> Self {
        Self {
            now,
            grace_ms: grace_secs * 1000,
            sessions: Vec::new(),
            tokens: Vec::new(),
            families: Vec::new(),
            refresh: Vec::new(),
            access: Vec::new(),
            keys: vec![Key {
                kid,
                activates_at: now,
                revoked: false,
                pruned: false,
            }],
            events: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, op: &Op, mut fresh: Fresh) -> Answer {
        match *op {
            Op::Create {
                subject,
                level,
                ttl,
                previous,
                refresh,
            } => self.create(
                subject,
                level,
                ttl,
                previous,
                refresh,
                fresh.handle.unwrap_or_default(),
            ),
            Op::Verify(t) => self.verify(t),
            Op::Elevate { token, level, method } => self.elevate(token, level, method),
            Op::Logout(t) => self.logout(t),
            Op::RevokeHandle(p) => self.revoke_handle(p),
            Op::RevokeAll { subject, except } => self.revoke_all(subject, except),
            Op::Refresh(p) => self.refresh(p),
            Op::VerifyAccess(p) => match p.among(self.access.len()) {
                Some(a) => Answer::Access(self.verify_access(a)),
                None => Answer::Nothing,
            },
            Op::Introspect(Presented::Access(p)) => match p.among(self.access.len()) {
                Some(a) => Answer::Introspection(self.introspect_access(a)),
                None => Answer::Nothing,
            },
            Op::Introspect(Presented::Refresh(p)) => Answer::Introspection(
                p.among(self.refresh.len())
                    .and_then(|r| self.introspect_refresh(r)),
            ),
            Op::Advance { ms } => {
                self.now += ms;
                Answer::Nothing
            }
            Op::Sweep => self.sweep(),
            Op::RotateKey { secs } => {
                self.rotate(secs, take(&mut fresh.kids), None);
                Answer::KeyAdded(true)
            }
            Op::RotateIfDue => self.rotate_if_due(&mut fresh.kids),
            Op::RevokeKey(p) => self.revoke_key(p, &mut fresh.kids),
            Op::PruneKeys => self.prune(),
        }
    }

    fn event(&mut self, s: usize, kind: EventKind, reason: Option<RevokeReason>) {
        let handle = self.sessions[s].handle.clone();
        self.events.entry(handle).or_default().push((kind, reason));
    }

    fn revoke(&mut self, s: usize, reason: RevokeReason) {
        self.sessions[s].revoked = Some(reason);
        self.event(s, EventKind::Revoked, Some(reason));
    }

    fn view(&self, s: usize) -> View {
        let x = &self.sessions[s];
        View {
            handle: x.handle.clone(),
            subject: SUBJECTS[x.subject].to_owned(),
            level: x.level,
            methods: x.methods.clone(),
            auth_time: x.auth_time,
            created_at: x.created_at,
            last_seen_at: x.last_seen_at,
            idle_expires_at: x.idle_expires_at,
            absolute_expires_at: x.absolute_expires_at,
            revoked: x.revoked,
        }
    }

    /// The session a presented session token names, judged like a
    /// verification: unknown, replaced or swept → `session_invalid`.
    fn live_by_token(&self, t: Pick) -> Result<usize, &'static str> {
        let s = t
            .among(self.tokens.len())
            .map(|t| (t, self.tokens[t]))
            .filter(|&(t, s)| self.sessions[s].token == t && !self.sessions[s].swept)
            .map(|(_, s)| s)
            .ok_or("session_invalid")?;
        if self.sessions[s].revoked.is_some() {
            return Err("session_revoked");
        }
        if self.sessions[s].expired(self.now) {
            return Err("session_expired");
        }
        Ok(s)
    }

    /// The throttled slide of the idle window on use.
    fn touch(&mut self, s: usize) {
        let now = self.now;
        let x = &mut self.sessions[s];
        if now - x.last_seen_at >= (TOUCH_INTERVAL_SECS * 1000).min(x.idle_ms / 4) {
            x.last_seen_at = now;
            x.idle_expires_at = x
                .idle_expires_at
                .max((now + x.idle_ms).min(x.absolute_expires_at));
        }
    }

    fn create(
        &mut self,
        subject: usize,
        level: u8,
        ttl: Option<(i64, i64)>,
        previous: Option<Pick>,
        refresh: bool,
        handle: String,
    ) -> Answer {
        // A login with tokens checks for a signing key before anything
        // else and, without one, writes nothing.
        if refresh && self.signer().is_none() {
            return err("temporarily_unavailable");
        }
        if level == 0 || level > MAX_LEVEL {
            return err("validation_failed");
        }
        let (idle, abs) = ttl.unwrap_or((IDLE_SECS, ABSOLUTE_SECS));
        if !(1..=MAX_IDLE_SECS).contains(&idle) || !(1..=MAX_ABSOLUTE_SECS).contains(&abs) {
            return err("validation_failed");
        }
        let idle_ms = idle.min(abs) * 1000;
        let now = self.now;
        if let Some(t) = previous.and_then(|p| p.among(self.tokens.len())) {
            let s = self.tokens[t];
            if self.sessions[s].token == t && self.sessions[s].active(now) {
                self.revoke(s, RevokeReason::Replaced);
            }
        }
        let s = self.sessions.len();
        let token = self.tokens.len();
        self.tokens.push(s);
        let absolute_expires_at = now + abs * 1000;
        self.sessions.push(Session {
            handle,
            subject,
            token,
            created_at: now,
            last_seen_at: now,
            idle_ms,
            idle_expires_at: (now + idle_ms).min(absolute_expires_at),
            absolute_expires_at,
            level,
            methods: vec!["pwd".to_owned()],
            auth_time: now,
            revoked: None,
            swept: false,
        });
        self.event(s, EventKind::Created, None);
        let mut others: Vec<usize> = (0..s)
            .filter(|&o| self.sessions[o].subject == subject && self.sessions[o].active(now))
            .collect();
        others.sort_by(|&a, &b| {
            let (a, b) = (&self.sessions[a], &self.sessions[b]);
            (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle))
        });
        let over = (others.len() + 1).saturating_sub(SESSION_LIMIT);
        for &o in others.iter().take(over) {
            self.revoke(o, RevokeReason::SessionLimit);
        }
        let tokens = refresh.then(|| self.issue(s, token));
        Answer::Session {
            view: self.view(s),
            tokens,
        }
    }

    /// `issue_for_session`: an access token and a family of generation 0.
    fn issue(&mut self, s: usize, token: usize) -> Result<(), &'static str> {
        self.mint(s)?;
        let f = self.families.len();
        self.families.push(Family {
            session: s,
            session_token: token,
            generation: 0,
            rotated_at: self.now,
            sealed: false,
            revoked: false,
            deleted: false,
        });
        self.refresh.push((f, 0));
        Ok(())
    }

    fn mint(&mut self, s: usize) -> Result<(), &'static str> {
        let key = self.signer().ok_or("temporarily_unavailable")?;
        let exp_ms = (self.now + ACCESS_TTL_SECS * 1000).min(self.sessions[s].absolute_expires_at);
        self.access.push(Access {
            session: s,
            key,
            exp_secs: exp_ms.div_euclid(1000),
        });
        Ok(())
    }

    fn verify(&mut self, t: Pick) -> Answer {
        match self.live_by_token(t) {
            Ok(s) => {
                self.touch(s);
                Answer::Session {
                    view: self.view(s),
                    tokens: None,
                }
            }
            Err(e) => err(e),
        }
    }

    fn elevate(&mut self, t: Pick, level: u8, method: &str) -> Answer {
        if level == 0 || level > MAX_LEVEL {
            return err("validation_failed");
        }
        let s = match self.live_by_token(t) {
            Ok(s) => s,
            Err(e) => return err(e),
        };
        let now = self.now;
        let token = self.tokens.len();
        self.tokens.push(s);
        let x = &mut self.sessions[s];
        x.token = token;
        x.level = level;
        if !x.methods.iter().any(|m| m == method) {
            x.methods.push(method.to_owned());
        }
        x.auth_time = now;
        x.last_seen_at = now;
        x.idle_expires_at = (now + x.idle_ms).min(x.absolute_expires_at);
        self.event(s, EventKind::Elevated, None);
        Answer::Session {
            view: self.view(s),
            tokens: None,
        }
    }

    fn logout(&mut self, t: Pick) -> Answer {
        let Some(s) = t
            .among(self.tokens.len())
            .map(|t| (t, self.tokens[t]))
            .filter(|&(t, s)| self.sessions[s].token == t && !self.sessions[s].swept)
            .map(|(_, s)| s)
        else {
            return err("session_invalid");
        };
        if self.sessions[s].revoked.is_none() {
            self.revoke(s, RevokeReason::Logout);
        }
        Answer::LoggedOut
    }

    fn revoke_handle(&mut self, p: Pick) -> Answer {
        match p.among(self.sessions.len()) {
            Some(s) if !self.sessions[s].swept => {
                if self.sessions[s].revoked.is_some() {
                    Answer::Revoked(false)
                } else {
                    self.revoke(s, RevokeReason::Revoked);
                    Answer::Revoked(true)
                }
            }
            _ => err("not_found"),
        }
    }

    fn revoke_all(&mut self, subject: usize, except: Option<Pick>) -> Answer {
        let except = except.and_then(|p| p.among(self.sessions.len()));
        let now = self.now;
        let targets: Vec<usize> = (0..self.sessions.len())
            .filter(|&s| Some(s) != except)
            .filter(|&s| self.sessions[s].subject == subject && self.sessions[s].active(now))
            .collect();
        for &s in &targets {
            self.revoke(s, RevokeReason::RevokeAll);
        }
        Answer::RevokedCount(targets.len())
    }

    fn refresh(&mut self, p: Pick) -> Answer {
        let invalid = || err("invalid_grant");
        let Some(r) = p.among(self.refresh.len()) else {
            return invalid();
        };
        let (f, g) = self.refresh[r];
        let fam = &self.families[f];
        if fam.deleted || fam.revoked {
            return invalid();
        }
        let s = fam.session;
        let x = &self.sessions[s];
        if !x.active(self.now) || x.token != fam.session_token {
            return invalid();
        }
        let now = self.now;
        if g == fam.generation {
            if let Err(e) = self.mint(s) {
                return err(e);
            }
            let fam = &mut self.families[f];
            fam.generation += 1;
            fam.rotated_at = now;
            fam.sealed = self.grace_ms > 0;
            self.refresh.push((f, g + 1));
            self.touch(s);
            self.event(s, EventKind::Refreshed, None);
            return Answer::Refreshed(Successor::New);
        }
        if g + 1 == fam.generation && self.grace_ms > 0 && now - fam.rotated_at <= self.grace_ms {
            let Some(succ) = self.refresh.iter().position(|&x| x == (f, g + 1)) else {
                return err("model: successor never issued");
            };
            if let Err(e) = self.mint(s) {
                return err(e);
            }
            return Answer::Refreshed(Successor::Same(succ));
        }
        let fam = &mut self.families[f];
        fam.revoked = true;
        fam.sealed = false;
        // The session is ended before the family (a crash between the two
        // writes must leave the thief locked out), so its `revoked` event
        // comes first.
        let reuse = Some(RevokeReason::RefreshTokenReuse);
        self.revoke(s, RevokeReason::RefreshTokenReuse);
        self.event(s, EventKind::RefreshTokenReuse, reuse);
        invalid()
    }

    /// The usable keys (neither revoked nor pruned), by activation.
    fn usable(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.keys.len())
            .filter(|&k| !self.keys[k].revoked && !self.keys[k].pruned)
            .collect();
        v.sort_by(|&a, &b| {
            let (a, b) = (&self.keys[a], &self.keys[b]);
            (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid))
        });
        v
    }

    fn signer(&self) -> Option<usize> {
        self.usable()
            .into_iter()
            .rev()
            .find(|&k| self.keys[k].activates_at <= self.now)
    }

    fn published(&self, key: usize) -> bool {
        let usable = self.usable();
        let Some(i) = usable.iter().position(|&k| k == key) else {
            return false;
        };
        match usable.get(i + 1) {
            None => true,
            Some(&next) => {
                self.now <= self.keys[next].activates_at + (ACCESS_TTL_SECS + KEY_LEEWAY_SECS) * 1000
            }
        }
    }

    fn jwks(&self) -> Vec<String> {
        let signer = self.signer();
        let mut rest: Vec<usize> = self.usable().into_iter().filter(|&k| Some(k) != signer).collect();
        rest.reverse();
        signer
            .into_iter()
            .chain(rest)
            .filter(|&k| self.published(k))
            .map(|k| self.keys[k].kid.clone())
            .collect()
    }

    fn verify_access(&self, a: usize) -> Result<String, String> {
        let at = &self.access[a];
        if !self.published(at.key) {
            return Err("UnknownKid".to_owned());
        }
        if self.now.div_euclid(1000) >= at.exp_secs {
            return Err("Expired".to_owned());
        }
        Ok(self.sessions[at.session].handle.clone())
    }

    fn introspect_access(&self, a: usize) -> Option<String> {
        let sid = self.verify_access(a).ok()?;
        self.sessions[self.access[a].session]
            .active(self.now)
            .then_some(sid)
    }

    fn introspect_refresh(&self, r: usize) -> Option<String> {
        let (f, g) = self.refresh[r];
        let fam = &self.families[f];
        let x = &self.sessions[fam.session];
        (!fam.deleted
            && !fam.revoked
            && g == fam.generation
            && x.active(self.now)
            && x.token == fam.session_token)
            .then(|| x.handle.clone())
    }

    fn sweep(&mut self) -> Answer {
        let now = self.now;
        let mut swept = 0;
        for s in 0..self.sessions.len() {
            let x = &self.sessions[s];
            if x.swept || !x.expired(now) {
                continue;
            }
            swept += 1;
            self.sessions[s].swept = true;
            if self.sessions[s].revoked.is_none() {
                self.event(s, EventKind::Expired, None);
            }
            for fam in self.families.iter_mut().filter(|f| f.session == s) {
                fam.deleted = true;
            }
        }
        let mut cleared = 0;
        for fam in &mut self.families {
            if !fam.deleted && fam.sealed && fam.rotated_at < now - self.grace_ms {
                fam.sealed = false;
                cleared += 1;
            }
        }
        Answer::Swept {
            sessions: swept,
            cleared,
        }
    }

    /// Operator rotation: activates `secs` from now, stepped past a usable
    /// key activating in the same millisecond (a tie would leave the order
    /// to the kids) other than the one it replaces.
    fn rotate(&mut self, secs: i64, kid: String, replacing: Option<usize>) {
        let mut at = self.now + secs * 1000;
        while self
            .usable()
            .into_iter()
            .any(|k| Some(k) != replacing && self.keys[k].activates_at == at)
        {
            at += 1;
        }
        self.keys.push(Key {
            kid,
            activates_at: at,
            revoked: false,
            pruned: false,
        });
    }

    fn rotate_if_due(&mut self, kids: &mut Vec<String>) -> Answer {
        let order = |k: &Key| (k.activates_at, k.kid.clone());
        let newest = self.keys.iter().filter(|k| !k.pruned).max_by_key(|k| order(k));
        let newest_usable = self
            .keys
            .iter()
            .filter(|k| !k.pruned && !k.revoked)
            .max_by_key(|k| order(k));
        let (Some(newest), Some(usable)) = (newest, newest_usable) else {
            return err("model: the reference never runs out of keys");
        };
        let lead = (KEY_ROTATION_SECS - KEY_PREPUBLISH_SECS) * 1000;
        if self.now < usable.activates_at + lead {
            return Answer::KeyAdded(false);
        }
        let at = (usable.activates_at + KEY_ROTATION_SECS * 1000)
            .max(self.now + KEY_PREPUBLISH_SECS * 1000)
            .max(newest.activates_at + 1);
        self.keys.push(Key {
            kid: take(kids),
            activates_at: at,
            revoked: false,
            pruned: false,
        });
        Answer::KeyAdded(true)
    }

    fn revoke_key(&mut self, p: Pick, kids: &mut Vec<String>) -> Answer {
        let Some(k) = p.among(self.keys.len()).filter(|&k| !self.keys[k].pruned) else {
            return err("UnknownKey");
        };
        if self.keys[k].revoked {
            return err("AlreadyRevoked");
        }
        let replaced = self.signer() == Some(k);
        if replaced {
            self.rotate(0, take(kids), Some(k));
        }
        self.keys[k].revoked = true;
        Answer::KeyRevoked { replaced }
    }

    fn prune(&mut self) -> Answer {
        let mut gone: Vec<String> = Vec::new();
        for k in self.usable() {
            if !self.published(k) {
                gone.push(self.keys[k].kid.clone());
            }
        }
        for k in &mut self.keys {
            if gone.contains(&k.kid) {
                k.pruned = true;
            }
        }
        gone.sort();
        Answer::Pruned(gone)
    }

    /// Everything a caller could observe now; drains the step's events.
    pub fn observe(&mut self) -> Observed {
        let now = self.now;
        let lists = (0..SUBJECTS.len())
            .map(|subject| {
                let mut l: Vec<&Session> = self
                    .sessions
                    .iter()
                    .filter(|x| x.subject == subject && x.active(now))
                    .collect();
                l.sort_by(|a, b| (b.created_at, &b.handle).cmp(&(a.created_at, &a.handle)));
                l.into_iter().map(|x| x.handle.clone()).collect()
            })
            .collect();
        Observed {
            lists,
            active: self.sessions.iter().filter(|x| x.active(now)).count() as u64,
            records: (0..self.sessions.len())
                .map(|s| {
                    let x = &self.sessions[s];
                    (x.handle.clone(), (!x.swept).then(|| self.view(s)))
                })
                .collect(),
            events: std::mem::take(&mut self.events),
            jwks: self.jwks(),
        }
    }
}
