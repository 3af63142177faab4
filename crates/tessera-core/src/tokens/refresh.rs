//! The `refresh_token` grant: rotation, the reuse grace window and reuse
//! detection, and clearing the sealed successors once their window passes.

use std::sync::Arc;

use crate::clients::{Client, ClientKind};
use crate::error::Error;
use crate::model::{Binding, EventKind, NewEvent, RefreshFamily, RevokeReason, SessionRecord};
use crate::secret::{self, SecretToken, TokenKind};
use crate::store::{Rotation, StoreError};
use crate::time::Timestamp;

use super::{IssuedTokens, OAuthError, TokenService, parse_scope};

const CAS_ATTEMPTS: usize = 4;

impl TokenService {
    /// The `refresh_token` grant: rotation, the grace window, and reuse
    /// detection (SPEC §1). `client` is already authenticated.
    pub async fn refresh(
        &self,
        presented: &str,
        client: &Client,
        scope: Option<&str>,
    ) -> Result<IssuedTokens, OAuthError> {
        self.refresh_with(presented, client, scope, &[], None).await
    }

    /// [`refresh`](Self::refresh) by a caller that proved possession of a
    /// key (`holder`: the DPoP proof's key, else the connection's client
    /// certificate). A refresh token bound to a key is refused without
    /// that same key (RFC 9449 §5, RFC 8705 §4); the new access token is
    /// bound to `holder`. `resources` (RFC 8707) narrow its audience to
    /// some of those the grant was issued for.
    pub async fn refresh_with(
        &self,
        presented: &str,
        client: &Client,
        scope: Option<&str>,
        resources: &[String],
        holder: Option<&Binding>,
    ) -> Result<IssuedTokens, OAuthError> {
        if !client.refresh_tokens {
            return Err(OAuthError::UnauthorizedClient);
        }
        let hash = secret::parse(TokenKind::Refresh, presented.as_bytes())
            .map_err(|_| OAuthError::InvalidGrant("malformed refresh token"))?;
        let store = &self.families;
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
        if holder.is_none() && self.policy.sender_constrained_only {
            return Err(OAuthError::InvalidDpopProof(
                "this deployment issues only sender-constrained tokens: send a DPoP proof or a client certificate"
                    .into(),
            ));
        }
        if client.dpop_bound_access_tokens && !matches!(holder, Some(Binding::Dpop { .. })) {
            return Err(OAuthError::InvalidDpopProof(
                "this client must send a DPoP proof".into(),
            ));
        }
        match (&lookup.family.binding, holder) {
            (None, _) => {}
            (Some(bound), Some(h)) if bound == h => {}
            (Some(Binding::Dpop { .. }), None) => {
                return Err(OAuthError::InvalidDpopProof(
                    "this refresh token is bound to a DPoP key: send a DPoP proof".into(),
                ));
            }
            (Some(_), _) => {
                return Err(OAuthError::InvalidGrant(
                    "refresh token is bound to another key or certificate",
                ));
            }
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
        let audience = Self::narrow_audience(&lookup.family.audience, resources)?;

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
                let access_token = self.mint_for(&session, client, &at_scope, &audience, holder, now)?;
                let successor = SecretToken::generate(TokenKind::Refresh);
                let successor_hash = successor.hash();
                // Kept sealed only when a retry may need it back: at grace 0
                // the store never holds a usable successor.
                let sealed = (self.policy.reuse_grace_secs > 0)
                    .then(|| self.sealer.seal(successor.expose().as_bytes(), fam.id.as_bytes()));
                let mut rotation = Rotation::new(&fam.id, fam.generation, &successor_hash, now);
                rotation.successor_sealed = sealed.as_deref();
                rotation.touch = self.sessions.idle_slide(&session, now);
                // A public client's refresh tokens follow the key it first
                // proved (a confidential client's stay bound to its
                // authentication).
                if fam.binding.is_none() && client.kind == ClientKind::Public {
                    rotation.bind = holder;
                }
                let events = [NewEvent::new(EventKind::Refreshed, &session, now)];
                match store.rotate_refresh(&rotation, &events).await {
                    Ok(true) => {
                        return Ok(IssuedTokens {
                            access_token,
                            token_type: Binding::token_type(holder),
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
                let successor = secret::parse(TokenKind::Refresh, text.as_bytes())
                    .ok()
                    .map(|h| SecretToken::from_parts(text, h))
                    .ok_or_else(|| OAuthError::Unavailable("sealed refresh token is malformed".into()))?;
                return self.respond(&session, client, (at_scope, &audience), successor, holder, now);
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
            // The session first: it is what every face checks, so a crash
            // between the two writes leaves the thief locked out (the
            // family cannot refresh for an ended session) rather than the
            // family ended and the session still valid.
            match self
                .sessions
                .revoke(&fam.handle, RevokeReason::RefreshTokenReuse)
                .await
            {
                Ok(_) | Err(Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            store
                .revoke_refresh_family(&fam.id, RevokeReason::RefreshTokenReuse, now, &reuse)
                .await?;
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
        let store = &self.families;
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

    /// The client a refresh token was issued to, if it is one of ours
    /// (consumed and revoked ones included, until swept): the token
    /// endpoints authenticate the client a token names before anything else.
    pub async fn refresh_token_client(&self, presented: &str) -> Result<Option<String>, StoreError> {
        let Ok(hash) = secret::parse(TokenKind::Refresh, presented.as_bytes()) else {
            return Ok(None);
        };
        Ok(self
            .families
            .find_refresh(&hash)
            .await?
            .map(|l| l.family.client_id.clone()))
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        session: &SessionRecord,
        client: &Client,
        (scope, audience): (Vec<String>, &[String]),
        successor: SecretToken,
        holder: Option<&Binding>,
        now: Timestamp,
    ) -> Result<IssuedTokens, OAuthError> {
        let access_token = self.mint_for(session, client, &scope, audience, holder, now)?;
        Ok(IssuedTokens {
            access_token,
            token_type: Binding::token_type(holder),
            expires_in: self.policy.access_token_ttl_secs,
            refresh_token: Some(successor),
            scope: scope.join(" "),
        })
    }

    /// The family's session, if it is still the same live session.
    pub(super) async fn live_session_of(
        &self,
        fam: &RefreshFamily,
    ) -> Result<Arc<SessionRecord>, OAuthError> {
        let found = self.sessions.lookup(&fam.handle).await?;
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
}
