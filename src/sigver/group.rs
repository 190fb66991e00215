//! A sigver group actor.

use std::sync::Arc;

use actix::prelude::*;

use crate::supervisor::{Attach, Dispose, Room, RoomContext};

pub struct Group {
    _key: Arc<str>,
}

impl Actor for Group {
    type Context = Context<Self>;
}

impl Room for Group {
    const KIND: &'static str = "sigver";
    type Member = ();
    fn new_room(key: Arc<str>, _ctx: RoomContext) -> Self {
        Self { _key: key }
    }
}

impl Handler<Attach<Group>> for Group {
    type Result = ();
    fn handle(&mut self, _msg: Attach<Group>, _ctx: &mut Context<Self>) {}
}

impl Handler<Dispose> for Group {
    type Result = ();
    fn handle(&mut self, _msg: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
