//! When a node is gone: its members leave the rooms owned here, and each
//! room it owned where this node has members is adopted (claimed at the next
//! epoch and rebuilt from its snapshot) or followed to the node that adopted
//! it; without a usable snapshot its members here are bounced (1012).

use super::*;

impl Cluster {
    /// `node` is gone (dead, or it said goodbye): its members leave the
    /// rooms owned here as if their sockets had dropped, and the rooms it
    /// owned where this node has members are adopted (see the module doc).
    pub(crate) async fn node_gone(&self, rooms: &Rooms, node: NodeId) {
        // Its claims may be taken over from now on (until it comes up again).
        self.lock().gone.insert(node);
        let orphans = self.drop_node(node);
        for (room, epoch) in orphans {
            self.adopt_or_follow(rooms, room, node, epoch).await;
        }
    }

    /// The link with `node` reset: what travelled on it may be lost, so its
    /// members leave the rooms here and this node's members of its rooms
    /// join again (the node itself lives on and keeps its rooms).
    pub(crate) fn link_reset(&self, node: NodeId) {
        // Not marked gone: the directory entries naming it stay its own, so
        // the members bounced here attach to it again (taking them over
        // would run a second copy of a room it still runs).
        for (room, _) in self.drop_node(node) {
            self.bounce(&room);
        }
    }

    /// Makes `node`'s members leave the rooms owned here; returns the rooms
    /// it owned where this node has members, with the epoch of its claim.
    pub(super) fn drop_node(&self, node: NodeId) -> Vec<(RoomName, u64)> {
        let (visitors, orphans) = {
            let mut state = self.lock();
            let gone: Vec<MemberId> = state
                .visitors
                .keys()
                .filter(|id| id.node == node)
                .copied()
                .collect();
            let visitors: Vec<_> = gone
                .iter()
                .filter_map(|id| state.visitors.remove(id))
                .collect();
            let orphans: Vec<(RoomName, u64)> = state
                .owners
                .iter()
                .filter(|(_, owner)| owner.node == node)
                .map(|(room, owner)| (room.clone(), owner.epoch))
                .collect();
            (visitors, orphans)
        };
        if !visitors.is_empty() || !orphans.is_empty() {
            tracing::info!(
                node,
                members_left = visitors.len(),
                rooms_orphaned = orphans.len(),
                "cluster node gone"
            );
        }
        for visitor in visitors {
            visitor.leave();
        }
        orphans
    }

    /// This node's members of `room` are told it moved (1012).
    pub(super) fn bounce(&self, room: &RoomName) {
        let members = {
            let mut state = self.lock();
            state.owners.remove(room);
            state.take_away(room)
        };
        for entry in members.into_values() {
            entry.away.lost();
        }
    }

    /// The owner of `room` (at `epoch`) is gone: claim it; the winner
    /// rebuilds it from its snapshot, the others follow the winner.
    pub(super) async fn adopt_or_follow(
        &self,
        rooms: &Rooms,
        room: RoomName,
        dead: NodeId,
        epoch: u64,
    ) {
        let Ok((_, directory)) = self.parts() else {
            return self.bounce(&room);
        };
        let directory = directory.clone();
        let group = group_of(&room);
        let mut claim = directory.claim(group, Some((dead, epoch))).await;
        // The dead node claimed it again meanwhile (an epoch this node had
        // not seen): take it over at that epoch.
        if let Ok(stale) = &claim
            && stale.owner == dead
            && stale.epoch != epoch
        {
            claim = directory.claim(group, Some((dead, stale.epoch))).await;
        }
        let claim = match claim {
            Ok(claim) => claim,
            Err(error) => {
                tracing::warn!(%error, kind = room.0, "cannot adopt a room: directory unreachable");
                return self.bounce(&room);
            }
        };
        if claim.owner == self.me {
            let restored = match &claim.snapshot {
                Some(snapshot) => self.restore(rooms, &room, claim.epoch, snapshot, dead),
                None => false,
            };
            if !restored {
                self.bounce(&room);
                let _ = directory.release(group_of(&room), claim.epoch).await;
            }
            return;
        }
        let gone = self.lock().gone.contains(&claim.owner);
        if gone {
            return self.bounce(&room);
        }
        self.follow(&room, claim.owner, claim.epoch);
    }

