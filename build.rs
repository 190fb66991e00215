//! Build information for `sigway_build_info`: the compiler's version
//! (`BUILD_RUSTC_VERSION`) and, when the build sets it, the commit
//! (`BUILD_GIT_SHA`, e.g. `BUILD_GIT_SHA=$(git rev-parse --short HEAD)
//! cargo build`; not read from git here, so a build outside a checkout or
//! from a dirty tree never claims a commit it is not).
//!
//! Neither name starts with `SIGWAY_`: cargo also sets `rustc-env`
//! variables when it runs the binary (`cargo run`, tests), and every
//! `SIGWAY_*` variable is a setting to the gateway, which refuses unknown
//! ones.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BUILD_GIT_SHA");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok());
    if let Some(version) = version {
        // "rustc 1.85.0 (4d91de4e4 2025-02-17)" → "1.85.0".
        if let Some(number) = version.split_whitespace().nth(1) {
            println!("cargo:rustc-env=BUILD_RUSTC_VERSION={number}");
        }
    }
}
