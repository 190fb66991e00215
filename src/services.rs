//! What every session of either protocol can reach: settings, counters, the
//! room layer and the shutdown signal. Built once by the composition root
//! ([`crate::app`]) and handed to the adapters; nothing here knows HTTP.

use std::sync::Arc;

use crate::config::Settings;
use crate::observe::Stats;
use crate::rooms::Rooms;
use crate::shutdown::Shutdown;

pub(crate) struct Services {
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    pub rooms: Rooms,
    /// Sessions close with 1001 once it fires.
    pub shutdown: Shutdown,
}
