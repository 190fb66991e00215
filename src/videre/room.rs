//! A videre room actor.

use std::sync::Arc;

use actix::prelude::*;

use crate::supervisor::{Attach, Dispose, Room, RoomContext};

pub struct VidereRoom {
    _key: Arc<str>,
}

impl Actor for VidereRoom {
    type Context = Context<Self>;
}

impl Room for VidereRoom {
    const KIND: &'static str = "videre";
    type Member = ();
    fn new_room(key: Arc<str>, _ctx: RoomContext) -> Self {
        Self { _key: key }
    }
}

impl Handler<Attach<VidereRoom>> for VidereRoom {
    type Result = ();
    fn handle(&mut self, _msg: Attach<VidereRoom>, _ctx: &mut Context<Self>) {}
}

impl Handler<Dispose> for VidereRoom {
    type Result = ();
    fn handle(&mut self, _msg: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
