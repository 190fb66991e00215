//! What an application plugs into the SockJS layer: [`SockjsApp`] admits
//! and opens sessions, [`SockjsSession`] handles one session's messages.
//!
//! The order is fixed by the layer: `admit` is awaited first; only when it
//! answers is the session opened (with what admission handed over, which
//! the session then owns) and its messages handed over, one at a time. A
//! refused session sends `o`, then `c[code,"reason"]`, and none of its
//! messages reaches the app.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::link::SessionLink;

/// What an application does with SockJS sessions. One value serves every
/// session of an endpoint, from every worker thread.
pub trait SockjsApp: Send + Sync + 'static {
    /// What admission hands to an admitted session (a place under the
    /// connection limits, say). The session owns it, so it lives exactly as
    /// long as the session does.
    type Ticket: 'static;
    /// The app's state of one open session.
    type Session: SockjsSession;

    /// Decides whether a session may open, before any of its messages is
    /// handled. Runs on the worker serving the request that created the
    /// session; the client has its open frame meanwhile, and a refusal
    /// closes the session with the refusal's code and reason.
    fn admit(&self, info: &SessionInfo) -> impl Future<Output = Result<Self::Ticket, Refusal>>;

    /// An admitted session opens, on any transport. `link` sends to its
    /// client. Keep it quick and non-blocking.
    fn open(&self, link: SessionLink, info: SessionInfo, ticket: Self::Ticket) -> Self::Session;
}

/// One open session, driven by the layer on the worker that opened it:
/// messages in order, one at a time, then exactly one close. A panic in
/// `on_message` costs that message only.
pub trait SockjsSession: 'static {
    /// One message from the client (each element of a batch on its own).
    fn on_message(&mut self, text: String) -> impl Future<Output = ()>;
    /// The session ended (client closed, timed out, or the server closed it).
    fn on_close(&mut self) -> impl Future<Output = ()>;
}

/// Who a session is, for admission, logs and the app.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The SockJS session id (generated for the raw WebSocket).
    pub id: Arc<str>,
    /// The client's address, when the socket has one.
    pub remote: Option<SocketAddr>,
    /// sockjs-node's protocol name: `websocket`, `websocket-raw`,
    /// `xhr-streaming`, `xhr-polling`, `eventsource`, `htmlfile` or
    /// `jsonp-polling` (of the request that opened the session).
    pub transport: &'static str,
    /// The `Origin` header of the request that opened the session, when
    /// it had one (shown by the gateway's admin API).
    pub origin: Option<Arc<str>>,
}

/// Why an app refused a session: the close its client gets right after
/// the open frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The close code.
    pub code: u16,
    /// The reason sent with it.
    pub reason: String,
}

impl Refusal {
    /// A refusal closing with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}
