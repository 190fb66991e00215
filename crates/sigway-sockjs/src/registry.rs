//! The live polling/streaming sessions of one endpoint, by id, and the
//! sweeper thread that closes and forgets those left without a receiver
//! for `disconnect_delay`. The registry lock is only taken to look a
//! session up, create or drop it; each session's state has its own lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::CLOSE_GO_AWAY;
use crate::link::SessionLink;
use crate::session::{AppHandle, PollingSession};

/// Live polling sessions of one endpoint, by id.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<Arc<str>, Arc<PollingSession>>>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<PollingSession>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<PollingSession>> {
        self.map().get(id).cloned()
    }

    /// The session `id`, opened with `open` when it does not exist, with
    /// a queue of at most `outbound_queue` messages and
    /// `outbound_queue_bytes` bytes.
    pub(crate) fn get_or_open(
        &self,
        id: &str,
        (outbound_queue, outbound_queue_bytes): (usize, usize),
        open: impl FnOnce(SessionLink, Arc<str>) -> AppHandle,
    ) -> Arc<PollingSession> {
        let mut map = self.map();
        if let Some(session) = map.get(id) {
            return session.clone();
        }
        let id: Arc<str> = id.into();
        let (link, outgoing) = SessionLink::bounded(outbound_queue, outbound_queue_bytes);
        let app = open(link.clone(), id.clone());
        let session = Arc::new(PollingSession::new(id.clone(), app, link, outgoing));
        map.insert(id, session.clone());
        session
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Forgets `session` (if it is still the one under its id).
    pub(crate) fn remove(&self, session: &Arc<PollingSession>) {
        let mut map = self.map();
        if map
            .get(&session.id)
            .is_some_and(|found| Arc::ptr_eq(found, session))
        {
            map.remove(&session.id);
        }
    }

    /// Closes and forgets every session detached for longer than `delay`.
    pub(crate) fn sweep(&self, delay: Duration) {
        let now = Instant::now();
        let expired: Vec<Arc<PollingSession>> = {
            let mut map = self.map();
            let ids: Vec<Arc<str>> = map
                .iter()
                .filter(|(_, session)| session.expired(delay, now))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for session in expired {
            tracing::debug!(session = %session.id, "sockjs session timed out");
            session.close(CLOSE_GO_AWAY, "Go away!");
        }
    }
}

/// Starts the thread that expires sessions of `registry`; it ends when the
/// registry is dropped.
pub(crate) fn start_sweeper(registry: Weak<Registry>, delay: Duration) {
    let tick = (delay / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let spawned = std::thread::Builder::new()
        .name("sockjs-sweeper".into())
        .spawn(move || {
            while let Some(registry) = registry.upgrade() {
                registry.sweep(delay);
                drop(registry);
                std::thread::sleep(tick);
            }
        });
    if let Err(err) = spawned {
        tracing::error!("cannot start the sockjs session sweeper: {err}");
    }
}
