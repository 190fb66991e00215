//! sigway: a WebRTC signaling gateway that serves two Node servers' clients
//! on one port.
//!
//! - [`sigver`]: Netflux peers, binary protobuf over WebSocket at `/<key>`
//!   (current dialect and the legacy one of sigver 18.x).
//! - [`sockjs`]: a generic SockJS 0.3 server layer (every transport).
//! - [`videre`]: videre-client's JSON packets on top of [`sockjs`].
//! - [`rooms`]: the room layer both protocols reach rooms through
//!   (admission, member ids, sinks, the registry).
//! - [`app`]: the composition root (routes, TLS, shutdown); [`config`]:
//!   layered settings; [`observe`]: logs and metrics; [`error`]: errors and
//!   their close codes; [`services`] and [`shutdown`]: what sessions hold.
//!
//! Dependencies point one way: `config, shutdown, observe` ← `rooms` ←
//! `services` ← `sigver, videre` ← `app`. Protocol rules live in I/O-free
//! state types (`sigver::state`, `videre::room`'s core) that the actors
//! only feed with events.

pub mod app;
pub mod config;
pub mod error;
pub mod observe;
pub mod proto;
pub mod rooms;
pub mod services;
pub mod shutdown;
pub mod sigver;
pub mod sockjs;
pub mod videre;
