//! Compiles the sigver wire formats and the cluster's (`proto/*.proto`) into Rust with prost,
//! using protox as the parser so that no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../../proto/sigver.proto",
        "../../proto/sigver_legacy.proto",
        "../../proto/cluster.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Each file declares no package and both define `Message`, so they are
    // compiled separately into modules of their own.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    for (proto, module) in [
        ("../../proto/sigver.proto", "sigver"),
        ("../../proto/sigver_legacy.proto", "sigver_legacy"),
        ("../../proto/cluster.proto", "cluster"),
    ] {
        let fds = protox::compile([proto], ["../../proto"])?;
        let dir = out_dir.join(module);
        std::fs::create_dir_all(&dir)?;
        prost_build::Config::new()
            .bytes(["."])
            .out_dir(&dir)
            .compile_fds(fds)?;
    }
    Ok(())
}
