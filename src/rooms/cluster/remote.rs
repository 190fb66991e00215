//! How a member and its room meet across nodes: the member's node keeps
//! its [`Away`] end and holds a [`RemoteRoom`] for the room; the owner holds a
//! `Visitor` for the member and reaches it through a [`RemoteSink`]. Each
//! portable kind is registered as a `Kind` (type-erased attach and restore).

use super::*;

/// What a portable room kind makes of a member that joins a room owned
/// elsewhere.
pub(crate) struct Exported {
    pub id: MemberId,
    /// What the owner needs to rebuild the member (the kind's encoding).
    pub info: Vec<u8>,
    /// The end that stays here and takes what the room sends.
    pub away: Box<dyn Away>,
    /// The member's credit, given back once an event is on the link.
    pub credit: Option<Arc<InFlight>>,
}

/// The local end of a member whose room runs on another node.
pub(crate) trait Away: Send {
    /// Something the room sent the member, in the kind's encoding.
    fn deliver(&self, outbound: &[u8]);
    /// The room's owner is gone: the member must join again.
    fn lost(&self);
    /// The end itself, for the kind to take back when this node adopts the
    /// member's room.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// How the owner reaches a member connected to another node.
#[derive(Clone)]
pub(crate) struct RemoteSink {
    pub(super) link: Arc<dyn NodeLink>,
    pub(super) to: MemberId,
}

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSink").field("to", &self.to).finish()
    }
}

impl RemoteSink {
    /// Sends `outbound` to the member's node.
    pub(crate) fn deliver(&self, outbound: Bytes) -> Result<(), SinkError> {
        let message = Body::Deliver(Deliver {
            member: self.to.local,
            outbound,
        });
        if self.link.send(self.to.node, encode(message)) {
            Ok(())
        } else {
            Err(SinkError::Closed)
        }
    }
}

/// A room owned by another node, as one member of this node sees it.
/// Its owner changes when the room is adopted (possibly by this node).
pub(crate) struct RemoteRoom {
    pub(super) cluster: Arc<Cluster>,
    pub(super) owner: Arc<AtomicU32>,
    pub(super) member: MemberId,
    pub(super) credit: Option<Arc<InFlight>>,
    pub(super) left: AtomicBool,
}

impl RemoteRoom {
    /// Forwards a frame of the member. Its credit comes back once the link
    /// to the owner took the frame, so a member that sends faster than the
    /// bus carries waits instead of filling its queue (an adopted room here
    /// gives it back as a local room does).
    pub(crate) fn event(&self, frame: Bytes) {
        let owner = self.owner.load(Ordering::Acquire);
        if owner == self.cluster.me {
            self.cluster
                .visit(self.member, |visitor| visitor.event(frame));
            return;
        }
        let event = Body::Event(Event {
            member: self.member.local,
            frame,
        });
        let sent = match &self.credit {
            Some(credit) => self.cluster.send_paced(owner, event, credit),
            None => self.cluster.send(owner, event),
        };
        if !sent {
            tracing::warn!(member = %self.member, owner, "cluster link lost: member must join again");
            self.cluster.lose_away(self.member.local);
        }
    }

    /// The member's session ended.
    pub(crate) fn leave(&self) {
        if self.left.swap(true, Ordering::AcqRel) {
            return;
        }
        let owner = self.owner.load(Ordering::Acquire);
        if owner == self.cluster.me {
            let visitor = self.cluster.lock().visitors.remove(&self.member);
            if let Some(visitor) = visitor {
                visitor.leave();
            }
        } else {
            self.cluster.send(
                owner,
                Body::Leave(Leave {
                    member: self.member.local,
                }),
            );
        }
        self.cluster.forget_away(self.member.local);
    }
}

impl Drop for RemoteRoom {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A member of another node in a room owned here.
pub(super) trait Visitor: Send {
    fn event(&self, frame: Bytes);
    fn leave(&self);
}

pub(super) struct Visiting<R: Portable> {
    room: LocalRoom<R>,
    id: MemberId,
}

impl<R: Portable> Visitor for Visiting<R> {
    fn event(&self, frame: Bytes) {
        R::forward(&self.room, self.id, frame);
    }

    fn leave(&self) {
        self.room.push(Inbound::Leave(self.id));
    }
}

/// A portable kind, type-erased for the dispatcher.
pub(super) struct Kind {
    pub(super) name: &'static str,
    pub(super) attach: AttachFn,
    pub(super) refused: fn(Refusal) -> Bytes,
    pub(super) restore: RestoreFn,
    pub(super) save_again: fn(&Rooms, &str),
}

/// Asks the room `key` of kind `R`, if it runs here, to write its snapshot
/// again.
pub(super) fn save_room_again<R: Portable>(rooms: &Rooms, key: &str) {
    if let Some(RoomRef::Local(room)) = rooms.find::<R>(key) {
        room.addr.do_send(SaveAgain);
    }
}

/// Attaches a member of another node to a room here.
pub(super) type AttachFn =
    fn(&Rooms, Arc<str>, MemberId, &[u8], RemoteSink) -> Result<Box<dyn Visitor>, Refusal>;

/// Rebuilds and starts a room from a snapshot; its members as visitors.
pub(super) type RestoreFn = fn(
    &Rooms,
    Arc<str>,
    &[u8],
    &mut dyn FnMut(MemberId) -> Reach,
) -> Option<Vec<(MemberId, Box<dyn Visitor>)>>;

pub(super) fn restore_room<R: Portable>(
    rooms: &Rooms,
    key: Arc<str>,
    snapshot: &[u8],
    reach: &mut dyn FnMut(MemberId) -> Reach,
) -> Option<Vec<(MemberId, Box<dyn Visitor>)>> {
    let (room, members) = R::restore(key.clone(), rooms.home(), snapshot, reach)?;
    let room = match rooms.adopt(key, room, members.len()) {
        Ok(room) => room,
        Err(refusal) => {
            tracing::warn!(kind = R::KIND, %refusal, "adopted room could not start");
            return None;
        }
    };
    Some(
        members
            .into_iter()
            .map(|id| {
                let visitor: Box<dyn Visitor> = Box::new(Visiting::<R> {
                    room: room.clone(),
                    id,
                });
                (id, visitor)
            })
            .collect(),
    )
}

pub(super) fn attach_visitor<R: Portable>(
    rooms: &Rooms,
    key: Arc<str>,
    id: MemberId,
    info: &[u8],
    sink: RemoteSink,
) -> Result<Box<dyn Visitor>, Refusal> {
    match rooms.join_here::<R>(key, R::import(id, info, sink))? {
        RoomRef::Local(room) => Ok(Box::new(Visiting::<R> { room, id })),
        RoomRef::Remote(_) => Err(Refusal::Internal),
    }
}
