//! The job's conversion of one capture in byte ranges (`--split-bytes`): the core's plan →
//! count → convert → merge ([`pcaplab_core::split_run`]) over ranged reads of the object (a
//! local file or an S3 object, pinned to the ETag it had when the job started), with every
//! range's packet outputs written beside each other as parts of the dataset
//! ([`layout::part_key`]) and the flow outputs written once, by the merge.
//!
//! The flow parts the ranges hand to the merge are spooled to a temporary directory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use pcaplab_core::split_run::{RangeSource, SplitOutputs, SplitRunError, convert_split};
use pcaplab_core::{Engine, Format, Opened, Outputs, OutputsError, Report};
use tokio::runtime::Handle;

use crate::io::{StreamReader, Upload, upload};
use crate::job::Root;
use crate::layout::{self, Naming, Output};

/// An object read by byte ranges.
pub(crate) struct ObjectRanges {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) path: Path,
    pub(crate) len: u64,
    /// Every range is read from this version (S3: `If-Match`).
    pub(crate) etag: Option<String>,
    pub(crate) runtime: Handle,
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
        Ok(Box::new(
            StreamReader::spawn(&self.runtime, got.into_stream(), None).0,
        ))
    }
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
/// is pushed to `uploads` as it starts (the caller commits or aborts them all). Returns the
/// report and the number of ranges (parts of each packet output).
#[allow(clippy::too_many_arguments)]
pub(crate) fn convert_in_ranges(
    engine: &Engine,
    source: &ObjectRanges,
    names: &Names,
    root: &Root,
    formats: &[Format],
    track_flows: bool,
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
        |output: Output, key: String| -> Result<Box<dyn Write + Send>, OutputsError> {
            let (control, writer) = upload(
                &source.runtime,
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
        };
    let range = |i: usize, opened: &Opened| -> Result<Outputs<'static>, OutputsError> {
        let naming = names.naming(opened);
        let mut outputs = Outputs::default();
        for &f in formats {
            if matches!(f, Format::Parquet | Format::Csv | Format::LabCsv) {
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
            if matches!(f, Format::Flows | Format::FlowsCsv) {
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
    let flow_outputs = formats
        .iter()
        .any(|f| matches!(f, Format::Flows | Format::FlowsCsv));
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
            track_flows,
            flows: &flows,
            flow_outputs,
        },
    )?;
    Ok((done.report, done.parts as u64))
}
