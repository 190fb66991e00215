//! A mounted SockJS endpoint: the app, its options, the registry of
//! polling sessions and the shutdown signal, shared by every worker.

use std::future::Future;
use std::sync::Arc;

use actix_web::web;
use tokio::sync::watch;

use crate::bell::ShutdownBell;

use crate::app::SockjsApp;
use crate::http::{self, IframePage};
use crate::options::Options;
use crate::registry::{self, Registry};

/// A mounted SockJS endpoint: routes under `options.prefix` for `app`.
pub struct Server<A: SockjsApp> {
    /// The endpoint's settings (prefix normalised).
    pub options: Options,
    /// The application its sessions run.
    pub app: A,
    pub(crate) registry: Arc<Registry>,
    pub(crate) iframe: IframePage,
    shutdown: watch::Receiver<bool>,
    bell: ShutdownBell,
}

impl<A: SockjsApp> Server<A> {
    /// The endpoint; `options.prefix` is normalised to `/name` (no trailing
    /// slash). Every session closes with 1001 (`c[1001,"server shutting
    /// down"]` on the framed transports) once `shutdown` turns true; a
    /// receiver whose sender is gone without firing never does. Starts the
    /// thread that expires idle polling sessions.
    pub fn new(options: Options, app: A, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let bell = ShutdownBell::following(shutdown.clone());
        Self::with_bell(options, app, shutdown, bell)
    }

    /// [`Server::new`] with the bell that `shutdown` rings (a caller that
    /// rings its own bell spares the thread [`ShutdownBell::following`]
    /// starts).
    pub fn with_bell(
        mut options: Options,
        app: A,
        shutdown: watch::Receiver<bool>,
        bell: ShutdownBell,
    ) -> Arc<Self> {
        let trimmed = options.prefix.trim_end_matches('/');
        options.prefix = if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        let registry = Arc::new(Registry::default());
        registry::start_sweeper(Arc::downgrade(&registry), options.disconnect_delay);
        let iframe = IframePage::new(&options.client_url);
        Arc::new(Self {
            options,
            app,
            registry,
            iframe,
            shutdown,
            bell,
        })
    }

    /// Resolves when the server shuts down (never without a signal).
    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            if shutdown.wait_for(|down| *down).await.is_ok() {
                return;
            }
            std::future::pending::<()>().await
        }
    }

    /// The shutdown as a bell, for loops that poll it among other things.
    pub(crate) fn shutdown_bell(&self) -> ShutdownBell {
        self.bell.clone()
    }

    /// Polling/streaming sessions currently known (open or closing).
    pub fn polling_sessions(&self) -> usize {
        self.registry.len()
    }

    /// Mounts every SockJS route under the prefix: one scope whose requests
    /// are routed by `route::route`.
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
