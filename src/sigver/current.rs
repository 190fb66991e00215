//! The current sigver dialect (sigver 20.x) in the group actor: its events
//! ([`FromPeer`]), its frames, and that a peer is answered only when it
//! sends `connect`. The rules are `sigway_core`'s [`GroupState`]; a frame
//! whose type is not `content` but which carries one is relayed too, as
//! sigver 20 did ([`merged`]).

use bytes::Bytes;

use crate::error::{SigverDialect, SigverError};
use crate::rooms::MemberId;
use crate::sigver::codec::{self, CONNECTED_FALSE, CONNECTED_TRUE, Inbound};
use crate::sigver::frame::OutFrame;
use crate::sigver::group::{Dialect, GroupActor, Heard, Outbound};
use crate::sigver::ids::GroupIds;
use crate::sigver::merged;
use crate::sigver::state::{Action, ContentIn, GroupLimits, GroupState, NetfluxId};

/// The actor of a key spoken in the current dialect.
pub(crate) type Group = GroupActor<GroupState<MemberId>>;

/// A decoded event from a peer of this group.
pub(crate) enum FromPeer {
    /// `connect`, and the `content` its frame also carried, if any.
    Connect {
        peer: MemberId,
        id: NetfluxId,
        members: Vec<NetfluxId>,
        content: Option<ContentIn>,
    },
    Content {
        peer: MemberId,
        content: ContentIn,
    },
}

/// sigver 20.x: a session is answered only when it sends `connect`.
impl Dialect for GroupState<MemberId> {
    const DIALECT: SigverDialect = SigverDialect::Current;
    const KIND: &'static str = "sigver";
    type Event = FromPeer;
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
                (to, Outbound::Frame(OutFrame::Whole(Bytes::clone(frame))))
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

    fn heartbeat() -> Bytes {
        codec::HEARTBEAT.clone()
    }

    fn decode(frame: Bytes, peer: MemberId) -> Result<Heard<FromPeer>, SigverError> {
        Ok(match codec::decode(frame)? {
            Inbound::Content(content) => Heard::Event(FromPeer::Content { peer, content }),
            Inbound::Connect {
                id,
                members,
                content,
            } => Heard::Event(FromPeer::Connect {
                peer,
                id,
                members,
                content,
            }),
            // The type is acted on here; a content the frame also carried
            // goes to the group.
            Inbound::Heartbeat { content } => match content {
                Some(content) => Heard::HeartbeatWith(FromPeer::Content { peer, content }),
                None => Heard::Heartbeat,
            },
            Inbound::Connected { content } => match content {
                Some(content) => Heard::Event(FromPeer::Content { peer, content }),
                None => Heard::Ignored,
            },
        })
    }

    fn handle(group: &mut Group, event: FromPeer) {
        let changes = <GroupState<MemberId> as Dialect>::changes_state(&event);
        let step = group.step(changes);
        let _held = step.hold();
        match event {
            FromPeer::Connect {
                peer,
                id,
                members,
                content,
            } => group.event(peer, |state, key, ids, out| {
                merged::connect_with_content(state, peer, (id, &members), content, ids, out);
                tracing::debug!(%key, %peer, netflux_id = id, member = state.is_member(peer), "connect");
            }),
            FromPeer::Content { peer, content } => {
                group.event(peer, |state, _, _, out| state.content(peer, content, out))
            }
        }
        if changes {
            group.save();
        }
    }

    fn changes_state(event: &FromPeer) -> bool {
        match event {
            FromPeer::Connect { .. } => true,
            // lastData ends a binding; any other content is a plain relay.
            FromPeer::Content { content, .. } => content.last_data,
        }
    }
}
