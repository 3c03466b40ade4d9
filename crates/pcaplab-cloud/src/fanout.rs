//! One capture converted in ranges by separate workers: the steps of
//! [`pcaplab_core::split_run`] as a fan-out across machines runs them (the deployment's state
//! machine: a plan, a Distributed Map of range workers, a merge), each a call of its own that
//! hands the next what it needs as JSON and S3 objects.
//!
//! 1. [`Job::split_plan`] reads the object's head, plans its ranges and counts them (every
//!    range walked by parallel ranged reads, see [`split_run::count`]), and writes the
//!    manifest: one JSON line per range that owns a record start, each a [`RangeEvent`] — the
//!    whole event of that range's worker.
//! 2. [`Job::split_range`] converts one range: its packet outputs are written as parts of the
//!    dataset (committed by the worker), its flow part and its summary to the work prefix.
//! 3. [`Job::split_merge`] reads the workers' answers from the Map's result files, merges the
//!    summaries and the flow parts in file order, writes the flow outputs and the summary item
//!    ([`Job::finish`], as a whole conversion does), and deletes the work prefix.
//! 4. [`Job::split_failed`], when any step failed for good: the parts written are deleted and
//!    the failure is recorded in the table.
//!
//! Every object of a run — manifest, flow parts, summaries — lives under the work prefix,
//! `pcaplab-split/<id>.<etag>/` in the output root, named by the capture's version, so a
//! retried step rewrites the same objects. Every read of the capture is pinned to the ETag the
//! plan saw (`If-Match`): a capture replaced mid-run fails the run instead of mixing versions.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use pcaplab_core::split_run::{self, RangeTask, SplitRunError};
use pcaplab_core::{
    CaptureFormat, Compression, ConvertError, Format, Outputs, ReadError, Report, Summary,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::Handle;

use crate::io::StreamReader;
use crate::job::{
    Converted, Job, JobError, JobReport, ObjectInfo, Root, splittable_head, store_message,
};
use crate::layout::{self, Naming, Output};
use crate::location::Location;
use crate::split::{ObjectRanges, Uploads};

/// The capture a split run converts: the state machine's input, as the function that routed
/// it saw the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitObject {
    pub bucket: String,
    pub key: String,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub size: u64,
    /// When this version was written (RFC 3339): with the ETag, what tells an upload of the
    /// same bytes again from a redelivered event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl SplitObject {
    pub fn location(&self) -> Location {
        Location::S3 {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
        }
    }
}

/// What every step after the plan needs: the capture's version, what names its outputs, and
/// where the run's own objects are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitContext {
    /// The object, with the ETag and size the plan read (every later read is pinned to them).
    pub object: SplitObject,
    pub last_modified_ns: Option<i64>,
    /// The capture's name (its s3Id) and the date partition of its outputs.
    pub name: String,
    pub date: String,
    pub format: CaptureFormat,
    /// The work prefix (an S3 URL ending in `/`).
    pub work: String,
    /// Ranges planned, and parts (ranges that own a record start) to convert.
    pub ranges: usize,
    pub parts: usize,
}

/// One worker's event: a line of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeEvent {
    /// Always `"range"` (the function's role for this event).
    pub pcaplab: String,
    pub split: SplitContext,
    pub task: RangeTask,
}

/// Where the run's S3 objects are, as Step Functions' parameters spell a location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Object {
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "Key")]
    pub key: String,
}

/// The plan's answer: the manifest the Map reads, the work prefix (where the Map may write its
/// results), and the context the merge needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAnswer {
    pub manifest: S3Object,
    pub work: WorkPrefix,
    pub ranges: usize,
    pub merge: SplitContext,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkPrefix {
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "Prefix")]
    pub prefix: String,
}

/// Where a damaged range stopped (the last range only: see [`split_run::fold_summaries`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDamage {
    pub offset: u64,
    pub reason: String,
    /// A read failure rather than damaged bytes.
    #[serde(default)]
    pub io: bool,
}

