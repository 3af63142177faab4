//! Stateless tokens over sessions: RFC 9068 access tokens and rotating
//! refresh tokens (SPEC §1, §4.3).
//!
//! A refresh-token family belongs to one session and one client. Each use
//! rotates it with a compare-and-swap on the family's generation, so of N
//! concurrent refreshes with the same token exactly one rotates; the others
//! find the token one generation behind and, inside the grace window, get
//! the very same successor back (it is kept sealed for that window only;
//! the sweeper clears it after, [`TokenService::clear_sealed_successors`]).
//! Any other use of a consumed token is theft: the session is revoked and a
//! `refresh_token_reuse` event recorded.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access::{AccessClaims, Audience, mint, new_jti};
use crate::clients::{Client, ClientRegistry, DEFAULT_CLIENT_ID};
use crate::error::Error;
use crate::keys::KeyManager;
use crate::model::{EventKind, NewEvent, RefreshFamily, RevokeReason, SessionRecord};
use crate::seal::Sealer;
use crate::sessions::Sessions;
use crate::store::{Rotation, StoreError};
use crate::time::Timestamp;
use crate::token::{self, SecretToken, TokenKind};

/// Largest `scope` parameter accepted, and largest single scope token.
const MAX_SCOPE_BYTES: usize = 1024;
const MAX_AUDIENCES: usize = 8;
const CAS_ATTEMPTS: usize = 4;
/// Access tokens longer than this are refused before any parsing.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 8192;
/// Longest reuse grace window. The window exists for a client's retry and a
/// second tab racing the first, which take seconds; a longer one only keeps a
/// stolen consumed token good for longer, and keeps the successor sealed in
/// the store for longer (SPEC §5: a copy of the store yields no refresh
/// token but those rotated within the last grace window).
pub const MAX_REUSE_GRACE_SECS: i64 = 60;

/// Lifetimes and names of issued tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `iss` of every access token; byte-identical to the metadata's issuer.
    pub issuer: String,
    pub access_token_ttl_secs: i64,
    /// Inside this window after a rotation, presenting the consumed token
    /// again returns the same successor (0 disables: strict rotation). At
    /// most [`MAX_REUSE_GRACE_SECS`]; [`TokenService::new`] caps it.
    pub reuse_grace_secs: i64,
    /// `aud` when a request names none.
    pub default_audience: String,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            access_token_ttl_secs: 300,
            reuse_grace_secs: 10,
            default_audience: "tessera".into(),
        }
    }
}

/// `tokens` in `POST /v1/sessions`: which client, scope and audience the
/// session's tokens are for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 6749 §3.3).
    #[serde(default)]
    pub scope: Option<String>,
    /// One audience or several.
    #[serde(default)]
    pub audience: Option<Audience>,
}

/// Tokens handed out by issuance or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<SecretToken>,
    /// The access token's scope (space-separated), possibly narrowed.
    pub scope: String,
}

/// RFC 6749 §5.2 errors (plus RFC 8707 `invalid_target`).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("the client may not use this grant")]
    UnauthorizedClient,
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    InvalidTarget(String),
    /// The store (or key material) is unavailable: 503, never a grant.
    #[error("temporarily unavailable")]
    Unavailable(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::Unavailable(e.to_string())
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(s) => s.into(),
            Error::SessionInvalid | Error::SessionExpired | Error::SessionRevoked | Error::NotFound => {
                OAuthError::InvalidGrant("the session is no longer active")
            }
            other => OAuthError::InvalidRequest(other.to_string()),
        }
    }
}

/// RFC 7662 answer. `Inactive` serializes as exactly `{"active":false}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    Inactive,
    Active(Map<String, Value>),
}

impl Serialize for Introspection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Introspection::Inactive => {
                let mut m = Map::new();
                m.insert("active".into(), Value::Bool(false));
                m.serialize(s)
            }
            Introspection::Active(m) => m.serialize(s),
        }
    }
}

