//! The actor of one sigver key, in either dialect: [`GroupActor`] owns the
//! dialect's rules, the group's signaling ids and the [`Sink`] of every
//! member.
//!
//! Sessions join through [`Rooms`](crate::rooms::Rooms), then send their
//! dialect's events and a final [`Leave`]. The actor runs the pure rules and
//! turns each action into a frame pushed to the target's sink without
//! waiting: a full sink means that client does not read, and it is told to
//! close (4745) instead of making the server grow. What a dialect is to the
//! session and to the actor is one trait, [`Dialect`], implemented by each
//! dialect's rules (in [`current`](super::current) and
//! [`legacy`](super::legacy)).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::error::{SigverDialect, SigverError};
use crate::observe::Stats;
use crate::rooms::{Attach, MemberId, Occupancy, Room, RoomHome, RoomRef, Sink, SinkError};
use crate::sigver::ids::GroupIds;
use crate::sigver::state::GroupLimits;

/// What a group (current or legacy) asks a session to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(Bytes),
    Close(SigverError),
}

/// Who joins a group: a connection, its sink and its `?favored` flag.
pub(crate) struct PeerEntry {
    pub id: MemberId,
    pub favored: bool,
    pub sink: Sink<Outbound>,
}

/// A frame from the socket, as far as the session cares.
pub(crate) enum Heard<E> {
    /// The peer answered a heartbeat: reset the missed count.
    Heartbeat,
    /// An event for the group (the session takes one unit of credit for
    /// it, which the group gives back through the sink once handled).
    Event(E),
    /// A heartbeat whose frame also carried an event for the group (sigver
    /// 20 relayed a frame's `content` whatever its type).
    HeartbeatWith(E),
    /// Nothing to do (e.g. `connected` from a client).
    Ignored,
}

/// The peer's connection is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave {
    pub peer: MemberId,
}

/// A sigver dialect, implemented by its pure rules: what the session needs
/// (its heartbeat frame, how a frame becomes an event for the group) and
/// what [`GroupActor`] needs (how the rules start, what a member attaching
/// or leaving does, what each action sends). Each dialect's events get
/// their own `Handler`, which hands them to the rules through
/// [`GroupActor::event`].
pub(crate) trait Dialect: Unpin + Sized + 'static {
    const DIALECT: SigverDialect;
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
    /// What a peer's frame becomes for the group.
    type Event;
    /// The server's heartbeat frame.
    fn heartbeat() -> Bytes;
    /// Decodes one binary frame from `peer`.
    fn decode(frame: Bytes, peer: MemberId) -> Result<Heard<Self::Event>, SigverError>;
    /// Hands an event to the group (this dialect's `Handler` takes it).
    fn tell(group: &RoomRef<GroupActor<Self>>, event: Self::Event);
}

/// The actor of one key, in either dialect: the rules, the group's
/// signaling ids, and the sink of each attached session.
pub(crate) struct GroupActor<R: Dialect> {
    key: Arc<str>,
    rules: R,
    ids: GroupIds,
    sinks: HashMap<MemberId, Sink<Outbound>>,
    occupancy: Occupancy,
    home: RoomHome,
    /// Reused between events so relaying allocates nothing here.
    actions: Vec<R::Action>,
}

impl<R: Dialect> GroupActor<R> {
    /// Runs an event `peer` sent through the rules (`apply` gets them, the
    /// key, the ids and the action list) and carries out what they decide.
    pub(crate) fn event(
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

impl<R: Dialect> Actor for GroupActor<R> {
    type Context = Context<Self>;
}

impl<R: Dialect> Room for GroupActor<R> {
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

impl<R: Dialect> Handler<Attach<Self>> for GroupActor<R> {
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

impl<R: Dialect> Handler<Leave> for GroupActor<R> {
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
