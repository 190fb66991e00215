//! The apps of the SockJS protocol test server, and a way to run it.
//!
//! sockjs-protocol's suite expects, side by side: `/echo` (echoes every
//! message), `/close` (closes every session right after opening it with
//! `c[3000,"Go away!"]`), `/disabled_websocket_echo` (echo, WebSocket off)
//! and `/cookie_needed_echo` (echo with `JSESSIONID` cookies).
//! [`ProtocolEndpoints`] mounts them; [`ProtocolTestServer`] runs them on a
//! thread of its own (tests use port 0; `examples/sockjs_test_server.rs`
//! serves them for the official suite).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};

use super::{CLOSE_GO_AWAY, Options, Server, SessionInfo, SessionLink, SockjsApp, SockjsSession};

/// Sends every message back to its sender.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoApp;

pub struct EchoSession {
    link: SessionLink,
}

impl SockjsApp for EchoApp {
    type Session = EchoSession;
    fn open(&self, link: SessionLink, _info: SessionInfo) -> EchoSession {
        EchoSession { link }
    }
}

impl SockjsSession for EchoSession {
    async fn on_message(&mut self, text: String) {
        // A full queue closes the session; nothing more to do here.
        let _ = self.link.send(text.into());
    }
    async fn on_close(&mut self) {}
}

/// Closes every session as soon as it opens.
#[derive(Debug, Default, Clone, Copy)]
pub struct CloseApp;

pub struct ClosedSession;

impl SockjsApp for CloseApp {
    type Session = ClosedSession;
    fn open(&self, link: SessionLink, _info: SessionInfo) -> ClosedSession {
        link.close(CLOSE_GO_AWAY, "Go away!");
        ClosedSession
    }
}

impl SockjsSession for ClosedSession {
    async fn on_message(&mut self, _text: String) {}
    async fn on_close(&mut self) {}
}

/// The four endpoints of the protocol test server, sharing `base` settings
/// (its prefix is ignored).
#[derive(Clone)]
pub struct ProtocolEndpoints {
    pub echo: Arc<Server<EchoApp>>,
    pub close: Arc<Server<CloseApp>>,
    pub disabled_websocket_echo: Arc<Server<EchoApp>>,
    pub cookie_needed_echo: Arc<Server<EchoApp>>,
}

impl ProtocolEndpoints {
    pub fn new(base: &Options) -> Self {
        let at = |prefix: &str| Options {
            prefix: prefix.into(),
            ..base.clone()
        };
        Self {
            echo: Server::new(at("/echo"), EchoApp),
            close: Server::new(at("/close"), CloseApp),
            disabled_websocket_echo: Server::new(
                Options {
                    websocket: false,
                    ..at("/disabled_websocket_echo")
                },
                EchoApp,
            ),
            cookie_needed_echo: Server::new(
                Options {
                    cookie_needed: true,
                    ..at("/cookie_needed_echo")
                },
                EchoApp,
            ),
        }
    }

    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        self.echo.configure(cfg);
        self.close.configure(cfg);
        self.disabled_websocket_echo.configure(cfg);
        self.cookie_needed_echo.configure(cfg);
    }
}

/// `base` with the protocol suite's expectations: a 4 KiB response limit
/// (sockjs-node's test server) and everything else as given.
pub fn protocol_test_options(base: Options) -> Options {
    Options {
        response_limit: 4096,
        ..base
    }
}

/// SockJS endpoints served on their own thread and actix system, on
/// 127.0.0.1 port 0 in tests.
pub struct SockjsTestServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The protocol test server: its endpoints and where they are served.
pub struct ProtocolTestServer {
    pub endpoints: ProtocolEndpoints,
    pub server: SockjsTestServer,
}

impl ProtocolTestServer {
    /// Serves [`ProtocolEndpoints`] built from `base` on `host:port`.
    pub fn start(base: Options, host: &str, port: u16) -> io::Result<Self> {
        let endpoints = ProtocolEndpoints::new(&base);
        let mounted = endpoints.clone();
        let server = SockjsTestServer::start(host, port, move |cfg| mounted.configure(cfg))?;
        Ok(Self { endpoints, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn http_url(&self, path: &str) -> String {
        self.server.http_url(path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        self.server.ws_url(path)
    }

    /// Serves until the server stops.
    pub fn join(self) {
        self.server.join();
    }
}

impl SockjsTestServer {
    /// Binds `host:port` (port 0 picks one), mounts what `configure` mounts
    /// in every worker, and returns once listening.
    pub fn start<F>(host: &str, port: u16, configure: F) -> io::Result<Self>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let host = host.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sockjs-test-server".into())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    let bound = HttpServer::new(move || {
                        let configure = configure.clone();
                        App::new().configure(move |cfg| configure(cfg))
                    })
                    .workers(2)
                    .disable_signals()
                    // Browsers never half-close; treating EOF as gone lets an
                    // aborted poll close its session at once (sockjs-protocol).
                    .h1_allow_half_closed(false)
                    .shutdown_timeout(1)
                    .bind((host.as_str(), port));
                    let server = match bound {
                        Ok(server) => server,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    let Some(addr) = server.addrs().first().copied() else {
                        let _ = ready_tx.send(Err(io::Error::other("bound no address")));
                        return;
                    };
                    let server = server.run();
                    let _ = ready_tx.send(Ok((addr, server.handle())));
                    let _ = server.await;
                });
            })?;
        let (addr, handle) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| io::Error::other("sockjs test server did not start within 30 s"))??;
        Ok(Self {
            addr,
            handle,
            thread: Some(thread),
        })
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Serves until the server stops.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let handle = self.handle.clone();
        // The stop future only sends a command; a small runtime of its own
        // drives it, so dropping inside a test's runtime works too.
        let stopper = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(handle.stop(false));
            }
        });
        let _ = stopper.join();
        let _ = thread.join();
    }
}

impl Drop for SockjsTestServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
