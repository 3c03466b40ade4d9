//! The job every front end runs: process one object.
//!
//! 1. Open the object as a stream (a local file, or an S3 `GetObject` read as it arrives).
//! 2. If a table is configured and it already holds a result for a newer version of the
//!    object, stop: there is nothing to do.
//! 3. Convert with the core engine (on a blocking thread; the engine's own workers do the
//!    decoding). The outputs are chosen once the first packets are framed, because their keys
//!    carry the capture's date (see [`crate::layout`]); each is an upload that stays invisible
//!    until committed.
//! 4. Commit the outputs — or abort all of them if anything failed — then write the summary
//!    item, which records where the outputs are. A crash at any point leaves either no item
//!    or an item whose outputs exist.
//! 5. Outputs of an older version of the object that the new item no longer lists are
//!    deleted, so the dataset holds each capture once.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use pcaplab_core::split::SplitError;
use pcaplab_core::split_run::{SplitRunError, splittable};
use pcaplab_core::{
    ConvertError, Counts, Engine, Format, ItemOutcome, ItemSource, Outputs, ReadError, Report,
    summary_item,
};
use tokio::runtime::Handle;

use crate::aws::Aws;
use crate::io::{LOCAL_PART_SIZE, PART_SIZE, StreamReader, Upload};
use crate::layout::{self, Naming, Output};
use crate::location::Location;
use crate::split::{Names, ObjectRanges, convert_in_ranges, start_upload};
use crate::table::{self, Put, TableError};

/// What the job produces, and where.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Output files to write (any of the data formats, and the item as DynamoDB JSON).
    pub outputs: Vec<Output>,
    /// Root of the outputs: a local directory or `s3://bucket/prefix/`. `None`: the root of
    /// the input's own bucket (S3 inputs only).
    pub out: Option<Location>,
    /// DynamoDB table for the summary items.
    pub table: Option<String>,
    /// Top talkers and ports kept in the item.
    pub top_n: usize,
    /// Convert an uncompressed pcap or pcapng object larger than this in byte ranges of this
    /// size, [`split_concurrency`](Self::split_concurrency) at a time ([`crate::split`]);
    /// compressed and snoop objects are converted whole.
    pub split_bytes: Option<u64>,
    pub split_concurrency: usize,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            outputs: vec![Output::Data(Format::Parquet)],
            out: None,
            table: None,
            top_n: 10,
            split_bytes: None,
            split_concurrency: 2,
        }
    }
}

/// One object to process.
#[derive(Clone, Debug)]
pub struct Request {
    pub location: Location,
    /// The capture's name (the `capture` column, the outputs' `<id>`); by default its
    /// [`Location::s3_id`].
    pub name: Option<String>,
    /// Counts the input bytes read, for a progress bar.
    pub progress: Option<Arc<AtomicU64>>,
    /// The object was found by listing a prefix: if it is not a capture, it is skipped — no
    /// failed item is recorded (a named object that is not a capture is recorded).
    pub listed: bool,
}

impl Request {
    pub fn new(location: Location) -> Self {
        Request {
            location,
            name: None,
            progress: None,
            listed: false,
        }
    }
}

/// An object found under a prefix.
#[derive(Clone, Debug)]
pub struct Listed {
    pub location: Location,
    pub size: u64,
    pub etag: Option<String>,
}

/// What processing one object did.
#[derive(Debug)]
pub struct JobReport {
    pub object: Location,
    pub name: String,
    pub etag: Option<String>,
    pub size: u64,
    /// The conversion: packets, bytes, protocols, and the damage if the capture is damaged
    /// (everything before it was converted and written).
    pub report: Report,
    /// Every output written, by kind, with its URL.
    pub outputs: Vec<(Output, String)>,
    /// Whether the summary item was written to the table.
    pub item_written: bool,
    pub elapsed: Duration,
}

/// Why an object was not processed. Every variant names the object (or output) concerned.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{url}: {message}")]
    Config { url: String, message: String },
    #[error("{url}: cannot read the object from S3")]
    Fetch {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot open")]
    OpenLocal {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the download failed after {offset} bytes; try again")]
    Transport { url: String, offset: u64 },
    #[error("{url}")]
    Convert {
        url: String,
        #[source]
        source: ConvertError,
    },
    /// Converting the object in ranges failed before any conversion: reading it by ranges
    /// (retryable), or its file header.
    #[error("{url}: converting it in ranges failed")]
    Split {
        url: String,
        #[source]
        source: SplitRunError,
    },
    /// A step of a conversion in ranges by separate workers failed (see [`crate::fanout`]).
    #[error("{url}: {message}")]
    Ranges { url: String, message: String },
    #[error("{object}: writing {url} failed")]
    Upload {
        object: String,
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: the summary item")]
    Table {
        url: String,
        #[source]
        source: TableError,
    },
    #[error("{url}: the table holds the result of a newer version of this object; nothing to do")]
    Superseded { url: String },
    /// Converted and recorded, but outputs of the object's previous version are still there.
    #[error(
        "{url}: converted, but {left} output(s) of its previous version could not be deleted, so the dataset holds both versions until a retry deletes them ({}); first: {first}: {message}",
        if *recorded { "the item lists them as stale_outputs" } else { "and the item could not record them" }
    )]
    Cleanup {
        url: String,
        left: usize,
        first: String,
        message: String,
        recorded: bool,
    },
    /// Converted and recorded, but its announcement could not be published.
    #[error("{url}: converted, but announcing it on {topic} failed: {message}")]
    Announce {
        url: String,
        topic: String,
        message: String,
    },
}

