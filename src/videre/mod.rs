//! The videre adapter: videre-client's JSON packets over the SockJS layer.
//!
//! [`packet`] parses and builds packets and [`memberships`] keeps a
//! session's rooms (both pure, from `sigway_core::videre`), [`room`] is the
//! actor that applies a room's rules, [`session`] maps one SockJS session's
//! messages onto rooms, and [`remote`] lets a room's members be connected
//! to other nodes of a cluster. [`VidereApp`] is what the SockJS layer
//! mounts under the configured prefix (`/echo`): it admits each session
//! under the connection limits before any of its packets runs (the session
//! then owns its [`Ticket`]), and every session it opens becomes a
//! [`VidereSession`].
//! [`sockjs_options`] maps the gateway's settings onto the SockJS layer's
//! options.

pub(crate) mod remote;
pub(crate) mod room;
pub(crate) mod session;

pub(crate) use sigway_core::videre::packet;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use sigway_sockjs::{Refusal, SessionInfo, SessionLink, SockjsApp};

use crate::config::Settings;
use crate::observe::Reason;
use crate::rooms::Ticket;
use crate::services::Services;

pub(crate) use session::VidereSession;

/// The SockJS application serving videre packets.
pub(crate) struct VidereApp {
    /// What sessions reach rooms, settings and counters through.
    pub services: web::Data<Services>,
}

impl SockjsApp for VidereApp {
    /// The session's place under the connection limits.
    type Ticket = Ticket;
    type Session = VidereSession;

    /// Takes the session's place under the connection limits (in all and
    /// per address, and the SockJS sessions per address); the SockJS layer awaits this before any packet of the
    /// session runs. A refused session is closed with the refusal's code
    /// and reason.
    async fn admit(&self, info: &SessionInfo) -> Result<Ticket, Refusal> {
        if self.services.drain.is_draining() {
            tracing::info!(session = %info.id, "videre session refused: draining");
            return Err(Refusal::new(1001, "server draining: reconnect"));
        }
        self.services
            .rooms
            .admit_sockjs(info.remote.map(|addr| addr.ip()))
            .map_err(|refusal| {
                let reason = Reason::of_refusal(&refusal);
                self.services.stats.refused(reason, None);
                let client = info.remote.map(|addr| addr.ip());
                tracing::warn!(session = %info.id, client = ?client, "videre session refused: {refusal}");
                let close = refusal.close();
                Refusal::new(close.code, close.reason)
            })
    }

    fn open(&self, link: SessionLink, info: SessionInfo, ticket: Ticket) -> VidereSession {
        VidereSession::new(link, info, self.services.clone(), ticket)
    }
}

/// The SockJS options the gateway's settings describe.
pub(crate) fn sockjs_options(settings: &Settings) -> sigway_sockjs::Options {
    let s = &settings.sockjs;
    sigway_sockjs::Options {
        prefix: s.prefix.clone(),
        websocket: s.websocket,
        cookie_needed: s.jsessionid,
        heartbeat: Duration::from_millis(s.heartbeat_ms),
        disconnect_delay: Duration::from_millis(s.disconnect_delay_ms),
        response_limit: s.response_limit,
        client_url: s.client_url.clone(),
        max_message_bytes: settings.limits.max_frame_bytes,
        outbound_queue: settings.limits.outbound_queue,
        outbound_queue_bytes: settings.limits.outbound_queue_bytes,
        // The listener's edge is set by [`endpoint`]; this is the policy of
        // the defaults.
        edge: sigway_sockjs::edge::Edge::default(),
    }
}

/// The videre SockJS endpoint, built once and shared by every worker. On
/// shutdown every SockJS session closes with 1001, like sigver peers.
pub(crate) fn endpoint(
    services: &web::Data<Services>,
    edge: sigway_sockjs::edge::Edge,
) -> Arc<sigway_sockjs::Server<VidereApp>> {
    sigway_sockjs::Server::with_bell(
        sigway_sockjs::Options {
            edge,
            ..sockjs_options(&services.settings)
        },
        VidereApp {
            services: services.clone(),
        },
        services.shutdown.watch(),
        services.shutdown.bell().clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_give_sockjs_node_s_defaults() {
        let from_settings = sockjs_options(&Settings::default());
        let defaults = sigway_sockjs::Options::default();
        assert_eq!(
            format!("{from_settings:?}"),
            format!("{defaults:?}"),
            "the gateway's defaults are the SockJS crate's"
        );
    }
}
