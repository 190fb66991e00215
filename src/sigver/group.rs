//! The actor of one sigver key: owns its [`GroupState`] and the send handles
//! of every connection under the key.
//!
//! Sessions attach through the supervisor, then send [`FromPeer`] events and
//! a final [`Leave`]. The actor runs the pure rules and turns each
//! [`Action`] into a frame pushed to the target session's bounded queue
//! without waiting: a full queue means that client does not read, and it is
//! told to close (4745) instead of making the server grow. The plumbing
//! both dialects' actors share lives here too: [`PeerLink`], [`Leave`] and
//! [`GroupLinks`] (the links, idle report and in-flight accounting).

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

/// What both dialects' group actors keep besides their rules: the key,
/// the send handle of each attached session, and the count of attached
/// sessions that tells the supervisor when the group is idle.
pub struct GroupLinks {
    key: Arc<str>,
    links: HashMap<PeerId, PeerLink>,
    occupancy: Occupancy,
    supervisor: Addr<RoomSupervisor>,
    stats: Arc<Stats>,
}

impl GroupLinks {
    pub fn new(key: Arc<str>, ctx: &RoomContext) -> Self {
        Self {
            key,
            links: HashMap::new(),
            occupancy: Occupancy::default(),
            supervisor: ctx.supervisor.clone(),
            stats: ctx.stats.clone(),
        }
    }

    /// The limits every group of this server enforces.
    pub fn limits(ctx: &RoomContext) -> GroupLimits {
        GroupLimits {
            max_members: ctx.settings.limits.max_members_per_room,
        }
    }

    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// A session attached: keeps its link; returns the peer and its
    /// `?favored` flag for the rules.
    pub fn attach(&mut self, entry: PeerEntry) -> (PeerId, bool) {
        self.occupancy.attached();
        self.links.insert(entry.id, entry.link);
        (entry.id, entry.favored)
    }

    /// The group handled one event `peer` sent.
    pub fn handled(&self, peer: PeerId) {
        if let Some(link) = self.links.get(&peer) {
            link.handled();
        }
    }

    /// Queues for `to` if it is still attached.
    pub fn send(&self, to: PeerId, out: Outbound) {
        if let Some(link) = self.links.get(&to) {
            link.push(out, &self.stats);
        }
    }

    /// The peer's session is gone: forgets its link, and tells the
    /// supervisor when it was the last.
    pub fn detach<R: Room>(&mut self, peer: PeerId) {
        if self.links.remove(&peer).is_some()
            && let Some(idle) = self.occupancy.detached::<R>(&self.key)
        {
            self.supervisor.do_send(idle);
        }
    }
}

pub struct Group {
    links: GroupLinks,
    state: GroupState,
    /// Reused between events so relaying allocates nothing here.
    actions: Vec<Action>,
}

impl Group {
    fn carry_out(&mut self) {
        for action in self.actions.drain(..) {
            let (to, out) = match action {
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
                    tracing::info!(key = %self.links.key(), peer = to, %error, "closing sigver peer");
                    (to, Outbound::Close(error))
                }
            };
            self.links.send(to, out);
        }
    }
}

impl Actor for Group {
    type Context = Context<Self>;
}

impl Room for Group {
    const KIND: &'static str = "sigver";
    type Member = PeerEntry;

    fn new_room(key: Arc<str>, ctx: RoomContext) -> Self {
        Self {
            state: GroupState::new(GroupLinks::limits(&ctx)),
            links: GroupLinks::new(key, &ctx),
            actions: Vec::new(),
        }
    }
}

impl Handler<Attach<Group>> for Group {
    type Result = ();

    fn handle(&mut self, attach: Attach<Group>, _: &mut Context<Self>) {
        let (peer, favored) = self.links.attach(attach.member);
        self.state.attach(peer, favored);
    }
}

impl Handler<FromPeer> for Group {
    type Result = ();

    fn handle(&mut self, event: FromPeer, _: &mut Context<Self>) {
        let peer = match &event {
            FromPeer::Connect { peer, .. } | FromPeer::Content { peer, .. } => *peer,
        };
        self.links.handled(peer);
        match event {
            FromPeer::Connect { peer, id, members } => {
                self.state
                    .connect(peer, id, &members, &mut GlobalIds, &mut self.actions);
                tracing::debug!(key = %self.links.key(), peer, netflux_id = id, member = self.state.is_member(peer), "connect");
            }
            FromPeer::Content { peer, content } => {
                self.state.content(peer, content, &mut self.actions)
            }
        }
        self.carry_out();
    }
}

impl Handler<Leave> for Group {
    type Result = ();

    fn handle(&mut self, leave: Leave, _: &mut Context<Self>) {
        self.state
            .leave(leave.peer, &mut GlobalIds, &mut self.actions);
        self.carry_out();
        self.links.detach::<Group>(leave.peer);
    }
}

impl Handler<Dispose> for Group {
    type Result = ();

    fn handle(&mut self, _: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
