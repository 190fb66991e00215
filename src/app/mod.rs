//! The composition root: builds the [`Services`] (settings, counters, the
//! room layer, the shutdown signal), mounts the two protocol adapters on one
//! port, TLS or not, and runs until a signal. Nothing else in the crate
//! imports it.
//!
//! [`start`] binds the listener (port 0 works, for tests); [`routes`] says
//! what is served where; [`request_span`] logs requests without the room
//! key of a sigver path; [`tls`] builds the openssl acceptor; [`admin`] is
//! the admin API (its own listener on `admin.listen`, and/or `/admin/` on
//! the public port behind `admin.token`). On SIGTERM/SIGINT (or `POST
//! /admin/drain`) the node drains ([`drain`]): not ready, no new sessions,
//! open ones kept up to `drain_timeout_secs`, then closed with 1001 and
//! given `shutdown_timeout_secs`. SIGHUP reloads the TLS pair and the
//! settings that may change at runtime ([`reload`]).
//! [`BackgroundServer`] runs one on its own thread for tests and tools.

mod admin;
mod cluster;
mod dashboard;
mod drain;
mod node_board;
mod reload;
mod request_span;
mod routes;
mod tls;
mod turn;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use arc_swap::{ArcSwap, ArcSwapOption};
use sigway_sockjs::edge::Edge;
use sigway_sockjs::{LiveSessions, ServeOptions};
use tracing_actix_web::TracingLogger;

use crate::config::{Overrides, Settings};
use crate::observe::Stats;
use crate::rooms::{Cluster, Rooms};
use crate::services::Services;
use crate::shutdown::ShutdownTrigger;

/// A started server: where it listens and how to stop it.
pub struct Running {
    /// The bound address (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// Whether it serves https/wss.
    pub tls: bool,
    /// actix's handle, to stop the workers.
    pub handle: ServerHandle,
    shutdown: ShutdownTrigger,
    server: actix_web::dev::Server,
    cluster: Option<cluster::ClusterNode>,
    /// WebSocket sessions, which run outside the HTTP workers' count.
    sessions: Arc<LiveSessions>,
    grace: Duration,
    /// Where the admin listener listens, when `admin.listen` is set.
    pub admin_addr: Option<SocketAddr>,
    admin: Option<actix_web::dev::Server>,
    drain: Arc<crate::shutdown::Drain>,
    drain_timeout: Duration,
    rooms: Rooms,
    reloader: Option<reload::Reloader>,
}

impl Running {
    /// Runs until the server stops (signal or [`Running::stop`]).
    pub async fn wait(self) -> io::Result<()> {
        let Running {
            server,
            shutdown,
            handle,
            cluster,
            sessions,
            grace,
            admin,
            drain,
            drain_timeout,
            rooms,
            reloader,
            ..
        } = self;
        let admin_handle = admin.as_ref().map(|admin| admin.handle());
        let admin_task = admin.map(actix_web::rt::spawn);
        let signals = actix_web::rt::spawn(on_signals(drain.clone(), reloader));
        let drainer = actix_web::rt::spawn(drain::carry_out(drain::DrainTargets {
            drain,
            rooms,
            handle,
            admin: admin_handle.clone(),
            shutdown,
            sessions,
            drain_timeout,
            grace,
        }));
        let result = server.await;
        signals.abort();
        drainer.abort();
        if let Some(admin) = admin_handle {
            admin.stop(false).await;
        }
        if let Some(task) = admin_task {
            task.abort();
        }
        // Last: the cluster leave moves the rooms this node owned.
        if let Some(cluster) = cluster {
            cluster.stop(Duration::from_secs(2)).await;
        }
        result
    }

    /// Graceful stop: sessions are told to close and given up to `grace`
    /// to say goodbye, then workers stop.
    pub async fn stop(
        handle: &ServerHandle,
        shutdown: &ShutdownTrigger,
        sessions: &LiveSessions,
        grace: Duration,
    ) {
        shutdown.fire();
        sessions.wait_idle(grace).await;
        handle.stop(true).await;
    }

    /// What tells every session to close with 1001.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.shutdown.clone()
    }
}

/// SIGTERM/SIGINT start the drain (a second one hurries it); SIGHUP
/// reloads the settings.
async fn on_signals(drain: Arc<crate::shutdown::Drain>, reloader: Option<reload::Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { drain.start(); }
                _ = int.recv() => { drain.start(); }
                _ = hup.recv() => match &reloader {
                    Some(reloader) => reloader.reload(),
                    None => tracing::warn!("SIGHUP: this server was started without settings to read again"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            drain.start();
        }
    }
}

