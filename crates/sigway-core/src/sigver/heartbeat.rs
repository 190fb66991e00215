//! The heartbeat rule of both sigver dialects, with time as an argument.
//!
//! Every period the server counts one missed heartbeat for the peer and
//! sends it `heartbeat`; when the count reaches the maximum it closes the
//! peer (4742, or 4002 in the legacy dialect) instead. Any heartbeat from
//! the peer resets the count. So with the defaults (5 s, 3) a silent peer
//! sees two heartbeats and is closed about 15 s after it opened. The
//! session owns one [`Heartbeat`], sleeps until [`Heartbeat::deadline`] and
//! reports what it hears; nothing here reads a clock.

use std::time::{Duration, Instant};

/// What the session must do when the deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send the peer a heartbeat.
    Send,
    /// The peer missed too many: close it.
    Expired,
}

/// One peer's heartbeat: the missed count and when the next beat is due.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    period: Duration,
    max_missed: u32,
    missed: u32,
    deadline: Instant,
}

impl Heartbeat {
    /// A peer that opened at `now`; the first beat is one period later.
    pub fn new(now: Instant, period: Duration, max_missed: u32) -> Self {
        Self {
            period,
            max_missed: max_missed.max(1),
            missed: 0,
            deadline: now + period,
        }
    }

    /// When the session must next call [`Heartbeat::on_deadline`].
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The peer sent a heartbeat.
    pub fn heard(&mut self) {
        self.missed = 0;
    }

    /// Called at or after the deadline (earlier calls do nothing). The next
    /// deadline is a full period from `now`, so a late wake-up (a busy
    /// machine) never makes beats bunch up.
    pub fn on_deadline(&mut self, now: Instant) -> Option<Beat> {
        if now < self.deadline {
            return None;
        }
        self.deadline = now + self.period;
        self.missed += 1;
        Some(if self.missed >= self.max_missed {
            Beat::Expired
        } else {
            Beat::Send
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_silent_peer_gets_two_beats_then_expires_at_the_third_period() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, 5 * SEC, 3);
        assert_eq!(hb.deadline(), t0 + 5 * SEC);
        assert_eq!(hb.on_deadline(t0 + 4 * SEC), None, "too early");
        assert_eq!(hb.on_deadline(t0 + 5 * SEC), Some(Beat::Send));
        assert_eq!(hb.on_deadline(t0 + 10 * SEC), Some(Beat::Send));
        assert_eq!(hb.on_deadline(t0 + 15 * SEC), Some(Beat::Expired));
    }

    #[test]
    fn hearing_a_heartbeat_resets_the_count_not_the_schedule() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, 5 * SEC, 3);
        hb.on_deadline(t0 + 5 * SEC);
        hb.on_deadline(t0 + 10 * SEC);
        hb.heard();
        assert_eq!(hb.deadline(), t0 + 15 * SEC);
        assert_eq!(hb.on_deadline(t0 + 15 * SEC), Some(Beat::Send));
        assert_eq!(hb.on_deadline(t0 + 20 * SEC), Some(Beat::Send));
        assert_eq!(hb.on_deadline(t0 + 25 * SEC), Some(Beat::Expired));
    }

    #[test]
    fn a_late_wake_up_schedules_the_next_beat_a_period_later() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, SEC, 3);
        assert_eq!(hb.on_deadline(t0 + 7 * SEC), Some(Beat::Send));
        assert_eq!(hb.deadline(), t0 + 8 * SEC);
    }
}
