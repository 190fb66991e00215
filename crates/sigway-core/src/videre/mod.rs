//! videre, the JSON packet protocol of videre-client: [`packet`] parses and
//! builds packets, [`room`] holds a room's rules, [`snapshot`] writes a
//! room's state down for a cluster node that adopts it, and
//! [`memberships`] keeps the rooms of one session.

pub mod memberships;
pub mod packet;
pub mod room;
pub mod snapshot;
