//! Expanding the command line's inputs into capture files and their output names.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One capture to convert.
#[derive(Debug)]
pub struct Input {
    pub path: PathBuf,
    /// Path relative to the output directory, without the format's extension:
    /// `REL/NAME` for `DIR/REL/NAME` found in directory `DIR`, `NAME` for a named file.
    pub rel: PathBuf,
    pub size: u64,
    /// Found in a directory (rather than named).
    pub listed: bool,
}

/// What the inputs expanded to.
pub struct Expanded {
    pub inputs: Vec<Input>,
    /// Files found in directories that are not captures.
    pub skipped: u64,
}

fn is_capture(path: &Path) -> io::Result<bool> {
    Ok(pcaplab_core::probe(File::open(path)?)?.is_some())
}

/// Named files are taken as they are (a non-capture fails later, with a clear error); files in
/// directories are taken if their content is a capture. Directories are walked recursively, in
/// name order, not following symbolic links.
pub fn expand(args: &[PathBuf]) -> anyhow::Result<Expanded> {
    let mut inputs = Vec::new();
    let mut skipped = 0;
    for arg in args {
        let meta = std::fs::metadata(arg).with_context(|| format!("{}", arg.display()))?;
        if meta.is_dir() {
            let mut stack = vec![arg.clone()];
            let mut found = Vec::new();
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir)
                    .with_context(|| format!("reading directory {}", dir.display()))?;
                for entry in entries {
                    let entry =
                        entry.with_context(|| format!("reading directory {}", dir.display()))?;
                    let ft = entry
                        .file_type()
                        .with_context(|| format!("{}", entry.path().display()))?;
                    if ft.is_dir() {
                        stack.push(entry.path());
                    } else if ft.is_file() {
                        found.push(entry.path());
                    }
                }
            }
            found.sort();
            for path in found {
                let captured =
                    is_capture(&path).with_context(|| format!("reading {}", path.display()))?;
                if !captured {
                    skipped += 1;
                    continue;
                }
                let rel = path.strip_prefix(arg).unwrap_or(&path).to_path_buf();
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                inputs.push(Input {
                    path,
                    rel,
                    size,
                    listed: true,
                });
            }
        } else {
            let name = arg
                .file_name()
                .with_context(|| format!("{}: not a file name", arg.display()))?;
            inputs.push(Input {
                path: arg.clone(),
                rel: PathBuf::from(name),
                size: meta.len(),
                listed: false,
            });
        }
    }
    Ok(Expanded { inputs, skipped })
}
