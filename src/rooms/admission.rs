//! Admission: a place for every connection under the connection limits
//! (in all, and per client address; SockJS sessions also under their own
//! per-address limit), taken and given back without a round trip through
//! any actor.
//!
//! The total is one atomic; per-address counts live in a small sharded map.
//! A [`Ticket`] holds the place and frees it when dropped, so a session
//! cannot forget to give it back, whatever ends it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Refusal;
use crate::config::Limits;
use crate::observe::Stats;

const SHARDS: usize = 16;

pub(crate) struct Admission {
    open: AtomicUsize,
    // Atomics: SIGHUP may change them (see [`Admission::apply`]).
    max_connections: AtomicUsize,
    max_per_ip: AtomicUsize,
    per_ip: Vec<Mutex<HashMap<IpAddr, usize>>>,
    max_sockjs_per_ip: AtomicUsize,
    sockjs_per_ip: Vec<Mutex<HashMap<IpAddr, usize>>>,
    hasher: RandomState,
    stats: Arc<Stats>,
}

/// A connection's place; dropping it frees the place.
#[must_use = "dropping the ticket frees the place at once"]
pub(crate) struct Ticket {
    ip: Option<IpAddr>,
    /// Whether the ticket also holds a SockJS session place of `ip`.
    sockjs: bool,
    admission: Arc<Admission>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("ip", &self.ip).finish()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.sockjs
            && let Some(ip) = self.ip
        {
            Admission::decrement(
                &mut self.admission.shard(&self.admission.sockjs_per_ip, &ip),
                ip,
            );
        }
        self.admission.give_back(self.ip);
    }
}

