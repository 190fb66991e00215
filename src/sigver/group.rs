//! The actor of one sigver key: owns its rules ([`GroupState`] for the
//! current dialect), its signaling ids, and the [`Sink`] of every member.
//!
//! Sessions join through [`Rooms`](crate::rooms::Rooms), then send
//! [`FromPeer`] events and a final [`Leave`]. The actor runs the pure rules
//! and turns each [`Action`] into a frame pushed to the target's sink
//! without waiting: a full sink means that client does not read, and it is
//! told to close (4745) instead of making the server grow. Both dialects
//! use this actor, [`GroupActor`]: a dialect gives it its rules through
//! [`DialectRules`] and handles its own event message; [`Group`] is the
//! current dialect's.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::error::SigverError;
use crate::observe::Stats;
use crate::rooms::{Attach, MemberId, Occupancy, Room, RoomHome, Sink, SinkError};
use crate::sigver::codec::{self, CONNECTED_FALSE, CONNECTED_TRUE};
use crate::sigver::ids::GroupIds;
use crate::sigver::state::{Action, ContentIn, GroupLimits, GroupState, NetfluxId};

/// What a group (current or legacy) asks a session to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Bytes),
    Close(SigverError),
}

/// Who joins a group: a connection, its sink and its `?favored` flag.
pub struct PeerEntry {
    pub id: MemberId,
    pub favored: bool,
    pub sink: Sink<Outbound>,
}

/// A decoded event from a peer of this group.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromPeer {
    Connect {
        peer: MemberId,
        id: NetfluxId,
        members: Vec<NetfluxId>,
    },
    Content {
        peer: MemberId,
        content: ContentIn,
    },
}

/// The peer's connection is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub peer: MemberId,
}

/// What a dialect's pure rules give [`GroupActor`]: how they start, what a
/// session attaching or leaving does, and what each of their actions sends.
/// Each dialect's own events get their own `Handler`, which hands them to
/// the rules through [`GroupActor::event`].
pub trait DialectRules: Unpin + 'static {
    /// The room kind: the registry's namespace and the metrics label.
    const KIND: &'static str;
    type Action: Unpin;
    fn with_limits(limits: GroupLimits) -> Self;
    fn attached(
        &mut self,
        key: &str,
        peer: MemberId,
        favored: bool,
        ids: &mut GroupIds,
        out: &mut Vec<Self::Action>,
    );
    fn left(&mut self, peer: MemberId, ids: &mut GroupIds, out: &mut Vec<Self::Action>);
    /// Whom the action is for and what to queue for it.
    fn outbound(key: &str, action: Self::Action) -> (MemberId, Outbound);
}

/// The actor of one key, in either dialect: the rules, the group's
/// signaling ids, and the sink of each attached session.
pub struct GroupActor<R: DialectRules> {
    key: Arc<str>,
    rules: R,
    ids: GroupIds,
    sinks: HashMap<MemberId, Sink<Outbound>>,
    occupancy: Occupancy,
    home: RoomHome,
    /// Reused between events so relaying allocates nothing here.
    actions: Vec<R::Action>,
}

/// The actor of a key spoken in the current dialect.
pub type Group = GroupActor<GroupState<MemberId>>;

impl<R: DialectRules> GroupActor<R> {
    /// Runs an event `peer` sent through the rules (`apply` gets them, the
    /// key, the ids and the action list) and carries out what they decide.
    pub fn event(
        &mut self,
        peer: MemberId,
        apply: impl FnOnce(&mut R, &str, &mut GroupIds, &mut Vec<R::Action>),
    ) {
        if let Some(sink) = self.sinks.get(&peer) {
            sink.handled();
        }
        apply(&mut self.rules, &self.key, &mut self.ids, &mut self.actions);
        self.carry_out();
    }

