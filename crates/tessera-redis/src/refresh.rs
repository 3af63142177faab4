//! [`RefreshStore`] on Redis: families, rotation and the lookup that
//! reads a family with its session in one script.

use super::*;

/// The ten arguments of a new family (lua/family_write.lua).
fn push_family_args(
    inv: &mut ScriptInvocation<'_>,
    family: &RefreshFamily,
    first: &TokenHash,
) -> StoreResult<()> {
    inv.arg(family.id.as_bytes())
        .arg(pack_handle(&family.handle))
        .arg(codec::encode_family(family)?)
        .arg(family.generation.to_string())
        .arg(millis(family.rotated_at))
        .arg(family.current_sealed.as_deref().unwrap_or_default())
        .arg(if family.current_sealed.is_some() { "1" } else { "0" })
        .arg(&first.0[..]);
    match family.revoked {
        Some(r) => inv.arg(millis(r.at)).arg(reason_code(r.reason)),
        None => inv.arg("").arg(""),
    };
    Ok(())
}

#[async_trait]
impl RefreshStore for RedisStore {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let mut inv = self.script(&SCRIPTS.family_create).await?;
        push_family_args(&mut inv, family, first)?;
        Self::push_events(&mut inv, events)?;
        let out = array(self.run(&inv).await?, "create_refresh_family")?;
        match text(
            out.into_iter().next().unwrap_or(Value::Nil),
            "create_refresh_family",
        )?
        .as_str()
        {
            "ok" => Ok(()),
            "dup" => Err(StoreError::Duplicate),
            "nosession" => Err(StoreError::Unavailable(format!(
                "refresh family for session {}, which is not stored",
                family.handle
            ))),
            other => Err(corrupt(
                "create_refresh_family",
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        let mut inv = self.script(&SCRIPTS.create_with_family).await?;
        push_family_args(&mut inv, family, first)?;
        Self::push_create_args(&mut inv, session, opts, events)?;
        self.create_outcome(&inv).await
    }

    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.update_with_family).await?;
        push_family_args(&mut inv, family, first)?;
        Self::push_update_args(&mut inv, session, expected_version, events)?;
        self.update_outcome(&inv).await
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        Ok(self.find(hash, false).await?.map(|(l, _)| l))
    }

    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        // One script: the token, its family and the session from one
        // snapshot, in one round trip.
        self.find(hash, true).await
    }

    async fn rotate_refresh(&self, r: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool> {
        let Some(next) = r.expected_generation.checked_add(1) else {
            return Ok(false);
        };
        let mut inv = self.script(&SCRIPTS.family_rotate).await?;
        inv.arg(r.family_id.as_bytes())
            .arg(r.expected_generation.to_string())
            .arg(next.to_string())
            .arg(&r.successor.0[..])
            .arg(r.successor_sealed.unwrap_or_default())
            .arg(if r.successor_sealed.is_some() { "1" } else { "0" })
            .arg(millis(r.now));
        match &r.touch {
            Some(t) => inv
                .arg("1")
                .arg(pack_handle(t.handle))
                .arg(&t.token_hash.0[..])
                .arg(millis(t.last_seen_at))
                .arg(millis(t.idle_expires_at)),
            None => inv.arg("0").arg("").arg("").arg(0).arg(0),
        };
        let bind = r
            .bind
            .map(|b| serde_json::to_string(b).map_err(|e| corrupt("rotate_refresh", e)))
            .transpose()?;
        inv.arg(bind.unwrap_or_default());
        Self::push_events(&mut inv, events)?;
        match int(self.run_changing(&inv).await?, "rotate_refresh")? {
            1 => Ok(true),
            0 => Ok(false),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("rotate_refresh", format!("unexpected answer {n}"))),
        }
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let mut inv = self.script(&SCRIPTS.family_clear_sealed).await?;
        inv.arg(millis(rotated_before)).arg(batch);
        let n = int(self.run(&inv).await?, "clear_sealed_successors")?;
        u32::try_from(n).map_err(|e| corrupt("clear_sealed_successors", e))
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.family_revoke).await?;
        inv.arg(family_id.as_bytes())
            .arg(millis(now))
            .arg(reason_code(reason));
        Self::push_events(&mut inv, events)?;
        Ok(int(self.run(&inv).await?, "revoke_refresh_family")? == 1)
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        let mut inv = self.script(&SCRIPTS.families_of).await?;
        inv.arg(pack_handle(handle));
        pairs(self.run(&inv).await?, "refresh_families_of")?
            .into_iter()
            .map(|(id, fields)| {
                let id = text(id, "refresh_families_of")?;
                let fields = value::field_pairs(fields, "refresh family")?;
                Ok(Arc::new(codec::decode_family(id, &fields)?))
            })
            .collect()
    }
}

impl RedisStore {
    async fn find(&self, hash: &TokenHash, with_session: bool) -> StoreResult<Option<Found>> {
        let mut inv = self.script(&SCRIPTS.family_find).await?;
        inv.arg(&hash.0[..]).arg(if with_session { "1" } else { "0" });
        let v = self.run(&inv).await?;
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let mut it = array(v, "find_refresh")?.into_iter();
        let generation: u64 = text(it.next().unwrap_or(Value::Nil), "find_refresh")?
            .parse()
            .map_err(|e| corrupt("refresh token index", e))?;
        let fid = text(it.next().unwrap_or(Value::Nil), "find_refresh")?;
        let fields = value::field_pairs(it.next().unwrap_or(Value::Nil), "refresh family")?;
        let family = codec::decode_family(fid, &fields)?;
        let session = match it.next().unwrap_or(Value::Nil) {
            Value::Nil | Value::Boolean(false) => None,
            v => Some(Arc::new(codec::decode_session(
                family.handle.clone(),
                &bytes(v, "session")?,
            )?)),
        };
        Ok(Some((
            RefreshLookup {
                family: Arc::new(family),
                generation,
            },
            session,
        )))
    }
}