impl RangeDamage {
    fn of(e: &ReadError) -> Option<RangeDamage> {
        match e {
            ReadError::Damaged { offset, reason } => Some(RangeDamage {
                offset: *offset,
                reason: reason.clone(),
                io: false,
            }),
            ReadError::Io { offset, source } => Some(RangeDamage {
                offset: *offset,
                reason: source.to_string(),
                io: true,
            }),
            _ => None,
        }
    }

    fn error(&self) -> ReadError {
        if self.io {
            ReadError::Io {
                offset: self.offset,
                source: io::Error::other(self.reason.clone()),
            }
        } else {
            ReadError::Damaged {
                offset: self.offset,
                reason: self.reason.clone(),
            }
        }
    }
}

/// A worker's answer (small: the Map's results hold one per range).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeAnswer {
    pub index: usize,
    pub part: usize,
    pub frames: u64,
    pub packets: u64,
    #[serde(default)]
    pub damage: Option<RangeDamage>,
}

/// A run's own objects: its work prefix and the Map's result files.
pub struct WorkObjects {
    root: Root,
    work: String,
    results: Vec<(Root, String)>,
}

/// The most a manifest line may take: a Distributed Map item (and any state) is at most
/// 256 KiB.
const MAX_ITEM: usize = 256 * 1024;

/// The work prefix of a capture's version, relative to the output root.
fn work_key(name: &str, etag: Option<&str>) -> String {
    let etag = etag.map(|e| e.trim_matches('"')).unwrap_or("");
    format!(
        "pcaplab-split/{}.{}/",
        layout::escape(name),
        layout::escape(etag)
    )
}

fn manifest_key() -> &'static str {
    "manifest.jsonl"
}

fn flow_part_key(index: usize) -> String {
    format!("flows-{index:05}.part")
}

fn summary_key(index: usize) -> String {
    format!("summary-{index:05}.zst")
}

/// A failed step of a run, for the object concerned.
fn ranges_error(url: &str, message: impl Into<String>) -> JobError {
    JobError::Ranges {
        url: url.to_owned(),
        message: message.into(),
    }
}

impl SplitContext {
    fn url(&self) -> String {
        self.object.location().to_string()
    }

    fn naming<'a>(&'a self, file_name: &'a str) -> Naming<'a> {
        Naming {
            id: &self.name,
            file_name,
            etag: self.object.etag.as_deref(),
            date: self.date.clone(),
        }
    }

    fn info(&self) -> ObjectInfo {
        ObjectInfo {
            etag: self.object.etag.clone(),
            size: self.object.size,
            last_modified_ns: self.last_modified_ns,
        }
    }
}

/// A reader that opens its object on its first read (a merge reads its flow parts one after
/// another, and should not hold a download open per range).
struct Lazy {
    store: Arc<dyn ObjectStore>,
    path: Path,
    runtime: Handle,
    reader: Option<StreamReader>,
}

