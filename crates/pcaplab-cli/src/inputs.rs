//! Expanding the command line's inputs into capture files and their output names.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

/// One capture to convert.
#[derive(Debug)]
pub struct Input {
    pub path: PathBuf,
    /// Path relative to the output directory, without the format's extension:
    /// `REL/NAME` for `DIR/REL/NAME` found in directory `DIR`, `NAME` for a named file.
    pub rel: PathBuf,
    pub size: u64,
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
                inputs.push(Input { path, rel, size });
            }
        } else {
            let name = arg
                .file_name()
                .with_context(|| format!("{}: not a file name", arg.display()))?;
            inputs.push(Input {
                path: arg.clone(),
                rel: PathBuf::from(name),
                size: meta.len(),
            });
        }
    }
    // Two inputs must never write the same outputs.
    let mut seen: HashMap<&Path, &Path> = HashMap::new();
    for i in &inputs {
        if let Some(other) = seen.insert(&i.rel, &i.path) {
            bail!(
                "{} and {} would both write {}.*; convert them in separate runs or pass their directories",
                other.display(),
                i.path.display(),
                i.rel.display()
            );
        }
    }
    Ok(Expanded { inputs, skipped })
}

/// A reader that counts the bytes it hands out (for the progress bar).
pub struct Counting<R> {
    pub inner: R,
    pub count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
