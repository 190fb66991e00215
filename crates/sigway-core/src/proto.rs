//! Generated protobuf types of the two sigver wire formats (see `build.rs`).

/// sigver 20.x messages (`proto/sigver.proto`).
pub mod sigver {
    include!(concat!(env!("OUT_DIR"), "/sigver/_.rs"));
}

/// sigver 18.x messages (`proto/sigver_legacy.proto`).
pub mod legacy {
    include!(concat!(env!("OUT_DIR"), "/sigver_legacy/_.rs"));
}
