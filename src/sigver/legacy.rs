//! The legacy sigver dialect (sigver 18.x). Placeholder until issue 5 lands:
//! connections asking for it are closed with 4003.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::config::SigverDialect;
use crate::error::SigverError;
use crate::sigver::group::{Leave, PeerEntry};
use crate::sigver::session::{Dialect, Heard};
use crate::sigver::state::PeerId;
use crate::supervisor::{Attach, Dispose, Occupancy, Room, RoomContext, RoomSupervisor};

pub struct Legacy;

impl Dialect for Legacy {
    type Group = LegacyGroup;
    const DIALECT: SigverDialect = SigverDialect::Legacy;
    fn heartbeat() -> Bytes {
        Bytes::new()
    }
    fn dispatch(
        _frame: Bytes,
        _peer: PeerId,
        _group: &Addr<LegacyGroup>,
    ) -> Result<Heard, SigverError> {
        Err(SigverError::BadMessage(
            "legacy protocol not available".into(),
        ))
    }
}

pub struct LegacyGroup {
    key: Arc<str>,
    occupancy: Occupancy,
    supervisor: Addr<RoomSupervisor>,
}

impl Actor for LegacyGroup {
    type Context = Context<Self>;
}

impl Room for LegacyGroup {
    const KIND: &'static str = "sigver-legacy";
    type Member = PeerEntry;
    fn new_room(key: Arc<str>, ctx: RoomContext) -> Self {
        Self {
            key,
            occupancy: Occupancy::default(),
            supervisor: ctx.supervisor,
        }
    }
}

impl Handler<Attach<LegacyGroup>> for LegacyGroup {
    type Result = ();
    fn handle(&mut self, _msg: Attach<LegacyGroup>, _ctx: &mut Context<Self>) {
        self.occupancy.attached();
    }
}

impl Handler<Leave> for LegacyGroup {
    type Result = ();
    fn handle(&mut self, _msg: Leave, _ctx: &mut Context<Self>) {
        if let Some(idle) = self.occupancy.detached::<LegacyGroup>(&self.key) {
            self.supervisor.do_send(idle);
        }
    }
}

impl Handler<Dispose> for LegacyGroup {
    type Result = ();
    fn handle(&mut self, _msg: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