fn object_store_retryable(e: &object_store::Error) -> bool {
    // S3's answers that no retry changes (object_store reports most of them as generic).
    const FINAL: [&str; 6] = [
        "NoSuchBucket",
        "NoSuchKey",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
    ];
    let message = store_message(e);
    if FINAL
        .iter()
        .any(|code| message.starts_with(code) || message.contains(&format!("({code}")))
    {
        return false;
    }
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
    )
}

impl JobError {
    /// Whether trying again later may succeed (throttling, network faults, 5xx), as opposed
    /// to a fault of the object or the configuration.
    pub fn retryable(&self) -> bool {
        match self {
            JobError::Fetch { source, .. } | JobError::Upload { source, .. } => {
                object_store_retryable(source)
            }
            JobError::Transport { .. } | JobError::Cleanup { .. } | JobError::Announce { .. } => {
                true
            }
            // Reading by ranges failed; a header that cannot be read is the object's fault.
            JobError::Split { source, .. } => matches!(
                source,
                SplitRunError::Read { .. }
                    | SplitRunError::Split {
                        source: SplitError::Io { .. },
                        ..
                    }
            ),
            JobError::Table { source, .. } => source.retryable,
            JobError::Convert { source, .. } => matches!(
                source,
                ConvertError::Write { .. } | ConvertError::Outputs { .. }
            ),
            JobError::Config { .. }
            | JobError::OpenLocal { .. }
            | JobError::Superseded { .. }
            | JobError::Ranges { .. } => false,
        }
    }

    /// The capture itself is at fault (not a capture, an unsupported or damaged header): no
    /// retry can change that.
    pub fn capture_fault(&self) -> bool {
        matches!(
            self,
            JobError::Convert {
                source: ConvertError::Open { .. },
                ..
            }
        )
    }

    /// The input object does not exist.
    pub fn object_not_found(&self) -> bool {
        matches!(
            self,
            JobError::Fetch {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }

    /// The object is not a capture (or not one we can read), as opposed to a fault around it.
    pub fn not_a_capture(&self) -> bool {
        matches!(
            self,
            JobError::Convert {
                source: ConvertError::Open {
                    source: ReadError::NotACapture { .. },
                    ..
                },
                ..
            }
        )
    }
}

/// An opened input.
struct Source {
    reader: Box<dyn Read + Send>,
    info: ObjectInfo,
    /// Set when the download (not the capture) failed.
    transport_failed: Option<Arc<AtomicBool>>,
}

/// What the summary item says about the object itself.
#[derive(Clone)]
pub(crate) struct ObjectInfo {
    pub(crate) etag: Option<String>,
    pub(crate) size: u64,
    pub(crate) last_modified_ns: Option<i64>,
}

impl ObjectInfo {
    /// What S3 (object_store) says of an object.
    pub(crate) fn of(meta: &object_store::ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            etag: meta.e_tag.clone(),
            size: meta.size,
            last_modified_ns: meta.last_modified.timestamp_nanos_opt(),
        }
    }

    fn item_source<'a>(
        &'a self,
        (s3_id, object): (&'a str, &'a str),
        name: Option<&'a str>,
        outputs: &'a [(&'a str, String)],
    ) -> ItemSource<'a> {
        ItemSource {
            s3_id,
            name,
            object: Some(object),
            etag: self.etag.as_deref(),
            size: Some(self.size),
            last_modified_ns: self.last_modified_ns,
            processed_at_ns: now_ns(),
            outputs,
            parts: None,
        }
    }
}

/// Where the outputs go (and where the dataset is read back from).
#[derive(Clone)]
pub(crate) struct Root {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store: empty, or ending in `/`.
    pub(crate) prefix: String,
    /// URL of the root, ending in `/`.
    url: String,
    /// Multipart part size of uploads to this store.
    pub(crate) part_size: usize,
}

impl Root {
    /// The root at `location`: a local directory (created when `create`) or an S3 prefix.
    pub(crate) fn at(
        location: &Location,
        aws: Option<&Aws>,
        create: bool,
    ) -> Result<Root, JobError> {
        let config = |url: &str, message: &str| JobError::Config {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        match location {
            Location::Local(dir) => {
                let url = dir.display().to_string();
                if create {
                    std::fs::create_dir_all(dir).map_err(|source| JobError::OpenLocal {
                        url: url.clone(),
                        source,
                    })?;
                }
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| config(&url, &format!("cannot use as a directory: {e}")))?;
                let mut url = url;
                if !url.ends_with(std::path::MAIN_SEPARATOR) {
                    url.push(std::path::MAIN_SEPARATOR);
                }
                Ok(Root {
                    store: Arc::new(store),
                    prefix: String::new(),
                    url,
                    part_size: LOCAL_PART_SIZE,
                })
            }
            Location::S3 { bucket, key } => {
                let url = location.to_string();
                let aws = aws.ok_or_else(|| config(&url, "S3 needs an AWS configuration"))?;
                s3_root(aws, bucket, key).map_err(|e| config(&url, &store_message(&e)))
            }
        }
    }

    pub(crate) fn path(&self, key: &str) -> Result<Path, object_store::Error> {
        Ok(Path::parse(format!("{}{key}", self.prefix))?)
    }

    pub(crate) fn url(&self, key: &str) -> String {
        format!("{}{key}", self.url)
    }

