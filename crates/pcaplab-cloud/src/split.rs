//! The job's conversion of one capture in byte ranges (`--split-bytes`): the core's plan →
//! count → convert → merge ([`pcaplab_core::split_run`]) over ranged reads of the object (a
//! local file or an S3 object, pinned to the ETag it had when the job started), with every
//! range's packet outputs written beside each other as parts of the dataset
//! ([`layout::part_key`]) and the flow outputs written once, by the merge.
//!
//! The flow parts the ranges hand to the merge are spooled to a temporary directory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use pcaplab_core::split_run::{RangeSource, SplitOutputs, SplitRunError, convert_split};
use pcaplab_core::{Counts, Engine, Format, Opened, Outputs, OutputsError, Report};
use tokio::runtime::Handle;

use crate::io::{StreamReader, Upload, upload};
use crate::job::Root;
use crate::layout::{self, Naming, Output};

/// An object read by byte ranges.
pub(crate) struct ObjectRanges {
    store: Arc<dyn ObjectStore>,
    path: Path,
    len: u64,
    /// Every range is read from this version (S3: `If-Match`).
    etag: Option<String>,
    runtime: Handle,
    /// Set when a download (not the capture) failed: the core reads that as damage.
    failed: Mutex<Vec<Arc<AtomicBool>>>,
}

impl ObjectRanges {
    /// `len` bytes of `path` in `store`, pinned to `etag`; read on the current runtime.
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        len: u64,
        etag: Option<String>,
    ) -> Self {
        ObjectRanges {
            store,
            path,
            len,
            etag,
            runtime: Handle::current(),
            failed: Mutex::default(),
        }
    }

    /// Whether any range's download failed (a fault worth a retry, not damage).
    pub(crate) fn transport_failed(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|f| f.load(Ordering::Relaxed))
    }
}

impl RangeSource for ObjectRanges {
    fn size(&self) -> u64 {
        self.len
    }

    fn open(&self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send>> {
        let end = end.unwrap_or(self.len).min(self.len);
        if start >= end {
            return Ok(Box::new(io::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        let got = self
            .runtime
            .block_on(self.store.get_opts(&self.path, options))
            .map_err(io::Error::other)?;
        let (reader, failed) = StreamReader::spawn(&self.runtime, got.into_stream(), None);
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(failed);
        Ok(Box::new(reader))
    }
}

/// The uploads a conversion started, to be committed or aborted together.
pub(crate) type Uploads = Arc<Mutex<Vec<(Output, Upload)>>>;

/// Start the upload of `key` under `root` on `runtime`, recorded in `uploads`.
pub(crate) fn start_upload(
    runtime: &Handle,
    root: &Root,
    uploads: &Mutex<Vec<(Output, Upload)>>,
    output: Output,
    key: String,
) -> Result<Box<dyn Write + Send>, OutputsError> {
    let (control, writer) = upload(
        runtime,
        Arc::clone(&root.store),
        root.path(&key)?,
        root.url(&key),
        root.part_size,
    );
    uploads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((output, control));
    Ok(Box::new(writer))
}

/// A size in bytes as people write it: a number, optionally with KiB, MiB or GiB (or K, M,
/// G), at least 1 KiB — a range size, a threshold.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: a number of bytes, e.g. 512MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{s:?}: the unit must be KiB, MiB or GiB")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))?;
    if bytes < 1024 {
        return Err(format!("{s:?}: at least 1 KiB"));
    }
    Ok(bytes)
}

/// What names the capture's outputs, but the date (which the capture's first packets give).
pub(crate) struct Names {
    pub(crate) id: String,
    pub(crate) file_name: String,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified_ns: Option<i64>,
}

impl Names {
    fn naming(&self, opened: &Opened) -> Naming<'_> {
        Naming {
            id: &self.id,
            file_name: &self.file_name,
            etag: self.etag.as_deref(),
            date: layout::utc_date(opened.first_ts.or(self.last_modified_ns).unwrap_or(0)),
        }
    }
}

/// Convert `source` in ranges of `range_bytes`, `concurrency` at a time; every output's upload
/// is pushed to `uploads` as it starts (the caller commits or aborts them all). `item`: a
/// summary item will be written (flows are tracked for it, and the whole summary counted).
/// Returns the report and the number of ranges (parts of each packet output).
#[allow(clippy::too_many_arguments)]
pub(crate) fn convert_in_ranges(
    engine: &Engine,
    source: &ObjectRanges,
    names: &Names,
    root: &Root,
    formats: &[Format],
    item: bool,
    range_bytes: u64,
    concurrency: usize,
    uploads: &Mutex<Vec<(Output, Upload)>>,
) -> Result<(Report, u64), SplitRunError> {
    let spool = tempfile::tempdir().map_err(|source| SplitRunError::Read {
        name: names.id.clone(),
        start: 0,
        source,
    })?;
    let part_path = |i: usize| spool.path().join(format!("flows-{i:05}.part"));
    let start_upload =
        |output: Output, key: String| start_upload(&source.runtime, root, uploads, output, key);
    let range = |i: usize, opened: &Opened| -> Result<Outputs<'static>, OutputsError> {
        let naming = names.naming(opened);
        let mut outputs = Outputs {
            counts: Counts::for_item(item),
            ..Outputs::default()
        };
        for &f in formats {
            if !f.is_flows() {
                let key = layout::part_key(Output::Data(f), &naming, i);
                outputs.set(f, start_upload(Output::Data(f), key)?);
            }
        }
        Ok(outputs)
    };
    let flows = |opened: &Opened| -> Result<Outputs<'static>, OutputsError> {
        let naming = names.naming(opened);
        let mut outputs = Outputs::default();
        for &f in formats {
            if f.is_flows() {
                let key = layout::key(Output::Data(f), &naming);
                outputs.set(f, start_upload(Output::Data(f), key)?);
            }
        }
        Ok(outputs)
    };
    let part_writer = |i: usize| -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(BufWriter::new(File::create(part_path(i))?)))
    };
    let part_reader = |i: usize| -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(BufReader::new(File::open(part_path(i))?)))
    };
    let flow_outputs = formats.iter().any(|f| f.is_flows());
    let done = convert_split(
        engine,
        &names.id,
        source,
        range_bytes,
        concurrency,
        SplitOutputs {
            range: &range,
            part_writer: &part_writer,
            part_reader: &part_reader,
            track_flows: item,
            flows: &flows,
            flow_outputs,
        },
    )?;
    Ok((done.report, done.parts as u64))
}
