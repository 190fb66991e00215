//! A generic SockJS 0.3 server layer (the protocol of sockjs-node 0.3.x).
//!
//! It turns every SockJS transport (raw and framed WebSocket, xhr-streaming,
//! xhr polling, eventsource, htmlfile, jsonp) into one thing: a session that
//! receives text messages, sends text messages and closes. What to do with a
//! session is the application's business ([`SockjsApp`]): videre mounts its
//! packet handler here; the SockJS protocol test server mounts echo/close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::web;
use bytestring::ByteString;
use tokio::sync::mpsc;

/// Settings of one mounted SockJS endpoint.
#[derive(Debug, Clone)]
pub struct Options {
    /// URL prefix, e.g. `/echo`.
    pub prefix: String,
    pub websocket: bool,
    pub cookie_needed: bool,
    pub heartbeat: std::time::Duration,
    pub disconnect_delay: std::time::Duration,
    pub response_limit: usize,
    pub client_url: String,
    pub max_message_bytes: usize,
    pub outbound_queue: usize,
}

impl Options {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let s = &settings.sockjs;
        Self {
            prefix: s.prefix.clone(),
            websocket: s.websocket,
            cookie_needed: s.jsessionid,
            heartbeat: std::time::Duration::from_millis(s.heartbeat_ms),
            disconnect_delay: std::time::Duration::from_millis(s.disconnect_delay_ms),
            response_limit: s.response_limit,
            client_url: s.client_url.clone(),
            max_message_bytes: settings.limits.max_frame_bytes,
            outbound_queue: settings.limits.outbound_queue,
        }
    }
}

/// What an application does with SockJS sessions. One value serves every
/// session of an endpoint, from every worker thread.
pub trait SockjsApp: Send + Sync + 'static {
    type Session: SockjsSession;
    /// A session opened, on any transport. `link` sends to its client.
    fn open(&self, link: SessionLink, info: SessionInfo) -> Self::Session;
}

/// One open session, driven by the layer: messages in order, then one close.
pub trait SockjsSession: 'static {
    /// One message from the client (each element of a batch on its own).
    fn on_message(&mut self, text: String) -> impl Future<Output = ()>;
    /// The session ended (client closed, timed out, or the server closed it).
    fn on_close(&mut self) -> impl Future<Output = ()>;
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The SockJS session id (generated for the raw WebSocket).
    pub id: Arc<str>,
    pub remote: Option<SocketAddr>,
    pub transport: &'static str,
}

/// What the application can send to a session's client.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Message(ByteString),
    Close { code: u16, reason: ByteString },
}

/// Sending half of a session, cheap to clone and usable from any thread
/// (rooms run on other arbiters). Sending never waits: a full queue means
/// the client does not read, and the session is closed.
#[derive(Debug, Clone)]
pub struct SessionLink {
    tx: mpsc::Sender<Outgoing>,
}

/// The session is gone or its client does not keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct LinkClosed;

impl SessionLink {
    /// A link and the receiving end the transport drains.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    pub fn send(&self, message: ByteString) -> Result<(), LinkClosed> {
        self.tx
            .try_send(Outgoing::Message(message))
            .map_err(|_| LinkClosed)
    }

    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.try_send(Outgoing::Close {
            code,
            reason: reason.into(),
        });
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A mounted SockJS endpoint: routes under `options.prefix` for `app`.
pub struct Server<A: SockjsApp> {
    pub options: Options,
    pub app: A,
}

impl<A: SockjsApp> Server<A> {
    pub fn new(options: Options, app: A) -> Arc<Self> {
        Arc::new(Self { options, app })
    }

    /// Mounts every SockJS route under the prefix.
    pub fn configure(self: &Arc<Self>, _cfg: &mut web::ServiceConfig) {
        // Transports are added by the SockJS layer work (issue 3).
    }
}