impl Read for Lazy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.is_none() {
            let got = self
                .runtime
                .block_on(self.store.get(&self.path))
                .map_err(io::Error::other)?;
            self.reader = Some(StreamReader::spawn(&self.runtime, got.into_stream(), None).0);
        }
        match self.reader.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl Job {
    /// The output root of `object` and the work prefix of its version there.
    fn work_root(&self, object: &SplitObject, name: &str) -> Result<(Root, String), JobError> {
        let root = self.root_for(&object.location())?;
        if !root.url("").starts_with("s3://") {
            return Err(JobError::Config {
                url: root.url(""),
                message: "a conversion in ranges by separate workers needs an S3 output".into(),
            });
        }
        let work = work_key(name, object.etag.as_deref());
        Ok((root, work))
    }

    /// The object `object` names, read by ranges pinned to `etag`, and what its metadata says.
    async fn object_ranges(
        &self,
        object: &SplitObject,
    ) -> Result<(ObjectRanges, ObjectInfo), JobError> {
        let url = object.location().to_string();
        let fetch = |source| JobError::Fetch {
            url: url.clone(),
            source,
        };
        let store = self.aws(&url)?.s3(&object.bucket).map_err(fetch)?;
        let path = Path::parse(&object.key).map_err(|e| fetch(e.into()))?;
        let meta = store.head(&path).await.map_err(fetch)?;
        if object.etag.is_some() && meta.e_tag != object.etag {
            // Replaced since it was routed: the new version's own event converts it.
            return Err(JobError::Superseded { url });
        }
        let info = ObjectInfo::of(&meta);
        let ranges = ObjectRanges::new(store, path, info.size, info.etag.clone());
        Ok((ranges, info))
    }

    /// The object at `location`, if it is to be converted in ranges by separate workers: on
    /// S3, larger than `larger_than` bytes, and an uncompressed pcap or pcapng (asked of its
    /// metadata and first bytes).
    pub async fn split_candidate(
        &self,
        location: &Location,
        larger_than: u64,
    ) -> Result<Option<SplitObject>, JobError> {
        let Location::S3 { bucket, key } = location else {
            return Ok(None);
        };
        let url = location.to_string();
        let fetch = |source| JobError::Fetch {
            url: url.clone(),
            source,
        };
        let store = self.aws(&url)?.s3(bucket).map_err(fetch)?;
        let path = Path::parse(key).map_err(|e| fetch(e.into()))?;
        let meta = store.head(&path).await.map_err(fetch)?;
        if meta.size <= larger_than || !splittable_head(&store, &path, meta.size, &url).await? {
            return Ok(None);
        }
        Ok(Some(SplitObject {
            bucket: bucket.clone(),
            key: key.clone(),
            etag: meta.e_tag,
            size: meta.size,
            last_modified: meta
                .last_modified
                .timestamp_nanos_opt()
                .map(pcaplab_core::encode::rfc3339_ns),
        }))
    }

    /// Step 1: plan `object` in ranges of `range_bytes`, count them (`concurrency` ranged reads
    /// at a time), and write the manifest of the range workers' events.
    pub async fn split_plan(
        &self,
        object: &SplitObject,
        range_bytes: u64,
        concurrency: usize,
    ) -> Result<PlanAnswer, JobError> {
        let location = object.location();
        let url = location.to_string();
        let name = location.s3_id();
        let (ranges, info) = self.object_ranges(object).await?;
        // A newer version's result already recorded: nothing to plan.
        self.previous_of(&url, &name, &info).await?;

        let engine = Arc::clone(self.engine());
        let job_name = name.clone();
        let counted = tokio::task::spawn_blocking(move || {
            let counted = split_run::count(&job_name, &ranges, range_bytes, concurrency)?;
            let opened = split_run::opened_of(&engine, &job_name, &ranges)?;
            Ok::<_, SplitRunError>((counted, opened, ranges.transport_failed()))
        })
        .await
        .map_err(|e| ranges_error(&url, format!("the count stopped: {e}")))?;
        let (counted, opened, transport_failed) = counted.map_err(|source| JobError::Split {
            url: url.clone(),
            source,
        })?;
        if transport_failed {
            return Err(JobError::Transport { url, offset: 0 });
        }
        let tasks = split_run::tasks(&counted.walks, &counted.ranges);
        // The version read (the event's ETag, if it had one, is the same).
        let planned = SplitObject {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: info.etag.clone(),
            size: info.size,
            last_modified: info.last_modified_ns.map(pcaplab_core::encode::rfc3339_ns),
        };
        let (root, work) = self.work_root(&planned, &name)?;
        let context = SplitContext {
            object: planned,
            last_modified_ns: info.last_modified_ns,
            date: layout::utc_date(opened.first_ts.or(info.last_modified_ns).unwrap_or(0)),
            name,
            format: counted.plan.format,
            work: root.url(&work),
            ranges: counted.ranges.len(),
            parts: tasks.len(),
        };
        let mut manifest = String::new();
        for task in tasks {
            let line = RangeEvent {
                pcaplab: "range".into(),
                split: context.clone(),
                task,
            };
            let text = serde_json::to_string(&line)
                .map_err(|e| ranges_error(&url, format!("cannot write the manifest: {e}")))?;
            if text.len() > MAX_ITEM {
                return Err(ranges_error(
                    &url,
                    format!(
                        "range {}'s event is {} bytes (its pcapng section and interface blocks), \
                         more than the {MAX_ITEM} a Distributed Map item may hold: convert this \
                         capture with `pcaplab convert --split-bytes` instead",
                        line.task.index,
                        text.len()
                    ),
                ));
            }
            manifest.push_str(&text);
            manifest.push('\n');
        }
        let key = format!("{work}{}", manifest_key());
        root.put(&key, manifest.into_bytes(), &url).await?;
        let (bucket, prefix) = match Location::parse(&root.url(&key)) {
            Ok(Location::S3 { bucket, key }) => (bucket, key),
            _ => return Err(ranges_error(&url, "the work prefix is not on S3")),
        };
        let work_prefix = prefix
            .strip_suffix(manifest_key())
            .unwrap_or(&prefix)
            .to_owned();
        Ok(PlanAnswer {
            manifest: S3Object {
                bucket: bucket.clone(),
                key: prefix,
            },
            work: WorkPrefix {
                bucket,
                prefix: work_prefix,
            },
            ranges: context.parts,
            merge: context,
        })
    }

    /// Step 2: convert one range into parts of the packet outputs (committed here), its flow
    /// part and its summary (in the work prefix).
    pub async fn split_range(&self, event: &RangeEvent) -> Result<RangeAnswer, JobError> {
        let ctx = &event.split;
        let task = &event.task;
        let url = ctx.url();
        let (ranges, _) = self.object_ranges(&ctx.object).await?;
        let (root, work) = self.work_root(&ctx.object, &ctx.name)?;
        let formats = self.data_formats();
        let track_flows = self.writes_item() || formats.iter().any(|f| f.is_flows());
        let file_name = ctx.object.location().file_name();

        let uploads: Uploads = Arc::default();
        let converted = {
            let (engine, uploads, root, ctx, task) = (
                Arc::clone(self.engine()),
                Arc::clone(&uploads),
                root.clone(),
                ctx.clone(),
                task.clone(),
            );
            let flow_part = format!("{work}{}", flow_part_key(task.index));
            let runtime = Handle::current();
            tokio::task::spawn_blocking(move || {
                let report = split_run::convert_range(&engine, &ctx.name, &ranges, &task, |_| {
                    let naming = ctx.naming(&file_name);
                    let mut outputs = Outputs::default();
                    for f in formats.iter().copied().filter(|f| !f.is_flows()) {
                        let key = layout::part_key(Output::Data(f), &naming, task.part);
                        outputs.set(
                            f,
                            crate::split::start_upload(
                                &runtime,
                                &root,
                                &uploads,
                                Output::Data(f),
                                key,
                            )?,
                        );
                    }
                    if track_flows {
                        // Not an output of the dataset: committed with the parts.
                        outputs.flow_parts = Some(crate::split::start_upload(
                            &runtime,
                            &root,
                            &uploads,
                            Output::Data(Format::Flows),
                            flow_part.clone(),
                        )?);
                    }
                    Ok(outputs)
                });
                (report, ranges.transport_failed())
            })
            .await
        };
        let started = std::mem::take(&mut *uploads.lock().unwrap_or_else(|p| p.into_inner()));
        let report = match converted {
            Ok((Ok(report), false)) => report,
            Ok((_, true)) => {
                crate::job::abort_all(started).await;
                return Err(JobError::Transport {
                    url,
                    offset: task.first_record,
                });
            }
            Ok((Err(source), false)) => {
                let upload_error = crate::job::abort_all(started).await;
                if let (SplitRunError::Range { source: e, .. }, Some((out_url, upload))) =
                    (&source, upload_error)
                    && matches!(**e, ConvertError::Write { .. })
                {
                    return Err(JobError::Upload {
                        object: url,
                        url: out_url,
                        source: upload,
                    });
                }
                return Err(JobError::Split { url, source });
            }
            Err(join) => {
                crate::job::abort_all(started).await;
                return Err(ranges_error(&url, format!("range {}: {join}", task.index)));
            }
        };
        self.commit_all(started, &url).await?;
        let summary = split_run::encode_summary(&report.summary)
            .map_err(|e| ranges_error(&url, format!("cannot encode the summary: {e}")))?;
        root.put(&format!("{work}{}", summary_key(task.index)), summary, &url)
            .await?;
        Ok(RangeAnswer {
            index: task.index,
            part: task.part,
            frames: task.frames,
            packets: report.summary.packets,
            damage: report.damage.as_ref().and_then(RangeDamage::of),
        })
    }

    /// Step 3: merge the workers' results (the Map's result manifest `results`) into the flow
    /// outputs and the summary item, then delete the run's own objects.
    pub async fn split_merge(
        &self,
        ctx: &SplitContext,
        results: &S3Object,
    ) -> Result<(JobReport, WorkObjects), JobError> {
        let started = Instant::now();
        let url = ctx.url();
        let (root, work) = self.work_root(&ctx.object, &ctx.name)?;
        let info = ctx.info();
        let previous = self.previous_of(&url, &ctx.name, &info).await?;
        let (answers, result_files) = self.range_answers(&url, results).await?;
        // Every part, once.
        let mut by_part: BTreeMap<usize, RangeAnswer> = BTreeMap::new();
        for a in answers {
            by_part.insert(a.part, a);
        }
        let missing: Vec<usize> = (0..ctx.parts)
            .filter(|p| !by_part.contains_key(p))
            .collect();
        if !missing.is_empty() || by_part.len() != ctx.parts {
            return Err(ranges_error(
                &url,
                format!(
                    "the Map's results hold {} of {} parts; missing: {missing:?}",
                    by_part.len(),
                    ctx.parts
                ),
            ));
        }
        let store = Arc::clone(&root.store);
        let mut ranges = Vec::with_capacity(ctx.parts);
        for a in by_part.values() {
            let key = format!("{work}{}", summary_key(a.index));
            let bytes = root.get(&key).await?;
            let summary = split_run::decode_summary(&bytes).map_err(|e| {
                ranges_error(
                    &url,
                    format!("{}: not a range summary: {e}", root.url(&key)),
                )
            })?;
            ranges.push((a.index, summary, a.damage.clone()));
        }
        let (summary, damage): (Summary, Option<RangeDamage>) =
            split_run::fold_summaries(ranges).map_err(|(index, d)| JobError::Split {
                url: url.clone(),
                source: SplitRunError::Damaged {
                    name: ctx.name.clone(),
                    index,
                    source: Box::new(d.error()),
                },
            })?;

        // The flows, merged in file order into the flow outputs.
        let formats = self.data_formats();
        let file_name = ctx.object.location().file_name();
        let naming = ctx.naming(&file_name);
        let uploads: Uploads = Arc::default();
        let runtime = Handle::current();
        let mut summary = summary;
        let mut flow_uploads = Vec::new();
        if self.writes_item() || formats.iter().any(|f| f.is_flows()) {
            let mut outputs = Outputs::default();
            for f in formats.iter().copied().filter(|f| f.is_flows()) {
                let key = layout::key(Output::Data(f), &naming);
                let w = crate::split::start_upload(&runtime, &root, &uploads, Output::Data(f), key)
                    .map_err(|e| ranges_error(&url, e.to_string()))?;
                outputs.set(f, w);
            }
            let parts: Vec<Box<dyn Read + Send>> = by_part
                .values()
                .map(|a| {
                    let path = root.path(&format!("{work}{}", flow_part_key(a.index)))?;
                    Ok(Box::new(Lazy {
                        store: Arc::clone(&store),
                        path,
                        runtime: Handle::current(),
                        reader: None,
                    }) as Box<dyn Read + Send>)
                })
                .collect::<Result<_, object_store::Error>>()
                .map_err(|e| ranges_error(&url, store_message(&e)))?;
            let engine = Arc::clone(self.engine());
            let name = ctx.name.clone();
            let merged = tokio::task::spawn_blocking(move || {
                engine.merge_flow_parts(&name, parts, outputs.flows, outputs.flows_csv)
            })
            .await;
            let started = std::mem::take(&mut *uploads.lock().unwrap_or_else(|p| p.into_inner()));
            match merged {
                Ok(Ok(stats)) => {
                    summary.flows = Some(stats);
                    flow_uploads = started;
                }
                Ok(Err(source)) => {
                    crate::job::abort_all(started).await;
                    return Err(JobError::Split {
                        url,
                        source: SplitRunError::Merge {
                            name: ctx.name.clone(),
                            source: Box::new(source),
                        },
                    });
                }
                Err(join) => {
                    crate::job::abort_all(started).await;
                    return Err(ranges_error(&url, format!("the merge stopped: {join}")));
                }
            }
        }
        // The workers' parts, committed already.
        let mut committed = Vec::new();
        for f in formats.iter().copied().filter(|f| !f.is_flows()) {
            for part in 0..ctx.parts {
                let key = layout::part_key(Output::Data(f), &naming, part);
                committed.push((Output::Data(f), root.url(&key)));
            }
        }
        let report = self
            .finish(Converted {
                url: url.clone(),
                object: ctx.object.location(),
                s3_id: ctx.name.clone(),
                name: ctx.name.clone(),
                file_name: file_name.clone(),
                root: root.clone(),
                info,
                previous,
                parts: Some(ctx.parts as u64),
                report: Report {
                    format: ctx.format,
                    compression: Compression::None,
                    summary,
                    damage: damage.as_ref().map(RangeDamage::error),
                },
                committed,
                uploads: flow_uploads,
                started,
            })
            .await?;
        Ok((
            report,
            WorkObjects {
                root,
                work,
                results: result_files,
            },
        ))
    }

    /// Delete a merged run's own objects (once the merge is announced: a merge retried after
    /// a failed announcement reads them again).
    pub async fn split_cleanup(&self, work: WorkObjects) {
        self.delete_work(&work.root, &work.work, &work.results)
            .await;
    }

    /// Step 4, when a run failed for good (`error`: Step Functions' Error and Cause): delete the
    /// parts written and the run's own objects, and record the failure in the table. Nothing to
    /// do when the object was replaced (its new version's event converts it).
    pub async fn split_failed(
        &self,
        object: &SplitObject,
        ctx: Option<&SplitContext>,
        error: &str,
        cause: &str,
    ) -> Result<(), JobError> {
        let url = object.location().to_string();
        let name = object.location().s3_id();
        if error == "pcaplab.Superseded" {
            return Ok(());
        }
        // The plan's version of the object (the event's may lack the ETag) names the work.
        let planned = ctx.map_or(object, |c| &c.object);
        let (root, work) = self.work_root(planned, &name)?;
        if let Some(ctx) = ctx {
            let file_name = ctx.object.location().file_name();
            let naming = ctx.naming(&file_name);
            let urls: Vec<String> = self
                .data_formats()
                .into_iter()
                .filter(|f| !f.is_flows())
                .flat_map(|f| (0..ctx.parts).map(move |part| (f, part)))
                .map(|(f, part)| root.url(&layout::part_key(Output::Data(f), &naming, part)))
                .collect();
            let left = crate::job::delete_urls(self, urls).await;
            for (u, why) in left {
                tracing::warn!(output = %u, "cannot delete a part of a failed run: {why}");
            }
        }
        self.delete_work(&root, &work, &[]).await;
        let info = match ctx {
            Some(c) => c.info(),
            None => ObjectInfo {
                etag: object.etag.clone(),
                size: object.size,
                last_modified_ns: None,
            },
        };
        let err = ranges_error(
            &url,
            format!("converting it in ranges failed: {error}: {cause}"),
        );
        let previous = self
            .previous_of(&url, &name, &info)
            .await
            .unwrap_or_default();
        self.record_failure((&name, &url), &info, &err, previous.outputs)
            .await;
        Ok(())
    }

    /// The workers' answers, from the Map's result manifest (`manifest.json`, whose
    /// `ResultFiles.SUCCEEDED` lists the files of the children that succeeded).
    async fn range_answers(
        &self,
        url: &str,
        results: &S3Object,
    ) -> Result<(Vec<RangeAnswer>, Vec<(Root, String)>), JobError> {
        let bucket_root = |bucket: &str| -> Result<Root, JobError> {
            Root::at(
                &Location::S3 {
                    bucket: bucket.to_owned(),
                    key: String::new(),
                },
                self.aws_config(),
                false,
            )
        };
        let root = bucket_root(&results.bucket)?;
        let manifest: Value =
            serde_json::from_slice(&root.get(&results.key).await?).map_err(|e| {
                ranges_error(
                    url,
                    format!("{}: not a Map result manifest: {e}", root.url(&results.key)),
                )
            })?;
        let files = manifest
            .pointer("/ResultFiles/SUCCEEDED")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ranges_error(
                    url,
                    format!("{}: no ResultFiles.SUCCEEDED", root.url(&results.key)),
                )
            })?;
        let failed = ["FAILED", "PENDING"]
            .iter()
            .filter_map(|k| manifest.pointer(&format!("/ResultFiles/{k}")))
            .filter_map(Value::as_array)
            .map(Vec::len)
            .sum::<usize>();
        if failed > 0 {
            return Err(ranges_error(
                url,
                format!("the Map's results list {failed} file(s) of failed or pending ranges"),
            ));
        }
        let mut answers = Vec::new();
        let mut read = vec![(root.clone(), results.key.clone())];
        for f in files {
            let key = f.get("Key").and_then(Value::as_str).ok_or_else(|| {
                ranges_error(
                    url,
                    format!("{}: a result file without a Key", root.url(&results.key)),
                )
            })?;
            let bytes = root.get(key).await?;
            read.push((root.clone(), key.to_owned()));
            let entries: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| {
                ranges_error(
                    url,
                    format!("{}: not a Map result file: {e}", root.url(key)),
                )
            })?;
            for e in entries {
                let bad = |why: &str| ranges_error(url, format!("{}: {why}: {e}", root.url(key)));
                if e.get("Status").and_then(Value::as_str) != Some("SUCCEEDED") {
                    return Err(bad("a range that did not succeed"));
                }
                let output: Value = e
                    .get("Output")
                    .and_then(Value::as_str)
                    .and_then(|o| serde_json::from_str(o).ok())
                    .ok_or_else(|| bad("a result without an Output"))?;
                // The task's Payload, or the whole Lambda answer around it.
                let answer = output.get("Payload").cloned().unwrap_or(output);
                answers.push(
                    serde_json::from_value(answer)
                        .map_err(|_| bad("an Output that is not a range's answer"))?,
                );
            }
        }
        Ok((answers, read))
    }

    /// Delete the run's own objects (best effort: they are only the run's): the work prefix,
    /// and the Map's result files (`results`, wherever they are).
    async fn delete_work(&self, root: &Root, work: &str, results: &[(Root, String)]) {
        let mut doomed: Vec<(Arc<dyn ObjectStore>, Path)> = Vec::new();
        if let Ok(prefix) = root.path(work) {
            let listed: Result<Vec<_>, _> = root.store.list(Some(&prefix)).try_collect().await;
            match listed {
                Ok(objects) => doomed.extend(
                    objects
                        .into_iter()
                        .map(|o| (Arc::clone(&root.store), o.location)),
                ),
                Err(e) => {
                    tracing::warn!(work = %root.url(work), "cannot list: {}", store_message(&e))
                }
            }
        }
        tracing::info!(work = %root.url(work), objects = doomed.len() + results.len(), "deleting the run's own objects");
        for (r, key) in results {
            if let Ok(path) = r.path(key) {
                doomed.push((Arc::clone(&r.store), path));
            }
        }
        for (store, path) in doomed {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(object = %path, "cannot delete: {}", store_message(&e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_prefixes_are_named_by_the_version() {
        assert_eq!(
            work_key("captures/in/a b.pcap", Some("\"abc-2\"")),
            format!(
                "pcaplab-split/{}.abc-2/",
                layout::escape("captures/in/a b.pcap")
            )
        );
        assert_ne!(work_key("b/k", Some("1")), work_key("b/k", Some("2")));
    }

    #[test]
    fn damage_crosses_as_it_was_reported() {
        for e in [
            ReadError::Damaged {
                offset: 77,
                reason: "a block of 3 bytes".into(),
            },
            ReadError::Io {
                offset: 9,
                source: io::Error::other("reset"),
            },
        ] {
            let d = RangeDamage::of(&e).expect("damage");
            let back: RangeDamage =
                serde_json::from_str(&serde_json::to_string(&d).expect("json")).expect("json");
            assert_eq!(back.error().to_string(), e.to_string());
        }
    }
}