/// Binds and starts the server inside the current actix system.
pub fn start(settings: Settings) -> io::Result<Running> {
    start_with(settings, None)
}

/// [`start`], and on SIGHUP reads the settings again from the layers
/// `overrides` names (the settings file, the environment, the flags).
pub fn start_reloadable(settings: Settings, overrides: Overrides) -> io::Result<Running> {
    start_with(settings, Some(overrides))
}

fn start_with(settings: Settings, overrides: Option<Overrides>) -> io::Result<Running> {
    let live_settings = Arc::new(ArcSwap::from_pointee(settings.clone()));
    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let workers = match settings.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (trigger, shutdown) = ShutdownTrigger::new();
    let mut board = None;
    let (rooms, cluster) = if settings.cluster.enabled() {
        let node = cluster::node_id(&settings.cluster);
        let node_board = Arc::new(node_board::NodeBoard::new(node));
        board = Some(node_board.clone());
        let release_after = Duration::from_millis(settings.cluster.release_after_ms);
        let dead_after = Duration::from_millis(settings.cluster.dead_after_ms);
        let cluster = Cluster::new(node, release_after, dead_after * 3);
        cluster.serve::<crate::sigver::current::Group>();
        cluster.serve::<crate::sigver::legacy::LegacyGroup>();
        cluster.serve::<crate::videre::room::VidereRoom>();
        let rooms = Rooms::clustered(settings.clone(), stats.clone(), cluster.clone());
        tracing::info!(node, redis = %settings.cluster.redis_url, "cluster mode");
        let node = cluster::launch(
            settings.cluster.clone(),
            cluster,
            rooms.clone(),
            stats.clone(),
            node_board,
        );
        (rooms, Some(node))
    } else {
        (Rooms::new(settings.clone(), stats.clone()), None)
    };
    let drain = Arc::new(crate::shutdown::Drain::default());
    let services = web::Data::new(Services {
        settings: settings.clone(),
        rooms: rooms.clone(),
        stats: stats.clone(),
        shutdown,
        peers: Default::default(),
        drain: drain.clone(),
        live_settings: live_settings.clone(),
    });
    let edge = Edge::new(
        settings.origin_policy().map_err(io::Error::other)?,
        settings.proxy_policy().map_err(io::Error::other)?,
        stats.edge_refusals.clone(),
    );
    let edge_refusals = stats.edge_refusals.clone();
    let stats_data = web::Data::from(stats);
    let stats_for_sessions = stats_data.clone();
    let videre = crate::videre::endpoint(&services, edge.clone());
    let reload_edge = edge.clone();
    dashboard::log_access(&settings);
    let feeds = web::Data::new(dashboard::FeedClients::new(board));
    let edge = web::Data::new(edge);
    let turn = web::Data::new(turn::TurnEndpoint::new(settings.turn.clone()));
    let tls_swap: tls::TlsSwap = Arc::new(ArcSwapOption::empty());
    let admin_token = admin::AdminToken::of(&settings);
    let public_admin = (!settings.admin.token.is_empty()).then(|| admin_token.clone());

    let tls_files = settings.tls_files().map_err(io::Error::other)?;
    let options = ServeOptions {
        workers,
        backlog: settings.backlog,
        shutdown_timeout_secs: settings.shutdown_timeout_secs,
        // Signaling messages are small and latency-bound (Node's ws does the same).
        tcp_nodelay: true,
        // Browsers never half-close: EOF means an aborted SockJS poll, whose
        // session must close at once.
        h1_allow_half_closed: false,
        tls: match tls_files {
            Some(_) => Some(tls::acceptor(&settings, &tls_swap)?),
            None => None,
        },
        client_request_timeout: Duration::from_millis(settings.http.client_request_timeout_ms),
        proxy_protocol: settings.http.proxy_protocol,
        edge_refusals,
    };
    let admin_services = services.clone();
    let served = sigway_sockjs::serve(
        (settings.host.as_str(), settings.port),
        options,
        move || {
            App::new()
                .app_data(services.clone())
                .app_data(stats_data.clone())
                .app_data(edge.clone())
                .app_data(turn.clone())
                .app_data(web::PayloadConfig::new(
                    services.settings.limits.max_frame_bytes,
                ))
                .wrap(TracingLogger::<request_span::KeyHidingRootSpan>::new())
                .configure(|cfg| routes::routes(cfg, &videre, public_admin.clone(), &feeds))
        },
    )?;
    stats_for_sessions.set_live_sessions(served.sessions.clone(), served.workers.clone());
    let (addr, server) = (served.addr, served.server);
    let (admin, admin_addr) = match settings.admin.listen.as_str() {
        "" => (None, None),
        listen => {
            let (server, bound) = admin_listener(listen, admin_services, admin_token)?;
            tracing::info!("admin API is listening on {bound}");
            (Some(server), Some(bound))
        }
    };
    let reloader = overrides.map(|overrides| reload::Reloader {
        overrides,
        live: live_settings,
        tls: tls_files.is_some().then_some(tls_swap),
        rooms: rooms.clone(),
        edge: reload_edge,
    });
    Ok(Running {
        addr,
        tls: tls_files.is_some(),
        handle: server.handle(),
        shutdown: trigger,
        server,
        cluster,
        sessions: served.sessions,
        grace: Duration::from_secs(settings.shutdown_timeout_secs),
        admin_addr,
        admin,
        drain,
        drain_timeout: Duration::from_secs(settings.drain_timeout_secs),
        rooms,
        reloader,
    })
}