    /// Another node adopted `room`: this node's members attach there again
    /// (the adopter knows them from the snapshot, or takes them as new).
    pub(super) fn follow(&self, room: &RoomName, owner: NodeId, epoch: u64) {
        let reattach: Vec<(u64, Bytes)> = {
            let mut state = self.lock();
            if let Some(entry) = state.owners.get_mut(room) {
                entry.node = owner;
                entry.epoch = epoch;
            }
            state
                .away
                .iter()
                .filter(|(_, entry)| &entry.room == room)
                .map(|(member, entry)| {
                    entry.owner.store(owner, Ordering::Release);
                    (*member, entry.info.clone())
                })
                .collect()
        };
        tracing::info!(
            kind = room.0,
            owner,
            members = reattach.len(),
            "following an adopted room"
        );
        for (member, info) in reattach {
            self.send(
                owner,
                Body::Attach(Attach {
                    kind: room.0.into(),
                    key: room.1.to_string(),
                    member,
                    info,
                }),
            );
        }
    }

    /// Rebuilds `room` here from `snapshot` (this node won its claim at
    /// `epoch`; `dead` owned it). Returns whether it runs.
    pub(super) fn restore(
        &self,
        rooms: &Rooms,
        room: &RoomName,
        epoch: u64,
        snapshot: &[u8],
        dead: NodeId,
    ) -> bool {
        let kind = self
            .kinds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(room.0)
            .cloned();
        let (Some(kind), Some(link)) = (kind, self.link.get()) else {
            return false;
        };
        let (mut mine, gone_nodes) = {
            let mut state = self.lock();
            (state.take_away(room), state.gone.clone())
        };
        let mut leaving = Vec::new();
        let mut adopted_here = Vec::new();
        let mut elsewhere = Vec::new();
        let mut reach = |id: MemberId| {
            if id.node == self.me {
                match mine.remove(&id.local) {
                    Some(entry) => {
                        adopted_here.push(entry.owner);
                        Reach::Here(entry.away)
                    }
                    None => {
                        leaving.push(id);
                        Reach::Gone
                    }
                }
            } else if id.node == dead || gone_nodes.contains(&id.node) {
                leaving.push(id);
                Reach::Gone
            } else {
                elsewhere.push(id);
                Reach::There(RemoteSink {
                    link: link.clone(),
                    to: id,
                })
            }
        };
        let restored = (kind.restore)(rooms, room.1.clone(), snapshot, &mut reach);
        let Some(visitors) = restored else {
            // Not usable: the members kept here go back, to be bounced.
            let mut state = self.lock();
            for (id, entry) in mine {
                state.away.insert(id, entry);
            }
            return false;
        };
        {
            let mut state = self.lock();
            state.owners.insert(
                room.clone(),
                Owner {
                    node: self.me,
                    epoch,
                    away_users: 0,
                    releasing: false,
                },
            );
            for (id, visitor) in visitors {
                state.visitors.insert(id, visitor);
            }
            state.unconfirmed.extend(elsewhere.iter().copied());
        }
        self.confirm_later(elsewhere);
        // This node's members now reach the room here.
        for owner in adopted_here {
            owner.store(self.me, Ordering::Release);
        }
        tracing::info!(
            kind = room.0,
            dead,
            epoch,
            leaving = leaving.len(),
            "adopted a room"
        );
        for id in leaving {
            let visitor = self.lock().visitors.remove(&id);
            if let Some(visitor) = visitor {
                visitor.leave();
            }
        }
        // Members of this node that joined after the last snapshot: the
        // room does not know them, so they join again.
        for (_, entry) in mine {
            entry.away.lost();
        }
        true
    }

    /// Members of other nodes that an adopted room holds must be attached
    /// again by their nodes (which follow the adopter); one whose node does
    /// not within `confirm_after` left after the last snapshot (its leave
    /// went to the dead owner), so it leaves now.
    fn confirm_later(&self, members: Vec<MemberId>) {
        if members.is_empty() {
            return;
        }
        let Some(this) = self.this.upgrade() else {
            return;
        };
        actix::spawn(async move {
            tokio::time::sleep(this.confirm_after).await;
            let ghosts: Vec<_> = {
                let mut state = this.lock();
                let unconfirmed: Vec<MemberId> = members
                    .into_iter()
                    .filter(|id| state.unconfirmed.remove(id))
                    .collect();
                unconfirmed
                    .iter()
                    .filter_map(|id| state.visitors.remove(id))
                    .collect()
            };
            if !ghosts.is_empty() {
                tracing::info!(
                    members = ghosts.len(),
                    "adopted members not attached again: they left"
                );
            }
            for visitor in ghosts {
                visitor.leave();
            }
        });
    }
}
