//! What a frame carrying a `content` besides its `connect` does to a group.
//!
//! sigver 20.1.0 read a frame as one `Message` and acted on its type, and
//! then relayed the message's `content` field whatever that type was (see
//! [`super::codec`]). For a `heartbeat` or a `connected` the order does not
//! show: the content is relayed as if it came alone. For a `connect` it
//! does: when the `connect` binds its sender to a member (answer `false`),
//! the Node server has already moved the sender's relay to the new binding
//! and its content reaches neither the old member nor the new one; only a
//! joiner it names still gets it. When the `connect` admits or keeps the
//! sender, the content goes where it would have gone in a frame of its own.
//! `tests/node_conformance.rs` checks both against the real server.

use crate::sigver::state::{Action, ContentIn, GroupState, NetfluxId, PeerKey, SignalingIds};

/// `connect {id, members}` from `peer`, then the `content` its frame also
/// carried, if any.
pub fn connect_with_content<P: PeerKey>(
    state: &mut GroupState<P>,
    peer: P,
    (id, members): (NetfluxId, &[NetfluxId]),
    content: Option<ContentIn>,
    ids: &mut impl SignalingIds,
    out: &mut Vec<Action<P>>,
) {
    let mark = out.len();
    state.connect(peer, id, members, ids, out);
    let Some(content) = content else {
        return;
    };
    let rebound = out[mark..]
        .iter()
        .any(|action| matches!(action, Action::Connected { to, member: false } if *to == peer));
    if !rebound {
        return state.content(peer, content, out);
    }
    // A dry run without `lastData` (so no direction ends) shows where the
    // content would go: up to the member (the sender's binding id as
    // `senderId`) is lost, down to a named joiner (`senderId` 0) is not.
    let dry_run = out.len();
    let probe = ContentIn {
        last_data: false,
        ..content.clone()
    };
    state.content(peer, probe, out);
    let goes_up = out[dry_run..]
        .iter()
        .any(|action| matches!(action, Action::Content { sender_id, .. } if *sender_id != 0));
    out.truncate(dry_run);
    if !goes_up {
        state.content(peer, content, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigver::state::PeerId;
    use crate::sigver::testkit::SeqIds;
    use bytes::Bytes;

    fn data(recipient_id: u32, last_data: bool, bytes: &'static [u8]) -> Option<ContentIn> {
        Some(ContentIn {
            sender_id: 0,
            recipient_id,
            last_data,
            data: Bytes::from_static(bytes),
        })
    }

    fn relayed(out: &[Action]) -> Vec<(PeerId, u32, u32, Bytes)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Content {
                    to,
                    sender_id,
                    recipient_id,
                    data,
                } => Some((*to, *sender_id, *recipient_id, data.clone())),
                _ => None,
            })
            .collect()
    }

    /// Peers 1 and 3 members (100, 300), peer 2 bound to 1; then peer 4
    /// bound to 1 as well.
    fn group() -> (GroupState, SeqIds) {
        let (mut g, mut ids, mut out) = (GroupState::default(), SeqIds::default(), vec![]);
        for p in 1..=4 {
            g.attach(p, false);
        }
        g.connect(1, 100, &[], &mut ids, &mut out);
        g.connect(3, 300, &[100], &mut ids, &mut out);
        g.connect(2, 200, &[], &mut ids, &mut out);
        assert_eq!(g.bound_member(2), Some(1));
        (g, ids)
    }

    #[test]
    fn content_in_a_frame_whose_connect_rebinds_its_sender_is_lost() {
        let (mut g, mut ids) = group();
        let mut out = vec![];
        connect_with_content(
            &mut g,
            2,
            (200, &[]),
            data(0, true, b"lost"),
            &mut ids,
            &mut out,
        );
        assert_eq!(g.bound_member(2), Some(3));
        assert_eq!(
            out,
            vec![Action::Connected {
                to: 2,
                member: false
            }]
        );
        // Nothing ended either: the next content goes up to the new member.
        let s = g.binding_id(2).expect("bound");
        g.content(2, data(0, false, b"next").expect("content"), &mut out);
        assert_eq!(relayed(&out), vec![(3, s, 0, Bytes::from_static(b"next"))]);
    }

    #[test]
    fn content_in_a_frame_whose_connect_admits_its_sender_goes_up() {
        let (mut g, mut ids) = group();
        let s = g.binding_id(2).expect("bound");
        let mut out = vec![];
        connect_with_content(
            &mut g,
            2,
            (200, &[100]),
            data(0, false, b"up"),
            &mut ids,
            &mut out,
        );
        assert_eq!(
            relayed(&out),
            vec![(1, s, 0, Bytes::from_static(b"up"))],
            "{out:?}"
        );
        assert!(matches!(
            out[0],
            Action::Connected {
                to: 2,
                member: true
            }
        ));
    }

    #[test]
    fn content_to_a_joiner_survives_its_senders_rebind() {
        let (mut g, mut ids) = group();
        let joiner = g.binding_id(2).expect("bound");
        let mut out = vec![];
        // Member 1's view shares nothing: it is demoted and bound to 3.
        connect_with_content(
            &mut g,
            1,
            (100, &[]),
            data(joiner, true, b"down"),
            &mut ids,
            &mut out,
        );
        assert_eq!(g.bound_member(1), Some(3));
        assert_eq!(
            relayed(&out),
            vec![(2, 0, joiner, Bytes::from_static(b"down"))]
        );
        // lastData ended that direction.
        out.clear();
        g.content(1, data(joiner, false, b"again").expect("content"), &mut out);
        assert!(relayed(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn a_connect_without_content_is_a_plain_connect() {
        let (mut g, mut ids) = group();
        let mut out = vec![];
        connect_with_content(&mut g, 4, (400, &[]), None, &mut ids, &mut out);
        assert_eq!(
            out,
            vec![Action::Connected {
                to: 4,
                member: false
            }]
        );
    }
}