/// Issues, refreshes, revokes and introspects tokens; every face that deals
/// in tokens goes through this.
#[derive(Clone)]
pub struct TokenService {
    sessions: Sessions,
    keys: Arc<KeyManager>,
    clients: Arc<ClientRegistry>,
    sealer: Arc<Sealer>,
    policy: Arc<TokenPolicy>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// The reuse grace window is capped to `0..=`[`MAX_REUSE_GRACE_SECS`]
    /// here, whoever built the policy (the service's config refuses larger
    /// values; an embedding app gets the cap).
    pub fn new(
        sessions: Sessions,
        keys: Arc<KeyManager>,
        clients: Arc<ClientRegistry>,
        sealer: Arc<Sealer>,
        mut policy: TokenPolicy,
    ) -> Self {
        policy.reuse_grace_secs = policy.reuse_grace_secs.clamp(0, MAX_REUSE_GRACE_SECS);
        Self {
            sessions,
            keys,
            clients,
            sealer,
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    pub fn keys(&self) -> &Arc<KeyManager> {
        &self.keys
    }

    pub fn clients(&self) -> &Arc<ClientRegistry> {
        &self.clients
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Issues an access token (and, if the client gets them, a refresh-token
    /// family) for a session just created or verified by a trusted backend.
    /// Least privilege: exactly the scope and audience asked for, each
    /// allowed for the client.
    pub async fn issue_for_session(
        &self,
        session: &SessionRecord,
        req: &TokenRequest,
    ) -> Result<IssuedTokens, OAuthError> {
        let (client, scope, audience) = self.resolve_request(req)?;
        let now = self.sessions.now();
        let access_token = self.mint_for(session, client, &scope, &audience, now)?;
        let refresh_token = if client.refresh_tokens {
            let token = SecretToken::generate(TokenKind::Refresh);
            let family = RefreshFamily {
                id: token::new_id(REFRESH_FAMILY_PREFIX),
                handle: session.handle.clone(),
                session_token_hash: session.token_hash,
                client_id: client.client_id.clone(),
                scope: scope.clone(),
                audience: audience.clone(),
                generation: 0,
                created_at: now,
                rotated_at: now,
                current_sealed: None,
                binding: None,
                revoked: None,
            };
            self.sessions
                .store()
                .create_refresh_family(&family, &token.hash(), &[])
                .await?;
            Some(token)
        } else {
            None
        };
        Ok(IssuedTokens {
            access_token,
            expires_in: self.policy.access_token_ttl_secs,
            refresh_token,
            scope: scope.join(" "),
        })
    }

    /// Checks a token request exactly as [`issue_for_session`](Self::issue_for_session)
    /// will, so a caller can refuse it before writing anything.
    pub fn check_request(&self, req: &TokenRequest) -> Result<(), OAuthError> {
        self.resolve_request(req).map(|_| ())
    }

    /// The client, scope and audience a request names, each allowed for the
    /// client (least privilege: exactly what was asked for).
    fn resolve_request(&self, req: &TokenRequest) -> Result<(&Client, Vec<String>, Vec<String>), OAuthError> {
        let client_id = req.client_id.as_deref().unwrap_or(DEFAULT_CLIENT_ID);
        let client = self
            .clients
            .get(client_id)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("unknown client_id {client_id:?}")))?;
        let scope = parse_scope(req.scope.as_deref())?;
        if let Some(s) = scope.iter().find(|s| !client.allows_scope(s)) {
            return Err(OAuthError::InvalidScope(format!(
                "scope {s:?} is not allowed for this client"
            )));
        }
        let audience = self.audience_for(client, req.audience.as_ref())?;
        Ok((client, scope, audience))
    }

    /// The `refresh_token` grant: rotation, the grace window, and reuse
    /// detection (SPEC §1). `client` is already authenticated.
    pub async fn refresh(
        &self,
        presented: &str,
        client: &Client,
        scope: Option<&str>,
    ) -> Result<IssuedTokens, OAuthError> {
        if !client.refresh_tokens {
            return Err(OAuthError::UnauthorizedClient);
        }
        let hash = token::parse(TokenKind::Refresh, presented.as_bytes())
            .map_err(|_| OAuthError::InvalidGrant("malformed refresh token"))?;
        let store = self.sessions.store();
        // The token's family and the family's session in one store call (one
        // snapshot, one round trip): every outcome below needs both.
        let (mut lookup, mut found) = store
            .find_refresh_with_session(&hash)
            .await?
            .ok_or(OAuthError::InvalidGrant("unknown refresh token"))?;
        // A token bound to another client is refused without revealing or
        // touching anything (RT-06). Its session was read along with it, but
        // reading writes nothing and nothing of it is revealed before this.
        if lookup.family.client_id != client.client_id {
            return Err(OAuthError::InvalidGrant(
                "refresh token was issued to another client",
            ));
        }
        let requested = match scope {
            Some(s) => {
                let req = parse_scope(Some(s))?;
                if let Some(w) = req.iter().find(|r| !lookup.family.scope.contains(r)) {
                    return Err(OAuthError::InvalidScope(format!(
                        "scope {w:?} was not granted; a refresh may only narrow the scope"
                    )));
                }
                Some(req)
            }
            None => None,
        };

        for _ in 0..CAS_ATTEMPTS {
            let fam = lookup.family.clone();
            if fam.revoked.is_some() {
                return Err(OAuthError::InvalidGrant("refresh token has been revoked"));
            }
            let session = self.live_session(found, &fam)?;
            let now = self.sessions.now();
            let at_scope = requested.clone().unwrap_or_else(|| fam.scope.clone());

            if lookup.generation == fam.generation {
                // Everything that can fail happens before the rotation, and
                // the idle slide is part of its write: once the presented
                // token is consumed, the client gets its successor. (A failure
                // after the commit would leave the client holding a consumed
                // token, whose retry at grace 0 is taken as theft.)
                let access_token = self.mint_for(&session, client, &at_scope, &fam.audience, now)?;
                let successor = SecretToken::generate(TokenKind::Refresh);
                let successor_hash = successor.hash();
                // Kept sealed only when a retry may need it back: at grace 0
                // the store never holds a usable successor.
                let sealed = (self.policy.reuse_grace_secs > 0)
                    .then(|| self.sealer.seal(successor.expose().as_bytes(), fam.id.as_bytes()));
                let mut rotation = Rotation::new(&fam.id, fam.generation, &successor_hash, now);
                rotation.successor_sealed = sealed.as_deref();
                rotation.touch = self.sessions.idle_slide(&session, now);
                let events = [NewEvent::new(EventKind::Refreshed, &session, now)];
                match store.rotate_refresh(&rotation, &events).await {
                    Ok(true) => {
                        return Ok(IssuedTokens {
                            access_token,
                            expires_in: self.policy.access_token_ttl_secs,
                            refresh_token: Some(successor),
                            scope: at_scope.join(" "),
                        });
                    }
                    // Lost the race (or a hash collision): look again; the
                    // token is now one generation behind.
                    Ok(false) | Err(StoreError::Duplicate) => {
                        (lookup, found) = store
                            .find_refresh_with_session(&hash)
                            .await?
                            .ok_or(OAuthError::InvalidGrant("unknown refresh token"))?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }

            let grace_ms = self.policy.reuse_grace_secs.saturating_mul(1000);
            if lookup.generation + 1 == fam.generation
                && grace_ms > 0
                && now.millis_since(fam.rotated_at) <= grace_ms
                && let Some(sealed) = &fam.current_sealed
            {
                let raw = self
                    .sealer
                    .open(sealed, fam.id.as_bytes())
                    .map_err(|e| OAuthError::Unavailable(format!("cannot unseal refresh token: {e}")))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| OAuthError::Unavailable("sealed refresh token is not text".into()))?;
                let successor = token::parse(TokenKind::Refresh, text.as_bytes())
                    .ok()
                    .map(|h| SecretToken::from_parts(text, h))
                    .ok_or_else(|| OAuthError::Unavailable("sealed refresh token is malformed".into()))?;
                return self.respond(&session, client, &fam, at_scope, successor, now);
            }

            // A consumed token outside the grace: theft. End the session and
            // the family, and say so in the audit log.
            tracing::warn!(
                handle = %fam.handle,
                family = %fam.id,
                presented_generation = lookup.generation,
                current_generation = fam.generation,
                "refresh token reuse detected; revoking the session"
            );
            let reuse = [NewEvent {
                reason: Some(RevokeReason::RefreshTokenReuse),
                ..NewEvent::new(EventKind::RefreshTokenReuse, &session, now)
            }];
            store
                .revoke_refresh_family(&fam.id, RevokeReason::RefreshTokenReuse, now, &reuse)
                .await?;
            match self
                .sessions
                .revoke(&fam.handle, RevokeReason::RefreshTokenReuse)
                .await
            {
                Ok(_) | Err(Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            return Err(OAuthError::InvalidGrant("refresh token was already used"));
        }
        Err(OAuthError::Unavailable("refresh contention; retry".into()))
    }

    /// Clears the sealed successors whose grace window has passed, in
    /// batches of `batch` (each its own store call, so requests interleave);
    /// returns how many. Run by the sweeper: afterwards a copy of the store
    /// holds no refresh token but those rotated within the grace window.
    pub async fn clear_sealed_successors(&self, batch: u32) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let store = self.sessions.store();
        let mut total = 0u64;
        loop {
            let grace_ms = self.policy.reuse_grace_secs.saturating_mul(1000);
            let before = self.sessions.now().plus_millis(-grace_ms);
            let n = store.clear_sealed_successors(before, batch).await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
        }
    }

    fn respond(
        &self,
        session: &SessionRecord,
        client: &Client,
        fam: &RefreshFamily,
        scope: Vec<String>,
        successor: SecretToken,
        now: Timestamp,
    ) -> Result<IssuedTokens, OAuthError> {
        let access_token = self.mint_for(session, client, &scope, &fam.audience, now)?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.policy.access_token_ttl_secs,
            refresh_token: Some(successor),
            scope: scope.join(" "),
        })
    }

    /// The family's session, if it is still the same live session.
    async fn live_session_of(&self, fam: &RefreshFamily) -> Result<Arc<SessionRecord>, OAuthError> {
        let found = self.sessions.store().get(&fam.handle).await?;
        self.live_session(found, fam)
    }

    /// `found`, the session stored under the family's handle (`None` if there
    /// is none), if it is still the same live session the family was issued
    /// on. Every check of a family's session is here, whichever read found it.
    fn live_session(
        &self,
        found: Option<Arc<SessionRecord>>,
        fam: &RefreshFamily,
    ) -> Result<Arc<SessionRecord>, OAuthError> {
        let s = found.ok_or(OAuthError::InvalidGrant("the session has ended"))?;
        if !s.is_active(self.sessions.now()) {
            return Err(OAuthError::InvalidGrant("the session has ended"));
        }
        // A login or step-up regenerated the session token: tokens issued
        // before it belong to the old privilege level and end with it.
        if !s.token_hash.ct_eq(&fam.session_token_hash) {
            return Err(OAuthError::InvalidGrant(
                "the session was re-authenticated; sign in again",
            ));
        }
        Ok(s)
    }

    fn mint_for(
        &self,
        session: &SessionRecord,
        client: &Client,
        scope: &[String],
        audience: &[String],
        now: Timestamp,
    ) -> Result<String, OAuthError> {
        let signer = self
            .keys
            .signer()
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        let exp = now
            .plus_secs(self.policy.access_token_ttl_secs)
            .min(session.absolute_expires_at);
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: session.subject.clone(),
            aud: Audience::new(audience.to_vec()),
            exp: exp.unix_secs(),
            iat: now.unix_secs(),
            jti: new_jti(),
            client_id: client.client_id.clone(),
            sid: session.handle.clone(),
            scope: (!scope.is_empty()).then(|| scope.join(" ")),
            auth_time: Some(session.auth.time.unix_secs()),
            acr: Some(session.auth.level.to_string()),
            amr: (!session.auth.methods.is_empty()).then(|| session.auth.methods.clone()),
            cnf: None,
        };
        mint(&signer, &claims).map_err(|e| OAuthError::Unavailable(e.to_string()))
    }

    fn audience_for(&self, client: &Client, req: Option<&Audience>) -> Result<Vec<String>, OAuthError> {
        let aud = match req {
            Some(a) => a.as_slice().to_vec(),
            None => vec![self.policy.default_audience.clone()],
        };
        if aud.is_empty() || aud.len() > MAX_AUDIENCES {
            return Err(OAuthError::InvalidTarget(format!(
                "between 1 and {MAX_AUDIENCES} audiences"
            )));
        }
        for a in &aud {
            if a.is_empty() || a.len() > 256 || a.chars().any(char::is_control) {
                return Err(OAuthError::InvalidTarget(
                    "audience must be 1-256 printable characters".into(),
                ));
            }
            if !client.allows_audience(a) {
                return Err(OAuthError::InvalidTarget(format!(
                    "audience {a:?} is not allowed for this client"
                )));
            }
        }
        Ok(aud)
    }

    /// Verifies one of our own access tokens (signature with a published
    /// key, `typ`, `iss`, `exp`) without checking the audience; `None` if it
    /// is not one.
    pub fn decode_own_access_token(&self, token: &str) -> Option<AccessClaims> {
        use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
        if token.len() > MAX_ACCESS_TOKEN_BYTES {
            return None;
        }
        let header = decode_header(token).ok()?;
        let typ = header.typ.as_deref()?;
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return None;
        }
        let set = self.keys.jwk_set();
        let jwk = set.find(header.kid.as_deref()?)?;
        // The algorithm comes from our key, never from the token.
        let key_alg = jwk.common.key_algorithm?;
        if format!("{key_alg:?}") != format!("{:?}", header.alg) {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.policy.issuer.as_str()]);
        v.validate_aud = false;
        // Expiry is checked against the core's clock below, not the system's.
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = decode::<AccessClaims>(token, &key, &v).ok()?.claims;
        (claims.exp > self.sessions.now().unix_secs()).then_some(claims)
    }

    /// RFC 7009. Any valid token of this client ends its session (access
    /// tokens carry only `sid`, so ending the session is how their access
    /// tokens die everywhere the revocation feed reaches). Unknown tokens,
    /// and tokens of other clients, are a silent no-op.
    pub async fn revoke(&self, presented: &str, client: &Client) -> Result<(), OAuthError> {
        if let Ok(hash) = token::parse(TokenKind::Refresh, presented.as_bytes()) {
            if let Some(l) = self.sessions.store().find_refresh(&hash).await?
                && l.family.client_id == client.client_id
            {
                let now = self.sessions.now();
                self.sessions
                    .store()
                    .revoke_refresh_family(&l.family.id, RevokeReason::Revoked, now, &[])
                    .await?;
                self.revoke_session(&l.family.handle).await?;
            }
            return Ok(());
        }
        if let Some(claims) = self.decode_own_access_token(presented)
            && claims.client_id == client.client_id
        {
            self.revoke_session(&claims.sid).await?;
        }
        Ok(())
    }

    async fn revoke_session(&self, handle: &str) -> Result<(), OAuthError> {
        match self.sessions.revoke(handle, RevokeReason::Revoked).await {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// RFC 7662. Anything not active is exactly `{"active":false}`.
    pub async fn introspect(&self, presented: &str) -> Result<Introspection, OAuthError> {
        let now = self.sessions.now();
        if let Ok(hash) = token::parse(TokenKind::Refresh, presented.as_bytes()) {
            let Some(l) = self.sessions.store().find_refresh(&hash).await? else {
                return Ok(Introspection::Inactive);
            };
            if l.generation != l.family.generation || l.family.revoked.is_some() {
                return Ok(Introspection::Inactive);
            }
            let Ok(s) = self.live_session_of(&l.family).await else {
                return Ok(Introspection::Inactive);
            };
            let mut m = Map::new();
            m.insert("active".into(), Value::Bool(true));
            m.insert("token_type".into(), "refresh_token".into());
            m.insert("client_id".into(), l.family.client_id.clone().into());
            m.insert("sub".into(), s.subject.clone().into());
            m.insert("sid".into(), s.handle.clone().into());
            m.insert("iss".into(), self.policy.issuer.clone().into());
            if !l.family.scope.is_empty() {
                m.insert("scope".into(), l.family.scope.join(" ").into());
            }
            m.insert(
                "aud".into(),
                serde_json::to_value(Audience::new(l.family.audience.clone())).unwrap_or(Value::Null),
            );
            m.insert("iat".into(), l.family.rotated_at.unix_secs().into());
            m.insert("exp".into(), s.expires_at().unix_secs().into());
            m.insert("auth_time".into(), s.auth.time.unix_secs().into());
            return Ok(Introspection::Active(m));
        }
        let Some(claims) = self.decode_own_access_token(presented) else {
            return Ok(Introspection::Inactive);
        };
        // Revocation and expiry of the session count too (RV-11).
        match self.sessions.store().get(&claims.sid).await? {
            Some(s) if s.is_active(now) => {}
            _ => return Ok(Introspection::Inactive),
        }
        let Ok(Value::Object(mut m)) = serde_json::to_value(&claims) else {
            return Ok(Introspection::Inactive);
        };
        m.insert("active".into(), Value::Bool(true));
        m.insert("token_type".into(), "Bearer".into());
        Ok(Introspection::Active(m))
    }
}

pub const REFRESH_FAMILY_PREFIX: &str = "rtf_";

/// RFC 6749 §3.3 scope: space-separated `scope-token`s of printable ASCII
/// without `"` or `\`; duplicates dropped, order kept.
pub fn parse_scope(s: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(s) = s else { return Ok(Vec::new()) };
    if s.len() > MAX_SCOPE_BYTES {
        return Err(OAuthError::InvalidScope(format!(
            "scope longer than {MAX_SCOPE_BYTES} bytes"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(' ').filter(|t| !t.is_empty()) {
        if !tok
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return Err(OAuthError::InvalidScope(
                "scope tokens are printable ASCII without quotes or backslashes".into(),
            ));
        }
        if !out.iter().any(|o| o == tok) {
            out.push(tok.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
