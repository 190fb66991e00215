//! What every session of either protocol can reach: settings, counters, the
//! room layer and the shutdown signal. Built once by the composition root
//! ([`crate::app`]) and handed to the adapters; nothing here knows HTTP.
//! The admin API reaches the same things, plus the registry of sessions
//! ([`Peers`]) and the drain switch.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::observe::Stats;
use crate::rooms::Rooms;
use crate::rooms::peers::Peers;
use crate::shutdown::{Drain, Shutdown};

pub(crate) struct Services {
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    pub rooms: Rooms,
    /// Sessions close with 1001 once it fires.
    pub shutdown: Shutdown,
    /// The sessions of this node, for the admin API.
    pub peers: Arc<Peers>,
    /// Whether the node drains (new sessions refused, `/readyz` 503).
    pub drain: Arc<Drain>,
    /// The settings in effect after SIGHUP reloads (`settings` is what the
    /// node started with; what cannot change at runtime is read there).
    pub live_settings: Arc<ArcSwap<Settings>>,
}

impl Services {
    /// The settings in effect now.
    pub(crate) fn current_settings(&self) -> Arc<Settings> {
        self.live_settings.load_full()
    }
}
