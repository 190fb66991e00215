//! The actor of one sigver key: owns its rules ([`GroupState`] for the
//! current dialect) and the send handles of every connection under the key.
//!
//! Sessions attach through the supervisor, then send [`FromPeer`] events and
//! a final [`Leave`]. The actor runs the pure rules and turns each
//! [`Action`] into a frame pushed to the target session's bounded queue
//! without waiting: a full queue means that client does not read, and it is
//! told to close (4745) instead of making the server grow. Both dialects
//! use this actor, [`GroupActor`]: a dialect gives it its rules through
//! [`DialectRules`] and handles its own event message; [`Group`] is the
//! current dialect's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::error::SigverError;
use crate::observe::Stats;
use crate::sigver::codec::{self, CONNECTED_FALSE, CONNECTED_TRUE};
use crate::sigver::ids::GlobalIds;
use crate::sigver::state::{Action, ContentIn, GroupLimits, GroupState, NetfluxId, PeerId};
use crate::supervisor::{Attach, Dispose, Occupancy, Room, RoomContext, RoomSupervisor};

/// What a group (current or legacy) asks a session to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Bytes),
    Close(SigverError),
}

/// A session's sending half, as rooms hold it.
#[derive(Debug, Clone)]
pub struct PeerLink {
    tx: mpsc::Sender<Outbound>,
    /// Woken when the queue overflowed: the session closes itself.
    overflow: Arc<Notify>,
    in_flight: Arc<InFlight>,
}

/// Flow control from a session to its group: events handed over but not yet
/// handled. A session stops reading its socket at the limit, so a client
/// that floods requests is slowed down instead of growing the group's
/// mailbox or overflowing its own answer queue.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    limit: usize,
    drained: Notify,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            limit: limit.max(1),
            drained: Notify::new(),
        }
    }

    pub fn has_room(&self) -> bool {
        self.count.load(Ordering::Acquire) < self.limit
    }

    /// The session handed one event to the group.
    pub fn sent(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// The group handled one event of this session.
    pub fn handled(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == self.limit {
            self.drained.notify_one();
        }
    }

    /// Resolves once the count dropped below the limit (or spuriously).
    pub async fn drained(&self) {
        self.drained.notified().await;
    }
}

/// The session's ends of a [`PeerLink`].
pub struct SessionSide {
    pub outbound: mpsc::Receiver<Outbound>,
    pub overflow: Arc<Notify>,
    pub in_flight: Arc<InFlight>,
}

impl PeerLink {
    /// A link whose queue holds `capacity` frames; a quarter of it (at most
    /// 64) bounds the events in flight to the group.
    pub fn new(capacity: usize) -> (Self, SessionSide) {
        let (tx, outbound) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Notify::new());
        let in_flight = Arc::new(InFlight::new((capacity / 4).clamp(1, 64)));
        let link = Self {
            tx,
            overflow: overflow.clone(),
            in_flight: in_flight.clone(),
        };
        (
            link,
            SessionSide {
                outbound,
                overflow,
                in_flight,
            },
        )
    }

    /// Queues without waiting; on a full queue the session is told to close.
    pub fn push(&self, out: Outbound, stats: &Stats) {
        if let Outbound::Frame(frame) = &out {
            stats.sent(frame.len());
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(out) {
            Stats::count(&stats.slow_consumers);
            self.overflow.notify_one();
        }
    }

    /// The group handled one event this peer sent.
    pub fn handled(&self) {
        self.in_flight.handled();
    }
}

/// Who attaches: a connection, its link and its `?favored` flag.
pub struct PeerEntry {
    pub id: PeerId,
    pub favored: bool,
    pub link: PeerLink,
}

/// A decoded event from a peer of this group.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromPeer {
    Connect {
        peer: PeerId,
        id: NetfluxId,
        members: Vec<NetfluxId>,
    },
    Content {
        peer: PeerId,
        content: ContentIn,
    },
}

/// The peer's connection is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub peer: PeerId,
}

