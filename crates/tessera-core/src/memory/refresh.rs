//! The memory store's refresh families.

use super::*;

#[async_trait]
impl RefreshStore for MemoryStore {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let mut g = self.write();
        if g.family_exists(family, first) {
            return Err(StoreError::Duplicate);
        }
        g.insert_family(family, first);
        for e in events {
            g.push_event(e.clone());
        }
        Ok(())
    }

    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        let mut g = self.write();
        // Checked first: a duplicate writes nothing, not even the session.
        if g.family_exists(family, first) {
            return Err(StoreError::Duplicate);
        }
        let out = g.create(session, opts, events)?;
        if matches!(out, CreateOutcome::Created { .. }) {
            g.insert_family(family, first);
        }
        Ok(out)
    }

    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool> {
        let mut g = self.write();
        if g.family_exists(family, first) {
            return Err(StoreError::Duplicate);
        }
        let swapped = g.update(session, expected_version, events)?;
        if swapped {
            g.insert_family(family, first);
        }
        Ok(swapped)
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        Ok(self.read().find_refresh(hash))
    }

    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        // Under one lock, so the session is the one of the same state.
        let g = self.read();
        Ok(g.find_refresh(hash).map(|l| {
            let session = g.session(&l.family.handle).cloned();
            (l, session)
        }))
    }

    async fn rotate_refresh(&self, r: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool> {
        let mut g = self.write();
        let Some(cur) = g.families.get(r.family_id) else {
            return Ok(false);
        };
        if cur.generation != r.expected_generation || cur.revoked.is_some() {
            return Ok(false);
        }
        if g.refresh_tokens.contains_key(r.successor) {
            return Err(StoreError::Duplicate);
        }
        let mut next = RefreshFamily::clone(cur);
        next.generation += 1;
        next.rotated_at = r.now;
        next.current_sealed = r.successor_sealed.map(<[u8]>::to_vec);
        if next.binding.is_none() {
            next.binding = r.bind.cloned();
        }
        g.refresh_tokens
            .insert(*r.successor, (r.family_id.to_owned(), next.generation));
        g.family_tokens
            .entry(r.family_id.to_owned())
            .or_default()
            .push(*r.successor);
        g.families.insert(r.family_id.to_owned(), Arc::new(next));
        if let Some(t) = &r.touch {
            g.touch(t);
        }
        for e in events {
            g.push_event(e.clone());
        }
        Ok(true)
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut g = self.write();
        let due: Vec<String> = g
            .families
            .values()
            .filter(|f| f.current_sealed.is_some() && f.rotated_at < rotated_before)
            .take(batch as usize)
            .map(|f| f.id.clone())
            .collect();
        for id in &due {
            if let Some(f) = g.families.get_mut(id) {
                Arc::make_mut(f).current_sealed = None;
            }
        }
        Ok(due.len() as u32)
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let mut g = self.write();
        let Some(cur) = g.families.get(family_id) else {
            return Ok(false);
        };
        if cur.revoked.is_some() {
            return Ok(false);
        }
        let mut next = RefreshFamily::clone(cur);
        next.revoked = Some(Revocation { at: now, reason });
        next.current_sealed = None;
        g.families.insert(family_id.to_owned(), Arc::new(next));
        for e in events {
            g.push_event(e.clone());
        }
        Ok(true)
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        let g = self.read();
        Ok(g.families
            .values()
            .filter(|f| f.handle == handle)
            .cloned()
            .collect())
    }
}
