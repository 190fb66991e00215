//! Serving an actix-web app the way `HttpServer` does, plus the upgrade
//! hook: actix-http's `HttpService` per worker on an `actix_server::Server`,
//! over plain TCP or openssl TLS, with [`UpgradeFactory`] taking every
//! WebSocket off the HTTP/1 dispatcher. `HttpServer` offers no way to plug
//! the hook in, so this is its listen path with the same settings
//! (`HttpServer`'s defaults for keep-alive, request and disconnect
//! timeouts, its ALPN, its listener options). The request-header timeout
//! is the caller's (`client_request_timeout`), and with `proxy_protocol`
//! each plain connection must start with a PROXY header, read before the
//! HTTP layer sees the connection, whose source becomes the peer address.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Protocol, Request, Response, TlsAcceptorConfig};
use actix_rt::net::TcpStream;
use actix_service::{
    IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _, fn_service, map_config,
};
use std::sync::atomic::Ordering;

use actix_web::dev::AppConfig;
use openssl::ssl::{AlpnError, SslAcceptor, SslAcceptorBuilder};

use crate::edge::{EdgeRefusals, read_proxy_header};
use crate::placement::Workers;
use crate::upgrade::{LiveSessions, UpgradeFactory};

/// What the server is asked to be.
pub struct ServeOptions {
    /// Worker threads (at least one).
    pub workers: usize,
    /// The listen backlog.
    pub backlog: u32,
    /// Seconds a graceful stop waits for connections.
    pub shutdown_timeout_secs: u64,
    /// TCP_NODELAY on every connection.
    pub tcp_nodelay: bool,
    /// Whether an HTTP/1 connection whose client half-closed is still
    /// served.
    pub h1_allow_half_closed: bool,
    /// TLS, when set: the acceptor's builder (ALPN http/1.1 is added).
    pub tls: Option<SslAcceptorBuilder>,
    /// Longest wait for a request's head (and for a PROXY header): a
    /// client slower than this is answered 408 and dropped.
    pub client_request_timeout: Duration,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// whose source is the peer address; a connection without one is
    /// closed. Plain listeners only.
    pub proxy_protocol: bool,
    /// Where refused PROXY headers are counted.
    pub edge_refusals: Arc<EdgeRefusals>,
}

/// A bound, running server.
pub struct Served {
    /// actix's server: await it, or stop it through its handle.
    pub server: actix_server::Server,
    /// The bound address (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// The WebSocket sessions running outside the HTTP layer.
    pub sessions: Arc<LiveSessions>,
    /// The worker threads, and the sessions on each.
    pub workers: Arc<Workers>,
}

/// `HttpServer`'s keep-alive and disconnect timeouts.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds `addr` and starts serving the app `make_app` builds (once per
/// worker for HTTP, once more for upgrade requests) inside the current
/// actix system. Signals are left to the caller.
pub fn serve<F, I, S, B>(
    addr: (&str, u16),
    options: ServeOptions,
    make_app: F,
) -> io::Result<Served>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    S::Future: 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    if options.proxy_protocol && options.tls.is_some() {
        return Err(io::Error::other(
            "the PROXY protocol is served on plain listeners only",
        ));
    }
    let listener = listen(addr, options.backlog)?;
    let local = listener.local_addr()?;
    let sessions = Arc::new(LiveSessions::default());
    let workers = Arc::new(Workers::default());
    let builder = actix_server::Server::build()
        .workers(options.workers.max(1))
        .backlog(options.backlog)
        .shutdown_timeout(options.shutdown_timeout_secs)
        .disable_signals();
    let graceful = builder.graceful_shutdown_signal();
    let secure = options.tls.is_some();
    let tls = options.tls.map(acceptor).transpose()?;
    let (nodelay, half_closed) = (options.tcp_nodelay, options.h1_allow_half_closed);
    let request_timeout = options.client_request_timeout;
    let proxy_refusals = options
        .proxy_protocol
        .then(|| options.edge_refusals.clone());
    let live = sessions.clone();
    let placement = workers.clone();
    let name = format!("sigway-{local}");
    // One HTTP service per worker; the plain and TLS listeners differ only
    // in the last step, so the building is shared by a macro (the service
    // types cannot be named).
    macro_rules! http_service {
        () => {{
            let config = app_config(secure, local);
            let signal = graceful.clone();
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(half_closed)
                .tcp_nodelay(nodelay)
                .local_addr(local);
            let http = if secure { http.secure() } else { http };
            let upgrade = UpgradeFactory::new(
                make_app().into_factory(),
                config.clone(),
                live.clone(),
                placement.clone(),
                CLIENT_DISCONNECT_TIMEOUT,
            );
            let app = make_app()
                .into_factory()
                .map_err(|error| error.into().error_response());
            http.upgrade(upgrade)
                .finish(map_config(app, move |_| config.clone()))
        }};
    }
    let builder = match tls {
        Some(acceptor) => builder.listen(name, listener, move || {
            http_service!().openssl_with_config(acceptor.clone(), TlsAcceptorConfig::default())
        })?,
        None => match proxy_refusals {
            Some(refusals) => builder.listen(name, listener, move || {
                let refusals = refusals.clone();
                fn_service(move |mut io: TcpStream| {
                    let refusals = refusals.clone();
                    async move {
                        if nodelay {
                            let _ = io.set_nodelay(true);
                        }
                        let peer = io.peer_addr().ok();
                        match read_proxy_header(&mut io, request_timeout).await {
                            Ok(source) => Ok((io, Protocol::Http1, source.or(peer))),
                            Err(error) => {
                                refusals.proxy_header.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(peer = ?peer, "connection refused: {error}");
                                Err(DispatchError::Io(io::Error::other(error.to_string())))
                            }
                        }
                    }
                })
                .and_then(http_service!())
            })?,
            None => builder.listen(name, listener, move || http_service!().tcp())?,
        },
    };
    Ok(Served {
        server: builder.run(),
        addr: local,
        sessions,
        workers,
    })
}

/// actix-web's `AppConfig` as `HttpServer` builds it (its constructor is
/// crate-private; this is the one it exports for actix-test).
fn app_config(secure: bool, local: SocketAddr) -> AppConfig {
    AppConfig::__priv_test_new(secure, local.to_string(), local)
}

/// A listener as actix binds one: address reuse, the given backlog; an
/// IPv6 address is bound dual stack (`IPV6_V6ONLY` off).
fn listen((host, port): (&str, u16), backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs as _;
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let attempt = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            // `::` serves IPv4 clients too (dual stack), whatever the
            // system's `net.ipv6.bindv6only` default says.
            if addr.is_ipv6() {
                socket.set_only_v6(false)?;
            }
            socket.bind(&addr.into())?;
            socket.listen(backlog.min(i32::MAX as u32) as i32)?;
            Ok::<_, io::Error>(TcpListener::from(socket))
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("could not bind to address")))
}

/// The acceptor with ALPN `http/1.1`, as `HttpServer::bind_openssl` sets
/// it (no h2: see the gateway's TLS notes).
fn acceptor(mut builder: SslAcceptorBuilder) -> io::Result<SslAcceptor> {
    builder.set_alpn_select_callback(|_, protocols| {
        const H11: &[u8] = b"\x08http/1.1";
        if protocols.windows(9).any(|window| window == H11) {
            Ok(b"http/1.1")
        } else {
            Err(AlpnError::NOACK)
        }
    });
    builder.set_alpn_protos(b"\x08http/1.1")?;
    Ok(builder.build())
}
