//! The settings of one mounted SockJS endpoint. Their defaults are
//! sockjs-node 0.3.24's, under `/echo`; the gateway maps its own settings
//! onto them.

use std::time::Duration;

use crate::edge::Edge;

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
    pub heartbeat: Duration,
    /// A polling session with no receiver for this long is closed.
    pub disconnect_delay: Duration,
    /// Bytes of frames after which a streaming response ends (client reopens).
    pub response_limit: usize,
    /// The SockJS client script the iframe page loads.
    pub client_url: String,
    /// Largest request body / WebSocket message accepted.
    pub max_message_bytes: usize,
    /// Messages an app may queue for a client; a full queue closes the session.
    pub outbound_queue: usize,
    /// Bytes of messages an app may queue for a client (a single message
    /// always fits); more closes the session as a full queue does.
    pub outbound_queue_bytes: usize,
    /// Which origins may use the endpoint (a request from another gets
    /// 403) and how the client's address is found.
    pub edge: Edge,
}

impl Default for Options {
    /// sockjs-node's defaults under `/echo` (heartbeat 25 s, disconnect
    /// delay 5 s, response limit 128 KiB, sockjs-client 1.x from jsDelivr),
    /// with messages of at most 1 MiB and 1024 queued messages (4 MiB) per
    /// session,
    /// any origin and the TCP peer as the client.
    fn default() -> Self {
        Self {
            prefix: "/echo".into(),
            websocket: true,
            cookie_needed: false,
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            client_url: "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js".into(),
            max_message_bytes: 1024 * 1024,
            outbound_queue: 1_024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            edge: Edge::default(),
        }
    }
}
