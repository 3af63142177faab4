//! The code under test: the core's services over the store under test, on a
//! `ManualClock`, answering each operation in the reference's terms.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_core::secret::{self, SESSION_HANDLE_PREFIX};
use tessera_core::tokens::TokenService;
use tessera_core::{
    AuthInput, Client, ClientRegistry, CreateSession, EventQuery, EventStore, Introspection, IssuedSession,
    KeyManager, KeyPolicy, LoginError, ManualClock, OAuthError, RefreshStore, RevokeReason, Sealer,
    SecretToken, SessionPolicy, SessionRecord, SessionStore, Sessions, SigningAlg, SigningKeyStore,
    TokenKind, TokenPolicy, TokenRequest, TtlInput,
};

use super::ops::{Op, Pick, Presented, SUBJECTS};
use super::reference::{self as r, Answer, Fresh, Observed, Successor, View, err};
use crate::support::{T0, error_kind};

pub struct Real<S> {
    store: Arc<S>,
    pub clock: ManualClock,
    sessions: Sessions,
    svc: TokenService,
    keys: Arc<KeyManager>,
    client: Client,
    handles: Vec<String>,
    session_tokens: Vec<String>,
    refresh_tokens: Vec<String>,
    access_tokens: Vec<String>,
    kids: Vec<String>,
    last_event: u64,
}

fn policy() -> SessionPolicy {
    SessionPolicy {
        idle_timeout_secs: r::IDLE_SECS,
        absolute_timeout_secs: r::ABSOLUTE_SECS,
        max_idle_timeout_secs: r::MAX_IDLE_SECS,
        max_absolute_timeout_secs: r::MAX_ABSOLUTE_SECS,
        max_sessions_per_subject: Some(r::SESSION_LIMIT as u32),
        max_data_bytes: 16 * 1024,
        touch_interval_secs: r::TOUCH_INTERVAL_SECS,
        max_auth_level: r::MAX_LEVEL,
    }
}

fn view(rec: &SessionRecord) -> View {
    View {
        handle: rec.handle.clone(),
        subject: rec.subject.clone(),
        level: rec.auth.level,
        methods: rec.auth.methods.clone(),
        auth_time: rec.auth.time.unix_millis(),
        created_at: rec.created_at.unix_millis(),
        last_seen_at: rec.last_seen_at.unix_millis(),
        idle_expires_at: rec.idle_expires_at.unix_millis(),
        absolute_expires_at: rec.absolute_expires_at.unix_millis(),
        revoked: rec.revoked.map(|x| x.reason),
    }
}

fn unknown(kind: TokenKind) -> String {
    SecretToken::generate(kind).expose().to_owned()
}

/// `None` picks a token nobody issued.
fn pick_from(list: &[String], p: Pick, kind: TokenKind) -> String {
    p.among(list.len())
        .map_or_else(|| unknown(kind), |i| list[i].clone())
}

