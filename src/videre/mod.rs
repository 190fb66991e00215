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

use actix_web::web;

use crate::server::Shared;
use crate::sockjs::{self, SessionInfo, SessionLink, SockjsApp};

pub use room::VidereRoom;
pub use session::VidereSession;

/// The SockJS application serving videre packets.
pub struct VidereApp {
    pub shared: web::Data<Shared>,
}

impl SockjsApp for VidereApp {
    type Session = VidereSession;
    fn open(&self, link: SessionLink, info: SessionInfo) -> VidereSession {
        VidereSession::new(link, info, self.shared.clone(), None)
    }
}

/// The videre SockJS endpoint, built once and shared by every worker.
pub fn endpoint(shared: &web::Data<Shared>) -> Arc<sockjs::Server<VidereApp>> {
    sockjs::Server::new(
        sockjs::Options::from_settings(&shared.settings),
        VidereApp {
            shared: shared.clone(),
        },
    )
}
