//! The videre adapter: videre-client's JSON packets over the SockJS layer.
//!
//! [`packet`] parses and builds packets (pure), [`room`] holds a room's rules
//! and the actor that applies them, [`session`] maps one SockJS session's
//! messages onto rooms. [`VidereApp`] is what the SockJS layer mounts under
//! the configured prefix (`/echo`): every session it opens becomes a
//! [`VidereSession`].

pub mod packet;
pub mod room;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use actix_web::web;

use crate::server::Shared;
use crate::sockjs::{self, SessionInfo, SessionLink, SockjsApp};
use crate::supervisor::OpenConnection;

pub use room::VidereRoom;
pub use session::VidereSession;

/// The SockJS application serving videre packets.
pub struct VidereApp {
    pub shared: web::Data<Shared>,
}

impl SockjsApp for VidereApp {
    type Session = VidereSession;
    fn open(&self, link: SessionLink, info: SessionInfo) -> VidereSession {
        let place = session::Place::default();
        self.ask_for_place(&place, &link, &info);
        VidereSession::new(link, info, self.shared.clone(), place)
    }
}

impl VidereApp {
    /// Asks the supervisor for this session's place under the connection
    /// limits (global and per address). `open` cannot wait, so the answer
    /// lands in `place` later; a refused session is closed with the
    /// refusal's code and reason and its packets are ignored.
    fn ask_for_place(&self, place: &session::Place, link: &SessionLink, info: &SessionInfo) {
        let request = self.shared.supervisor.send(OpenConnection {
            ip: info.remote.map(|addr| addr.ip()),
        });
        let (place, link, stats) = (place.clone(), link.clone(), self.shared.stats.clone());
        let session_id = info.id.clone();
        actix_web::rt::spawn(async move {
            match request.await {
                Ok(Ok(ticket)) => place.hold(ticket),
                Ok(Err(refusal)) => {
                    stats.refusals.fetch_add(1, Relaxed);
                    tracing::warn!(session = %session_id, "videre session refused: {refusal}");
                    place.refuse();
                    let close = refusal.close();
                    link.close(close.code, &close.reason);
                }
                Err(_) => place.refuse(),
            }
        });
    }
}

/// The videre SockJS endpoint, built once and shared by every worker.
pub fn endpoint(shared: &web::Data<Shared>) -> Arc<sockjs::Server<VidereApp>> {
    let server = sockjs::Server::new(
        sockjs::Options::from_settings(&shared.settings),
        VidereApp {
            shared: shared.clone(),
        },
    );
    // On shutdown every SockJS session closes with 1001, like sigver peers.
    server.shutdown_on(shared.shutdown.clone());
    server
}