    fn carry_out(&mut self) {
        let stats: &Stats = &self.home.stats;
        for action in self.actions.drain(..) {
            let (to, out) = R::outbound(&self.key, action);
            let Some(sink) = self.sinks.get(&to) else {
                continue;
            };
            let bytes = match &out {
                Outbound::Frame(frame) => Some(frame.len()),
                Outbound::Close(_) => None,
            };
            match sink.push(out) {
                Ok(()) => {
                    if let Some(bytes) = bytes {
                        stats.sent(bytes);
                    }
                }
                Err(SinkError::Full) => Stats::count(&stats.slow_consumers),
                Err(SinkError::Closed) => {}
            }
        }
    }
}

impl<R: DialectRules> Actor for GroupActor<R> {
    type Context = Context<Self>;
}

impl<R: DialectRules> Room for GroupActor<R> {
    const KIND: &'static str = R::KIND;
    type Member = PeerEntry;

    fn new_room(key: Arc<str>, home: RoomHome) -> Self {
        let limits = GroupLimits {
            max_members: home.settings.limits.max_members_per_room,
        };
        Self {
            key,
            rules: R::with_limits(limits),
            ids: GroupIds::default(),
            sinks: HashMap::new(),
            occupancy: Occupancy::default(),
            home,
            actions: Vec::new(),
        }
    }
}

impl<R: DialectRules> Handler<Attach<Self>> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, attach: Attach<Self>, _: &mut Context<Self>) {
        let PeerEntry { id, favored, sink } = attach.member;
        self.occupancy.attached();
        self.sinks.insert(id, sink);
        self.rules
            .attached(&self.key, id, favored, &mut self.ids, &mut self.actions);
        self.carry_out();
    }
}

impl<R: DialectRules> Handler<Leave> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Context<Self>) {
        self.rules
            .left(leave.peer, &mut self.ids, &mut self.actions);
        self.carry_out();
        if self.sinks.remove(&leave.peer).is_some() {
            self.occupancy.detached();
            if self
                .home
                .release_if_idle::<Self>(&self.key, &self.occupancy)
            {
                ctx.stop();
            }
        }
    }
}

/// sigver 20.x: a session is answered only when it sends `connect`.
impl DialectRules for GroupState<MemberId> {
    const KIND: &'static str = "sigver";
    type Action = Action<MemberId>;

    fn with_limits(limits: GroupLimits) -> Self {
        GroupState::new(limits)
    }

    fn attached(
        &mut self,
        _: &str,
        peer: MemberId,
        favored: bool,
        _: &mut GroupIds,
        _: &mut Vec<Self::Action>,
    ) {
        self.attach(peer, favored);
    }

    fn left(&mut self, peer: MemberId, ids: &mut GroupIds, out: &mut Vec<Self::Action>) {
        self.leave(peer, ids, out);
    }

    fn outbound(key: &str, action: Self::Action) -> (MemberId, Outbound) {
        match action {
            Action::Connected { to, member } => {
                let frame = if member {
                    &CONNECTED_TRUE
                } else {
                    &CONNECTED_FALSE
                };
                (to, Outbound::Frame(Bytes::clone(frame)))
            }
            Action::Content {
                to,
                sender_id,
                recipient_id,
                data,
            } => (
                to,
                Outbound::Frame(codec::content(sender_id, recipient_id, data)),
            ),
            Action::Close { to, error } => {
                tracing::info!(%key, peer = %to, %error, "closing sigver peer");
                (to, Outbound::Close(error))
            }
        }
    }
}

impl Handler<FromPeer> for Group {
    type Result = ();

    fn handle(&mut self, event: FromPeer, _: &mut Context<Self>) {
        match event {
            FromPeer::Connect { peer, id, members } => self.event(peer, |state, key, ids, out| {
                state.connect(peer, id, &members, ids, out);
                tracing::debug!(%key, %peer, netflux_id = id, member = state.is_member(peer), "connect");
            }),
            FromPeer::Content { peer, content } => {
                self.event(peer, |state, _, _, out| state.content(peer, content, out))
            }
        }
    }
}
