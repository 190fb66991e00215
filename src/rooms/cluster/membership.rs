//! Joining a room of the cluster from this node: who owns it (the
//! directory, asked once per room while this node has sessions there),
//! attaching here or on the owner, and giving a claim up a little after a
//! room owned here emptied.

use super::*;

impl Cluster {
    /// See [`Rooms::join`](super::Rooms::join).
    pub(in crate::rooms) async fn join<R: Portable>(
        self: &Arc<Self>,
        rooms: &Rooms,
        key: Arc<str>,
        member: R::Member,
    ) -> Result<RoomRef<R>, Refusal> {
        let (link, directory) = self.parts()?;
        let room: RoomName = (R::KIND, key.clone());
        let owner = self.locate(rooms, &room, true, link, directory).await?;
        if owner == self.me {
            // Under the state lock, so that giving the claim up (which
            // checks for an open room under it) cannot pass in between.
            let state = self.lock();
            return match state.owners.get(&room) {
                Some(entry) if entry.node == self.me => rooms.join_here::<R>(key, member),
                // Lost between the two steps (the owner changed hands).
                _ => Err(Refusal::RoomMoved),
            };
        }
        let Exported {
            id,
            info,
            away,
            credit,
        } = R::export(member);
        let info = Bytes::from(info);
        let shared_owner = Arc::new(AtomicU32::new(owner));
        self.lock().away.insert(
            id.local,
            AwayEntry {
                owner: shared_owner.clone(),
                room: room.clone(),
                away,
                info: info.clone(),
            },
        );
        let remote = RemoteRoom {
            cluster: self.clone(),
            owner: shared_owner,
            member: id,
            credit,
            left: AtomicBool::new(false),
        };
        let attach = Body::Attach(Attach {
            kind: R::KIND.into(),
            key: key.to_string(),
            member: id.local,
            info,
        });
        if !self.send(owner, attach) {
            remote.left.store(true, Ordering::Release);
            self.forget_away(id.local);
            return Err(Refusal::ClusterUnavailable);
        }
        Ok(RoomRef::Remote(Arc::new(remote)))
    }

    /// The owner of `room`, asking the directory when this node does not
    /// know it (waiting first if this node is giving its claim up). With
    /// `away`, counts one more session of this node there when the owner
    /// is another node.
    pub(super) async fn locate(
        &self,
        rooms: &Rooms,
        room: &RoomName,
        away: bool,
        link: &Arc<dyn NodeLink>,
        directory: &Arc<dyn Directory>,
    ) -> Result<NodeId, Refusal> {
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        loop {
            match self.known_owner(room, away) {
                Known::Owner(node) => return Ok(node),
                Known::Releasing if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Known::Releasing => return Err(Refusal::ClusterUnavailable),
                Known::Unknown => break,
            }
        }
        let claim = self.claim(room, Some(rooms), link, directory).await?;
        let mut state = self.lock();
        let entry = state.owners.entry(room.clone()).or_insert(Owner {
            node: claim.owner,
            epoch: claim.epoch,
            away_users: 0,
            releasing: false,
        });
        if away && entry.node != self.me {
            entry.away_users += 1;
        }
        Ok(entry.node)
    }

    pub(super) fn known_owner(&self, room: &RoomName, away: bool) -> Known {
        let mut state = self.lock();
        match state.owners.get_mut(room) {
            None => Known::Unknown,
            Some(entry) if entry.releasing => Known::Releasing,
            Some(entry) => {
                if away && entry.node != self.me {
                    entry.away_users += 1;
                }
                Known::Owner(entry.node)
            }
        }
    }

    /// Claims `room`, taking it over when the directory names a node that
    /// is gone (whose state went with it).
    pub(super) async fn claim(
        &self,
        room: &RoomName,
        rooms: Option<&Rooms>,
        link: &Arc<dyn NodeLink>,
        directory: &Arc<dyn Directory>,
    ) -> Result<Claim, Refusal> {
        let group = group_of(room);
        let unavailable = |error: TransportError| {
            tracing::warn!(%error, kind = room.0, "cluster directory unreachable");
            Refusal::ClusterUnavailable
        };
        let claim = directory.claim(group, None).await.map_err(unavailable)?;
        let gone = self.lock().gone.contains(&claim.owner);
        if claim.owner == self.me || (!gone && link.may_be_alive(claim.owner)) {
            return Ok(claim);
        }
        tracing::info!(
            kind = room.0,
            dead = claim.owner,
            epoch = claim.epoch,
            "taking over a room of a dead node"
        );
        let dead = claim.owner;
        let taken = directory
            .claim(group, Some((dead, claim.epoch)))
            .await
            .map_err(unavailable)?;
        if taken.owner == self.me
            && let (Some(snapshot), Some(rooms)) = (&taken.snapshot, rooms)
        {
            self.restore(rooms, room, taken.epoch, snapshot, dead);
        }
        Ok(taken)
    }

    /// A session of this node left a room owned elsewhere.
    pub(super) fn forget_away(&self, member: u64) {
        let mut state = self.lock();
        let Some(entry) = state.away.remove(&member) else {
            return;
        };
        if let Some(owner) = state.owners.get_mut(&entry.room)
            && owner.node == entry.owner.load(Ordering::Acquire)
            && owner.node != self.me
        {
            owner.away_users = owner.away_users.saturating_sub(1);
            if owner.away_users == 0 {
                state.owners.remove(&entry.room);
            }
        }
    }

    /// The link to a member's room broke: the member must join again.
    pub(super) fn lose_away(&self, member: u64) {
        let entry = self.lock().away.remove(&member);
        if let Some(entry) = entry {
            entry.away.lost();
            self.lock().owners.remove(&entry.room);
        }
    }

    /// A room owned here emptied and stopped: give the claim up after a
    /// grace period, unless the room opened again meanwhile.
    pub(in crate::rooms) fn room_released(
        self: &Arc<Self>,
        kind: &'static str,
        key: Arc<str>,
        local: Arc<LocalRooms>,
    ) {
        let this = self.clone();
        actix::spawn(async move {
            tokio::time::sleep(this.release_after).await;
            let room: RoomName = (kind, key);
            let epoch = {
                let mut state = this.lock();
                if local.contains(kind, &room.1) {
                    return;
                }
                match state.owners.get_mut(&room) {
                    Some(entry) if entry.node == this.me && !entry.releasing => {
                        entry.releasing = true;
                        entry.epoch
                    }
                    _ => return,
                }
            };
            if let Some(directory) = this.directory.get()
                && let Err(error) = directory.release(group_of(&room), epoch).await
            {
                tracing::warn!(%error, kind, "could not give a room's claim up (it stays claimed until adopted)");
            }
            let mut state = this.lock();
            if state.owners.get(&room).is_some_and(|entry| entry.releasing) {
                state.owners.remove(&room);
            }
        });
    }
}
