//! The HTTP server: one port, TLS or not, every route, and shutdown.
//!
//! [`start`] binds the listener (port 0 works, for tests), starts the
//! [`RoomSupervisor`] and the arbiters that run room actors, and mounts:
//! the SockJS/videre endpoint under its prefix, the sigver WebSocket on any
//! other path that asks for an upgrade, and plain pages (`/`, `/healthz`,
//! `/metrics`, `/stats`, the demo) for everything else. On SIGTERM/SIGINT it
//! stops accepting, tells every session to close with 1001 and waits
//! `shutdown_timeout_secs` for them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, guard, web};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};
use openssl::x509::X509;
use serde_json::json;
use tokio::sync::watch;
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
use crate::observe::{self, Stats};
use crate::supervisor::RoomSupervisor;

/// What every request handler and session can reach.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub supervisor: Addr<RoomSupervisor>,
    pub stats: Arc<Stats>,
    /// Flips to `true` when the server shuts down; sessions then close with 1001.
    pub shutdown: watch::Receiver<bool>,
}

/// A started server: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    pub handle: ServerHandle,
    shutdown: watch::Sender<bool>,
    server: actix_web::dev::Server,
}

impl Running {
    /// Runs until the server stops (signal or [`Running::stop`]).
    pub async fn wait(self) -> io::Result<()> {
        let Running {
            server,
            shutdown,
            handle,
            ..
        } = self;
        let signals = actix_web::rt::spawn(shutdown_on_signal(shutdown, handle));
        let result = server.await;
        signals.abort();
        result
    }

    /// Graceful stop: sessions are told to close, then workers stop.
    pub async fn stop(handle: &ServerHandle, shutdown: &watch::Sender<bool>) {
        let _ = shutdown.send(true);
        handle.stop(true).await;
    }

    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

async fn shutdown_on_signal(shutdown: watch::Sender<bool>, handle: ServerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down: closing sessions with 1001");
    Running::stop(&handle, &shutdown).await;
}

/// Binds and starts the server inside the current actix system.
pub fn start(settings: Settings) -> io::Result<Running> {
    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let workers = match settings.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<ArbiterHandle> = (0..workers).map(|_| Arbiter::new().handle()).collect();
    let supervisor = RoomSupervisor::new(settings.clone(), stats.clone(), arbiters).start();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = web::Data::new(Shared {
        settings: settings.clone(),
        supervisor,
        stats: stats.clone(),
        shutdown: shutdown_rx,
    });
    let stats_data = web::Data::from(stats);
    let videre = crate::videre::endpoint(&shared);

    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(stats_data.clone())
            .app_data(web::PayloadConfig::new(
                shared.settings.limits.max_frame_bytes,
            ))
            .wrap(TracingLogger::default())
            .configure(|cfg| routes(cfg, &videre))
    })
    .workers(workers)
    .backlog(settings.backlog)
    // Signaling messages are small and latency-bound (Node's ws does the same).
    .tcp_nodelay(true)
    .disable_signals()
    // Browsers never half-close: EOF means an aborted SockJS poll, whose
    // session must close at once.
    .h1_allow_half_closed(false)
    .shutdown_timeout(settings.shutdown_timeout_secs);

    let host = settings.host.as_str();
    let tls_files = settings.tls_files().map_err(io::Error::other)?;
    let server = match tls_files {
        Some(_) => server.bind_openssl((host, settings.port), tls_acceptor(&settings)?)?,
        None => server.bind((host, settings.port))?,
    };
    let addr = *server
        .addrs()
        .first()
        .ok_or_else(|| io::Error::other("server bound no address"))?;
    let server = server.run();
    Ok(Running {
        addr,
        tls: tls_files.is_some(),
        handle: server.handle(),
        shutdown: shutdown_tx,
        server,
    })
}

/// Starts the server and serves until a signal stops it.
pub async fn run(settings: Settings) -> io::Result<()> {
    let running = start(settings)?;
    let scheme = if running.tls { "https/wss" } else { "http/ws" };
    tracing::info!(
        "Signaling server is listening on {} ({scheme})",
        running.addr
    );
    running.wait().await
}

