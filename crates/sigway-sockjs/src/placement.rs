//! Which worker thread a WebSocket session runs on: a session joins the
//! thread of the room it is about to enter, so a message relayed inside the
//! room never wakes another thread, and new rooms go where the sessions
//! are fewest, so the workers stay evenly loaded.
//!
//! actix-server hands connections to its workers in turn, so the two peers
//! of a pair usually sit on different threads, and every message between
//! them crossed threads (into the room's task, or out to the other
//! session's). The same server with one worker instead of two needed about
//! a third less CPU per relayed message (`BENCHMARKS.md`); placing a
//! group's sessions together won back 9–17 % of it, the rest being the two
//! workers' own sleeps and wake-ups. A room records
//! the [`Place`] it started on ([`Place::here`]); a handler that knows the
//! room a session will join hands that place to [`crate::accept_at`], and a
//! handler whose session will open a new room hands
//! [`Place::for_new_room`]. A session accepted on another worker moves
//! there right after its `101`: its socket leaves this worker's reactor
//! (`into_std`) and joins the other's.
//!
//! Following rooms alone would pile up: with connections handed out in
//! turn, the members that open rooms can all arrive on one worker (a load
//! tool opening pairs one after the other does exactly that), and every
//! joiner would follow them there. So a new room stays on the accepting
//! worker unless that worker runs more than [`SLACK`] sessions more than
//! the least loaded one, which then gets it. Placement is only an
//! optimisation: a session that cannot move (a TLS stream) runs where it
//! was accepted, and every rule holds across threads as before.
//!
//! Only threads that serve upgrades (the HTTP workers, registered in
//! [`Workers`] as they build their services) are places: a room started
//! elsewhere (adopted on the cluster's arbiter, say) has none.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use actix_rt::ArbiterHandle;

/// How many more sessions than the least loaded worker the accepting
/// worker may run before a new room goes to the least loaded one. Enough
/// that a burst of joins is not moved around for a handful of sessions.
pub(crate) const SLACK: usize = 16;

/// One worker thread of a server.
struct Worker {
    thread: ThreadId,
    arbiter: ArbiterHandle,
    /// WebSocket sessions running on it.
    sessions: AtomicUsize,
}

/// The worker threads of one server, in the order they registered.
#[derive(Default)]
pub struct Workers {
    registered: Mutex<Vec<Arc<Worker>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("registered", &self.lock().len())
            .finish()
    }
}

thread_local! {
    /// This worker and its server's registry, on a worker thread.
    static CURRENT: RefCell<Option<(Arc<Worker>, Arc<Workers>)>> = const { RefCell::new(None) };
}

impl Workers {
    /// Registers the calling thread, a worker building its services. A
    /// worker whose arbiter stopped (actix restarts a worker after a
    /// panic) leaves the list.
    pub(crate) fn register_current(self: &Arc<Self>) {
        if CURRENT.with_borrow(|current| current.is_some()) {
            return;
        }
        let Some(arbiter) = actix_rt::Arbiter::try_current() else {
            return;
        };
        let worker = Arc::new(Worker {
            thread: std::thread::current().id(),
            arbiter,
            sessions: AtomicUsize::new(0),
        });
        let mut registered = self.lock();
        registered.retain(|known| known.arbiter.spawn(async {}));
        registered.push(worker.clone());
        drop(registered);
        CURRENT.set(Some((worker, self.clone())));
    }

    /// The WebSocket sessions running on each worker now, in the order the
    /// workers registered.
    pub fn sessions_per_worker(&self) -> Vec<usize> {
        self.lock()
            .iter()
            .map(|worker| worker.sessions.load(Ordering::Relaxed))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Worker>>> {
        // Every change is one retain or one push: a panic cannot leave the
        // list half changed.
        self.registered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker thread sessions can be placed on.
#[derive(Clone)]
pub struct Place(Arc<Worker>);

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("thread", &self.0.thread)
            .field("sessions", &self.0.sessions.load(Ordering::Relaxed))
            .finish()
    }
}

impl Place {
    /// The calling thread, when it is a worker that serves upgrades.
    pub fn here() -> Option<Place> {
        CURRENT.with_borrow(|current| current.as_ref().map(|(worker, _)| Place(worker.clone())))
    }

