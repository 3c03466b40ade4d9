//! `pcaplab extract`: the packets of a flow or of a set of frames, cut out of the original
//! capture (a local file or an S3 object) as a capture of the same format, records
//! byte-identical, in file order.
//!
//! 1. Where the records are: from the dataset `convert` wrote ([`crate::dataset`]: the rows'
//!    `record_offset` / `record_len`), or, for frame numbers without a dataset, by framing the
//!    capture up to the last frame asked for.
//! 2. Whether the capture is still the one converted: the dataset files of the object's ETag
//!    (S3), its summary item's size and ETag — and every record read is checked to be a whole
//!    record of the length the row gives ([`pcaplab_core::extract::check_record`]).
//! 3. Reading: an uncompressed capture is read by ranges — its first bytes (the file header, or
//!    pcapng's section and interface blocks), then the records, nearby ones coalesced into one
//!    request; a gzip or zstd capture is decompressed from its start and read no further than
//!    the last record. pcapng records whose interface is described after the first packet
//!    block are read the second way too, which copies the blocks describing them.
//!
//! Memory: a few ranges of at most [`MAX_BATCH`] bytes in flight, whatever the capture's size.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use pcaplab_core::extract::{self as records, Preamble};
use pcaplab_core::reader::{Chunk, Magic};
use pcaplab_core::{AttrValue, CaptureFormat, CaptureReader, RecordSpan, decompressed, sniff};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::aws::Aws;
use crate::dataset::{self, DatasetError, Filter, FrameSet, Wanted};
use crate::io::{PART_SIZE, StreamReader, Upload, UploadWriter, upload};
use crate::item_file::Map;
use crate::job::{JobError, Root, store_message};
use crate::location::Location;

/// Bytes first read of an uncompressed capture for its preamble (grown if it is longer).
const HEAD: u64 = 64 << 10;
/// The longest preamble accepted (pcapng blocks before the first packet).
const MAX_HEAD: u64 = 16 << 20;
/// Records closer than this are read with one request: a request costs about as much as
/// transferring this much.
pub const MAX_GAP: u64 = 256 << 10;
/// The most bytes one request reads (unless one record is longer).
pub const MAX_BATCH: u64 = 8 << 20;
/// Requests in flight.
const IN_FLIGHT: usize = 4;
/// Frames, and bytes of them, framed at a time when looking for frame numbers without a
/// dataset.
const SCAN_FRAMES: usize = 4096;
const SCAN_BYTES: usize = 4 << 20;

/// What to extract.
#[derive(Clone, Debug)]
pub enum Selection {
    /// These frame numbers.
    Frames(FrameSet),
    /// Every packet of the flow (every flow row) with this Community ID.
    Flow(String),
    /// The packet rows that match.
    Filter(Filter),
}

/// One extraction.
#[derive(Clone, Debug)]
pub struct ExtractRequest {
    /// The capture: a local file or an S3 object.
    pub input: Location,
    /// The output root `convert` wrote the capture's dataset under.
    pub dataset: Option<Location>,
    /// The capture's name in the dataset [default: `bucket/key`, or the trailing part of the
    /// local path that names a capture there].
    pub name: Option<String>,
    pub selection: Selection,
}

/// What an extraction did.
#[derive(Debug, Default)]
pub struct ExtractReport {
    pub records: u64,
    /// Bytes of the capture object read (compressed bytes for gzip/zstd).
    pub bytes_read: u64,
    /// The capture object's size.
    pub object_size: u64,
    pub bytes_written: u64,
    /// Read by ranges (rather than from the start).
    pub ranged: bool,
    /// Things the user should know that did not stop the extraction.
    pub warnings: Vec<String>,
}

