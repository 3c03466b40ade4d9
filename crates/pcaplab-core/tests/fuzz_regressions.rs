//! The fuzz targets' regression inputs: every file under `tests/data/fuzz/<target>/` runs
//! through the very function the fuzz target calls (`pcaplab_core::fuzzing::<target>`), so a
//! crash the fuzzers found stays fixed. Mostly inputs the fuzzers minimized (`cargo fuzz
//! tmin`); each folder also holds a few small inputs made by hand, so that no folder is empty
//! (an empty folder fails: a test that checks nothing must not pass). See fuzz/README.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pcaplab_core::fuzzing;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    files.retain(|p| p.is_file());
    files.sort();
    assert!(
        !files.is_empty(),
        "{} holds no input: this test would check nothing",
        dir.display()
    );
    files
}

/// Runs every input of `target`; fails naming each one that panicked.
fn run(target: &str, f: fn(&[u8])) {
    let mut failed = Vec::new();
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| f(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn capture() {
    run("capture", fuzzing::capture);
}

#[test]
fn compressed() {
    run("compressed", fuzzing::compressed);
}

#[test]
fn link() {
    run("link", fuzzing::link);
}

#[test]
fn fragments() {
    run("fragments", fuzzing::fragments);
}

#[test]
fn app() {
    run("app", fuzzing::app);
}

#[test]
fn messages() {
    run("messages", fuzzing::messages);
}

#[test]
fn reassembler() {
    run("reassembler", fuzzing::reassembler);
}

#[test]
fn quic() {
    run("quic", fuzzing::quic);
}
