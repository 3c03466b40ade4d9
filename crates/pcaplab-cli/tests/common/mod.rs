//! What the `pcaplab` binary's tests share: running it, and reading what it said.

#![allow(dead_code)] // each test file uses its own part

use std::process::{Command, Output};

/// Run `pcaplab` with `args` to completion.
pub fn pcaplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcaplab"))
        .args(args)
        .output()
        .expect("run pcaplab")
}

/// A run's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
