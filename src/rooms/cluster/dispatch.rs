//! What other nodes' room layers send this one, handled in the order each
//! node sent it: attaches, events and leaves of their members in rooms owned
//! here, and deliveries to this node's members of rooms owned there.

use super::*;

impl Cluster {
    /// Handles one message another node's room layer sent this one, in the
    /// order that node sent them.
    pub(crate) async fn received(&self, rooms: &Rooms, from: NodeId, payload: Bytes) {
        let body = match RoomMessage::decode(payload) {
            Ok(RoomMessage { body: Some(body) }) => body,
            Ok(RoomMessage { body: None }) | Err(_) => {
                tracing::warn!(from, "undecodable cluster room message dropped");
                return;
            }
        };
        match body {
            Body::Attach(attach) => self.attach(rooms, from, attach).await,
            Body::Event(event) => {
                let id = MemberId {
                    node: from,
                    local: event.member,
                };
                if let Some(visitor) = self.lock().visitors.get(&id) {
                    visitor.event(event.frame);
                }
            }
            Body::Leave(leave) => {
                let id = MemberId {
                    node: from,
                    local: leave.member,
                };
                let visitor = self.lock().visitors.remove(&id);
                if let Some(visitor) = visitor {
                    visitor.leave();
                }
            }
            Body::Deliver(deliver) => {
                if let Some(entry) = self.lock().away.get(&deliver.member) {
                    entry.away.deliver(&deliver.outbound);
                }
            }
        }
    }

    pub(super) async fn attach(&self, rooms: &Rooms, from: NodeId, attach: Attach) {
        let id = MemberId {
            node: from,
            local: attach.member,
        };
        let kind = self
            .kinds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(attach.kind.as_str())
            .cloned();
        let (Some(kind), Ok((link, directory))) = (kind, self.parts()) else {
            tracing::warn!(
                from,
                kind = attach.kind,
                "attach for a kind this node does not serve, or while not ready"
            );
            return;
        };
        let room: RoomName = (kind.name, Arc::from(attach.key.as_str()));
        let sink = RemoteSink {
            link: link.clone(),
            to: id,
        };
        let refuse = |refusal: Refusal| {
            let _ = sink.deliver((kind.refused)(refusal));
        };
        // The sender believed this node owns the room; it normally still
        // does. If it gave its claim up meanwhile, it claims it again.
        {
            let mut state = self.lock();
            if state.visitors.contains_key(&id) {
                // Attached again after an adoption, and already in the
                // snapshot this node rebuilt the room from.
                state.unconfirmed.remove(&id);
                return;
            }
        }
        let owner = match self.locate(rooms, &room, false, link, directory).await {
            Ok(owner) => owner,
            Err(refusal) => return refuse(refusal),
        };
        if owner != self.me {
            return refuse(Refusal::RoomMoved);
        }
        let mut state = self.lock();
        match (kind.attach)(rooms, room.1.clone(), id, &attach.info, sink.clone()) {
            Ok(visitor) => {
                state.visitors.insert(id, visitor);
            }
            Err(refusal) => {
                drop(state);
                refuse(refusal);
            }
        }
    }
}
