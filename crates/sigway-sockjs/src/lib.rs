//! A generic SockJS 0.3 server layer (the protocol of sockjs-node 0.3.24)
//! over actix-web.
//!
//! It turns every SockJS transport (raw and framed WebSocket, xhr-streaming,
//! xhr polling, eventsource, htmlfile, jsonp) into one thing: a session that
//! receives text messages, sends text messages and closes. What to do with a
//! session is the application's business ([`SockjsApp`]): it admits or
//! refuses a session before it opens ([`SockjsApp::admit`], awaited before
//! any message of the session runs), then handles its messages. The gateway
//! mounts videre here; [`echo`] has the apps of the SockJS protocol test
//! server. The crate knows nothing of the gateway: it has its own
//! [`Options`], errors ([`SockjsError`], [`Close`], [`Refusal`]) and takes
//! the shutdown signal as a value when a [`Server`] is built.
//!
//! Being the lowest crate of the workspace with tokio and actix, it also
//! holds the plumbing the gateway's WebSocket sessions share with the SockJS
//! transports: the bounded [`Outbox`] (a queue the producer never waits on,
//! with an overflow alarm), the [`ws`] helpers (how a WebSocket read failed,
//! the bounded final close) and [`testing::BackgroundServer`] (a server on
//! its own thread for tests and tools).
//!
//! Layout: `frame` (wire frames, escaping, payload parsing) and `route`
//! (the URL scheme) are pure, and [`inputs`] makes their readers of client
//! input public for fuzzing; `session` runs the app task and holds the
//! shared state of polling sessions; `http` and `websocket` move bytes
//! between sockets and sessions; `server` mounts it all under a prefix.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod app;
mod bell;
pub mod echo;
pub mod edge;
mod error;
mod frame;
mod http;
pub mod inputs;
mod link;
mod options;
mod outbox;
mod placement;
mod registry;
mod route;
mod serve;
mod server;
mod session;
pub mod testing;
mod upgrade;
mod websocket;
pub mod ws;
mod ws_connection;

pub use app::{Refusal, SessionInfo, SockjsApp, SockjsSession};
pub use bell::ShutdownBell;
pub use error::{
    CLOSE_ANOTHER_CONNECTION, CLOSE_GO_AWAY, CLOSE_GOING_AWAY, CLOSE_INTERRUPTED, CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER, Close, SockjsError,
};
pub use link::{LinkClosed, Outgoing, SessionLink};
pub use options::Options;
pub use outbox::{Empty, Outbox, OutboxError, OutboxReceiver, Overflow, Queue};
pub use placement::{Place, Workers};
pub use serve::{ServeOptions, Served, serve};
pub use server::Server;
pub use upgrade::{LiveSessions, Never, UpgradeFactory, UpgradeService, accept, accept_at};
pub use websocket::PONG_WAIT;
pub use ws_connection::{Event, MAX_FRAME_HEAD, WsConnection, WsIo};
