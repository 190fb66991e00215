//! Cluster rules (temporary: hash only until the bus branch lands).

pub mod hash;