    /// Write `bytes` as `key` in one request (small objects), for the capture `object`.
    pub(crate) async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        object: &str,
    ) -> Result<(), JobError> {
        let upload = |source| JobError::Upload {
            object: object.to_owned(),
            url: self.url(key),
            source,
        };
        let path = self.path(key).map_err(upload)?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(upload)
    }

    /// Read the whole object `key` (small objects).
    pub(crate) async fn get(&self, key: &str) -> Result<Vec<u8>, JobError> {
        let fetch = |source| JobError::Fetch {
            url: self.url(key),
            source,
        };
        let path = self.path(key).map_err(fetch)?;
        let got = self.store.get(&path).await.map_err(fetch)?;
        Ok(got.bytes().await.map_err(fetch)?.to_vec())
    }
}

/// A conversion done, to be committed and recorded ([`Job::finish`]).
pub(crate) struct Converted {
    pub(crate) url: String,
    pub(crate) object: Location,
    pub(crate) s3_id: String,
    pub(crate) name: String,
    pub(crate) file_name: String,
    pub(crate) root: Root,
    pub(crate) info: ObjectInfo,
    pub(crate) previous: table::Previous,
    /// Converted in ranges: the number of parts of each packet output.
    pub(crate) parts: Option<u64>,
    pub(crate) report: Report,
    /// Outputs committed already (the packet parts a split's workers wrote), and the uploads
    /// to commit now.
    pub(crate) committed: Vec<(Output, String)>,
    pub(crate) uploads: Vec<(Output, Upload)>,
    pub(crate) started: Instant,
}

