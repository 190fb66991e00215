//! A server on its own thread and actix system, for tests and tools: the
//! one harness behind the gateway's test server and the SockJS protocol
//! test server.
//!
//! [`BackgroundServer::start`] takes a closure that starts any actix-web
//! server inside the new system (port 0 works) and returns once it
//! listens; [`BackgroundServer::serve`] is the short form that mounts a
//! `configure` function on [`crate::serve`] (actix-web's app with the
//! WebSocket upgrade hook). Dropping the value stops
//! the server and joins its thread.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, web};

use crate::serve::{ServeOptions, serve};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What a start closure hands back: the running server and where it
/// listens, and how to stop it.
pub struct Started {
    /// The server, not yet awaited.
    pub server: Server,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Called first when the server is stopped (to tell sessions to close,
    /// say).
    pub before_stop: Option<Box<dyn FnOnce() + Send>>,
    /// Let workers finish their connections (up to the server's shutdown
    /// timeout) instead of dropping them at once.
    pub graceful: bool,
}

/// A server running on a thread of its own until dropped or stopped.
pub struct BackgroundServer {
    /// Where it listens.
    pub addr: SocketAddr,
    handle: ServerHandle,
    before_stop: Option<Box<dyn FnOnce() + Send>>,
    graceful: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Runs `start` inside a new actix system on a thread named `name` and
    /// returns once the server it started listens.
    pub fn start<F>(name: &str, start: F) -> io::Result<Self>
    where
        F: FnOnce() -> io::Result<Started> + Send + 'static,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    match start() {
                        Ok(started) => {
                            let Started {
                                server,
                                addr,
                                before_stop,
                                graceful,
                            } = started;
                            let ready = (addr, server.handle(), before_stop, graceful);
                            let _ = ready_tx.send(Ok(ready));
                            let _ = server.await;
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                        }
                    }
                });
            })?;
        let (addr, handle, before_stop, graceful) = ready_rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| io::Error::other(format!("{name} did not start within 30 s")))??;
        Ok(Self {
            addr,
            handle,
            before_stop,
            graceful,
            thread: Some(thread),
        })
    }

    /// Binds `host:port` (port 0 picks one) with two workers, mounts what
    /// `configure` mounts in every worker, and returns once listening.
    pub fn serve<F>(host: &str, port: u16, configure: F) -> io::Result<Self>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let host = host.to_owned();
        Self::start("sockjs-test-server", move || {
            let options = ServeOptions {
                workers: 2,
                backlog: 1024,
                shutdown_timeout_secs: 1,
                tcp_nodelay: false,
                // Browsers never half-close; treating EOF as gone lets an
                // aborted poll close its session at once (sockjs-protocol).
                h1_allow_half_closed: false,
                tls: None,
                client_request_timeout: std::time::Duration::from_secs(5),
                proxy_protocol: false,
                edge_refusals: Default::default(),
            };
            let served = serve((host.as_str(), port), options, move || {
                let configure = configure.clone();
                App::new().configure(move |cfg| configure(cfg))
            })?;
            let addr = served.addr;
            Ok(Started {
                server: served.server,
                addr,
                before_stop: None,
                graceful: false,
            })
        })
    }

    /// `http://addr/path`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://addr/path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Serves until the server stops by itself.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops the server (graceful when it was started so) and waits for
    /// its thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Some(before_stop) = self.before_stop.take() {
            before_stop();
        }
        let (handle, graceful) = (self.handle.clone(), self.graceful);
        // The stop future only sends a command; a small runtime on a thread
        // of its own drives it, so dropping inside a test's runtime works.
        let stopper = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(handle.stop(graceful));
            }
        });
        let _ = stopper.join();
        let _ = thread.join();
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
