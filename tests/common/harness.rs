//! The load harness's binary for the tests that drive it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `hualu-loadtest`, built beside `hualu` by a workspace build (built here when only this package was).
pub fn binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_hualu")).with_file_name("hualu-loadtest");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "hualu-loadtest", "--bin", "hualu-loadtest"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building hualu-loadtest failed");
    }
    path
}