/// The job, built once per process and shared by every request.
pub struct Job {
    engine: Arc<Engine>,
    aws: Option<Arc<Aws>>,
    dynamodb: Option<aws_sdk_dynamodb::Client>,
    options: JobOptions,
    /// The output root when it is fixed (a local directory or an S3 prefix).
    root: Option<Root>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn mtime_ns(meta: &std::fs::Metadata) -> Option<i64> {
    let d = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

fn s3_root(aws: &Aws, bucket: &str, key: &str) -> Result<Root, object_store::Error> {
    let prefix = if key.is_empty() || key.ends_with('/') {
        key.to_owned()
    } else {
        format!("{key}/")
    };
    Ok(Root {
        store: aws.s3(bucket)?,
        url: format!("s3://{bucket}/{prefix}"),
        prefix,
        part_size: PART_SIZE,
    })
}

impl Job {
    /// `aws` is needed for S3 locations and the table; without it only local files work.
    pub fn new(
        engine: Arc<Engine>,
        aws: Option<Arc<Aws>>,
        options: JobOptions,
    ) -> Result<Self, JobError> {
        let config = |url: &str, message: &str| JobError::Config {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let root = match &options.out {
            None => None,
            Some(out) => Some(Root::at(out, aws.as_deref(), true)?),
        };
        let dynamodb = match (&options.table, &aws) {
            (None, _) => None,
            (Some(t), None) => {
                return Err(config(t, "a DynamoDB table needs an AWS configuration"));
            }
            (Some(_), Some(aws)) => Some(table::client(aws.dynamodb())),
        };
        Ok(Job {
            engine,
            aws,
            dynamodb,
            options,
            root,
        })
    }

    /// Check what can be checked before any work: that the table exists.
    pub async fn check(&self) -> Result<(), JobError> {
        if let (Some(client), Some(table)) = (&self.dynamodb, &self.options.table) {
            table::check(client, table)
                .await
                .map_err(|e| JobError::Config {
                    url: format!("DynamoDB table {table}"),
                    message: e.message,
                })?;
        }
        Ok(())
    }

    pub fn options(&self) -> &JobOptions {
        &self.options
    }

    pub(crate) fn aws(&self, url: &str) -> Result<&Aws, JobError> {
        self.aws.as_deref().ok_or_else(|| JobError::Config {
            url: url.to_owned(),
            message: "S3 needs an AWS configuration".into(),
        })
    }

    pub(crate) fn root_for(&self, input: &Location) -> Result<Root, JobError> {
        match (&self.root, input) {
            (Some(root), _) => Ok(root.clone()),
            (None, Location::S3 { bucket, .. }) => {
                let url = format!("s3://{bucket}/");
                s3_root(self.aws(&url)?, bucket, "").map_err(|e| JobError::Config {
                    message: store_message(&e),
                    url,
                })
            }
            (None, Location::Local(_)) => Err(JobError::Config {
                url: input.to_string(),
                message: "no output location given".into(),
            }),
        }
    }

    async fn open(&self, req: &Request) -> Result<Source, JobError> {
        let url = req.location.to_string();
        match &req.location {
            Location::Local(path) => {
                let open = || -> std::io::Result<(File, std::fs::Metadata)> {
                    let file = File::open(path)?;
                    let meta = file.metadata()?;
                    Ok((file, meta))
                };
                let (file, meta) = open().map_err(|source| JobError::OpenLocal { url, source })?;
                Ok(Source {
                    reader: Box::new(Counting {
                        inner: file,
                        count: req.progress.clone(),
                    }),
                    info: ObjectInfo {
                        etag: None,
                        size: meta.len(),
                        last_modified_ns: mtime_ns(&meta),
                    },
                    transport_failed: None,
                })
            }
            Location::S3 { bucket, key } => {
                let fetch = |source| JobError::Fetch {
                    url: url.clone(),
                    source,
                };
                let store = self.aws(&url)?.s3(bucket).map_err(fetch)?;
                let path = Path::parse(key).map_err(|e| fetch(e.into()))?;
                let got = store.get(&path).await.map_err(fetch)?;
                let meta = got.meta.clone();
                let (reader, failed) = StreamReader::spawn(
                    &Handle::current(),
                    got.into_stream(),
                    req.progress.clone(),
                );
                Ok(Source {
                    reader: Box::new(reader),
                    info: ObjectInfo::of(&meta),
                    transport_failed: Some(failed),
                })
            }
        }
    }

    /// The object read by ranges, when it is to be converted in ranges: larger than the split
    /// size and an uncompressed pcap or pcapng (a compressed or snoop object is converted
    /// whole, as it can only be read from its start).
    ///
    /// Asked before the object is opened as a stream, so that a split reads it by ranges only;
    /// the object's size, ETag and modification time come from its metadata.
    async fn ranges_of(
        &self,
        req: &Request,
    ) -> Result<Option<(ObjectRanges, ObjectInfo)>, JobError> {
        let Some(n) = self.options.split_bytes else {
            return Ok(None);
        };
        let url = req.location.to_string();
        let fetch = |source| JobError::Fetch {
            url: url.clone(),
            source,
        };
        let (store, path, info): (Arc<dyn ObjectStore>, Path, ObjectInfo) = match &req.location {
            Location::Local(p) => {
                let local = |source| JobError::OpenLocal {
                    url: url.clone(),
                    source,
                };
                let meta = std::fs::metadata(p).map_err(local)?;
                let abs = std::fs::canonicalize(p).map_err(local)?;
                let path = Path::from_absolute_path(&abs).map_err(|e| fetch(e.into()))?;
                let info = ObjectInfo {
                    etag: None,
                    size: meta.len(),
                    last_modified_ns: mtime_ns(&meta),
                };
                (Arc::new(LocalFileSystem::new()), path, info)
            }
            Location::S3 { bucket, key } => {
                let store = self.aws(&url)?.s3(bucket).map_err(fetch)?;
                let path = Path::parse(key).map_err(|e| fetch(e.into()))?;
                let meta = store.head(&path).await.map_err(fetch)?;
                let info = ObjectInfo::of(&meta);
                (store, path, info)
            }
        };
        if info.size <= n || !splittable_head(&store, &path, info.size, &url).await? {
            return Ok(None);
        }
        let ranges = ObjectRanges::new(store, path, info.size, info.etag.clone());
        Ok(Some((ranges, info)))
    }

    /// Process one object: convert it, write its outputs, then its summary item.
    pub async fn process(&self, req: &Request) -> Result<JobReport, JobError> {
        let started = Instant::now();
        let url = req.location.to_string();
        let name = req.name.clone().unwrap_or_else(|| req.location.s3_id());
        let s3_id = req.location.s3_id();
        let root = self.root_for(&req.location)?;
        // A large uncompressed capture is read by ranges, never as one stream (unless it turns
        // out it must be converted whole after all, below).
        let ranges = self.ranges_of(req).await?;
        let mut source = match ranges.as_ref() {
            Some((_, info)) => Source {
                reader: Box::new(std::io::empty()),
                info: info.clone(),
                transport_failed: None,
            },
            None => self.open(req).await?,
        };

        // What the table holds already: a newer version's result stops us; the outputs an item
        // of an older version lists are deleted once ours is written (read here as well as
        // returned by our write: if the write's answer is lost and it is retried, the write
        // returns our own item).
        let mut previous = self.previous_of(&url, &s3_id, &source.info).await?;

        let file_name = req.location.file_name();
        let uploads: Arc<Mutex<Vec<(Output, Upload)>>> = Arc::default();
        let formats = self.data_formats();
        let item = self.writes_item();

        // A large uncompressed capture, in ranges: its parts, or (when it cannot be split after
        // all: damaged, or its records cannot be told apart) a whole conversion after all.
        let mut parts = None;
        let mut split_done = None;
        if let Some((ranges, _)) = ranges {
            let engine = Arc::clone(&self.engine);
            let started = Arc::clone(&uploads);
            let names = Names {
                id: name.clone(),
                file_name: file_name.clone(),
                etag: source.info.etag.clone(),
                last_modified_ns: source.info.last_modified_ns,
            };
            let (root, formats) = (root.clone(), formats.clone());
            let (range_bytes, concurrency) = (
                self.options.split_bytes.unwrap_or(u64::MAX),
                self.options.split_concurrency,
            );
            let done = tokio::task::spawn_blocking(move || {
                let done = convert_in_ranges(
                    &engine,
                    &ranges,
                    &names,
                    &root,
                    &formats,
                    item,
                    range_bytes,
                    concurrency,
                    &started,
                );
                (done, ranges.transport_failed())
            })
            .await;
            let done = match done {
                // A download that failed reads as damage to the core: not the capture's fault.
                Ok((_, true)) => {
                    let started: Vec<_> =
                        std::mem::take(&mut *uploads.lock().unwrap_or_else(|p| p.into_inner()));
                    abort_all(started).await;
                    return Err(JobError::Transport { url, offset: 0 });
                }
                Ok((done, false)) => Ok(done),
                Err(join) => Err(join),
            };
            match done {
                Ok(Ok((report, n))) => {
                    parts = Some(n);
                    split_done = Some(Ok(Ok(report)));
                }
                Ok(Err(
                    SplitRunError::Range { source, .. } | SplitRunError::Merge { source, .. },
                )) => {
                    split_done = Some(Ok(Err(*source)));
                }
                Ok(Err(
                    e @ (SplitRunError::Damaged { .. }
                    | SplitRunError::Split {
                        source:
                            SplitError::Damaged { .. }
                            | SplitError::Desync { .. }
                            | SplitError::NoBoundary { .. }
                            | SplitError::State { .. },
                        ..
                    }),
                )) => {
                    tracing::warn!(
                        object = %url,
                        "{}; converting it whole",
                        error_chain(&e)
                    );
                    let started: Vec<_> =
                        std::mem::take(&mut *uploads.lock().unwrap_or_else(|p| p.into_inner()));
                    abort_all(started).await;
                    source = self.open(req).await?;
                }
                Ok(Err(source)) => {
                    let started: Vec<_> =
                        std::mem::take(&mut *uploads.lock().unwrap_or_else(|p| p.into_inner()));
                    abort_all(started).await;
                    return Err(JobError::Split { url, source });
                }
                Err(join) => split_done = Some(Err(join)),
            }
        }

        let converted = match split_done {
            Some(done) => done,
            None => {
                let engine = Arc::clone(&self.engine);
                let uploads = Arc::clone(&uploads);
                let runtime = Handle::current();
                let (root, name, file_name) = (root.clone(), name.clone(), file_name.clone());
                let (etag, reader, last_modified) = (
                    source.info.etag.clone(),
                    source.reader,
                    source.info.last_modified_ns,
                );
                let formats = formats.clone();
                tokio::task::spawn_blocking(move || {
                    engine.convert_with(&name, reader, |opened| {
                        let naming = Naming {
                            id: &name,
                            file_name: &file_name,
                            etag: etag.as_deref(),
                            date: layout::utc_date(opened.first_ts.or(last_modified).unwrap_or(0)),
                        };
                        let mut outputs = Outputs {
                            track_flows: item,
                            counts: Counts::for_item(item),
                            ..Outputs::default()
                        };
                        for f in formats {
                            let key = layout::key(Output::Data(f), &naming);
                            let writer =
                                start_upload(&runtime, &root, &uploads, Output::Data(f), key)?;
                            outputs.set(f, writer);
                        }
                        Ok(outputs)
                    })
                })
                .await
            }
        };
        let uploads = std::mem::take(&mut *uploads.lock().unwrap_or_else(|p| p.into_inner()));
        let transport_failed = source
            .transport_failed
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed));

        let report = match converted {
            Ok(Ok(report)) if !transport_failed => report,
            Ok(Ok(report)) => {
                abort_all(uploads).await;
                let offset = match report.damage {
                    Some(ReadError::Io { offset, .. } | ReadError::Damaged { offset, .. }) => {
                        offset
                    }
                    _ => 0,
                };
                return Err(JobError::Transport { url, offset });
            }
            Ok(Err(e)) => {
                // An upload that failed is the cause of a write error: report it, not the
                // "upload stopped" seen by the writer.
                let upload_error = abort_all(uploads).await;
                if transport_failed {
                    return Err(JobError::Transport { url, offset: 0 });
                }
                if let (ConvertError::Write { .. }, Some((out_url, source))) = (&e, upload_error) {
                    return Err(JobError::Upload {
                        object: url,
                        url: out_url,
                        source,
                    });
                }
                let err = JobError::Convert { url, source: e };
                if err.capture_fault() && !(req.listed && err.not_a_capture()) {
                    let object = req.location.to_string();
                    let previous = std::mem::take(&mut previous.outputs);
                    self.record_failure((&s3_id, &object), &source.info, &err, previous)
                        .await;
                }
                return Err(err);
            }
            Err(join) => {
                abort_all(uploads).await;
                return Err(JobError::Convert {
                    url,
                    source: ConvertError::Internal {
                        name,
                        first_frame: 0,
                        message: join.to_string(),
                    },
                });
            }
        };

        self.finish(Converted {
            url,
            object: req.location.clone(),
            s3_id,
            name,
            file_name,
            root,
            info: source.info,
            previous,
            parts,
            report,
            committed: Vec::new(),
            uploads,
            started,
        })
        .await
    }

    /// The last steps of a conversion, shared by [`Job::process`] and a split's merge: commit
    /// every output (or none), write the summary item, and delete the outputs of the object's
    /// previous version.
    pub(crate) async fn finish(&self, c: Converted) -> Result<JobReport, JobError> {
        let Converted {
            url,
            object,
            s3_id,
            name,
            file_name,
            root,
            info,
            mut previous,
            parts,
            report,
            committed,
            uploads,
            started,
        } = c;
        let mut outputs = committed;
        outputs.extend(self.commit_all(uploads, &url).await?);

        let outcome_reason = report.damage.as_ref().map(|d| d.to_string());
        let outcome = match &outcome_reason {
            None => ItemOutcome::Ok,
            Some(reason) => ItemOutcome::Damaged { reason },
        };
        // In ranges: a packet output's first part stands for all (the item says how many).
        let listed: Vec<(&str, String)> = outputs
            .iter()
            .filter(|(kind, u)| {
                parts.is_none()
                    || matches!(kind, Output::Data(f) if f.is_flows())
                    || u.contains(".part-00000.")
            })
            .map(|(kind, u)| (kind.name(), u.clone()))
            .collect();
        let mut item_source = info.item_source((&s3_id, &url), Some(&name), &listed);
        item_source.parts = parts;
        let item = summary_item(
            &item_source,
            &outcome,
            Some((&report.summary, report.format, report.compression)),
            self.options.top_n,
        );

        if self.options.outputs.contains(&Output::DynamodbJson) {
            let naming = Naming {
                id: &name,
                file_name: &file_name,
                etag: None,
                date: String::new(),
            };
            let key = layout::key(Output::DynamodbJson, &naming);
            let mut line = item.to_dynamodb_json();
            line.push('\n');
            root.put(&key, line.into_bytes(), &url).await?;
            outputs.push((Output::DynamodbJson, root.url(&key)));
        }

        let mut item_written = false;
        if let (Some(client), Some(table)) = (&self.dynamodb, &self.options.table) {
            match table::put(client, table, &item).await {
                Ok(Put::Written(old)) => {
                    item_written = true;
                    // Outputs of an older version that the new item no longer lists.
                    let ours: BTreeSet<&str> = outputs.iter().map(|(_, u)| u.as_str()).collect();
                    let stale: BTreeSet<String> = old
                        .as_ref()
                        .map(table::recorded_outputs)
                        .unwrap_or_default()
                        .into_iter()
                        .chain(std::mem::take(&mut previous.outputs))
                        .filter(|u| !ours.contains(u.as_str()))
                        .collect();
                    // Until they are deleted the dataset holds both versions' rows: the item
                    // remembers them for the next run, and this run asks for one.
                    if let Err((left, recorded)) = self.retire(&s3_id, &item, stale).await {
                        let count = left.len();
                        let (first, message) = left.into_iter().next().unwrap_or_default();
                        return Err(JobError::Cleanup {
                            url,
                            left: count,
                            first,
                            message,
                            recorded,
                        });
                    }
                }
                Ok(Put::Newer(theirs)) => {
                    // A newer version's result won the race: our versioned outputs would
                    // duplicate its rows in the dataset — unless they are its outputs too (the
                    // same content uploaded again has the same ETag, hence the same keys).
                    let theirs: BTreeSet<String> = theirs
                        .as_ref()
                        .map(table::outputs_of)
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    let ours: Vec<String> = outputs
                        .into_iter()
                        .filter(|(k, _)| matches!(k, Output::Data(Format::Parquet | Format::Csv)))
                        .map(|(_, u)| u)
                        .filter(|u| !theirs.contains(u))
                        .collect();
                    delete_urls(self, ours).await;
                    return Err(JobError::Superseded { url });
                }
                Err(source) => return Err(JobError::Table { url, source }),
            }
        }

        Ok(JobReport {
            object,
            name,
            etag: info.etag,
            size: info.size,
            report,
            outputs,
            item_written,
            elapsed: started.elapsed(),
        })
    }

    /// The table's record of the object, when a table is configured: a newer version's
    /// result stops the run.
    pub(crate) async fn previous_of(
        &self,
        url: &str,
        s3_id: &str,
        info: &ObjectInfo,
    ) -> Result<table::Previous, JobError> {
        let (Some(client), Some(table)) = (&self.dynamodb, &self.options.table) else {
            return Ok(table::Previous::default());
        };
        let previous = table::previous(client, table, s3_id)
            .await
            .map_err(|source| JobError::Table {
                url: url.to_owned(),
                source,
            })?;
        if let (Some(lm), Some(theirs)) = (info.last_modified_ns, &previous.last_modified)
            && *theirs > pcaplab_core::encode::rfc3339_ns(lm)
        {
            return Err(JobError::Superseded {
                url: url.to_owned(),
            });
        }
        Ok(previous)
    }

    /// Commit every upload of `object`'s outputs, or none (those committed are deleted again
    /// when a later one fails).
    pub(crate) async fn commit_all(
        &self,
        uploads: Vec<(Output, Upload)>,
        object: &str,
    ) -> Result<Vec<(Output, String)>, JobError> {
        let mut outputs = Vec::new();
        let mut pending = uploads.into_iter();
        while let Some((kind, upload)) = pending.next() {
            let out_url = upload.url().to_owned();
            if let Err(source) = upload.commit().await {
                abort_all(pending.collect()).await;
                let written: Vec<String> = outputs.into_iter().map(|(_, u)| u).collect();
                delete_urls(self, written).await;
                return Err(JobError::Upload {
                    object: object.to_owned(),
                    url: out_url,
                    source,
                });
            }
            outputs.push((kind, out_url));
        }
        Ok(outputs)
    }

    /// The packet and flow outputs configured (not the DynamoDB JSON).
    pub(crate) fn data_formats(&self) -> Vec<Format> {
        self.options
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Data(f) => Some(*f),
                Output::DynamodbJson => None,
            })
            .collect()
    }

    /// Whether a summary item is written (to the table, or as `dynamodb-json`): flows are then
    /// tracked even without a flow output (the item's flow count and top flows need them),
    /// and the whole summary is counted, not only its totals.
    pub(crate) fn writes_item(&self) -> bool {
        self.options.table.is_some() || self.options.outputs.contains(&Output::DynamodbJson)
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn aws_config(&self) -> Option<&Aws> {
        self.aws.as_deref()
    }

    /// Record a capture that could not be converted (best effort: the caller reports the
    /// conversion error either way). The object is no longer the capture the dataset holds, so
    /// the outputs of its previous version (those its item listed, and `previous`, read before
    /// converting) are deleted as when a new version converts.
    pub(crate) async fn record_failure(
        &self,
        id: (&str, &str),
        info: &ObjectInfo,
        err: &JobError,
        previous: Vec<String>,
    ) {
        let (Some(client), Some(table)) = (&self.dynamodb, &self.options.table) else {
            return;
        };
        let reason = err.describe();
        let item = summary_item(
            &info.item_source(id, None, &[]),
            &ItemOutcome::Failed { reason: &reason },
            None,
            0,
        );
        if let Ok(Put::Written(old)) = table::put(client, table, &item).await {
            let stale: BTreeSet<String> = old
                .as_ref()
                .map(table::recorded_outputs)
                .unwrap_or_default()
                .into_iter()
                .chain(previous)
                .collect();
            // What is left is recorded on the item for the next run; the error reported is the
            // capture's own.
            let _ = self.retire(id.0, &item, stale).await;
        }
    }

    /// Delete the outputs of an object's previous version (`stale`) once its item (`item`) is
    /// written. Those that could not be deleted are recorded on the item as `stale_outputs`, so
    /// that the next run deletes them: `Err` with them (URL, why) and whether the item records
    /// them.
    async fn retire(
        &self,
        s3_id: &str,
        item: &pcaplab_core::Item,
        stale: BTreeSet<String>,
    ) -> Result<(), (Vec<(String, String)>, bool)> {
        let left = delete_urls(self, stale.into_iter().collect()).await;
        if left.is_empty() {
            return Ok(());
        }
        let recorded = match (&self.dynamodb, &self.options.table) {
            (Some(client), Some(table)) => {
                let lm = match item.get("last_modified") {
                    Some(pcaplab_core::AttrValue::S(lm)) => lm.clone(),
                    _ => String::new(),
                };
                let urls: Vec<String> = left.iter().map(|(u, _)| u.clone()).collect();
                table::record_stale(client, table, s3_id, &lm, &urls)
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        };
        Err((left, recorded))
    }

    /// List the objects under an S3 prefix (all of them: captures are recognised by content),
    /// in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, JobError> {
        use futures_util::TryStreamExt;
        let url = format!("s3://{bucket}/{prefix}");
        let fetch = |source| JobError::Fetch {
            url: url.clone(),
            source,
        };
        let store = self.aws(&url)?.s3(bucket).map_err(fetch)?;
        let path = Path::parse(prefix).map_err(|e| fetch(e.into()))?;
        let prefix_path = (!prefix.is_empty()).then_some(&path);
        let mut found: Vec<Listed> = store
            .list(prefix_path)
            .map_ok(|m| Listed {
                location: Location::S3 {
                    bucket: bucket.to_owned(),
                    key: m.location.to_string(),
                },
                size: m.size,
                etag: m.e_tag,
            })
            .try_collect()
            .await
            .map_err(fetch)?;
        found.sort_by_key(|l| l.location.to_string());
        Ok(found)
    }
}