/// What a dialect's pure rules give [`GroupActor`]: how they start, what a
/// session attaching or leaving does, and what each of their actions sends.
/// Each dialect's own events get their own `Handler`, which hands them to
/// the rules through [`GroupActor::event`].
pub trait DialectRules: Unpin + 'static {
    /// The room kind: the supervisor's namespace and the metrics label.
    const KIND: &'static str;
    type Action: Unpin;
    fn with_limits(limits: GroupLimits) -> Self;
    fn attached(&mut self, key: &str, peer: PeerId, favored: bool, out: &mut Vec<Self::Action>);
    fn left(&mut self, peer: PeerId, out: &mut Vec<Self::Action>);
    /// Whom the action is for and what to queue for it.
    fn outbound(key: &str, action: Self::Action) -> (PeerId, Outbound);
}

/// The actor of one key, in either dialect: the rules, and the send handle
/// of each attached session.
pub struct GroupActor<R: DialectRules> {
    key: Arc<str>,
    rules: R,
    links: HashMap<PeerId, PeerLink>,
    occupancy: Occupancy,
    supervisor: Addr<RoomSupervisor>,
    stats: Arc<Stats>,
    /// Reused between events so relaying allocates nothing here.
    actions: Vec<R::Action>,
}

/// The actor of a key spoken in the current dialect.
pub type Group = GroupActor<GroupState>;

impl<R: DialectRules> GroupActor<R> {
    /// Runs an event `peer` sent through the rules (`apply` gets them, the
    /// key and the action list) and carries out what they decide.
    pub fn event(&mut self, peer: PeerId, apply: impl FnOnce(&mut R, &str, &mut Vec<R::Action>)) {
        if let Some(link) = self.links.get(&peer) {
            link.handled();
        }
        apply(&mut self.rules, &self.key, &mut self.actions);
        self.carry_out();
    }

    fn carry_out(&mut self) {
        for action in self.actions.drain(..) {
            let (to, out) = R::outbound(&self.key, action);
            if let Some(link) = self.links.get(&to) {
                link.push(out, &self.stats);
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

    fn new_room(key: Arc<str>, ctx: RoomContext) -> Self {
        let limits = GroupLimits {
            max_members: ctx.settings.limits.max_members_per_room,
        };
        Self {
            key,
            rules: R::with_limits(limits),
            links: HashMap::new(),
            occupancy: Occupancy::default(),
            supervisor: ctx.supervisor,
            stats: ctx.stats,
            actions: Vec::new(),
        }
    }
}

impl<R: DialectRules> Handler<Attach<Self>> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, attach: Attach<Self>, _: &mut Context<Self>) {
        let PeerEntry { id, favored, link } = attach.member;
        self.occupancy.attached();
        self.links.insert(id, link);
        self.rules
            .attached(&self.key, id, favored, &mut self.actions);
        self.carry_out();
    }
}

impl<R: DialectRules> Handler<Leave> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, leave: Leave, _: &mut Context<Self>) {
        self.rules.left(leave.peer, &mut self.actions);
        self.carry_out();
        if self.links.remove(&leave.peer).is_some()
            && let Some(idle) = self.occupancy.detached::<Self>(&self.key)
        {
            self.supervisor.do_send(idle);
        }
    }
}

impl<R: DialectRules> Handler<Dispose> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, _: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// sigver 20.x: a session is answered only when it sends `connect`.
impl DialectRules for GroupState {
    const KIND: &'static str = "sigver";
    type Action = Action;

    fn with_limits(limits: GroupLimits) -> Self {
        GroupState::new(limits)
    }

    fn attached(&mut self, _: &str, peer: PeerId, favored: bool, _: &mut Vec<Action>) {
        self.attach(peer, favored);
    }

    fn left(&mut self, peer: PeerId, out: &mut Vec<Action>) {
        self.leave(peer, &mut GlobalIds, out);
    }

    fn outbound(key: &str, action: Action) -> (PeerId, Outbound) {
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
                tracing::info!(%key, peer = to, %error, "closing sigver peer");
                (to, Outbound::Close(error))
            }
        }
    }
}

impl Handler<FromPeer> for Group {
    type Result = ();

    fn handle(&mut self, event: FromPeer, _: &mut Context<Self>) {
        match event {
            FromPeer::Connect { peer, id, members } => self.event(peer, |state, key, out| {
                state.connect(peer, id, &members, &mut GlobalIds, out);
                tracing::debug!(%key, peer, netflux_id = id, member = state.is_member(peer), "connect");
            }),
            FromPeer::Content { peer, content } => {
                self.event(peer, |state, _, out| state.content(peer, content, out))
            }
        }
    }
}
