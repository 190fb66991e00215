//! The videre adapter: videre-client's JSON packets over the SockJS layer.

pub mod room;

use std::sync::Arc;

use actix_web::web;

use crate::server::Shared;
use crate::sockjs::{self, SessionInfo, SessionLink, SockjsApp, SockjsSession};

/// The SockJS application serving videre packets.
pub struct VidereApp {
    pub shared: web::Data<Shared>,
}

pub struct VidereSession {
    _link: SessionLink,
}

impl SockjsApp for VidereApp {
    type Session = VidereSession;
    fn open(&self, link: SessionLink, _info: SessionInfo) -> VidereSession {
        VidereSession { _link: link }
    }
}

impl SockjsSession for VidereSession {
    async fn on_message(&mut self, _text: String) {}
    async fn on_close(&mut self) {}
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