impl Admission {
    pub(crate) fn new(limits: &Limits, stats: Arc<Stats>) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(limits.max_connections),
            max_per_ip: AtomicUsize::new(limits.max_connections_per_ip),
            per_ip: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_sockjs_per_ip: AtomicUsize::new(limits.max_sockjs_sessions_per_ip),
            sockjs_per_ip: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            stats,
        }
    }

    fn shard<'a>(
        &self,
        shards: &'a [Mutex<HashMap<IpAddr, usize>>],
        ip: &IpAddr,
    ) -> std::sync::MutexGuard<'a, HashMap<IpAddr, usize>> {
        let index = self.hasher.hash_one(ip) as usize % SHARDS;
        // Every update is a single insert, add or remove: a poisoned shard
        // still holds consistent counts.
        shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One fewer for `ip` in a shard; the entry goes at zero.
    fn decrement(shard: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
        if let Some(n) = shard.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&ip);
            }
        }
    }

    /// Takes a place for a SockJS session from `ip`: one under the
    /// SockJS sessions per address, then one under the connection limits
    /// ([`Admission::admit`]); the ticket holds both.
    pub(crate) fn admit_sockjs(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Ticket, Refusal> {
        let Some(ip) = ip else {
            return self.admit(None);
        };
        {
            let max_sockjs_per_ip = self.max_sockjs_per_ip.load(Ordering::Relaxed);
            let mut shard = self.shard(&self.sockjs_per_ip, &ip);
            let from_ip = shard.entry(ip).or_default();
            if *from_ip >= max_sockjs_per_ip {
                if *from_ip == 0 {
                    shard.remove(&ip);
                }
                return Err(Refusal::TooManySessionsFromAddress(max_sockjs_per_ip));
            }
            *from_ip += 1;
        }
        match self.admit(Some(ip)) {
            Ok(mut ticket) => {
                ticket.sockjs = true;
                Ok(ticket)
            }
            Err(refusal) => {
                Self::decrement(&mut self.shard(&self.sockjs_per_ip, &ip), ip);
                Err(refusal)
            }
        }
    }

    /// Takes a place for a connection from `ip` (unknown: counted in the
    /// total only).
    pub(crate) fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Ticket, Refusal> {
        let max_connections = self.max_connections.load(Ordering::Relaxed);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max_connections).then_some(open + 1)
            })
            .map_err(|_| Refusal::TooManyConnections(max_connections))?;
        if let Some(ip) = ip {
            let max_per_ip = self.max_per_ip.load(Ordering::Relaxed);
            let mut shard = self.shard(&self.per_ip, &ip);
            let from_ip = shard.entry(ip).or_default();
            if *from_ip >= max_per_ip {
                if *from_ip == 0 {
                    shard.remove(&ip);
                }
                drop(shard);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyFromAddress(max_per_ip));
            }
            *from_ip += 1;
        }
        self.stats.connection_opened();
        Ok(Ticket {
            ip,
            sockjs: false,
            admission: self.clone(),
        })
    }

    fn give_back(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            Self::decrement(&mut self.shard(&self.per_ip, &ip), ip);
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.stats.connection_closed();
    }

    /// Takes the connection limits of reloaded `limits` (SIGHUP): open
    /// connections stay; new ones are counted against the new limits.
    pub(crate) fn apply(&self, limits: &Limits) {
        self.max_connections
            .store(limits.max_connections, Ordering::Relaxed);
        self.max_per_ip
            .store(limits.max_connections_per_ip, Ordering::Relaxed);
        self.max_sockjs_per_ip
            .store(limits.max_sockjs_sessions_per_ip, Ordering::Relaxed);
    }

    /// Connections holding a place.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    #[cfg(test)]
    /// Addresses holding at least one place.
    pub(crate) fn addresses(&self) -> usize {
        self.per_ip
            .iter()
            .map(|shard| shard.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_ip: usize) -> Arc<Admission> {
        let limits = Limits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            ..Limits::default()
        };
        Arc::new(Admission::new(&limits, Arc::new(Stats::default())))
    }

    #[test]
    fn places_are_limited_in_all_and_per_address_and_come_back_on_drop() {
        let a = admission(3, 2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t1 = a.admit(Some(ip)).expect("first");
        let t2 = a.admit(Some(ip)).expect("second");
        assert_eq!(
            a.admit(Some(ip)).expect_err("third from ip"),
            Refusal::TooManyFromAddress(2)
        );
        assert_eq!(a.open(), 2, "a refused connection holds no place");
        let t3 = a.admit(Some(other)).expect("other address");
        assert_eq!(
            a.admit(None).expect_err("full"),
            Refusal::TooManyConnections(3)
        );
        drop(t1);
        let t4 = a.admit(Some(ip)).expect("a place came back");
        drop((t2, t3, t4));
        assert_eq!((a.open(), a.addresses()), (0, 0));
    }

    #[test]
    fn sockjs_sessions_have_their_own_per_address_limit_inside_the_connection_limits() {
        let limits = Limits {
            max_connections: 10,
            max_connections_per_ip: 3,
            max_sockjs_sessions_per_ip: 2,
            ..Limits::default()
        };
        let a = Arc::new(Admission::new(&limits, Arc::new(Stats::default())));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let s1 = a.admit_sockjs(Some(ip)).expect("first session");
        let s2 = a.admit_sockjs(Some(ip)).expect("second session");
        assert_eq!(
            a.admit_sockjs(Some(ip)).expect_err("third session"),
            Refusal::TooManySessionsFromAddress(2)
        );
        let websocket = a.admit(Some(ip)).expect("a sigver connection still fits");
        drop(s1);
        let second_websocket = a.admit(Some(ip)).expect("fills the address's connections");
        assert_eq!(
            a.admit_sockjs(Some(ip))
                .expect_err("connections per address full"),
            Refusal::TooManyFromAddress(3),
            "a session refused by the connection limit gives its SockJS place back"
        );
        drop((s2, websocket, second_websocket));
        let again = a.admit_sockjs(Some(ip)).expect("places came back");
        drop(again);
        assert_eq!((a.open(), a.addresses()), (0, 0));
        assert!(
            a.sockjs_per_ip
                .iter()
                .all(|s| s.lock().map_or(true, |s| s.is_empty()))
        );
    }

    #[test]
    fn a_zero_per_address_limit_refuses_without_leaving_an_entry() {
        let a = admission(10, 0);
        assert!(a.admit(Some([1, 2, 3, 4].into())).is_err());
        assert_eq!((a.open(), a.addresses()), (0, 0));
        drop(
            a.admit(None)
                .expect("unknown address counts in the total only"),
        );
        assert_eq!(a.open(), 0);
    }
}