impl<S: SessionStore + RefreshStore + SigningKeyStore + EventStore> Real<S> {
    /// The services over a fresh store at [`T0`], after the first start's
    /// `ensure_key`; returns the first key's id too.
    pub(super) async fn start(store: Arc<S>, grace_secs: i64) -> Result<(Self, String), String> {
        let clock = ManualClock::new(T0);
        let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), policy());
        let sealer = Arc::new(Sealer::new(&Sealer::generate_key()));
        let key_policy = KeyPolicy {
            alg: SigningAlg::EdDSA,
            rotation_interval_secs: r::KEY_ROTATION_SECS,
            prepublish_secs: r::KEY_PREPUBLISH_SECS,
            access_token_ttl_secs: r::ACCESS_TTL_SECS,
            leeway_secs: r::KEY_LEEWAY_SECS,
        };
        key_policy.validate().map_err(|e| e.to_string())?;
        let keys = Arc::new(KeyManager::new(
            store.clone(),
            Arc::new(clock.clone()),
            sealer.clone(),
            key_policy,
        ));
        let kid = keys
            .ensure_key()
            .await
            .map_err(|e| format!("ensure_key: {e}"))?
            .ok_or("ensure_key on a fresh store added no key")?;
        let svc = TokenService::new(
            sessions.clone(),
            store.clone(),
            keys.clone(),
            Arc::new(ClientRegistry::new(Vec::new()).map_err(|e| format!("registry: {e}"))?),
            sealer,
            TokenPolicy {
                access_token_ttl_secs: r::ACCESS_TTL_SECS,
                reuse_grace_secs: grace_secs,
                ..TokenPolicy::default()
            },
        );
        let client = svc.clients().get("default").ok_or("no default client")?.clone();
        let real = Self {
            store,
            clock,
            sessions,
            svc,
            keys,
            client,
            handles: Vec::new(),
            session_tokens: Vec::new(),
            refresh_tokens: Vec::new(),
            access_tokens: Vec::new(),
            kids: vec![kid.clone()],
            last_event: 0,
        };
        Ok((real, kid))
    }

    /// Runs `op`; the answer, and the names it chose for the reference.
    pub(super) async fn apply(&mut self, op: &Op) -> (Answer, Fresh) {
        let mut fresh = Fresh::default();
        let answer = match *op {
            Op::Create {
                subject,
                level,
                ttl,
                previous,
                refresh,
            } => {
                let req = CreateSession {
                    subject: SUBJECTS[subject].to_owned(),
                    auth: Some(AuthInput {
                        level: Some(level),
                        methods: vec!["pwd".to_owned()],
                    }),
                    ttl: ttl.map(|(idle, abs)| TtlInput {
                        idle_secs: Some(idle),
                        absolute_secs: Some(abs),
                    }),
                    previous_session_token: previous
                        .map(|p| pick_from(&self.session_tokens, p, TokenKind::Session)),
                    ..CreateSession::default()
                };
                // With tokens, as the service logs in: the session and its
                // refresh family in one step (`TokenService::login`).
                let created = if refresh {
                    match self.login(req).await {
                        Ok(issued) => Ok((issued, Some(Ok(())))),
                        Err(LoginError::Session(e)) => Err(err(error_kind(&e))),
                        Err(LoginError::Tokens(e)) => Err(err(e.code())),
                    }
                } else {
                    self.sessions
                        .create(req)
                        .await
                        .map(|issued| (issued, None))
                        .map_err(|e| err(error_kind(&e)))
                };
                match created {
                    Ok((issued, tokens)) => {
                        self.handles.push(issued.session.handle.clone());
                        self.session_tokens.push(issued.token.expose().to_owned());
                        fresh.handle = Some(issued.session.handle.clone());
                        Answer::Session {
                            view: view(&issued.session),
                            tokens,
                        }
                    }
                    Err(answer) => answer,
                }
            }
            Op::Verify(t) => {
                let t = pick_from(&self.session_tokens, t, TokenKind::Session);
                match self.sessions.verify(&t).await {
                    Ok(rec) => Answer::Session {
                        view: view(&rec),
                        tokens: None,
                    },
                    Err(e) => err(error_kind(&e)),
                }
            }
            Op::Elevate { token, level, method } => {
                let t = pick_from(&self.session_tokens, token, TokenKind::Session);
                let auth = AuthInput {
                    level: Some(level),
                    methods: vec![method.to_owned()],
                };
                match self.sessions.elevate(&t, auth).await {
                    Ok(issued) => {
                        self.session_tokens.push(issued.token.expose().to_owned());
                        Answer::Session {
                            view: view(&issued.session),
                            tokens: None,
                        }
                    }
                    Err(e) => err(error_kind(&e)),
                }
            }
            Op::Logout(t) => {
                let t = pick_from(&self.session_tokens, t, TokenKind::Session);
                match self.sessions.revoke_token(&t, RevokeReason::Logout).await {
                    Ok(()) => Answer::LoggedOut,
                    Err(e) => err(error_kind(&e)),
                }
            }
            Op::RevokeHandle(p) => {
                let h = p.among(self.handles.len()).map_or_else(
                    || secret::new_id(SESSION_HANDLE_PREFIX),
                    |i| self.handles[i].clone(),
                );
                match self.sessions.revoke(&h, RevokeReason::Revoked).await {
                    Ok(b) => Answer::Revoked(b),
                    Err(e) => err(error_kind(&e)),
                }
            }
            Op::RevokeAll { subject, except } => {
                let except = except.map(|p| {
                    p.among(self.handles.len()).map_or_else(
                        || secret::new_id(SESSION_HANDLE_PREFIX),
                        |i| self.handles[i].clone(),
                    )
                });
                match self
                    .sessions
                    .revoke_all(SUBJECTS[subject], except.as_deref(), RevokeReason::RevokeAll)
                    .await
                {
                    Ok(n) => Answer::RevokedCount(n),
                    Err(e) => err(error_kind(&e)),
                }
            }
            Op::Refresh(p) => {
                let t = pick_from(&self.refresh_tokens, p, TokenKind::Refresh);
                match self.svc.refresh(&t, &self.client, None).await {
                    Ok(issued) => {
                        self.access_tokens.push(issued.access_token);
                        let succ = issued.refresh_token.map(|s| s.expose().to_owned());
                        match succ {
                            None => err("no successor refresh token"),
                            Some(s) => match self.refresh_tokens.iter().position(|x| *x == s) {
                                Some(i) => Answer::Refreshed(Successor::Same(i)),
                                None => {
                                    self.refresh_tokens.push(s);
                                    Answer::Refreshed(Successor::New)
                                }
                            },
                        }
                    }
                    Err(e) => err(e.code()),
                }
            }
            Op::VerifyAccess(p) => match p.among(self.access_tokens.len()) {
                None => Answer::Nothing,
                Some(i) => Answer::Access(
                    self.svc
                        .verify_access_token(&self.access_tokens[i], &self.svc.own_token_rules())
                        .map(|c| c.sid.unwrap_or_default())
                        .map_err(|e| format!("{e:?}")),
                ),
            },
            Op::Introspect(Presented::Access(p)) => match p.among(self.access_tokens.len()) {
                None => Answer::Nothing,
                Some(i) => self.introspect(&self.access_tokens[i].clone()).await,
            },
            Op::Introspect(Presented::Refresh(p)) => {
                let t = pick_from(&self.refresh_tokens, p, TokenKind::Refresh);
                self.introspect(&t).await
            }
            Op::Advance { ms } => {
                self.clock.advance_millis(ms);
                Answer::Nothing
            }
            Op::Sweep => {
                // Small batches, so the sweeps' own batching is exercised.
                match (
                    self.sessions.sweep(2).await,
                    self.svc.clear_sealed_successors(2).await,
                ) {
                    (Ok(sessions), Ok(cleared)) => Answer::Swept { sessions, cleared },
                    (Err(e), _) => err(error_kind(&e)),
                    (_, Err(e)) => Answer::Error(format!("store: {e}")),
                }
            }
            Op::RotateKey { secs } => match self.keys.rotate(secs).await {
                Ok(kid) => {
                    fresh.kids.push(kid);
                    Answer::KeyAdded(true)
                }
                Err(e) => key_error(&e),
            },
            Op::RotateIfDue => match self.keys.rotate_if_due().await {
                Ok(kid) => {
                    let added = kid.is_some();
                    fresh.kids.extend(kid);
                    Answer::KeyAdded(added)
                }
                Err(e) => key_error(&e),
            },
            Op::RevokeKey(p) => {
                let kid = p
                    .among(self.kids.len())
                    .map_or_else(|| "no-such-kid".to_owned(), |i| self.kids[i].clone());
                match self.keys.revoke(&kid).await {
                    Ok(replacement) => {
                        let replaced = replacement.is_some();
                        fresh.kids.extend(replacement);
                        Answer::KeyRevoked { replaced }
                    }
                    Err(e) => key_error(&e),
                }
            }
            Op::PruneKeys => match self.keys.prune().await {
                Ok(mut gone) => {
                    gone.sort();
                    Answer::Pruned(gone)
                }
                Err(e) => key_error(&e),
            },
        };
        self.kids.extend(fresh.kids.iter().cloned());
        (answer, fresh)
    }

    /// A login with the default client's tokens, keeping them.
    async fn login(&mut self, req: CreateSession) -> Result<IssuedSession, LoginError> {
        let prepared = self.svc.prepare(&TokenRequest::default()).await?;
        let (issued, t) = self.svc.login(req, prepared).await?;
        self.access_tokens.push(t.access_token);
        let rt = t.refresh_token.ok_or_else(|| {
            LoginError::Tokens(OAuthError::Unavailable(
                "no refresh token for the default client".into(),
            ))
        })?;
        self.refresh_tokens.push(rt.expose().to_owned());
        Ok(issued)
    }

    async fn introspect(&self, token: &str) -> Answer {
        match self.svc.introspect(token).await {
            Ok(Introspection::Inactive) => Answer::Introspection(None),
            Ok(Introspection::Active(m)) => Answer::Introspection(Some(
                m.get("sid")
                    .and_then(|v| v.as_str())
                    .unwrap_or("<active without sid>")
                    .to_owned(),
            )),
            Err(e) => err(e.code()),
        }
    }

    /// Everything observable now (see [`Observed`]); `handles` are the
    /// sessions the reference knows, in creation order.
    pub(super) async fn observe(&mut self) -> Result<Observed, String> {
        let mut lists = Vec::new();
        for s in SUBJECTS {
            let l = self.sessions.list(s).await.map_err(|e| format!("list: {e}"))?;
            lists.push(l.iter().map(|x| x.handle.clone()).collect());
        }
        let active = self
            .sessions
            .count_active()
            .await
            .map_err(|e| format!("count_active: {e}"))?;
        let mut records = Vec::new();
        for h in &self.handles {
            let rec = self
                .sessions
                .lookup(h)
                .await
                .map_err(|e| format!("lookup: {e}"))?;
            records.push((h.clone(), rec.map(|x| view(&x))));
        }
        let mut events: BTreeMap<_, Vec<_>> = BTreeMap::new();
        loop {
            let q = EventQuery {
                after: self.last_event,
                limit: 1000,
                ..EventQuery::default()
            };
            let page = self.store.events(&q).await.map_err(|e| format!("events: {e}"))?;
            for e in &page {
                self.last_event = e.id;
                events
                    .entry(e.event.handle.clone())
                    .or_default()
                    .push((e.event.kind, e.event.reason));
            }
            if page.len() < 1000 {
                break;
            }
        }
        let jwks = self.keys.jwks()["keys"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Observed {
            lists,
            active,
            records,
            events,
            jwks,
        })
    }
}

fn key_error(e: &tessera_core::keys::KeyError) -> Answer {
    use tessera_core::keys::KeyError;
    let name = match e {
        KeyError::UnknownKey(_) => "UnknownKey",
        KeyError::AlreadyRevoked(_) => "AlreadyRevoked",
        KeyError::NoActiveKey => "NoActiveKey",
        KeyError::Conflict => "Conflict",
        KeyError::InvalidPolicy(_) => "InvalidPolicy",
        other => return Answer::Error(format!("key error: {other}")),
    };
    err(name)
}
