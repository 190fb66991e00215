//! videre, the JSON packet protocol of videre-client: [`packet`] parses and
//! builds packets, [`room`] holds a room's rules and [`memberships`] the
//! rooms of one session.

pub mod memberships;
pub mod packet;
pub mod room;
