//! A generic SockJS 0.3 server layer (the protocol of sockjs-node 0.3.x).
//!
//! It turns every SockJS transport (raw and framed WebSocket, xhr-streaming,
//! xhr polling, eventsource, htmlfile, jsonp) into one thing: a session that
//! receives text messages, sends text messages and closes. What to do with a
//! session is the application's business ([`SockjsApp`]): videre mounts its
//! packet handler here; the SockJS protocol test server mounts echo/close.
//!
//! Layout: [`frame`] (wire frames, escaping, payload parsing) and [`route`]
//! (the URL scheme) are pure; `session` holds the app task and the shared
//! state of polling sessions; `http` and `websocket` move bytes between
//! sockets and sessions; [`echo`] has the apps of the protocol test server.

pub mod echo;
pub mod frame;
mod http;
pub mod route;
mod session;
mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::web;
use bytestring::ByteString;
use tokio::sync::{Notify, mpsc};

/// `c[3000,"Go away!"]`: the usual close of a session.
pub const CLOSE_GO_AWAY: u16 = crate::error::SOCKJS_GO_AWAY;

pub use websocket::PONG_WAIT;

/// Settings of one mounted SockJS endpoint.
#[derive(Debug, Clone)]
pub struct Options {
    /// URL prefix, e.g. `/echo`.
    pub prefix: String,
    /// Offer the WebSocket transports (`info` says so; off: their URLs 404).
    pub websocket: bool,
    /// Set `JSESSIONID` on session requests (`info`'s `cookie_needed`).
    pub cookie_needed: bool,
    /// Interval of `h` frames on open sessions.
    pub heartbeat: std::time::Duration,
    /// A polling session with no receiver for this long is closed.
    pub disconnect_delay: std::time::Duration,
    /// Bytes of frames after which a streaming response ends (client reopens).
    pub response_limit: usize,
    /// The SockJS client script the iframe page loads.
    pub client_url: String,
    /// Largest request body / WebSocket message accepted.
    pub max_message_bytes: usize,
    /// Messages an app may queue for a client; a full queue closes the session.
    pub outbound_queue: usize,
}

impl Default for Options {
    /// sockjs-node's defaults under `/echo`.
    fn default() -> Self {
        Self::from_settings(&crate::config::Settings::default())
    }
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
    /// A session opened, on any transport. `link` sends to its client; an
    /// app that refuses the session closes the link here. Called on the
    /// worker serving the request (for polling sessions while the session
    /// registry is locked): keep it quick and non-blocking.
    fn open(&self, link: SessionLink, info: SessionInfo) -> Self::Session;
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

#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The SockJS session id (generated for the raw WebSocket).
    pub id: Arc<str>,
    pub remote: Option<SocketAddr>,
    /// sockjs-node's protocol name: `websocket`, `websocket-raw`,
    /// `xhr-streaming`, `xhr-polling`, `eventsource`, `htmlfile` or
    /// `jsonp-polling` (of the request that opened the session).
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
    overflow: Arc<Overflow>,
}

/// Raised when a send finds the queue full; the transport serving the
/// session then closes it.
#[derive(Debug, Default)]
struct Overflow {
    raised: AtomicBool,
    notify: Notify,
}

/// The session is gone or its client does not keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct LinkClosed;

impl SessionLink {
    /// A link and the receiving end the transport drains.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::default();
        (Self { tx, overflow }, rx)
    }

    fn push(&self, item: Outgoing) -> Result<(), LinkClosed> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflow.raised.swap(true, Ordering::AcqRel) {
                    tracing::info!("sockjs session outbound queue full: closing it");
                }
                self.overflow.notify.notify_one();
                Err(LinkClosed)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(LinkClosed),
        }
    }

    pub fn send(&self, message: ByteString) -> Result<(), LinkClosed> {
        self.push(Outgoing::Message(message))
    }

    /// Closes the session with `c[code,"reason"]` once queued messages are
    /// out. (A full queue closes it anyway, as a slow client.)
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.push(Outgoing::Close {
            code,
            reason: reason.into(),
        });
    }

    /// True once a send found the queue full.
    pub fn overflowed(&self) -> bool {
        self.overflow.raised.load(Ordering::Acquire)
    }

    /// Resolves when a send finds the queue full (at once if one did).
    pub(crate) async fn wait_overflow(&self) {
        loop {
            let notified = self.overflow.notify.notified();
            if self.overflowed() {
                return;
            }
            notified.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A mounted SockJS endpoint: routes under `options.prefix` for `app`.
pub struct Server<A: SockjsApp> {
    pub options: Options,
    pub app: A,
    registry: Arc<session::Registry>,
    iframe: http::IframePage,
    shutdown: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>>,
}

impl<A: SockjsApp> Server<A> {
    /// The endpoint; `options.prefix` is normalised to `/name` (no trailing
    /// slash). Starts the thread that expires idle polling sessions.
    pub fn new(mut options: Options, app: A) -> Arc<Self> {
        let trimmed = options.prefix.trim_end_matches('/');
        options.prefix = if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        let registry = Arc::new(session::Registry::default());
        session::start_sweeper(Arc::downgrade(&registry), options.disconnect_delay);
        let iframe = http::IframePage::new(&options.client_url);
        Arc::new(Self {
            options,
            app,
            registry,
            iframe,
            shutdown: std::sync::OnceLock::new(),
        })
    }

    /// Sessions close with 1001 (`c[1001,"server shutting down"]` on the
    /// framed transports) once `shutdown` turns true. Set once, before
    /// serving; later calls are ignored.
    pub fn shutdown_on(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let _ = self.shutdown.set(shutdown);
    }

    /// Resolves when the server shuts down (never without a signal).
    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + 'static {
        let mut shutdown = self.shutdown.get().cloned();
        async move {
            if let Some(rx) = shutdown.as_mut()
                && rx.wait_for(|down| *down).await.is_ok()
            {
                return;
            }
            std::future::pending::<()>().await
        }
    }

    /// Polling/streaming sessions currently known (open or closing).
    pub fn polling_sessions(&self) -> usize {
        self.registry.len()
    }

    /// Mounts every SockJS route under the prefix: one scope whose requests
    /// are routed by [`route::route`].
    pub fn configure(self: &Arc<Self>, cfg: &mut web::ServiceConfig) {
        let server = self.clone();
        let prefix = if self.options.prefix.is_empty() {
            "/".to_owned()
        } else {
            self.options.prefix.clone()
        };
        cfg.service(web::scope(&prefix).default_service(web::to(
            move |req: actix_web::HttpRequest, body: web::Payload| {
                http::dispatch(server.clone(), req, body)
            },
        )));
    }
}
