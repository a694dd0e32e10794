//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz entry points on the stable
//! toolchain, so CI checks every input the fuzzer ever kept without needing libFuzzer or nightly.
//!
//! A panic on any input fails the test, naming the file. See `fuzz/README.md` for how the corpus is grown.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The corpus files of one target, sorted; fails if the directory is missing or empty.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {} must exist: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} must not be empty", dir.display());
    files
}

/// Runs every file of `target`'s corpus through `run`, then fails listing each input that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let files = corpus(target);
    let mut panicked = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            panicked.push(file.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "{} of {} {target} corpus inputs panicked:\n{}",
        panicked.len(),
        files.len(),
        panicked.join("\n")
    );
}

#[test]
fn parse_corpus_replays_without_panic() {
    replay("parse", hualu_turn::fuzzing::parse);
}

#[test]
fn unauthenticated_corpus_replays_without_panic() {
    replay("unauthenticated", hualu_turn::fuzzing::unauthenticated);
}
