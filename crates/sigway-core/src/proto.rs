//! Generated protobuf types of the two sigver wire formats and of what
//! cluster nodes tell each other (see `build.rs`).

/// sigver 20.x messages (`proto/sigver.proto`).
pub mod sigver {
    include!(concat!(env!("OUT_DIR"), "/sigver/_.rs"));
}

/// sigver 18.x messages (`proto/sigver_legacy.proto`).
pub mod legacy {
    include!(concat!(env!("OUT_DIR"), "/sigver_legacy/_.rs"));
}

/// What the room layers of two cluster nodes tell each other
/// (`proto/cluster.proto`).
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/cluster/sigway.cluster.rs"));
}
