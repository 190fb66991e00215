//! The apps of the SockJS protocol test server, and a way to run it.
//!
//! sockjs-protocol's suite expects, side by side: `/echo` (echoes every
//! message), `/close` (closes every session right after opening it with
//! `c[3000,"Go away!"]`), `/disabled_websocket_echo` (echo, WebSocket off)
//! and `/cookie_needed_echo` (echo with `JSESSIONID` cookies).
//! [`ProtocolEndpoints`] mounts them; [`ProtocolTestServer`] runs them on a
//! [`BackgroundServer`] (tests use port 0; `examples/sockjs_test_server.rs`
//! serves them for the official suite).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::web;
use tokio::sync::watch;

use crate::testing::BackgroundServer;

use crate::{
    CLOSE_GO_AWAY, Options, Refusal, Server, SessionInfo, SessionLink, SockjsApp, SockjsSession,
};

/// Sends every message back to its sender.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoApp;

/// An [`EchoApp`] session.
pub struct EchoSession {
    link: SessionLink,
}

impl SockjsApp for EchoApp {
    type Ticket = ();
    type Session = EchoSession;
    async fn admit(&self, _info: &SessionInfo) -> Result<(), Refusal> {
        Ok(())
    }
    fn open(&self, link: SessionLink, _info: SessionInfo, _ticket: ()) -> EchoSession {
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

/// A [`CloseApp`] session: closed from the start.
pub struct ClosedSession;

impl SockjsApp for CloseApp {
    type Ticket = ();
    type Session = ClosedSession;
    async fn admit(&self, _info: &SessionInfo) -> Result<(), Refusal> {
        Ok(())
    }
    fn open(&self, link: SessionLink, _info: SessionInfo, _ticket: ()) -> ClosedSession {
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
    /// `/echo`.
    pub echo: Arc<Server<EchoApp>>,
    /// `/close`.
    pub close: Arc<Server<CloseApp>>,
    /// `/disabled_websocket_echo`.
    pub disabled_websocket_echo: Arc<Server<EchoApp>>,
    /// `/cookie_needed_echo`.
    pub cookie_needed_echo: Arc<Server<EchoApp>>,
}

impl ProtocolEndpoints {
    /// The endpoints; they never shut down by themselves (the test server
    /// just stops).
    pub fn new(base: &Options) -> Self {
        let never = || watch::channel(false).1;
        let at = |prefix: &str| Options {
            prefix: prefix.into(),
            ..base.clone()
        };
        Self {
            echo: Server::new(at("/echo"), EchoApp, never()),
            close: Server::new(at("/close"), CloseApp, never()),
            disabled_websocket_echo: Server::new(
                Options {
                    websocket: false,
                    ..at("/disabled_websocket_echo")
                },
                EchoApp,
                never(),
            ),
            cookie_needed_echo: Server::new(
                Options {
                    cookie_needed: true,
                    ..at("/cookie_needed_echo")
                },
                EchoApp,
                never(),
            ),
        }
    }

    /// Mounts the four endpoints.
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

/// The protocol test server: its endpoints and where they are served.
pub struct ProtocolTestServer {
    /// The four endpoints.
    pub endpoints: ProtocolEndpoints,
    /// The thread serving them.
    pub server: BackgroundServer,
}

impl ProtocolTestServer {
    /// Serves [`ProtocolEndpoints`] built from `base` on `host:port`.
    pub fn start(base: Options, host: &str, port: u16) -> io::Result<Self> {
        let endpoints = ProtocolEndpoints::new(&base);
        let mounted = endpoints.clone();
        let server = BackgroundServer::serve(host, port, move |cfg| mounted.configure(cfg))?;
        Ok(Self { endpoints, server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://addr/path`.
    pub fn http_url(&self, path: &str) -> String {
        self.server.http_url(path)
    }

    /// `ws://addr/path`.
    pub fn ws_url(&self, path: &str) -> String {
        self.server.ws_url(path)
    }

    /// Serves until the server stops.
    pub fn join(self) {
        self.server.join();
    }
}
