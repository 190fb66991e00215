//! The link's wire unit: a fixed 46-byte header, then the payload.
//!
//! Every envelope says which sending state it comes from (node, run,
//! generation) and which run of the destination it is for, and carries the
//! sender's cumulative ack of the reverse direction, so acks ride on any
//! traffic going back. The header is hand-written big-endian (no schema
//! crate on this hot path, and decoding never panics: a short, unknown or
//! inconsistent input is an [`EnvelopeError`]).
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version (1) |
//! | 1 | kind: 1 data, 2 ack, 3 nack, 4 probe, 5 batch |
//! | 2..6 | from: sending node (u32) |
//! | 6..14 | incarnation: the sending node's run (u64) |
//! | 14..18 | generation of the sending state (u32, ≥ 1) |
//! | 18..26 | seq: data: the payload's number (≥ 1); batch: its first payload's number (≥ 1); probe: the highest number sent; else 0 |
//! | 26..34 | to_incarnation: the destination run it is for (u64) |
//! | 34..38 | ack_generation: the reverse state acknowledged (0: none known) |
//! | 38..46 | ack: everything up to it was delivered (nack: resend from ack + 1) |
//! | 46.. | payload (data only); batch: consecutive payloads, each a u32 length then its bytes (at least one) |
//!
//! A batch carries payloads `seq`, `seq + 1`, ... of one link in one
//! publish: under load a link sends what queued up meanwhile at once, so
//! the engine between nodes sees one message per batch, not per payload.

use bytes::{BufMut, Bytes, BytesMut};

use crate::cluster::{Incarnation, NodeId};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 46;
const VERSION: u8 = 1;

/// What an envelope is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// Carries one numbered payload.
    Data,
    /// Only the cumulative ack.
    Ack,
    /// The ack, and: please resend from `ack + 1`.
    Nack,
    /// "I have sent up to `seq`": the receiver answers with an ack or a
    /// nack at once (finds lost tails, announces a new generation).
    Probe,
    /// Carries consecutive numbered payloads, from `seq` on
    /// ([`Envelope::batch`] reads them).
    Batch,
}

/// One link envelope (see the module doc for the fields' meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// What it is for.
    pub kind: EnvelopeKind,
    /// The sending node.
    pub from: NodeId,
    /// The sending node's run.
    pub incarnation: Incarnation,
    /// The generation of the sending state (bumped by each reset).
    pub generation: u32,
    /// Data: the payload's number; probe: the highest number sent; else 0.
    pub seq: u64,
    /// The destination's run this envelope is for.
    pub to_incarnation: Incarnation,
    /// The generation of the reverse direction being acknowledged (0: none).
    pub ack_generation: u32,
    /// Every payload of the reverse direction up to this one was delivered.
    pub ack: u64,
    /// The payload (empty unless data).
    pub payload: Bytes,
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Fewer bytes than the header.
    #[error("envelope shorter than its header")]
    TooShort,
    /// A version this code does not speak.
    #[error("unknown envelope version {0}")]
    Version(u8),
    /// An unknown kind byte.
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    /// Fields that contradict each other (generation 0, data numbered 0,
    /// a payload on a non-data envelope, a batch that is empty, does not
    /// split into whole payloads, or numbers past `u64::MAX`).
    #[error("inconsistent envelope header")]
    Inconsistent,
}

impl EnvelopeKind {
    fn byte(self) -> u8 {
        match self {
            Self::Data => 1,
            Self::Ack => 2,
            Self::Nack => 3,
            Self::Probe => 4,
            Self::Batch => 5,
        }
    }

    fn from_byte(byte: u8) -> Result<Self, EnvelopeError> {
        Ok(match byte {
            1 => Self::Data,
            2 => Self::Ack,
            3 => Self::Nack,
            4 => Self::Probe,
            5 => Self::Batch,
            other => return Err(EnvelopeError::Kind(other)),
        })
    }
}

impl Envelope {
    /// The wire form.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        out.put_u8(VERSION);
        out.put_u8(self.kind.byte());
        out.put_u32(self.from);
        out.put_u64(self.incarnation);
        out.put_u32(self.generation);
        out.put_u64(self.seq);
        out.put_u64(self.to_incarnation);
        out.put_u32(self.ack_generation);
        out.put_u64(self.ack);
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// Parses the wire form; the payload shares `bytes` (no copy).
    pub fn decode(bytes: Bytes) -> Result<Self, EnvelopeError> {
        let header = bytes.get(..HEADER_LEN).ok_or(EnvelopeError::TooShort)?;
        if header[0] != VERSION {
            return Err(EnvelopeError::Version(header[0]));
        }
        let kind = EnvelopeKind::from_byte(header[1])?;
        let envelope = Self {
            kind,
            from: u32_at(header, 2),
            incarnation: u64_at(header, 6),
            generation: u32_at(header, 14),
            seq: u64_at(header, 18),
            to_incarnation: u64_at(header, 26),
            ack_generation: u32_at(header, 34),
            ack: u64_at(header, 38),
            payload: bytes.slice(HEADER_LEN..),
        };
        let consistent = envelope.generation != 0
            && match kind {
                EnvelopeKind::Data => envelope.seq != 0,
                EnvelopeKind::Batch => {
                    envelope.seq != 0
                        && batch_count(&envelope.payload)
                            .is_some_and(|n| n > 0 && envelope.seq.checked_add(n - 1).is_some())
                }
                _ => envelope.payload.is_empty(),
            };
        if consistent {
            Ok(envelope)
        } else {
            Err(EnvelopeError::Inconsistent)
        }
    }
}

/// Bytes a batch body takes for a payload of `len` bytes.
pub(crate) fn framed_len(len: usize) -> usize {
    4 + len
}

/// Whether a payload of `len` bytes can go in a batch (its length must fit
/// the u32 prefix; longer ones travel alone, as data).
pub(crate) fn batchable(len: usize) -> bool {
    u32::try_from(len).is_ok()
}

/// Appends one [`batchable`] payload to a batch body.
pub(crate) fn put_framed(body: &mut BytesMut, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    body.put_u32(len);
    body.put_slice(&payload[..len as usize]);
}

/// How many payloads a batch body holds (None: it does not split into
/// whole payloads).
fn batch_count(body: &[u8]) -> Option<u64> {
    let mut rest = body;
    let mut count = 0u64;
    while !rest.is_empty() {
        let len = u32_at(rest.get(..4)?, 0) as usize;
        rest = rest.get(4..)?.get(len..)?;
        count += 1;
    }
    Some(count)
}

/// The payloads of a batch body, in order (shares the body's bytes). Stops
/// early at a malformed frame, which [`Envelope::decode`] never lets
/// through.
pub struct BatchPayloads {
    rest: Bytes,
}

impl Iterator for BatchPayloads {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let len = u32_at(self.rest.get(..4)?, 0) as usize;
        if self.rest.len() < 4 + len {
            self.rest = Bytes::new();
            return None;
        }
        let payload = self.rest.slice(4..4 + len);
        self.rest = self.rest.slice(4 + len..);
        Some(payload)
    }
}

impl Envelope {
    /// A batch's payloads, numbered `seq`, `seq + 1`, ... (nothing for
    /// other kinds).
    pub fn batch(&self) -> BatchPayloads {
        BatchPayloads {
            rest: match self.kind {
                EnvelopeKind::Batch => self.payload.clone(),
                _ => Bytes::new(),
            },
        }
    }
}

fn u32_at(header: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&header[at..at + 4]);
    u32::from_be_bytes(raw)
}

fn u64_at(header: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&header[at..at + 8]);
    u64::from_be_bytes(raw)
}