    /// Where a session that opens a new room is best run: here, unless
    /// this worker runs more than [`SLACK`] sessions more than the least
    /// loaded worker of its server, which is then the place.
    pub fn for_new_room() -> Option<Place> {
        CURRENT.with_borrow(|current| {
            let (here, workers) = current.as_ref()?;
            let load = |worker: &Worker| worker.sessions.load(Ordering::Relaxed);
            let registered = workers.lock();
            let least = registered.iter().min_by_key(|worker| load(worker))?;
            if load(here) > load(least) + SLACK {
                Some(Place(least.clone()))
            } else {
                Some(Place(here.clone()))
            }
        })
    }

    /// Whether this is the calling thread.
    pub fn is_here(&self) -> bool {
        self.0.thread == std::thread::current().id()
    }

    pub(crate) fn arbiter(&self) -> &ArbiterHandle {
        &self.0.arbiter
    }

    /// Counts a session running on this worker until the guard drops.
    pub(crate) fn count_session(&self) -> OnWorker {
        self.0.sessions.fetch_add(1, Ordering::Relaxed);
        OnWorker(self.0.clone())
    }
}

/// A session counted on its worker; dropping it counts the session out.
pub(crate) struct OnWorker(Arc<Worker>);

impl Drop for OnWorker {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket `io` as a thread-free `std` socket, when it is a plain TCP
/// stream (TLS streams keep their thread); the socket leaves the reactor
/// of this thread. `Err` gives `io` back untouched.
pub(crate) fn detach<T: 'static>(io: T) -> Result<std::io::Result<std::net::TcpStream>, T> {
    let mut slot = Some(io);
    let tcp = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<tokio::net::TcpStream>>()
        .and_then(Option::take);
    match (tcp, slot) {
        (Some(tcp), _) => Ok(tcp.into_std()),
        (None, Some(io)) => Err(io),
        (None, None) => unreachable!("only a plain TCP stream is taken out of the slot"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers a worker on a thread of its own, with `sessions` counted
    /// on it; returns its place.
    fn worker_thread(workers: &Arc<Workers>, sessions: usize) -> Place {
        let workers = workers.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                workers.register_current();
                let place = Place::here().expect("registered");
                let guards: Vec<_> = (0..sessions).map(|_| place.count_session()).collect();
                std::mem::forget(guards);
                let _ = tx.send(place);
                // Keeps its arbiter alive for the test's length.
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            });
        });
        rx.recv().expect("a place")
    }

    #[actix_rt::test]
    async fn only_a_registered_worker_is_a_place() {
        assert!(Place::here().is_none(), "a runtime that serves no upgrades");
        assert!(Place::for_new_room().is_none());
        let workers = Arc::new(Workers::default());
        workers.register_current();
        workers.register_current();
        assert_eq!(workers.lock().len(), 1, "one thread registers once");
        let place = Place::here().expect("a worker now");
        assert!(place.is_here());
        let elsewhere = std::thread::spawn(move || place.is_here())
            .join()
            .expect("joins");
        assert!(!elsewhere);
    }

    #[actix_rt::test]
    async fn a_new_room_stays_here_until_this_worker_is_ahead_by_more_than_the_slack() {
        let workers = Arc::new(Workers::default());
        workers.register_current();
        let here = Place::here().expect("registered");
        let other = worker_thread(&workers, 5);
        let mut counted: Vec<OnWorker> = Vec::new();
        for _ in 0..5 + SLACK {
            counted.push(here.count_session());
        }
        assert!(
            Place::for_new_room().expect("a place").is_here(),
            "ahead by the slack"
        );
        counted.push(here.count_session());
        let chosen = Place::for_new_room().expect("a place");
        assert!(!chosen.is_here(), "ahead by more: the other worker");
        assert_eq!(chosen.0.thread, other.0.thread);
        counted.truncate(3);
        assert!(
            Place::for_new_room().expect("a place").is_here(),
            "now the lighter"
        );
    }

    #[actix_rt::test]
    async fn only_a_plain_tcp_stream_detaches() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, _) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let detached = detach(client.unwrap());
        assert!(matches!(detached, Ok(Ok(_))));
        let other = detach(vec![1u8]);
        assert!(matches!(other, Err(bytes) if bytes == vec![1u8]));
    }
}
