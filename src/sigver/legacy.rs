//! A legacy sigver group actor.

use std::sync::Arc;

use actix::prelude::*;

use crate::supervisor::{Attach, Dispose, Room, RoomContext};

pub struct LegacyGroup {
    _key: Arc<str>,
}

impl Actor for LegacyGroup {
    type Context = Context<Self>;
}

impl Room for LegacyGroup {
    const KIND: &'static str = "sigver-legacy";
    type Member = ();
    fn new_room(key: Arc<str>, _ctx: RoomContext) -> Self {
        Self { _key: key }
    }
}

impl Handler<Attach<LegacyGroup>> for LegacyGroup {
    type Result = ();
    fn handle(&mut self, _msg: Attach<LegacyGroup>, _ctx: &mut Context<Self>) {}
}

impl Handler<Dispose> for LegacyGroup {
    type Result = ();
    fn handle(&mut self, _msg: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
