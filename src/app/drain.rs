//! The drain: how a node leaves service without dropping calls.
//!
//! A drain starts on SIGTERM/SIGINT or `POST /admin/drain` ([`Drain::start`]).
//! From that moment `/readyz` answers 503 "draining", new WebSocket
//! upgrades and SockJS sessions are refused (503 / `c[1001,...]`) and the
//! listener stops accepting connections; open sessions stay up until they
//! all left or `drain_timeout_secs` passed. Then the rest are told to close
//! with 1001, given `shutdown_timeout_secs` to say goodbye, and the server
//! stops (in a cluster the node then leaves as on any stop, so its rooms
//! move). With `drain_timeout_secs = 0` the drain is today's stop: close
//! with 1001 at once. [`DrainPlan`] is the pure schedule, [`carry_out`]
//! the part that touches the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use sigway_sockjs::LiveSessions;

use crate::rooms::Rooms;
use crate::shutdown::{Drain, ShutdownTrigger};

/// What a drain waits for at a given moment: pure, so the schedule is
/// tested without a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainStep {
    /// Sessions are still open and time is left: look again later.
    Wait,
    /// Every session left: stop now.
    Empty,
    /// `drain_timeout_secs` passed (or a second signal came): close the
    /// rest with 1001.
    TimedOut,
}

/// The schedule of one drain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainPlan {
    pub started: Instant,
    pub timeout: Duration,
}

impl DrainPlan {
    /// What to do with `open` sessions at `now` (`hurry`: asked twice).
    pub(crate) fn step(&self, now: Instant, open: usize, hurry: bool) -> DrainStep {
        if open == 0 {
            DrainStep::Empty
        } else if hurry || now.saturating_duration_since(self.started) >= self.timeout {
            DrainStep::TimedOut
        } else {
            DrainStep::Wait
        }
    }
}

/// What a drain acts on.
pub(crate) struct DrainTargets {
    pub drain: Arc<Drain>,
    pub rooms: Rooms,
    pub handle: ServerHandle,
    /// Admin listener, stopped last.
    pub admin: Option<ServerHandle>,
    pub shutdown: ShutdownTrigger,
    pub sessions: Arc<LiveSessions>,
    pub drain_timeout: Duration,
    pub grace: Duration,
}

/// How often a drain looks at the open sessions.
const POLL: Duration = Duration::from_millis(100);

/// Waits for a drain to start, then carries it out and stops the server.
pub(crate) async fn carry_out(targets: DrainTargets) {
    let DrainTargets {
        drain,
        rooms,
        handle,
        admin,
        shutdown,
        sessions,
        drain_timeout,
        grace,
    } = targets;
    drain.started().await;
    if !drain_timeout.is_zero() {
        // New connections wait in the backlog (and see the port closed
        // once the process exits); upgrades on open keep-alive
        // connections are refused by the handlers.
        handle.pause().await;
        let plan = DrainPlan {
            started: Instant::now(),
            timeout: drain_timeout,
        };
        tracing::info!(
            open = rooms.open_connections(),
            timeout_secs = drain_timeout.as_secs(),
            "draining: not ready, refusing new sessions, waiting for open ones to leave"
        );
        loop {
            match plan.step(Instant::now(), rooms.open_connections(), drain.hurried()) {
                DrainStep::Wait => tokio::time::sleep(POLL).await,
                DrainStep::Empty => {
                    tracing::info!("drained: every session left");
                    break;
                }
                DrainStep::TimedOut => {
                    tracing::info!(
                        open = rooms.open_connections(),
                        "drain over: closing the remaining sessions with 1001"
                    );
                    break;
                }
            }
        }
    } else {
        tracing::info!("shutting down: closing sessions with 1001");
    }
    shutdown.fire();
    sessions.wait_idle(grace).await;
    handle.stop(true).await;
    if let Some(admin) = admin {
        admin.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_waits_for_sessions_until_its_timeout() {
        let started = Instant::now();
        let plan = DrainPlan {
            started,
            timeout: Duration::from_secs(10),
        };
        assert_eq!(plan.step(started, 3, false), DrainStep::Wait);
        assert_eq!(
            plan.step(started + Duration::from_secs(9), 1, false),
            DrainStep::Wait
        );
        assert_eq!(
            plan.step(started + Duration::from_secs(10), 1, false),
            DrainStep::TimedOut
        );
        assert_eq!(
            plan.step(started + Duration::from_secs(2), 0, false),
            DrainStep::Empty
        );
        assert_eq!(plan.step(started, 2, true), DrainStep::TimedOut);
    }
}
