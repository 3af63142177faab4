//! [`SessionStore`] on Redis: one script per change, reads through the
//! session cache.

use super::*;

impl RedisStore {
    /// The arguments of create.lua.
    pub(crate) fn push_create_args(
        inv: &mut ScriptInvocation<'_>,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        inv.arg(pack_handle(&session.handle))
            .arg(codec::encode_session(session)?)
            .arg(millis(opts.now));
        match &opts.replace {
            Some((h, v)) => inv.arg(pack_handle(h)).arg(v.to_string()),
            None => inv.arg("").arg(""),
        };
        match opts.max_per_subject {
            Some(m) => inv.arg(m),
            None => inv.arg(""),
        };
        Self::push_events(inv, events)
    }

    /// The arguments of update.lua.
    pub(crate) fn push_update_args(
        inv: &mut ScriptInvocation<'_>,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        inv.arg(pack_handle(&session.handle))
            .arg(codec::encode_session(session)?)
            .arg(expected_version.to_string());
        Self::push_events(inv, events)
    }

    /// Runs a script that ends in update.lua and reads its answer.
    pub(crate) async fn update_outcome(&self, inv: &ScriptInvocation<'_>) -> StoreResult<bool> {
        match int(self.run_changing(inv).await?, "update")? {
            1 => Ok(true),
            0 => {
                self.settle().await;
                Ok(false)
            }
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("update", format!("unexpected answer {n}"))),
        }
    }

    /// Runs a script that ends in create.lua and reads its answer.
    pub(crate) async fn create_outcome(&self, inv: &ScriptInvocation<'_>) -> StoreResult<CreateOutcome> {
        let out = array(self.run_changing(inv).await?, "create")?;
        let mut it = out.into_iter();
        match text(it.next().unwrap_or(Value::Nil), "create")?.as_str() {
            "dup" => Err(StoreError::Duplicate),
            "conflict" => {
                self.settle().await;
                Ok(CreateOutcome::Conflict)
            }
            "ok" => Ok(CreateOutcome::Created {
                evicted: it
                    .map(|v| unpack_handle(&bytes(v, "create")?))
                    .collect::<StoreResult<_>>()?,
            }),
            other => Err(corrupt("create", format!("unexpected answer {other:?}"))),
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        let mut inv = self.script(&SCRIPTS.create).await?;
        Self::push_create_args(&mut inv, session, opts, events)?;
        self.create_outcome(&inv).await
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        let packed = pack_handle(handle);
        let v = self
            .cmd(redis::cmd("GET").arg(self.key(layout::SESSION, &packed)))
            .await?;
        match v {
            Value::Nil => Ok(None),
            v => Ok(Some(Arc::new(codec::decode_session(
                handle.to_owned(),
                &bytes(v, "session")?,
            )?))),
        }
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        let ticket = match self.inner.cache.as_ref().map(|c| c.lookup(hash)) {
            Some(Lookup::Hit(s)) => return Ok(Some(s)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let found = self.read_by_token(hash).await?;
        if let (Some(c), Some(t), Some(s)) = (&self.inner.cache, ticket, &found) {
            c.insert(t, Arc::clone(s));
        }
        Ok(found)
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.touch).await?;
        inv.arg(pack_handle(handle))
            .arg(&token_hash.0[..])
            .arg(millis(last_seen_at))
            .arg(millis(idle_expires_at));
        let matched = int(self.run_changing(&inv).await?, "touch")? == 1;
        if !matched && let Some(c) = &self.inner.cache {
            // Revoked or re-keyed by someone else: the copy here is stale
            // (its invalidation may still be on its way), and the caller
            // reads the session again next.
            c.evict(token_hash);
        }
        Ok(matched)
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.update).await?;
        Self::push_update_args(&mut inv, session, expected_version, events)?;
        self.update_outcome(&inv).await
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut inv = self.script(&SCRIPTS.list_by_subject).await?;
        inv.arg(subject.as_bytes());
        pairs(self.run(&inv).await?, "list_by_subject")?
            .into_iter()
            .map(|(hc, rec)| {
                Ok(Arc::new(Self::session(
                    &bytes(hc, "list_by_subject")?,
                    &bytes(rec, "list_by_subject")?,
                )?))
            })
            .collect()
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let mut inv = self.script(&SCRIPTS.revoke_subject).await?;
        inv.arg(subject.as_bytes())
            .arg(except.map(pack_handle).unwrap_or_default())
            .arg(reason_code(reason))
            .arg(millis(now));
        array(self.run_changing(&inv).await?, "revoke_subject")?
            .into_iter()
            .map(|v| unpack_handle(&bytes(v, "revoke_subject")?))
            .collect()
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let lead = [
            reason_code(reason).to_string().into_bytes(),
            millis(now).to_string().into_bytes(),
        ];
        let (n, _) = self
            .walk(&SCRIPTS.revoke_all, true, &lead, 0, Some(batch))
            .await?;
        u32::try_from(n).map_err(|e| corrupt("revoke_all_active", e))
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let lead = [millis(now).to_string().into_bytes()];
        let start = self.inner.sweep_cursor.load(Ordering::Relaxed);
        let (n, stop) = self.walk(&SCRIPTS.sweep, true, &lead, start, Some(batch)).await?;
        self.inner.sweep_cursor.store(stop, Ordering::Relaxed);
        u32::try_from(n).map_err(|e| corrupt("sweep", e))
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        let lead = [millis(now).to_string().into_bytes()];
        Ok(self.walk(&SCRIPTS.count_active, false, &lead, 0, None).await?.0)
    }
}

impl RedisStore {
    /// `get_by_token` from Redis.
    async fn read_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut inv = self.script(&SCRIPTS.get_by_token).await?;
        inv.arg(&hash.0[..]);
        let v = self.run(&inv).await?;
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let mut it = array(v, "get_by_token")?.into_iter();
        let hc = bytes(it.next().unwrap_or(Value::Nil), "get_by_token")?;
        let rec = bytes(it.next().unwrap_or(Value::Nil), "get_by_token")?;
        let s = Self::session(&hc, &rec)?;
        // The index keys the first half of the hash: the record decides.
        Ok((s.token_hash == *hash).then(|| Arc::new(s)))
    }
}