/// The admin API on its own listener (one worker: operators' calls are few).
fn admin_listener(
    listen: &str,
    services: web::Data<Services>,
    token: admin::AdminToken,
) -> io::Result<(actix_web::dev::Server, SocketAddr)> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(services.clone())
            .configure(|cfg| admin::routes(cfg, token.clone()))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("admin.listen bound no address"))?;
    Ok((server.run(), bound))
}

/// Starts the server and serves until a signal stops it.
pub async fn run(settings: Settings) -> io::Result<()> {
    serve_until_stopped(start(settings)?).await
}

/// [`run`], reading the settings again from `overrides`' layers on SIGHUP.
pub async fn run_reloadable(settings: Settings, overrides: Overrides) -> io::Result<()> {
    serve_until_stopped(start_reloadable(settings, overrides)?).await
}

async fn serve_until_stopped(running: Running) -> io::Result<()> {
    let scheme = if running.tls { "https/wss" } else { "http/ws" };
    tracing::info!(
        "Signaling server is listening on {} ({scheme})",
        running.addr
    );
    running.wait().await
}

/// The gateway on its own thread and actix system, for tests and tools:
/// `sigway_sockjs::testing::BackgroundServer` running [`start`], stopped
/// as on SIGTERM (sessions told to close, then a graceful stop).
pub struct BackgroundServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it serves https/wss.
    pub tls: bool,
    /// Where the admin listener listens, when `admin.listen` is set.
    pub admin_addr: Option<SocketAddr>,
    inner: sigway_sockjs::testing::BackgroundServer,
}

impl BackgroundServer {
    /// Starts `settings` (use port 0) and returns once it is listening.
    pub fn start(settings: Settings) -> io::Result<Self> {
        let tls = settings.tls_files().map_err(io::Error::other)?.is_some();
        let admin_addr = Arc::new(std::sync::Mutex::new(None));
        let admin_told = admin_addr.clone();
        let inner = sigway_sockjs::testing::BackgroundServer::start("sigway-server", move || {
            let mut running = start(settings)?;
            // The admin listener runs on this system and stops with it.
            if let Some(admin) = running.admin.take() {
                actix_web::rt::spawn(admin);
            }
            *admin_told
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = running.admin_addr;
            let shutdown = running.shutdown_trigger();
            let (sessions, grace) = (running.sessions.clone(), running.grace);
            // Dropping the cluster node says goodbye to the other nodes.
            let cluster = running.cluster.take();
            Ok(sigway_sockjs::testing::Started {
                addr: running.addr,
                server: running.server,
                before_stop: Some(Box::new(move || {
                    shutdown.fire();
                    sessions.wait_idle_blocking(grace);
                    drop(cluster);
                })),
                graceful: true,
            })
        })?;
        let admin_addr = *admin_addr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(Self {
            addr: inner.addr,
            tls,
            admin_addr,
            inner,
        })
    }

    /// `http(s)://ADDR<path>`.
    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// `ws(s)://ADDR<path>`.
    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Graceful stop, as on SIGTERM; waits for the server thread.
    pub fn stop(self) {
        self.inner.stop();
    }
}
