//! The rooms one videre session is in, with the UserId it joined each under,
//! and where its broadcasts and pings may go: strict mode (the default)
//! accepts them only for a room the session joined, under the UserId it
//! joined with. Pure; generic over the handle the gateway keeps per room.

use std::sync::Arc;

use crate::error::VidereError;
use crate::videre::packet::Packet;

/// A room this session is in, and the UserId it joined with.
#[derive(Debug, Clone)]
pub struct Membership<H> {
    /// The room's `RoomId`.
    pub room_id: Arc<str>,
    /// The `UserId` the session joined it under.
    pub user_id: Arc<str>,
    /// The gateway's handle on the room.
    pub room: H,
}

/// Where a broadcast or ping goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a, H> {
    /// A room this session joined.
    Joined(&'a H),
    /// Non-strict mode: a room the session is not in, to look up.
    Elsewhere,
}

/// The rooms of one session (in practice at most one: connect leaves first).
#[derive(Debug)]
pub struct Memberships<H> {
    joined: Vec<Membership<H>>,
}

impl<H> Default for Memberships<H> {
    fn default() -> Self {
        Self { joined: Vec::new() }
    }
}

impl<H> Memberships<H> {
    /// The session joined a room (again: the older membership is replaced).
    pub fn add(&mut self, membership: Membership<H>) {
        self.joined.retain(|m| m.room_id != membership.room_id);
        self.joined.push(membership);
    }

    /// Leaves `room_id`; `None` when the session was not in it.
    pub fn take(&mut self, room_id: &str) -> Option<Membership<H>> {
        let index = self.joined.iter().position(|m| &*m.room_id == room_id)?;
        Some(self.joined.remove(index))
    }

    /// Leaves every room.
    pub fn take_all(&mut self) -> Vec<Membership<H>> {
        std::mem::take(&mut self.joined)
    }

    /// How many rooms the session is in.
    pub fn len(&self) -> usize {
        self.joined.len()
    }

    /// The session is in no room.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// Where `packet` (a broadcast or ping) may go. In strict mode only to a
    /// room this session joined, and only under the UserId it joined with.
    pub fn target(&self, packet: &Packet, strict: bool) -> Result<Target<'_, H>, VidereError> {
        match self.joined.iter().find(|m| *m.room_id == packet.room_id) {
            Some(m) if !strict || *m.user_id == packet.user_id => Ok(Target::Joined(&m.room)),
            Some(_) => Err(VidereError::WrongUser),
            None if strict => Err(VidereError::NotJoined),
            None => Ok(Target::Elsewhere),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::videre::packet::test_packet as packet;

    fn joined(room: &str, user: &str, handle: u32) -> Membership<u32> {
        Membership {
            room_id: room.into(),
            user_id: user.into(),
            room: handle,
        }
    }

    #[test]
    fn strict_mode_accepts_only_the_joined_room_under_the_joined_user() {
        let mut rooms = Memberships::default();
        rooms.add(joined("r", "a", 7));
        let ok = rooms.target(&packet("broadcast", "a", "r"), true);
        assert_eq!(ok, Ok(Target::Joined(&7)));
        assert_eq!(
            rooms.target(&packet("broadcast", "b", "r"), true),
            Err(VidereError::WrongUser)
        );
        assert_eq!(
            rooms.target(&packet("ping", "a", "other"), true),
            Err(VidereError::NotJoined)
        );
    }

    #[test]
    fn lenient_mode_accepts_any_user_and_looks_up_other_rooms() {
        let mut rooms = Memberships::default();
        rooms.add(joined("r", "a", 7));
        assert_eq!(
            rooms.target(&packet("broadcast", "b", "r"), false),
            Ok(Target::Joined(&7))
        );
        assert_eq!(
            rooms.target(&packet("ping", "a", "other"), false),
            Ok(Target::Elsewhere)
        );
    }

    #[test]
    fn memberships_leave_by_room_and_all_at_once() {
        let mut rooms = Memberships::default();
        rooms.add(joined("r", "a", 1));
        rooms.add(joined("r", "b", 2));
        assert_eq!(rooms.len(), 1, "one membership per room");
        rooms.add(joined("", "a", 3));
        assert!(rooms.take("nope").is_none());
        assert_eq!(rooms.take("").map(|m| m.room), Some(3));
        assert_eq!(rooms.take_all().len(), 1);
        assert!(rooms.is_empty());
    }
}
