//! sigway: a WebRTC signaling gateway that serves two Node servers' clients
//! on one port.
//!
//! - [`sigver`]: Netflux peers, binary protobuf over WebSocket at `/<key>`
//!   (current dialect and the legacy one of sigver 18.x).
//! - [`sockjs`]: a generic SockJS 0.3 server layer (every transport).
//! - [`videre`]: videre-client's JSON packets on top of [`sockjs`].
//! - [`supervisor`]: the room registry both protocols share, with limits.
//! - [`server`]: routes, TLS, shutdown; [`config`]: layered settings;
//!   [`observe`]: logs and metrics; [`error`]: errors and their close codes.
//!
//! Protocol rules live in I/O-free state types (`sigver::state`,
//! `videre::room`'s core) that the actors only feed with events.

pub mod config;
pub mod error;
pub mod observe;
pub mod proto;
pub mod server;
pub mod sigver;
pub mod sockjs;
pub mod supervisor;
pub mod videre;