fn tls_acceptor(settings: &Settings) -> io::Result<SslAcceptorBuilder> {
    let tls = &settings.tls;
    let (cert, key) = settings
        .tls_files()
        .map_err(io::Error::other)?
        .ok_or_else(|| io::Error::other("TLS requested without files"))?;
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(io::Error::other)?;
    let context = |what: &str, path: &std::path::Path, e: openssl::error::ErrorStack| {
        io::Error::other(format!("TLS {what} {}: {e}", path.display()))
    };
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| context("key", key, e))?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|e| context("certificate", cert, e))?;
    if let Some(ca) = &tls.ca {
        let pem = std::fs::read(ca)?;
        for extra in X509::stack_from_pem(&pem).map_err(|e| context("CA chain", ca, e))? {
            builder
                .add_extra_chain_cert(extra)
                .map_err(|e| context("CA chain", ca, e))?;
        }
    }
    builder
        .check_private_key()
        .map_err(|e| context("key (does not match the certificate)", key, e))?;
    Ok(builder)
}

fn is_websocket_upgrade(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head().upgrade()
        || ctx
            .head()
            .headers()
            .get(actix_web::http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn routes(
    cfg: &mut web::ServiceConfig,
    videre: &Arc<crate::sockjs::Server<crate::videre::VidereApp>>,
) {
    videre.configure(cfg);
    cfg.service(
        web::resource("/{any:.*}")
            .guard(guard::fn_guard(is_websocket_upgrade))
            .to(crate::sigver::session::entry),
    )
    .route("/", web::get().to(landing))
    .route("/demo", web::get().to(demo))
    .route("/healthz", web::get().to(observe::healthz))
    .route("/metrics", web::get().to(observe::metrics))
    .route("/stats", web::get().to(observe::stats))
    .default_service(web::to(not_a_websocket));
}

const LANDING_PAGE: &str = include_str!("../static/index.html");
const DEMO_PAGE: &str = include_str!("../static/demo.html");

async fn landing() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(LANDING_PAGE)
}

async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DEMO_PAGE)
}

/// Any other plain request: say what this server is instead of hanging.
async fn not_a_websocket(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.uri().path();
    HttpResponse::UpgradeRequired()
        .insert_header(("Upgrade", "websocket"))
        .json(json!({
            "server": "sigway",
            "version": env!("CARGO_PKG_VERSION"),
            "error": "this path is a sigver signaling endpoint: open a WebSocket to it",
            "sigver": { "key": path.strip_prefix('/').unwrap_or(path), "url": format!("ws(s)://HOST{path}") },
            "videre": { "sockjs": shared.settings.sockjs.prefix },
            "endpoints": ["/", "/demo", "/healthz", "/metrics", "/stats"],
        }))
}

/// A server on its own thread and actix system, for tests and tools.
pub struct BackgroundServer {
    pub addr: SocketAddr,
    pub tls: bool,
    handle: ServerHandle,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Starts `settings` (use port 0) and returns once it is listening.
    pub fn start(settings: Settings) -> io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sigway-server".into())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    match start(settings) {
                        Ok(running) => {
                            let info = (
                                running.addr,
                                running.tls,
                                running.handle.clone(),
                                running.shutdown_sender(),
                            );
                            let _ = ready_tx.send(Ok(info));
                            let _ = running.server.await;
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                        }
                    }
                });
            })?;
        let (addr, tls, handle, shutdown) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| io::Error::other("server did not start within 30 s"))??;
        Ok(Self {
            addr,
            tls,
            handle,
            shutdown,
            thread: Some(thread),
        })
    }

    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Graceful stop, as on SIGTERM; waits for the server thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (handle, shutdown) = (self.handle.clone(), self.shutdown.clone());
        // The stop future only sends commands; a small runtime on a thread of
        // its own drives it, so this also works when dropped inside a test's
        // async runtime.
        let stopper = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(Running::stop(&handle, &shutdown));
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
