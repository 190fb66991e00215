//! The sigver adapter: Netflux peers over WebSocket at `/<key>`.

pub mod group;
pub mod legacy;
pub mod session;
