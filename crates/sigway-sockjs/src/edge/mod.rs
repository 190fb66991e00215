//! The edge of the server: what is decided about a request before any
//! protocol sees it. Which browser origins may connect ([`origin`]), who
//! the client really is behind reverse proxies ([`forwarded`]) or a TCP
//! load balancer ([`proxy_protocol`]), and the counters of what the edge
//! refused. Those three modules are pure; this one applies them to actix
//! requests and sockets.
//!
//! One [`Edge`] serves the whole listener: the SockJS layer checks every
//! request under its prefix with it, the gateway checks its sigver
//! upgrades, and every place that needs the client's address (per-address
//! limits, logs) asks [`Edge::client_addr`] (or [`client_addr`], which
//! finds the app's `Edge`), never `peer_addr()`.

pub mod forwarded;
pub mod origin;
pub mod proxy_protocol;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncReadExt as _};

pub use forwarded::{BadCidr, Cidr, ClientIpHeader, ProxyPolicy};
pub use origin::{BadOriginPattern, OriginPolicy, OriginVerdict};

/// Refusals of the edge, by reason (read by `/metrics` and `/stats`).
#[derive(Debug, Default)]
pub struct EdgeRefusals {
    /// Requests refused for their `Origin` (403).
    pub origin: AtomicU64,
    /// Connections closed for a bad, missing or slow PROXY header.
    pub proxy_header: AtomicU64,
}

/// The edge policy of one listener and its counters. Clones share the
/// policy, which [`Edge::replace`] swaps for all of them at once (a
/// settings reload) without a lock on the request path.
#[derive(Debug, Clone)]
pub struct Edge {
    policy: Arc<ArcSwap<EdgePolicy>>,
    refusals: Arc<EdgeRefusals>,
}

/// Who may connect and who the client is.
#[derive(Debug, Default)]
struct EdgePolicy {
    origins: OriginPolicy,
    proxies: ProxyPolicy,
}

impl Default for Edge {
    fn default() -> Self {
        Self::new(
            OriginPolicy::default(),
            ProxyPolicy::default(),
            Arc::default(),
        )
    }
}

impl Edge {
    /// The policy; refusals are counted in `refusals`.
    pub fn new(origins: OriginPolicy, proxies: ProxyPolicy, refusals: Arc<EdgeRefusals>) -> Self {
        Self {
            policy: Arc::new(ArcSwap::from_pointee(EdgePolicy { origins, proxies })),
            refusals,
        }
    }

    /// Replaces the policy of this edge and of every clone of it: requests
    /// from now on are judged by `origins` and `proxies`.
    pub fn replace(&self, origins: OriginPolicy, proxies: ProxyPolicy) {
        self.policy.store(Arc::new(EdgePolicy { origins, proxies }));
    }

    /// The counters of refusals.
    pub fn refusals(&self) -> &Arc<EdgeRefusals> {
        &self.refusals
    }

    /// The client's address: the TCP peer (or the PROXY protocol source,
    /// which the listener made the peer), or, when that is a trusted
    /// proxy, what the configured header says.
    pub fn client_addr(&self, req: &HttpRequest) -> Option<SocketAddr> {
        let peer = req.peer_addr()?;
        let policy = self.policy.load();
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(policy.proxies.header().name())
            .map(|value| value.as_bytes())
            .collect();
        Some(policy.proxies.client(peer, &values))
    }

    /// Checks the request's `Origin`: the 403 to answer when it is not
    /// allowed (the refusal is logged with the client's address and
    /// counted), `None` when the request may go on.
    pub fn origin_refusal(&self, req: &HttpRequest, what: &str) -> Option<HttpResponse> {
        let origin = req.headers().get(header::ORIGIN).map(|o| o.as_bytes());
        if self.policy.load().origins.check(origin) != OriginVerdict::Denied {
            return None;
        }
        self.refusals.origin.fetch_add(1, Relaxed);
        let client = self.client_addr(req);
        let shown = origin.map(String::from_utf8_lossy);
        tracing::warn!(
            client = ?client,
            origin = shown.as_deref().unwrap_or("(none)"),
            path = req.path(),
            "{what} refused: origin not allowed"
        );
        // The body, if any, is not read: the connection closes after the answer.
        Some(
            HttpResponse::Forbidden()
                .force_close()
                .content_type("text/plain; charset=utf-8")
                .body("origin not allowed\n"),
        )
    }
}

/// The `Origin` header of `req`, when it has a readable one.
pub fn origin_of(req: &HttpRequest) -> Option<Arc<str>> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .map(Arc::from)
}

/// The client's address for a request of an app that registered its
/// [`Edge`] as `web::Data<Edge>` app data; without one, the TCP peer (no
/// proxy is trusted).
pub fn client_addr(req: &HttpRequest) -> Option<SocketAddr> {
    match req.app_data::<actix_web::web::Data<Edge>>() {
        Some(edge) => edge.client_addr(req),
        None => req.peer_addr(),
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug)]
pub enum ProxyHeaderError {
    /// Not a PROXY header, or a malformed one.
    Bad(&'static str),
    /// The header did not arrive in time.
    Timeout,
    /// The socket failed or closed first.
    Io(std::io::Error),
}

impl std::fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyHeaderError::Bad(reason) => f.write_str(reason),
            ProxyHeaderError::Timeout => f.write_str("no complete PROXY header in time"),
            ProxyHeaderError::Io(error) => write!(f, "reading the PROXY header: {error}"),
        }
    }
}

/// Reads a PROXY protocol header from the start of `io` within `limit`,
/// taking no byte beyond it: the source it names (`None` for the
/// balancer's own connections).
pub async fn read_proxy_header<T: AsyncRead + Unpin>(
    io: &mut T,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let read = async {
        let mut header = Vec::with_capacity(64);
        loop {
            match proxy_protocol::parse(&header) {
                proxy_protocol::Step::Need(more) => {
                    let start = header.len();
                    header.resize(start + more, 0);
                    io.read_exact(&mut header[start..])
                        .await
                        .map_err(ProxyHeaderError::Io)?;
                }
                proxy_protocol::Step::Done(source) => return Ok(source),
                proxy_protocol::Step::Bad(reason) => return Err(ProxyHeaderError::Bad(reason)),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(ProxyHeaderError::Timeout))
}
