//! Which worker thread a WebSocket session runs on: the sessions of one
//! group share a thread, so a message relayed inside the group never wakes
//! another thread.
//!
//! actix-server hands connections to its workers in turn, so the two peers
//! of a pair usually sit on different threads, and every message between
//! them crossed threads twice (into the room's task, out to the other
//! session's): about 10 µs of CPU per relayed message on two cores, a third
//! of the whole relay (`benches/compare.sh`, `fwd1`, one worker against
//! two). A session that names its group ([`crate::accept_grouped`]) is
//! moved, right after its `101`, to the worker its group's key hashes to:
//! its socket leaves this worker's reactor (`into_std`) and joins the
//! other's, where the session and, for the group's first member, the room
//! start. Placement is only an optimisation: a session that cannot move (a
//! TLS stream, a worker that is not registered yet or has stopped) runs
//! where it was accepted, and every rule holds across threads as before.
//!
//! [`Workers`] is the registry every worker's upgrade service joins when it
//! is built; the key's hash uses a per-process random seed, so a client
//! cannot aim its groups at one thread.

use std::any::Any;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;

use actix_rt::ArbiterHandle;

/// One registered worker: its thread and the handle that spawns on it.
struct Worker {
    thread: ThreadId,
    arbiter: ArbiterHandle,
}

/// The HTTP workers of one server, in the order they registered.
pub struct Workers {
    expected: usize,
    registered: Mutex<Vec<Worker>>,
    seed: RandomState,
    moved: AtomicU64,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("expected", &self.expected)
            .field("moved", &self.moved())
            .finish_non_exhaustive()
    }
}

/// Where a grouped session runs.
pub(crate) enum Home {
    /// On this thread: it is the group's, or no other can take it.
    Here,
    /// On another worker.
    There(ArbiterHandle),
}

impl Workers {
    /// A registry for a server of `expected` workers.
    pub fn new(expected: usize) -> Self {
        Self {
            expected: expected.max(1),
            registered: Mutex::new(Vec::with_capacity(expected)),
            seed: RandomState::new(),
            moved: AtomicU64::new(0),
        }
    }

    /// Sessions moved to their group's worker so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    pub(crate) fn count_move(&self) {
        self.moved.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers the calling thread, a worker building its services. A
    /// worker actix restarted (after a panic) takes the place of one whose
    /// arbiter stopped, so a group's key keeps one home.
    pub(crate) fn register_current(&self) {
        let worker = Worker {
            thread: std::thread::current().id(),
            arbiter: actix_rt::Arbiter::current(),
        };
        let mut registered = self.lock();
        if registered.iter().any(|known| known.thread == worker.thread) {
            return;
        }
        if registered.len() < self.expected {
            registered.push(worker);
        } else if let Some(stopped) = registered
            .iter_mut()
            .find(|known| !known.arbiter.spawn(async {}))
        {
            *stopped = worker;
        }
    }

    /// Where the sessions of the group `key` run, seen from the calling
    /// thread.
    pub(crate) fn home_of(&self, key: &str) -> Home {
        let index = (self.seed.hash_one(key) % self.expected as u64) as usize;
        let registered = self.lock();
        match registered.get(index) {
            Some(worker) if worker.thread != std::thread::current().id() => {
                Home::There(worker.arbiter.clone())
            }
            _ => Home::Here,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        // A panic while holding this lock leaves a list that is still
        // whole: every change is one push or one assignment.
        self.registered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    #[test]
    fn one_key_has_one_home_index() {
        let workers = Workers::new(4);
        let index = |key: &str| workers.seed.hash_one(key) % 4;
        assert_eq!(index("alpha"), index("alpha"));
        let spread: std::collections::HashSet<u64> =
            (0..200).map(|n| index(&format!("key-{n}"))).collect();
        assert_eq!(spread.len(), 4, "200 keys reach every worker");
    }

    #[actix_rt::test]
    async fn an_unregistered_or_own_worker_keeps_the_session_here() {
        let workers = Workers::new(2);
        assert!(matches!(workers.home_of("any"), Home::Here));
        workers.register_current();
        workers.register_current();
        assert_eq!(workers.lock().len(), 1, "one thread registers once");
        for n in 0..50 {
            assert!(matches!(workers.home_of(&format!("k{n}")), Home::Here));
        }
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
