//! The composition root: builds the [`Services`] (settings, counters, the
//! room layer, the shutdown signal), mounts the two protocol adapters on one
//! port, TLS or not, and runs until a signal. Nothing else in the crate
//! imports it.
//!
//! [`start`] binds the listener (port 0 works, for tests); [`routes`] says
//! what is served where; [`request_span`] logs requests without the room
//! key of a sigver path; [`tls`] builds the openssl acceptor. On
//! SIGTERM/SIGINT the server stops accepting, tells every session to close
//! with 1001 and waits `shutdown_timeout_secs` for them.
//! [`BackgroundServer`] runs one on its own thread for tests and tools.

mod cluster;
mod dashboard;
mod request_span;
mod routes;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, web};
use sigway_sockjs::edge::Edge;
use sigway_sockjs::{LiveSessions, ServeOptions};
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
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
            ..
        } = self;
        let signals = actix_web::rt::spawn(shutdown_on_signal(shutdown, handle, sessions, grace));
        let result = server.await;
        signals.abort();
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

async fn shutdown_on_signal(
    shutdown: ShutdownTrigger,
    handle: ServerHandle,
    sessions: Arc<LiveSessions>,
    grace: Duration,
) {
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
    Running::stop(&handle, &shutdown, &sessions, grace).await;
}

/// Binds and starts the server inside the current actix system.
pub fn start(settings: Settings) -> io::Result<Running> {
    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let workers = match settings.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (trigger, shutdown) = ShutdownTrigger::new();
    let (rooms, cluster) = if settings.cluster.enabled() {
        let node = cluster::node_id(&settings.cluster);
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
        );
        (rooms, Some(node))
    } else {
        (Rooms::new(settings.clone(), stats.clone()), None)
    };
    let services = web::Data::new(Services {
        settings: settings.clone(),
        rooms,
        stats: stats.clone(),
        shutdown,
    });
    let edge = Edge::new(
        settings.origin_policy().map_err(io::Error::other)?,
        settings.proxy_policy().map_err(io::Error::other)?,
        stats.edge_refusals.clone(),
    );
    let edge_refusals = stats.edge_refusals.clone();
    let stats_data = web::Data::from(stats);
    let videre = crate::videre::endpoint(&services, edge.clone());
    let feeds = web::Data::new(dashboard::FeedClients::default());
    let edge = web::Data::new(edge);

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
            Some(_) => Some(tls::acceptor(&settings)?),
            None => None,
        },
        client_request_timeout: Duration::from_millis(settings.http.client_request_timeout_ms),
        proxy_protocol: settings.http.proxy_protocol,
        edge_refusals,
    };
    let served = sigway_sockjs::serve(
        (settings.host.as_str(), settings.port),
        options,
        move || {
            App::new()
                .app_data(services.clone())
                .app_data(stats_data.clone())
                .app_data(edge.clone())
                .app_data(web::PayloadConfig::new(
                    services.settings.limits.max_frame_bytes,
                ))
                .wrap(TracingLogger::<request_span::KeyHidingRootSpan>::new())
                .configure(|cfg| routes::routes(cfg, &videre, &feeds))
        },
    )?;
    let (addr, server) = (served.addr, served.server);
    Ok(Running {
        addr,
        tls: tls_files.is_some(),
        handle: server.handle(),
        shutdown: trigger,
        server,
        cluster,
        sessions: served.sessions,
        grace: Duration::from_secs(settings.shutdown_timeout_secs),
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

/// The gateway on its own thread and actix system, for tests and tools:
/// `sigway_sockjs::testing::BackgroundServer` running [`start`], stopped
/// as on SIGTERM (sessions told to close, then a graceful stop).
pub struct BackgroundServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it serves https/wss.
    pub tls: bool,
    inner: sigway_sockjs::testing::BackgroundServer,
}

impl BackgroundServer {
    /// Starts `settings` (use port 0) and returns once it is listening.
    pub fn start(settings: Settings) -> io::Result<Self> {
        let tls = settings.tls_files().map_err(io::Error::other)?.is_some();
        let inner = sigway_sockjs::testing::BackgroundServer::start("sigway-server", move || {
            let mut running = start(settings)?;
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
        Ok(Self {
            addr: inner.addr,
            tls,
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