/// `URL: cause: cause…` for a conversion error (whose own text starts with the capture's
/// name, which the line replaces with the URL the user knows).
pub fn describe_convert(url: &str, e: &ConvertError) -> String {
    let (what, cause): (String, Option<&(dyn std::error::Error + 'static)>) = match e {
        ConvertError::Open { source, .. } => (String::new(), Some(source)),
        ConvertError::Write { format, source, .. } => {
            (format!(": writing {format} output failed"), Some(source))
        }
        ConvertError::Outputs { source, .. } => {
            (": cannot create the outputs".into(), Some(source.as_ref()))
        }
        ConvertError::FlowPart { source, .. } => (
            ": merging the flows of its ranges failed".into(),
            Some(source),
        ),
        other @ ConvertError::Internal { .. } => (format!(": {other}"), None),
    };
    match cause {
        Some(c) => format!("{url}{what}: {}", error_chain(c)),
        None => format!("{url}{what}"),
    }
}

impl JobError {
    /// One line for a person: the object, what failed, and every cause.
    pub fn describe(&self) -> String {
        match self {
            JobError::Convert { url, source } => describe_convert(url, source),
            JobError::Fetch { source, .. } | JobError::Upload { source, .. } => {
                format!("{self}: {}", store_message(source))
            }
            other => error_chain(other),
        }
    }
}

/// An object_store error in one line: S3's own `Code: Message` when the response carried
/// one (object_store's text repeats the whole XML body at every level of its chain), else its
/// first line.
pub fn store_message(e: &object_store::Error) -> String {
    let kind = match e {
        object_store::Error::NotFound { .. } => "not found",
        object_store::Error::PermissionDenied { .. } => "access denied",
        object_store::Error::Unauthenticated { .. } => "not authenticated (check the credentials)",
        _ => "",
    };
    let text = error_chain(e);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    };
    let detail = match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => {
            let first = text.lines().next().unwrap_or_default();
            first.chars().take(300).collect()
        }
    };
    match kind {
        "" => detail,
        kind => format!("{kind} ({detail})"),
    }
}

