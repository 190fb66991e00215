//! The legacy sigver dialect (sigver 18.x, early-2018 Netflux releases):
//! [`codec`] (bytes ↔ messages) and [`state`] (the pure rules). Member
//! selection, route ids, limits and the binding table are shared with the
//! current dialect.

pub mod codec;
pub mod state;