/// Why an extraction failed. Every variant names the capture, dataset file or output.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{0}")]
    Selection(String),
    #[error(transparent)]
    Config(#[from] JobError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The capture is not the one the dataset describes.
    #[error("{url}: {message}")]
    Changed { url: String, message: String },
    #[error("{url}: cannot read: {}", store_message(source))]
    Fetch {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot read")]
    Open {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: {source}")]
    Capture {
        url: String,
        #[source]
        source: pcaplab_core::ReadError,
    },
    #[error("{url}: {source}")]
    Records {
        url: String,
        #[source]
        source: records::ExtractError,
    },
    #[error("writing the extract")]
    Write(#[source] io::Error),
}

impl ExtractError {
    /// Whether what was asked for is not there: the capture object, its files in the
    /// dataset, the flow or a frame.
    pub fn not_found(&self) -> bool {
        match self {
            ExtractError::Dataset(DatasetError::NotFound { .. }) => true,
            ExtractError::Open { source, .. } => source.kind() == io::ErrorKind::NotFound,
            ExtractError::Fetch { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
            _ => false,
        }
    }

    /// Whether the capture changed since it was converted (its dataset describes another
    /// version, or a row's offset does not land on a record of its length).
    pub fn capture_changed(&self) -> bool {
        matches!(
            self,
            ExtractError::Changed { .. }
                | ExtractError::Dataset(DatasetError::OtherVersion { .. })
                | ExtractError::Records {
                    source: records::ExtractError::NotARecord { .. }
                        | records::ExtractError::Ended { .. },
                    ..
                }
        )
    }
}

/// The capture object.
struct Object {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    size: u64,
    etag: Option<String>,
    last_modified_ns: Option<i64>,
}

impl Object {
    async fn open(location: &Location, aws: Option<&Aws>) -> Result<Object, ExtractError> {
        let url = location.to_string();
        let fetch = |source| ExtractError::Fetch {
            url: url.clone(),
            source,
        };
        match location {
            Location::Local(p) => {
                let open = |source| ExtractError::Open {
                    url: url.clone(),
                    source,
                };
                let meta = std::fs::metadata(p).map_err(open)?;
                if !meta.is_file() {
                    return Err(open(io::Error::other("not a file")));
                }
                let abs = std::fs::canonicalize(p).map_err(open)?;
                let path = Path::from_absolute_path(&abs).map_err(|e| fetch(e.into()))?;
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_nanos()).ok());
                Ok(Object {
                    store: Arc::new(LocalFileSystem::new()),
                    path,
                    url,
                    size: meta.len(),
                    etag: None,
                    last_modified_ns: mtime,
                })
            }
            Location::S3 { bucket, key } => {
                let aws = aws.ok_or_else(|| JobError::Config {
                    url: url.clone(),
                    message: "S3 needs an AWS configuration".into(),
                })?;
                let store = aws.s3(bucket).map_err(fetch)?;
                let path = Path::parse(key).map_err(|e| fetch(e.into()))?;
                let meta = store.head(&path).await.map_err(fetch)?;
                Ok(Object {
                    store,
                    path,
                    size: meta.size,
                    etag: meta.e_tag,
                    last_modified_ns: meta.last_modified.timestamp_nanos_opt(),
                    url,
                })
            }
        }
    }

    async fn range(&self, start: u64, end: u64) -> Result<Bytes, ExtractError> {
        self.store
            .get_range(&self.path, start..end)
            .await
            .map_err(|source| ExtractError::Fetch {
                url: self.url.clone(),
                source,
            })
    }

    /// The object from its start, as a blocking reader counting what it reads: `head` (its
    /// first bytes, already read), then the rest.
    fn stream(
        &self,
        handle: &Handle,
        head: Bytes,
        read: &Arc<AtomicU64>,
    ) -> Result<Counting, ExtractError> {
        let from = head.len() as u64;
        let rest: Box<dyn Read + Send> = if from >= self.size {
            Box::new(io::empty())
        } else {
            let options = object_store::GetOptions {
                range: Some(object_store::GetRange::Offset(from)),
                ..Default::default()
            };
            let got = handle
                .block_on(self.store.get_opts(&self.path, options))
                .map_err(|source| ExtractError::Fetch {
                    url: self.url.clone(),
                    source,
                })?;
            Box::new(StreamReader::spawn(handle, got.into_stream(), None).0)
        };
        Ok(Counting {
            inner: Box::new(io::Cursor::new(head).chain(rest)),
            read: Arc::clone(read),
        })
    }
}

/// Counts the bytes read through it.
struct Counting {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The capture against its summary item: the same size and ETag, or it changed since it was
/// converted. A different modification time alone is only a warning (a copy has the same
/// bytes); the records read are checked either way.
fn check_item(
    obj: &Object,
    item: Option<&Map>,
    warnings: &mut Vec<String>,
) -> Result<(), ExtractError> {
    let Some(item) = item else {
        warnings.push(format!(
            "{}: the dataset has no summary item for it (dynamodb/<id>.json), so its size and \
             ETag were not compared; every record read is checked",
            obj.url
        ));
        return Ok(());
    };
    let changed = |message: String| ExtractError::Changed {
        url: obj.url.clone(),
        message: format!("{message}: the capture changed since it was converted; convert it again"),
    };
    if let Some(AttrValue::N(size)) = item.get("size")
        && size.parse::<u64>().ok() != Some(obj.size)
    {
        return Err(changed(format!(
            "it is {} bytes, the capture converted was {size}",
            obj.size
        )));
    }
    if let (Some(AttrValue::S(theirs)), Some(ours)) = (item.get("etag"), &obj.etag)
        && theirs != ours
    {
        return Err(changed(format!(
            "its ETag is {ours}, the capture converted had {theirs}"
        )));
    }
    if let (Some(AttrValue::S(theirs)), Some(ns)) =
        (item.get("last_modified"), obj.last_modified_ns)
    {
        let ours = pcaplab_core::encode::rfc3339_ns(ns);
        if *theirs != ours {
            warnings.push(format!(
                "{}: modified at {ours}, the capture converted at {theirs}; its size is the \
                 same and every record read is checked",
                obj.url
            ));
        }
    }
    Ok(())
}

/// Where the records of `frames` are, by framing the capture from its start up to the last
/// of them.
fn scan_frames(
    handle: &Handle,
    obj: &Object,
    frames: &FrameSet,
    read: &Arc<AtomicU64>,
) -> Result<Vec<Wanted>, ExtractError> {
    let last = frames.last().unwrap_or(0);
    let input = obj.stream(handle, Bytes::new(), read)?;
    let capture = |source| ExtractError::Capture {
        url: obj.url.clone(),
        source,
    };
    let mut reader = CaptureReader::new(Box::new(input)).map_err(capture)?;
    let mut chunk = Chunk::default();
    let mut wanted = Vec::new();
    let mut seen;
    loop {
        chunk.clear();
        let more = reader.fill(&mut chunk, SCAN_FRAMES, SCAN_BYTES);
        for (i, (f, span)) in chunk.frames.iter().zip(&chunk.records).enumerate() {
            let frame = chunk.first_frame + i as u64;
            if frames.contains(frame) {
                wanted.push(Wanted {
                    frame,
                    span: *span,
                    interface_id: f.interface_id,
                });
            }
        }
        seen = chunk.first_frame + chunk.frames.len() as u64 - 1;
        if seen >= last {
            break;
        }
        match more {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(capture(e)),
        }
    }
    if seen < last {
        return Err(ExtractError::Selection(format!(
            "{}: no frame {last}: the capture has {seen} frames",
            obj.url
        )));
    }
    Ok(wanted)
}

/// An upload of an extract to `s3://bucket/key`: invisible until committed.
pub fn upload_to(
    handle: &Handle,
    aws: &Aws,
    bucket: &str,
    key: &str,
) -> Result<(Upload, UploadWriter), ExtractError> {
    let url = format!("s3://{bucket}/{key}");
    let fetch = |source| ExtractError::Fetch {
        url: url.clone(),
        source,
    };
    let store = aws.s3(bucket).map_err(fetch)?;
    let path = Path::parse(key).map_err(|e| fetch(e.into()))?;
    Ok(upload(handle, store, path, url.clone(), PART_SIZE))
}

/// Extract `req` to `out`. Blocking (call it from a plain thread, not from async code): the
/// reads run on `handle`.
pub fn extract(
    handle: &Handle,
    aws: Option<&Aws>,
    req: &ExtractRequest,
    out: &mut dyn Write,
) -> Result<ExtractReport, ExtractError> {
    let obj = handle.block_on(Object::open(&req.input, aws))?;
    let read = Arc::new(AtomicU64::new(0));
    let mut report = ExtractReport {
        object_size: obj.size,
        ..ExtractReport::default()
    };
    let wanted = match (&req.dataset, &req.selection) {
        (Some(root), selection) => {
            let root = Root::at(root, aws, false)?;
            let ids = match &req.name {
                Some(n) => vec![n.clone()],
                None => dataset::candidate_ids(&req.input),
            };
            let files = handle.block_on(dataset::locate(&root, &ids, obj.etag.as_deref()))?;
            check_item(&obj, files.item.as_ref(), &mut report.warnings)?;
            match selection {
                Selection::Frames(f) => handle.block_on(files.frames(f))?,
                Selection::Flow(id) => handle.block_on(files.flow(id))?,
                Selection::Filter(f) => handle.block_on(files.filtered(f))?,
            }
        }
        (None, Selection::Frames(f)) => {
            let w = scan_frames(handle, &obj, f, &read)?;
            // The framing pass read the capture once; the copy reads it again.
            report.warnings.push(format!(
                "{}: no --dataset: found the frames by reading the capture up to frame {}",
                obj.url,
                f.last().unwrap_or(0)
            ));
            w
        }
        (None, Selection::Flow(_) | Selection::Filter(_)) => {
            return Err(ExtractError::Selection(
                "--flow and the filters need the dataset the capture was converted to \
                 (--dataset DIR|s3://…)"
                    .into(),
            ));
        }
    };
    copy(handle, &obj, &wanted, out, &read, &mut report)?;
    report.bytes_read = read.load(Ordering::Relaxed);
    Ok(report)
}

/// Write the preamble and the records of `wanted` (sorted) to `out`.
fn copy(
    handle: &Handle,
    obj: &Object,
    wanted: &[Wanted],
    out: &mut dyn Write,
    read: &Arc<AtomicU64>,
    report: &mut ExtractReport,
) -> Result<(), ExtractError> {
    let spans: Vec<RecordSpan> = wanted.iter().map(|w| w.span).collect();
    let recs = |source| ExtractError::Records {
        url: obj.url.clone(),
        source,
    };
    records::check_spans(&spans).map_err(recs)?;
    let mut len = HEAD.min(obj.size);
    let mut head = handle.block_on(obj.range(0, len))?;
    read.fetch_add(len, Ordering::Relaxed);
    let compressed = matches!(sniff(&head), Some(Magic::Compressed(_)));
    if !compressed {
        let preamble = loop {
            match Preamble::parse(&head, len == obj.size).map_err(recs)? {
                Some(p) => break p,
                None if len < MAX_HEAD.min(obj.size) => {
                    let more = (len * 4).min(MAX_HEAD).min(obj.size);
                    head = handle.block_on(obj.range(0, more))?;
                    read.fetch_add(more, Ordering::Relaxed);
                    len = more;
                }
                None => {
                    return Err(recs(records::ExtractError::Preamble {
                        offset: len,
                        reason: format!("no packet block in the first {} MiB", MAX_HEAD >> 20),
                    }));
                }
            }
        };
        let described = preamble.format() != CaptureFormat::PcapNg
            || wanted
                .iter()
                .all(|w| w.interface_id < preamble.interfaces());
        if described {
            report.ranged = true;
            return ranged(handle, obj, (&preamble, head), &spans, out, read, report);
        }
    }
    // The bytes read for the preamble are the stream's start: not read again.
    read.fetch_sub(head.len() as u64, Ordering::Relaxed);
    let input = obj.stream(handle, head, read)?;
    let (_, mut stream) = decompressed(input).map_err(|source| ExtractError::Open {
        url: obj.url.clone(),
        source,
    })?;
    let stats = records::copy_records(&mut stream, &spans, out).map_err(recs)?;
    report.records = stats.records;
    report.bytes_written = stats.bytes_written;
    Ok(())
}

/// The ranged read: the preamble, then the records, fetched [`IN_FLIGHT`] ranges at a time
/// on `handle` while this thread checks and writes them in order. Records within `head`, the
/// bytes read first, are not read again.
fn ranged(
    handle: &Handle,
    obj: &Object,
    (preamble, head): (&Preamble, Bytes),
    spans: &[RecordSpan],
    out: &mut dyn Write,
    read: &Arc<AtomicU64>,
    report: &mut ExtractReport,
) -> Result<(), ExtractError> {
    let recs = |source| ExtractError::Records {
        url: obj.url.clone(),
        source,
    };
    out.write_all(preamble.bytes())
        .map_err(ExtractError::Write)?;
    report.bytes_written = preamble.bytes().len() as u64;
    let ranges = records::coalesce(spans, MAX_GAP, MAX_BATCH);
    let (tx, mut rx) = mpsc::channel::<Result<(Bytes, bool), ExtractError>>(IN_FLIGHT);
    let (store, path, url) = (Arc::clone(&obj.store), obj.path.clone(), obj.url.clone());
    let wanted: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
    let fetcher = handle.spawn(async move {
        let mut fetches = futures_util::stream::iter(wanted.into_iter().map(|(a, b)| {
            let (store, path, url) = (Arc::clone(&store), path.clone(), url.clone());
            let held = (b <= head.len() as u64).then(|| head.slice(a as usize..b as usize));
            async move {
                match held {
                    Some(bytes) => Ok((bytes, false)),
                    None => store
                        .get_range(&path, a..b)
                        .await
                        .map(|bytes| (bytes, true))
                        .map_err(|source| ExtractError::Fetch { url, source }),
                }
            }
        }))
        .buffered(IN_FLIGHT);
        while let Some(got) = fetches.next().await {
            let stop = got.is_err();
            if tx.send(got).await.is_err() || stop {
                break;
            }
        }
    });
    let result = (|| {
        for range in &ranges {
            let (data, fetched) = rx
                .blocking_recv()
                .ok_or_else(|| ExtractError::Write(io::Error::other("the reads stopped")))??;
            if fetched {
                read.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            for span in &spans[range.spans.clone()] {
                let record = range.record(&data, *span);
                records::check_record(preamble, *span, record).map_err(|e| {
                    // A frame salvaged from a record the end of the capture cuts: its row
                    // says so, and there is no whole record to write.
                    if span.offset + u64::from(span.len) == obj.size {
                        ExtractError::Selection(format!(
                            "{}: the record at byte {} is cut short by the end of the capture \
                             (its row's decode_error says \"truncated record\"): it cannot be \
                             written as a whole record; leave that frame out",
                            obj.url, span.offset
                        ))
                    } else {
                        recs(e)
                    }
                })?;
                out.write_all(record).map_err(ExtractError::Write)?;
                report.records += 1;
                report.bytes_written += record.len() as u64;
            }
        }
        Ok(())
    })();
    fetcher.abort();
    result
}