/// `error: cause: cause…`
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        // Some errors print their source in their own text already.
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// Abort every upload; the first failure of an upload itself (not the abort), with its URL.
pub(crate) async fn abort_all(
    uploads: Vec<(Output, Upload)>,
) -> Option<(String, object_store::Error)> {
    let mut first = None;
    for (_, u) in uploads {
        let url = u.url().to_owned();
        if let Err(e) = u.abort().await
            && first.is_none()
        {
            first = Some((url, e));
        }
    }
    first
}

/// Whether the object of `size` bytes at `path` is an uncompressed pcap or pcapng (a
/// compressed or snoop object can only be read from its start), by its first bytes.
pub(crate) async fn splittable_head(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    url: &str,
) -> Result<bool, JobError> {
    let head = store
        .get_range(path, 0..size.min(16))
        .await
        .map_err(|source| JobError::Fetch {
            url: url.to_owned(),
            source,
        })?;
    let yes = splittable(&head).is_some();
    if !yes {
        tracing::info!(object = %url, "not an uncompressed pcap or pcapng: converted whole");
    }
    Ok(yes)
}

/// Delete outputs by URL; those that could not be deleted, with why (one that does not exist
/// is deleted).
pub(crate) async fn delete_urls(job: &Job, urls: Vec<String>) -> Vec<(String, String)> {
    let mut left = Vec::new();
    for u in urls {
        let failure = match Location::parse(&u) {
            Ok(Location::Local(p)) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(e.to_string()),
                _ => None,
            },
            Ok(Location::S3 { bucket, key }) => match (job.aws(&u), Path::parse(&key)) {
                (Ok(aws), Ok(path)) => match aws.s3(&bucket) {
                    Ok(store) => match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => None,
                        Err(e) => Some(store_message(&e)),
                    },
                    Err(e) => Some(store_message(&e)),
                },
                (Err(e), _) => Some(error_chain(&e)),
                (_, Err(e)) => Some(e.to_string()),
            },
            // Not a URL we write: nothing of ours to delete.
            Err(_) => None,
        };
        if let Some(message) = failure {
            left.push((u, message));
        }
    }
    left
}

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    count: Option<Arc<AtomicU64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &self.count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_runtime as runtime;

    fn captures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../captures")
    }

    fn job(out: &std::path::Path, outputs: Vec<Output>) -> Job {
        let engine = Engine::builder().jobs(2).build().expect("engine");
        Job::new(
            Arc::new(engine),
            None,
            JobOptions {
                outputs,
                out: Some(Location::Local(out.to_path_buf())),
                ..JobOptions::default()
            },
        )
        .expect("job")
    }

    #[test]
    fn a_local_capture_becomes_its_outputs_and_item() {
        let out = tempfile::tempdir().expect("tempdir");
        let job = job(
            out.path(),
            vec![
                Output::Data(Format::Parquet),
                Output::Data(Format::LabCsv),
                Output::DynamodbJson,
            ],
        );
        let url = format!("file://{}", captures().join("lab-web.pcap.gz").display());
        let mut request = Request::new(Location::parse(&url).expect("url"));
        request.name = Some("lab-web.pcap.gz".into());
        let report = runtime().block_on(job.process(&request)).expect("process");
        assert_eq!(report.report.summary.packets, 33);
        assert!(report.report.damage.is_none());
        let keys: Vec<String> = report
            .outputs
            .iter()
            .map(|(_, u)| {
                u.strip_prefix(&format!("{}/", out.path().display()))
                    .expect("under the output root")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            keys,
            [
                "packets/date=2024-03-01/lab-web.pcap.gz.parquet",
                "csv/lab-web.pcap.csv",
                "dynamodb/lab-web.pcap.gz.json",
            ]
        );
        for k in &keys {
            assert!(out.path().join(k).is_file(), "{k}");
        }
        let json = std::fs::read_to_string(out.path().join(&keys[2])).expect("json");
        assert!(json.starts_with("{\"Item\":{"), "{json}");
        assert!(json.contains("\"packets\":{\"N\":\"33\"}"), "{json}");
        // Its name in the dataset, and where the object is.
        assert!(
            json.contains("\"capture\":{\"S\":\"lab-web.pcap.gz\"}"),
            "{json}"
        );
        let path = captures().join("lab-web.pcap.gz").display().to_string();
        assert!(
            json.contains(&format!("\"object\":{{\"S\":\"{path}\"}}")),
            "{json}"
        );
        assert!(!report.item_written);
    }

    #[test]
    fn a_non_capture_fails_by_name_and_writes_nothing() {
        let out = tempfile::tempdir().expect("tempdir");
        let job = job(out.path(), vec![Output::Data(Format::Parquet)]);
        let request = Request::new(Location::Local(captures().join("README.md")));
        let e = runtime()
            .block_on(job.process(&request))
            .expect_err("not a capture");
        assert!(e.not_a_capture(), "{e:?}");
        assert!(!e.retryable());
        let line = e.describe();
        assert!(line.contains("README.md: not a packet capture"), "{line}");
        assert_eq!(std::fs::read_dir(out.path()).expect("dir").count(), 0);
    }

    #[test]
    fn s3_without_aws_configuration_is_a_clear_error() {
        let out = tempfile::tempdir().expect("tempdir");
        let job = job(out.path(), vec![Output::Data(Format::Parquet)]);
        let request = Request::new(Location::parse("s3://bucket/x.pcap").expect("url"));
        let e = runtime()
            .block_on(job.process(&request))
            .expect_err("no aws");
        assert_eq!(
            e.describe(),
            "s3://bucket/x.pcap: S3 needs an AWS configuration"
        );
    }
}

#[cfg(test)]
mod classification {
    use super::*;

    fn fetch(source: object_store::Error) -> JobError {
        JobError::Fetch {
            url: "s3://b/k".into(),
            source,
        }
    }

    #[test]
    fn s3_faults_are_retryable_and_refusals_are_not() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_owned().into(),
        };
        assert!(fetch(generic("error sending request: connection reset")).retryable());
        assert!(
            fetch(generic(
                "Server returned non-2xx status code: 503 Service Unavailable"
            ))
            .retryable()
        );
        let no_bucket = fetch(generic(
            "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
        ));
        assert!(!no_bucket.retryable());
        assert_eq!(
            no_bucket.describe(),
            "s3://b/k: cannot read the object from S3: NoSuchBucket: The specified bucket does not exist"
        );
        let missing = fetch(object_store::Error::NotFound {
            path: "k".into(),
            source: "404".into(),
        });
        assert!(!missing.retryable());
        assert!(missing.object_not_found());
        assert!(
            missing.describe().contains("not found"),
            "{}",
            missing.describe()
        );
        let denied = fetch(object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "403".into(),
        });
        assert!(!denied.retryable());
        assert!(
            denied.describe().contains("access denied"),
            "{}",
            denied.describe()
        );
    }
}
