//! The videre adapter: videre-client's JSON packets over the SockJS layer.
//!
//! [`packet`] parses and builds packets and [`memberships`] keeps a
//! session's rooms (both pure, from `sigway_core::videre`), [`room`] is the
//! actor that applies a room's rules, [`session`] maps one SockJS session's
//! messages onto rooms. [`VidereApp`] is what the SockJS layer mounts under
//! the configured prefix (`/echo`): every session it opens becomes a
//! [`VidereSession`].

pub mod room;
pub mod session;

pub use sigway_core::videre::{memberships, packet};

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use actix_web::web;

use crate::services::Services;
use crate::sockjs::{self, SessionInfo, SessionLink, SockjsApp};

pub use room::VidereRoom;
pub use session::VidereSession;

/// The SockJS application serving videre packets.
pub struct VidereApp {
    pub services: web::Data<Services>,
}

impl SockjsApp for VidereApp {
    type Session = VidereSession;

    /// Takes the session's place under the connection limits (in all and
    /// per address) before any of its packets runs; a refused session is
    /// closed with the refusal's code and reason and its packets ignored.
    fn open(&self, link: SessionLink, info: SessionInfo) -> VidereSession {
        let ticket = match self.services.rooms.admit(info.remote.map(|addr| addr.ip())) {
            Ok(ticket) => Some(ticket),
            Err(refusal) => {
                self.services.stats.refusals.fetch_add(1, Relaxed);
                tracing::warn!(session = %info.id, "videre session refused: {refusal}");
                let close = refusal.close();
                link.close(close.code, &close.reason);
                None
            }
        };
        VidereSession::new(link, info, self.services.clone(), ticket)
    }
}

/// The videre SockJS endpoint, built once and shared by every worker.
pub fn endpoint(services: &web::Data<Services>) -> Arc<sockjs::Server<VidereApp>> {
    let server = sockjs::Server::new(
        sockjs::Options::from_settings(&services.settings),
        VidereApp {
            services: services.clone(),
        },
    );
    // On shutdown every SockJS session closes with 1001, like sigver peers.
    server.shutdown_on(services.shutdown.watch());
    server
}
