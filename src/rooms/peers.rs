//! The sessions of this node as the admin API sees them: who each one is
//! (address, origin, dialect or SockJS transport, since when) and the way
//! to close it, written down by the session itself when it joins.
//!
//! Rooms know their members only by [`MemberId`]; what a room cannot know
//! comes from here. A session registers once it has a place in a room and
//! its [`Registration`] removes it when the session ends, so nothing here
//! is touched while messages are relayed. Closing goes through the
//! session's own outbox (a sigver close queued behind its frames, a SockJS
//! `c[code,"reason"]`), the path every server-side close already takes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sigway_sockjs::SessionLink;

use super::MemberId;

/// Shards of the registry (registrations happen once per session).
const SHARDS: usize = 16;

/// How the admin API reaches a session: each protocol says how a close
/// is queued for its client and how deep its outbox is.
pub(crate) trait PeerControl: Send + Sync {
    /// Closes the session with `code` and `reason` once what is queued
    /// is out.
    fn close(&self, code: u16, reason: &str);
    /// Items waiting in the session's outbox.
    fn queued(&self) -> usize;
}

/// A videre SockJS session: `c[code,"reason"]` on its link.
impl PeerControl for SessionLink {
    fn close(&self, code: u16, reason: &str) {
        SessionLink::close(self, code, reason);
    }

    fn queued(&self) -> usize {
        SessionLink::queued(self)
    }
}

/// One session of this node.
pub(crate) struct PeerCard {
    pub id: MemberId,
    /// `sigver` or `videre`.
    pub protocol: &'static str,
    /// The sigver dialect (`current`, `legacy`) or the SockJS transport.
    pub flavor: &'static str,
    pub address: Option<SocketAddr>,
    pub origin: Option<Arc<str>>,
    /// Unix seconds of the join.
    pub connected_since: u64,
    pub control: Box<dyn PeerControl>,
}

/// A session as `GET /admin/rooms/...` lists it.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct PeerView {
    pub id: String,
    pub protocol: &'static str,
    /// sigver: the dialect; videre: absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<&'static str>,
    /// videre: the SockJS transport; sigver: absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    pub address: Option<String>,
    pub origin: Option<String>,
    pub connected_since: u64,
    pub queue_depth: usize,
}

impl PeerCard {
    /// A card for session `id` joining now.
    pub(crate) fn new(
        id: MemberId,
        protocol: &'static str,
        flavor: &'static str,
        address: Option<SocketAddr>,
        origin: Option<Arc<str>>,
        control: Box<dyn PeerControl>,
    ) -> Self {
        let connected_since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            id,
            protocol,
            flavor,
            address,
            origin,
            connected_since,
            control,
        }
    }

    /// What the admin API shows of it.
    pub(crate) fn view(&self) -> PeerView {
        let sigver = self.protocol == "sigver";
        let (dialect, transport) = if sigver {
            (Some(self.flavor), None)
        } else {
            (None, Some(self.flavor))
        };
        let queue_depth = self.control.queued();
        PeerView {
            id: self.id.to_string(),
            protocol: self.protocol,
            dialect,
            transport,
            address: self.address.map(|a| a.to_string()),
            origin: self.origin.as_deref().map(str::to_owned),
            connected_since: self.connected_since,
            queue_depth,
        }
    }

    /// Closes the session with `code` and `reason` (its queued frames go
    /// out first).
    pub(crate) fn close(&self, code: u16, reason: &str) {
        self.control.close(code, reason);
    }
}

/// Every session of this node that joined a room.
pub(crate) struct Peers {
    shards: Vec<Mutex<HashMap<MemberId, Arc<PeerCard>>>>,
    hasher: RandomState,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

/// A session's entry; dropping it (the session ended) removes it.
#[must_use = "dropping the registration removes the session at once"]
pub(crate) struct Registration {
    peers: Arc<Peers>,
    id: MemberId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.peers.shard(&self.id).remove(&self.id);
    }
}

impl Peers {
    fn shard(&self, id: &MemberId) -> MutexGuard<'_, HashMap<MemberId, Arc<PeerCard>>> {
        let index = self.hasher.hash_one(id) as usize % SHARDS;
        // Every update is one insert or remove: a poisoned shard is whole.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `card` down until the returned registration is dropped.
    pub(crate) fn register(self: &Arc<Self>, card: PeerCard) -> Registration {
        let id = card.id;
        self.shard(&id).insert(id, Arc::new(card));
        Registration {
            peers: self.clone(),
            id,
        }
    }

    /// The session `id`, when it is connected to this node.
    pub(crate) fn get(&self, id: &MemberId) -> Option<Arc<PeerCard>> {
        self.shard(id).get(id).cloned()
    }

    #[cfg(test)]
    /// Sessions registered now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

/// Whether `code` may be sent in a close frame by an operator: a normal
/// close, "going away", or an application code (3000-4999).
pub(crate) fn is_operator_close_code(code: u16) -> bool {
    matches!(code, 1000 | 1001 | 3000..=4999)
}

/// A member id as the admin API writes it (`node.local`).
pub(crate) fn parse_member_id(text: &str) -> Option<MemberId> {
    let (node, local) = text.split_once('.')?;
    Some(MemberId {
        node: node.parse().ok()?,
        local: local.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_read_back_as_written_and_nothing_else() {
        let id = MemberId { node: 7, local: 42 };
        assert_eq!(parse_member_id(&id.to_string()), Some(id));
        for bad in [
            "",
            "7",
            "7.",
            ".42",
            "x.42",
            "7.42.1",
            "-1.2",
            "7.9999999999999999999999",
        ] {
            assert_eq!(parse_member_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_normal_going_away_and_application_codes_are_an_operator_s() {
        for ok in [1000, 1001, 3000, 4000, 4999] {
            assert!(is_operator_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1002, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_operator_close_code(bad), "{bad}");
        }
    }

    #[actix_web::test]
    async fn a_registration_lives_as_long_as_its_session_and_closes_it() {
        let peers = Arc::new(Peers::default());
        let (link, mut queue) = SessionLink::channel(8);
        let id = MemberId { node: 0, local: 3 };
        let card = PeerCard::new(id, "videre", "xhr-streaming", None, None, Box::new(link));
        let registration = peers.register(card);
        assert_eq!(peers.len(), 1);
        let found = peers.get(&id).expect("registered");
        assert_eq!(found.view().transport, Some("xhr-streaming"));
        found.close(4000, "bye");
        match queue.try_recv() {
            Ok(sigway_sockjs::Outgoing::Close { code, reason }) => {
                assert_eq!((code, &*reason), (4000, "bye"));
            }
            other => panic!("a close was queued: {other:?}"),
        }
        drop(registration);
        assert!(peers.get(&id).is_none());
        assert_eq!(peers.len(), 0);
    }
}
