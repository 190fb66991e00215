//! Closes by protocol and close code: `sigway_closes_total{protocol,code}`.
//!
//! The codes are a fixed table (the standard WebSocket ones, SockJS' and
//! both sigver dialects' own), each an atomic counter, so counting a close
//! takes no lock and a client choosing odd codes cannot grow the label set:
//! any other code is counted as `other`. `none` is a videre session that
//! ended without a close the server chose (the client left or timed out);
//! a sigver socket that went away without a close frame is counted as 1006,
//! the code a browser reports for it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The protocols closes are counted for (the `protocol` label).
pub(crate) const PROTOCOLS: [&str; 3] = ["sigver", "sigver-legacy", "videre"];

/// The codes with their own label value.
pub(crate) const CODES: [u16; 25] = [
    1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 2010, 4001, 4002,
    4003, 4004, 4741, 4742, 4743, 4744, 4745, 4746, 4747,
];

/// The slots after the codes: `other` and `none`.
const OTHER: usize = CODES.len();
const NONE: usize = CODES.len() + 1;
const SLOTS: usize = CODES.len() + 2;

/// How a session ended, as far as the label goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// With this close code (sent by either side).
    Code(u16),
    /// Without one (`code="none"`).
    NoCode,
}

/// Counters of closes by protocol and code.
#[derive(Debug, Default)]
pub(crate) struct Closes {
    counts: [[AtomicU64; SLOTS]; PROTOCOLS.len()],
}

impl Closes {
    /// Counts one close of a session of `protocol` (a room kind: `sigver`,
    /// `sigver-legacy` or `videre`; others are not counted).
    pub(crate) fn count(&self, protocol: &str, ended: Ended) {
        let Some(row) = PROTOCOLS.iter().position(|p| *p == protocol) else {
            return;
        };
        let slot = match ended {
            Ended::Code(code) => CODES.iter().position(|c| *c == code).unwrap_or(OTHER),
            Ended::NoCode => NONE,
        };
        self.counts[row][slot].fetch_add(1, Relaxed);
    }

    /// Every `(protocol, code label, count)` with a count above zero (a
    /// label appears once it happened, as usual for label sets).
    pub(crate) fn samples(&self) -> Vec<(&'static str, String, u64)> {
        let mut samples = Vec::new();
        for (row, protocol) in PROTOCOLS.iter().enumerate() {
            for (slot, counter) in self.counts[row].iter().enumerate() {
                let count = counter.load(Relaxed);
                if count == 0 {
                    continue;
                }
                let code = match slot {
                    OTHER => "other".to_owned(),
                    NONE => "none".to_owned(),
                    _ => CODES[slot].to_string(),
                };
                samples.push((*protocol, code, count));
            }
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_counted_by_protocol_and_code_and_odd_codes_as_other() {
        let closes = Closes::default();
        closes.count("sigver", Ended::Code(4741));
        closes.count("sigver", Ended::Code(4741));
        closes.count("videre", Ended::Code(1000));
        closes.count("videre", Ended::NoCode);
        closes.count("sigver-legacy", Ended::Code(4321));
        closes.count("nothing", Ended::Code(1000));
        assert_eq!(
            closes.samples(),
            vec![
                ("sigver", "4741".to_owned(), 2),
                ("sigver-legacy", "other".to_owned(), 1),
                ("videre", "1000".to_owned(), 1),
                ("videre", "none".to_owned(), 1),
            ]
        );
    }
}
