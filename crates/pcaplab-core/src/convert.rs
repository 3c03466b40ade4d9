//! The conversion pipeline: sequential framing → parallel decode + encode → ordered writes.
//!
//! ```text
//!  caller's thread           rayon pool (jobs threads)          writer thread
//!  ───────────────           ─────────────────────────          ─────────────
//!  take a slot ──► fill a chunk ──► dissect, build columns, ──► reorder by sequence,
//!  (blocks when all              encode Parquet row group,      append to each sink,
//!   slots are in use)            CSV bytes, lab-CSV bytes       give the slot back
//! ```
//!
//! A slot is one chunk in flight, from the moment the reader starts filling it until the writer
//! has appended it. The slots are shared by every conversion that runs on one [`Engine`], so
//! memory is bounded by `slots × chunk size` however many files are converted at once and
//! however large they are. The reader takes slots in file order, so the oldest unwritten chunk
//! of every file always holds one: the pipeline cannot deadlock.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use parquet::arrow::arrow_writer::ArrowColumnChunk;

use crate::columns::{Rows, decode_chunk_as};
use crate::dissect::defrag::Defragmenter;
use crate::dissect::frag::FragConfig;
use crate::encode::{
    EncodeError, FLOW_ROW_GROUP, Format, LAB_CSV_HEADER, ParquetSink, csv_header, csv_header_of,
    encode_csv, encode_lab_csv, encode_parquet, flows_parquet_sink,
};
use crate::flows::parts::{PartError, PartReader, PartWriter};
use crate::flows::{
    ChunkFlows, Flow, FlowConfig, FlowStats, FlowTable, InFileOrder, ShardedFlows, flow_schema,
    flows_batch,
};
use crate::reader::{CaptureFormat, CaptureReader, Chunk, Compression, NO_TIMESTAMP, ReadError};
use crate::row_groups::{GroupDone, GroupError, RowGroups};
use crate::spare::Spare;
use crate::summary::{Counts, Summary};

/// Frames per chunk unless set otherwise. Measured (interleaved medians, `--format parquet`):
/// with row groups of [`DEFAULT_ROW_GROUP_FRAMES`], 8 Ki frames costs the same CPU as 16 Ki
/// and 13–31 MiB less peak RSS (mixed traffic 72 → 57 MiB, 1 M SYN flood with flows 204 →
/// 158 MiB).
pub const DEFAULT_CHUNK_FRAMES: usize = 8 * 1024;
/// Frames per Parquet row group of the packet table unless set otherwise: consecutive chunks
/// share a row group ([`crate::row_groups`]). Measured on the mixed corpus capture: 16 Ki
/// frames per row group wrote 6.5 bytes per packet, 128 Ki 5.6, with 8–27% less CPU (mixed, DNS).
pub const DEFAULT_ROW_GROUP_FRAMES: usize = 128 * 1024;
/// Packet bytes per chunk unless set otherwise.
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

/// Settings of an [`Engine`], validated by [`EngineBuilder::build`].
#[derive(Clone, Debug)]
pub struct EngineBuilder {
    jobs: usize,
    chunk_frames: usize,
    chunk_bytes: usize,
    row_group_frames: usize,
    slots: Option<usize>,
    flows: FlowConfig,
    fragments: FragConfig,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_frames: DEFAULT_CHUNK_FRAMES,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            row_group_frames: DEFAULT_ROW_GROUP_FRAMES,
            slots: None,
            flows: FlowConfig::default(),
            fragments: FragConfig::default(),
        }
    }
}

/// An invalid engine setting.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("chunk bytes must be at most {max} (got {got})")]
    ChunkTooLarge { max: usize, got: usize },
    #[error("the {what} flow timeout must be positive")]
    FlowTimeout { what: &'static str },
    #[error("the fragment reassembly {what} must be positive")]
    Fragments { what: &'static str },
    #[error("could not start the worker threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

impl EngineBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Worker threads for decoding and encoding.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// Most frames per chunk.
    pub fn chunk_frames(mut self, n: usize) -> Self {
        self.chunk_frames = n;
        self
    }

    /// Frames per Parquet row group of the packet table, in whole chunks: rounded down to a
    /// multiple of the chunk frames, at least one chunk (a chunk cut short by its byte limit
    /// makes its row group smaller).
    pub fn row_group_frames(mut self, n: usize) -> Self {
        self.row_group_frames = n;
        self
    }

    /// Most packet bytes per chunk.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self
    }

    /// Chunks in flight across all conversions (default: 2 × jobs).
    pub fn slots(mut self, n: usize) -> Self {
        self.slots = Some(n);
        self
    }

    /// Flow timeouts and Community ID seed (default: Zeek's timeouts, seed 0).
    pub fn flows(mut self, cfg: FlowConfig) -> Self {
        self.flows = cfg;
        self
    }

    /// IP fragment reassembly limits (default: 30 s, 8 MiB per capture).
    pub fn fragments(mut self, cfg: FragConfig) -> Self {
        self.fragments = cfg;
        self
    }

    pub fn build(self) -> Result<Engine, BuildError> {
        if self.fragments.timeout_ns <= 0 {
            return Err(BuildError::Fragments { what: "timeout" });
        }
        if self.fragments.max_bytes == 0 {
            return Err(BuildError::Fragments { what: "memory" });
        }
        if self.jobs == 0 {
            return Err(BuildError::Zero { what: "jobs" });
        }
        if self.chunk_frames == 0 {
            return Err(BuildError::Zero {
                what: "chunk frames",
            });
        }
        if self.chunk_bytes == 0 {
            return Err(BuildError::Zero {
                what: "chunk bytes",
            });
        }
        if self.row_group_frames == 0 {
            return Err(BuildError::Zero {
                what: "row group frames",
            });
        }
        // Frame offsets inside a chunk are u32; one frame may overshoot the limit.
        let max = (u32::MAX as usize) - crate::reader::MAX_RECORD;
        if self.chunk_bytes > max {
            return Err(BuildError::ChunkTooLarge {
                max,
                got: self.chunk_bytes,
            });
        }
        for (what, t) in [
            ("TCP", self.flows.tcp_timeout_ns),
            ("UDP", self.flows.udp_timeout_ns),
            ("other", self.flows.other_timeout_ns),
        ] {
            if t <= 0 {
                return Err(BuildError::FlowTimeout { what });
            }
        }
        let slots = self.slots.unwrap_or(self.jobs * 2).max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs)
            .thread_name(|i| format!("pcaplab-worker-{i}"))
            .build()?;
        let (give, take) = bounded(slots);
        for _ in 0..slots {
            // The channel has room for exactly `slots` tokens.
            let _ = give.send(());
        }
        Ok(Engine {
            pool,
            chunk_frames: self.chunk_frames,
            chunk_bytes: self.chunk_bytes,
            chunks_per_group: (self.row_group_frames / self.chunk_frames).max(1),
            flows: self.flows,
            fragments: self.fragments,
            slot_give: give,
            slot_take: take,
            spare: Spare::new(
                slots,
                2 * self.chunk_bytes
                    + self.chunk_frames * (std::mem::size_of::<crate::reader::FrameMeta>() + 4),
            ),
        })
    }
}

/// Converts captures; one engine (one thread pool, one memory budget) serves any number of
/// concurrent conversions.
pub struct Engine {
    pool: rayon::ThreadPool,
    chunk_frames: usize,
    chunk_bytes: usize,
    /// Chunks per Parquet row group of the packet table.
    chunks_per_group: usize,
    flows: FlowConfig,
    fragments: FragConfig,
    slot_give: Sender<()>,
    slot_take: Receiver<()>,
    /// Decoded chunks for the reader to fill again: their buffers (a few MiB each) allocated
    /// once per slot instead of once per chunk. Chunks whose buffers grew past the limit (a
    /// huge record) are dropped, not kept.
    spare: Spare<Chunk>,
}

/// Where one capture's outputs go; formats without a writer are not produced.
#[derive(Default)]
pub struct Outputs<'a> {
    pub parquet: Option<Box<dyn Write + Send + 'a>>,
    pub csv: Option<Box<dyn Write + Send + 'a>>,
    pub lab_csv: Option<Box<dyn Write + Send + 'a>>,
    pub flows: Option<Box<dyn Write + Send + 'a>>,
    pub flows_csv: Option<Box<dyn Write + Send + 'a>>,
    /// One range of a split capture: instead of flow rows, the range's flows as its merge
    /// needs them ([`crate::flows::parts`]); `flows` and `flows_csv` must be unset (the merge
    /// writes them, [`Engine::merge_flow_parts`]).
    pub flow_parts: Option<Box<dyn Write + Send + 'a>>,
    /// Track flows even without a flow output, for [`Summary::flows`] (the summary item's
    /// flow count and top flows). Flows are always tracked when a flow output is set.
    pub track_flows: bool,
    /// How much of the [`Report`]'s summary to count: all of it (the default) when a summary
    /// item is written, else the totals will do.
    pub counts: Counts,
}

impl<'a> Outputs<'a> {
    pub fn set(&mut self, format: Format, w: Box<dyn Write + Send + 'a>) {
        match format {
            Format::Parquet => self.parquet = Some(w),
            Format::Csv => self.csv = Some(w),
            Format::LabCsv => self.lab_csv = Some(w),
            Format::Flows => self.flows = Some(w),
            Format::FlowsCsv => self.flows_csv = Some(w),
        }
    }
}

/// What is known when a capture's outputs are chosen (see [`Engine::convert_with`]).
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub format: CaptureFormat,
    pub compression: Compression,
    /// The earliest timestamp of the first chunk of frames (ns since the epoch), if any.
    pub first_ts: Option<i64>,
}

impl Opened {
    /// What `reader` says, with `first`, its first chunk of frames.
    pub(crate) fn of(reader: &CaptureReader, first: &Chunk) -> Opened {
        Opened {
            format: reader.format(),
            compression: reader.compression(),
            first_ts: first
                .frames
                .iter()
                .map(|f| f.ts_ns)
                .filter(|&t| t != NO_TIMESTAMP)
                .min(),
        }
    }
}

/// Why the outputs of [`Engine::convert_with`] could not be created.
pub type OutputsError = Box<dyn std::error::Error + Send + Sync>;

/// What a conversion produced.
#[derive(Debug)]
pub struct Report {
    pub format: CaptureFormat,
    pub compression: Compression,
    pub summary: Summary,
    /// The capture is damaged: reading stopped here. Every frame before the damage was
    /// decoded and written, and the outputs are complete, valid files.
    pub damage: Option<ReadError>,
}

/// A conversion that could not run or could not write its outputs.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input is not a capture we can read; nothing was written.
    #[error("{name}: cannot read capture")]
    Open {
        name: String,
        #[source]
        source: ReadError,
    },
    /// An output could not be written (its content is incomplete and must be discarded).
    #[error("{name}: writing {format} output failed")]
    Write {
        name: String,
        format: &'static str,
        #[source]
        source: EncodeError,
    },
    /// The outputs could not be created; nothing was written.
    #[error("{name}: cannot create the outputs")]
    Outputs {
        name: String,
        #[source]
        source: OutputsError,
    },
    /// A split capture's flow part could not be read back (cut short, corrupt); the flow
    /// outputs are incomplete.
    #[error("{name}: merging the flows of its ranges failed")]
    FlowPart {
        name: String,
        #[source]
        source: PartError,
    },
    /// A bug: a worker panicked or built an invalid batch. The outputs are incomplete.
    #[error("{name}: internal error while decoding frames from {first_frame}: {message}")]
    Internal {
        name: String,
        first_frame: u64,
        message: String,
    },
}

/// One chunk in flight: taken from the engine's slots before the chunk is filled, given back
/// when its last holder lets go (the writer, once it has appended the chunk, and the packet
/// table's row group, once it has the chunk's rows).
struct Slot(Sender<()>);

impl Drop for Slot {
    fn drop(&mut self) {
        // The engine's take side lives as long as the engine.
        let _ = self.0.send(());
    }
}

type PacketGroups = RowGroups<Arc<Slot>>;

/// One chunk, encoded for every requested format but the packet table's Parquet (whose rows
/// went to its row group).
struct Encoded {
    summary: Summary,
    flows: Option<ShardedFlows>,
    csv: Option<Vec<u8>>,
    lab_csv: Option<Vec<u8>>,
    _slot: Arc<Slot>,
}

enum ChunkFailure {
    Encode(&'static str, EncodeError),
    /// A bug: a worker panicked or built an invalid batch.
    Internal(u64, String),
}

type ChunkResult = (u64, Result<Encoded, ChunkFailure>);

/// What every chunk of one conversion is encoded into.
struct ChunkOutputs<'a> {
    name: &'a str,
    spare: &'a Spare<Chunk>,
    parquet: Option<&'a PacketGroups>,
    csv: bool,
    lab_csv: bool,
    flows: Option<&'a FlowConfig>,
    counts: Counts,
}

fn encode_chunk(
    to: &ChunkOutputs<'_>,
    seq: u64,
    chunk: Chunk,
    slot: Arc<Slot>,
) -> Result<Encoded, ChunkFailure> {
    let first_frame = chunk.first_frame;
    let run = || {
        // Without a packet output the rows are not built, only the statistics and flows.
        let rows = Rows::wanted(to.parquet.is_some() || to.csv || to.lab_csv);
        let decoded = decode_chunk_as(to.name, &chunk, to.flows, rows, to.counts)
            .map_err(|e| ChunkFailure::Internal(first_frame, e.to_string()))?;
        to.spare.give(chunk);
        let batch = &decoded.batch;
        let csv = to
            .csv
            .then(|| encode_csv(batch))
            .transpose()
            .map_err(|e| ChunkFailure::Encode("csv", e.into()))?;
        let lab_csv = to
            .lab_csv
            .then(|| encode_lab_csv(batch))
            .transpose()
            .map_err(|e| ChunkFailure::Encode("lab-csv", e.into()))?;
        if let Some(groups) = to.parquet {
            groups.offer(seq, first_frame, decoded.batch, Arc::clone(&slot));
        }
        Ok(Encoded {
            summary: decoded.summary,
            flows: decoded.flows.map(ChunkFlows::into_shards),
            csv,
            lab_csv,
            _slot: slot,
        })
    };
    let r = match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(panic) => Err(ChunkFailure::Internal(first_frame, panic_message(&*panic))),
    };
    if r.is_err()
        && let Some(groups) = to.parquet
    {
        // Its row group can never be complete: let the batches waiting for it go.
        groups.fail();
    }
    r
}

/// A bug, reported as a write error of the flow outputs.
fn internal(message: String) -> EncodeError {
    EncodeError::Parquet(parquet::errors::ParquetError::General(message))
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// One row group of flows, encoded for each flow output.
type FlowGroup =
    Result<(Option<Vec<ArrowColumnChunk>>, Option<Vec<u8>>), (&'static str, EncodeError)>;

/// Flow row groups being encoded on the pool while the writer goes on; beyond it, the writer
/// waits for the oldest (two gave the same speed on the flood and 7 MiB more memory).
const FLOW_GROUPS_IN_FLIGHT: usize = 1;

/// Flows waiting to make a row group: ranges (in file order) of batches handed on by the
/// table, which the row group's task reads in place.
#[derive(Default)]
struct PendingFlows {
    ranges: Vec<(Arc<InFileOrder>, std::ops::Range<usize>)>,
    rows: usize,
}

/// The flow side of one conversion: the live flows and the flow outputs.
struct FlowSinks<'a> {
    capture: Arc<str>,
    cfg: FlowConfig,
    table: FlowTable,
    parquet: Option<ParquetSink<Box<dyn Write + Send + 'a>>>,
    csv: Option<Box<dyn Write + Send + 'a>>,
    /// A range of a split capture: its flows go here instead of to `parquet` and `csv`.
    parts: Option<PartWriter<Box<dyn Write + Send + 'a>>>,
    /// Retired flows not yet handed to the pool, [`FLOW_ROW_GROUP`] at a time: ranges of the
    /// batches the table handed on, where the flows lie (a batch is freed with its last range).
    pending: PendingFlows,
    /// Row groups being encoded on the pool, oldest first (appended in this order).
    encoding: VecDeque<Receiver<FlowGroup>>,
}

impl FlowSinks<'_> {
    /// Fold a chunk's flows in and write those that ended. A chunk of many flows (a flood, a
    /// scan) is merged on `pool`, shard by shard; a chunk of ordinary traffic on this thread,
    /// which is quicker than the hand-off.
    fn merge(
        &mut self,
        pool: &rayon::ThreadPool,
        chunk: ShardedFlows,
    ) -> Result<(), (&'static str, EncodeError)> {
        let table = &mut self.table;
        let retired = if chunk.merges_in_parallel() {
            pool.install(|| {
                table.merge(chunk);
                table.take_retired()
            })
        } else {
            table.merge(chunk);
            table.take_retired()
        };
        self.write(pool, retired, false)
    }

    /// Queue `flows` for writing. Each full row group (everything pending if `all`) is built
    /// (Community IDs hashed, addresses formatted) and encoded by a task on `pool` while this
    /// thread goes on; the encoded groups are appended in order as they are ready, with at
    /// most [`FLOW_GROUPS_IN_FLIGHT`] outstanding.
    fn write(
        &mut self,
        pool: &rayon::ThreadPool,
        flows: InFileOrder,
        all: bool,
    ) -> Result<(), (&'static str, EncodeError)> {
        if let Some(p) = &mut self.parts {
            for f in flows.iter() {
                p.write(f, false).map_err(part_error)?;
            }
            return Ok(());
        }
        if self.parquet.is_none() && self.csv.is_none() {
            return Ok(());
        }
        // The flows stay where the table put them: a row group is ranges of batches.
        let flows = Arc::new(flows);
        let mut at = 0;
        loop {
            let take = (FLOW_ROW_GROUP - self.pending.rows).min(flows.len() - at);
            if take > 0 {
                self.pending
                    .ranges
                    .push((Arc::clone(&flows), at..at + take));
                self.pending.rows += take;
                at += take;
            }
            // A full group goes; the last, partial one only at the end.
            let last = all && self.pending.rows > 0;
            if self.pending.rows < FLOW_ROW_GROUP && !last {
                break;
            }
            let group = std::mem::take(&mut self.pending);
            self.spawn_group(pool, group);
            while self.encoding.len() > FLOW_GROUPS_IN_FLIGHT {
                self.append_oldest()?;
            }
        }
        while self.encoding.front().is_some_and(|rx| !rx.is_empty()) {
            self.append_oldest()?;
        }
        if all {
            while !self.encoding.is_empty() {
                self.append_oldest()?;
            }
        }
        Ok(())
    }

    fn spawn_group(&mut self, pool: &rayon::ThreadPool, group: PendingFlows) {
        let (tx, rx) = bounded(1);
        let capture = Arc::clone(&self.capture);
        let cfg = self.cfg;
        let encoder = self.parquet.as_ref().map(|p| p.encoder());
        let want_csv = self.csv.is_some();
        pool.spawn(move || {
            let run = || -> FlowGroup {
                let internal =
                    |e: arrow_schema::ArrowError| ("flows", EncodeError::Parquet(e.into()));
                let rows: Vec<&Flow> = group
                    .ranges
                    .iter()
                    .flat_map(|(flows, range)| flows.range(range.clone()))
                    .collect();
                let batch = flows_batch(&capture, &cfg, rows.into_iter()).map_err(internal)?;
                drop(group);
                let parquet = encoder
                    .as_ref()
                    .map(|e| encode_parquet(e, &batch))
                    .transpose()
                    .map_err(|e| ("flows", e))?;
                let csv = want_csv
                    .then(|| encode_csv(&batch))
                    .transpose()
                    .map_err(|e| ("flows-csv", EncodeError::from(e)))?;
                Ok((parquet, csv))
            };
            let r = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
                Err((
                    "flows",
                    internal(format!(
                        "encoding flow rows panicked: {}",
                        panic_message(&*panic)
                    )),
                ))
            });
            // The writer waits for every group it spawned unless it failed and went away.
            let _ = tx.send(r);
        });
        self.encoding.push_back(rx);
    }

    /// Wait for the oldest group being encoded and append it.
    fn append_oldest(&mut self) -> Result<(), (&'static str, EncodeError)> {
        let Some(rx) = self.encoding.pop_front() else {
            return Ok(());
        };
        let (parquet, csv) = rx
            .recv()
            .map_err(|_| ("flows", internal("a flow row group was lost".into())))??;
        if let (Some(sink), Some(chunks)) = (&mut self.parquet, parquet) {
            sink.append(chunks).map_err(|e| ("flows", e))?;
        }
        if let (Some(w), Some(bytes)) = (&mut self.csv, csv) {
            w.write_all(&bytes).map_err(|e| ("flows-csv", e.into()))?;
        }
        Ok(())
    }

    /// Finish the flow outputs: the flow totals, or for a range of a split capture (whose
    /// live flows are written open, to be merged), none.
    fn finish(
        mut self,
        pool: &rayon::ThreadPool,
    ) -> Result<Option<FlowStats>, (&'static str, EncodeError)> {
        if let Some(mut p) = self.parts.take() {
            for f in self.table.take_live().iter() {
                p.write(f, true).map_err(part_error)?;
            }
            p.finish(self.table.now()).map_err(part_error)?;
            return Ok(None);
        }
        let (rest, stats) = pool.install(|| self.table.finish());
        self.write(pool, rest, true)?;
        if let Some(sink) = self.parquet {
            let mut w = sink.finish().map_err(|e| ("flows", e))?;
            w.flush().map_err(|e| ("flows", e.into()))?;
        }
        if let Some(mut w) = self.csv {
            w.flush().map_err(|e| ("flows-csv", e.into()))?;
        }
        Ok(Some(stats))
    }
}

/// A flow part that could not be written, as the engine's write errors say it.
fn part_error(e: PartError) -> (&'static str, EncodeError) {
    let e = match e {
        PartError::Write(e) => e,
        other => std::io::Error::other(other),
    };
    ("flow-parts", e.into())
}

/// The output side of one conversion, owned by its writer thread.
struct Sinks<'a> {
    parquet: Option<ParquetSink<Box<dyn Write + Send + 'a>>>,
    csv: Option<Box<dyn Write + Send + 'a>>,
    lab_csv: Option<Box<dyn Write + Send + 'a>>,
    flows: Option<FlowSinks<'a>>,
}

impl Sinks<'_> {
    fn append(
        &mut self,
        pool: &rayon::ThreadPool,
        e: Encoded,
    ) -> Result<(), (&'static str, EncodeError)> {
        if let (Some(f), Some(chunk)) = (&mut self.flows, e.flows) {
            f.merge(pool, chunk)?;
        }
        if let (Some(w), Some(bytes)) = (&mut self.csv, e.csv) {
            w.write_all(&bytes).map_err(|e| ("csv", e.into()))?;
        }
        if let (Some(w), Some(bytes)) = (&mut self.lab_csv, e.lab_csv) {
            w.write_all(&bytes).map_err(|e| ("lab-csv", e.into()))?;
        }
        Ok(())
    }

    /// Finish every output; the flow totals when flows were tracked.
    fn finish(
        self,
        pool: &rayon::ThreadPool,
    ) -> Result<Option<FlowStats>, (&'static str, EncodeError)> {
        let stats = self.flows.map(|f| f.finish(pool)).transpose()?.flatten();
        if let Some(sink) = self.parquet {
            let mut w = sink.finish().map_err(|e| ("parquet", e))?;
            w.flush().map_err(|e| ("parquet", e.into()))?;
        }
        if let Some(mut w) = self.csv {
            w.flush().map_err(|e| ("csv", e.into()))?;
        }
        if let Some(mut w) = self.lab_csv {
            w.flush().map_err(|e| ("lab-csv", e.into()))?;
        }
        Ok(stats)
    }
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Most frames and packet bytes per chunk.
    pub(crate) fn chunk_limits(&self) -> (usize, usize) {
        (self.chunk_frames, self.chunk_bytes)
    }

    /// Run `f` on the engine's worker threads (for callers that parallelise their own work).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Convert one capture. `name` is what the `capture` column says (and what errors name).
    ///
    /// Call it from any thread except the engine's own workers (it blocks while chunks are in
    /// flight). Several calls may run at once from different threads; they share the workers
    /// and the memory budget.
    pub fn convert(
        &self,
        name: &str,
        input: Box<dyn Read + Send>,
        outputs: Outputs<'_>,
    ) -> Result<Report, ConvertError> {
        self.convert_with(name, input, |_| Ok(outputs))
    }

    /// Like [`Engine::convert`], but the outputs are chosen once the capture has been
    /// recognised and its first chunk framed: `outputs` sees the format and the first
    /// timestamp (to put the outputs in a date partition, say). It is not called when the
    /// input is not a capture; its error becomes [`ConvertError::Outputs`].
    pub fn convert_with<'a>(
        &self,
        name: &str,
        input: Box<dyn Read + Send>,
        outputs: impl FnOnce(&Opened) -> Result<Outputs<'a>, OutputsError>,
    ) -> Result<Report, ConvertError> {
        let reader = CaptureReader::new(input).map_err(|source| ConvertError::Open {
            name: name.to_owned(),
            source,
        })?;
        self.convert_reader(name, reader, outputs)
    }

    /// Like [`Engine::convert_with`], from a reader already open: one range of a split
    /// capture ([`CaptureReader::resume`]), say.
    pub fn convert_reader<'a>(
        &self,
        name: &str,
        mut reader: CaptureReader,
        outputs: impl FnOnce(&Opened) -> Result<Outputs<'a>, OutputsError>,
    ) -> Result<Report, ConvertError> {
        // The first chunk is framed before any output exists; it takes its slot as usual.
        let first_slot = self.take_slot();
        let mut first = self.spare.take();
        let first_fill = reader.fill(&mut first, self.chunk_frames, self.chunk_bytes);
        let mut defrag = Defragmenter::new(self.fragments);
        let opened = Opened::of(&reader, &first);
        let outputs = match outputs(&opened) {
            Ok(o) => o,
            Err(source) => {
                drop(first_slot);
                return Err(ConvertError::Outputs {
                    name: name.to_owned(),
                    source,
                });
            }
        };
        let mut first = Some((first_slot, first, first_fill));
        let write_err = |(format, source): (&'static str, EncodeError)| ConvertError::Write {
            name: name.to_owned(),
            format,
            source,
        };
        if outputs.flow_parts.is_some() && (outputs.flows.is_some() || outputs.flows_csv.is_some())
        {
            drop(first);
            return Err(ConvertError::Outputs {
                name: name.to_owned(),
                source: "a range of a split capture writes flow parts, not flow rows (the merge writes those)".into(),
            });
        }
        // Without flow rows (the summary item's flow totals only), the retired flows are
        // counted and dropped, not kept and put in file order for nothing.
        let flow_rows = Rows::wanted(
            outputs.flows.is_some() || outputs.flows_csv.is_some() || outputs.flow_parts.is_some(),
        );
        let track_flows = outputs.track_flows || flow_rows == Rows::Build;
        let shared_name: Arc<str> = Arc::from(name);
        let flows = if track_flows {
            let mut csv = outputs.flows_csv;
            if let Some(w) = &mut csv {
                w.write_all(&csv_header_of(&flow_schema()))
                    .map_err(|e| write_err(("flows-csv", e.into())))?;
            }
            Some(FlowSinks {
                capture: Arc::clone(&shared_name),
                cfg: self.flows,
                table: FlowTable::new(self.flows, flow_rows),
                parquet: outputs
                    .flows
                    .map(|w| flows_parquet_sink(w, name))
                    .transpose()
                    .map_err(|e| write_err(("flows", e)))?,
                csv,
                parts: outputs
                    .flow_parts
                    .map(PartWriter::new)
                    .transpose()
                    .map_err(|e| write_err(part_error(e)))?,
                pending: PendingFlows::default(),
                encoding: VecDeque::new(),
            })
        } else {
            None
        };
        let mut sinks = Sinks {
            parquet: outputs
                .parquet
                .map(|w| ParquetSink::new(w, name))
                .transpose()
                .map_err(|e| write_err(("parquet", e)))?,
            csv: outputs.csv,
            lab_csv: outputs.lab_csv,
            flows,
        };
        if let Some(w) = &mut sinks.csv {
            w.write_all(&csv_header())
                .map_err(|e| write_err(("csv", e.into())))?;
        }
        if let Some(w) = &mut sinks.lab_csv {
            w.write_all(LAB_CSV_HEADER)
                .map_err(|e| write_err(("lab-csv", e.into())))?;
        }
        let (groups_tx, groups_rx) = unbounded::<GroupDone>();
        // A row group's columns are written in as many parts as there are workers.
        let groups = sinks
            .parquet
            .as_ref()
            .map(|p| {
                PacketGroups::new(
                    p.encoder(),
                    crate::columns::schema(),
                    self.chunks_per_group,
                    self.pool.current_num_threads(),
                    groups_tx,
                )
            })
            .transpose()
            .map_err(|e| write_err(("parquet", e)))?;
        let per_group = groups.as_ref().map(|g| g.per_group());
        let (want_csv, want_lab) = (sinks.csv.is_some(), sinks.lab_csv.is_some());
        let failed = AtomicBool::new(false);
        let (results_tx, results_rx) = unbounded::<ChunkResult>();

        std::thread::scope(|scope| {
            let writer = scope
                .spawn(|| self.write_in_order(results_rx, groups_rx, per_group, sinks, &failed));
            let to = ChunkOutputs {
                name: &shared_name,
                spare: &self.spare,
                parquet: groups.as_ref(),
                csv: want_csv,
                lab_csv: want_lab,
                flows: track_flows.then_some(&self.flows),
                counts: outputs.counts,
            };
            let mut damage = None;
            let mut seq = 0u64;
            self.pool.in_place_scope(|tasks| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let (slot, chunk, filled) = match first.take() {
                        Some(first) => first,
                        None => {
                            let slot = self.take_slot();
                            let mut chunk = self.spare.take();
                            let filled =
                                reader.fill(&mut chunk, self.chunk_frames, self.chunk_bytes);
                            (slot, chunk, filled)
                        }
                    };
                    let more = match filled {
                        Ok(more) => more,
                        Err(e) => {
                            damage = Some(e);
                            false
                        }
                    };
                    let mut chunk = chunk;
                    defrag.scan(&mut chunk);
                    if !more {
                        defrag.finish(&mut chunk);
                    }
                    if chunk.frames.is_empty() && chunk.frags.is_empty() {
                        self.spare.give(chunk);
                        drop(slot);
                    } else {
                        let tx = results_tx.clone();
                        let this_seq = seq;
                        seq += 1;
                        let to = &to;
                        tasks.spawn(move |_| {
                            let r = encode_chunk(to, this_seq, chunk, slot);
                            // The writer outlives every task: it stops only when all senders,
                            // including this one, are gone.
                            let _ = tx.send((this_seq, r));
                        });
                    }
                    if !more {
                        break;
                    }
                }
                // Every chunk has been handed out: the last row group may close once its
                // batches are written.
                if let Some(g) = to.parquet {
                    g.finish(seq);
                }
            });
            // The last senders to the writer: it finishes once they are gone.
            drop(groups);
            drop(results_tx);
            let written = writer.join();
            let (summary, outcome) = match written {
                Ok(r) => r,
                Err(_) => (
                    Summary::default(),
                    Err(ChunkFailure::Internal(0, "writer thread panicked".into())),
                ),
            };
            match outcome {
                Ok(()) => Ok(Report {
                    format: reader.format(),
                    compression: reader.compression(),
                    summary,
                    damage,
                }),
                Err(ChunkFailure::Encode(format, source)) => Err(ConvertError::Write {
                    name: name.to_owned(),
                    format,
                    source,
                }),
                Err(ChunkFailure::Internal(first_frame, message)) => Err(ConvertError::Internal {
                    name: name.to_owned(),
                    first_frame,
                    message,
                }),
            }
        })
    }

    /// The merge of a split capture's flows: fold the ranges' flow parts (written by
    /// [`Engine::convert_reader`] with [`Outputs::flow_parts`]), in file order, into the flow
    /// outputs (`flows`: Parquet, `flows_csv`: CSV), as one conversion of the whole capture
    /// would have written them (see [`crate::flows::parts`]); returns the flow totals.
    ///
    /// Memory is that of one conversion's live flows: a part is read flow by flow.
    pub fn merge_flow_parts<'a>(
        &self,
        name: &str,
        parts: impl IntoIterator<Item = Box<dyn Read + Send + 'a>>,
        flows: Option<Box<dyn Write + Send + 'a>>,
        flows_csv: Option<Box<dyn Write + Send + 'a>>,
    ) -> Result<FlowStats, ConvertError> {
        let write_err = |(format, source): (&'static str, EncodeError)| ConvertError::Write {
            name: name.to_owned(),
            format,
            source,
        };
        let mut csv = flows_csv;
        if let Some(w) = &mut csv {
            w.write_all(&csv_header_of(&flow_schema()))
                .map_err(|e| write_err(("flows-csv", e.into())))?;
        }
        let mut sinks = FlowSinks {
            capture: Arc::from(name),
            cfg: self.flows,
            table: FlowTable::new(self.flows, Rows::wanted(flows.is_some() || csv.is_some())),
            parquet: flows
                .map(|w| flows_parquet_sink(w, name))
                .transpose()
                .map_err(|e| write_err(("flows", e)))?,
            csv,
            parts: None,
            pending: PendingFlows::default(),
            encoding: VecDeque::new(),
        };
        let read_err = |source: PartError| ConvertError::FlowPart {
            name: name.to_owned(),
            source,
        };
        for (index, part) in parts.into_iter().enumerate() {
            let mut reader = PartReader::new(part, index).map_err(read_err)?;
            let mut n = 0usize;
            while let Some((flow, open)) = reader.next_flow().map_err(read_err)? {
                sinks.table.merge_part(flow, open);
                n += 1;
                if n.is_multiple_of(FLOW_ROW_GROUP) {
                    let retired = sinks.table.take_retired();
                    sinks.write(&self.pool, retired, false).map_err(write_err)?;
                }
            }
            let table = &mut sinks.table;
            let max_ts = reader.max_ts();
            self.pool.install(|| table.range_done(max_ts));
            let retired = sinks.table.take_retired();
            sinks.write(&self.pool, retired, false).map_err(write_err)?;
        }
        match sinks.finish(&self.pool).map_err(write_err)? {
            Some(stats) => Ok(stats),
            None => Err(ConvertError::Internal {
                name: name.to_owned(),
                first_frame: 0,
                message: "the flow merge wrote flow parts".into(),
            }),
        }
    }

    /// Wait for a slot. The engine holds the other side of the channel for as long as it
    /// lives, so this cannot fail.
    fn take_slot(&self) -> Arc<Slot> {
        let _ = self.slot_take.recv();
        Arc::new(Slot(self.slot_give.clone()))
    }

    /// The writer thread: append chunks and the packet table's row groups, each in order,
    /// and finish the sinks. After a failure it keeps draining (dropping what it gets, which
    /// gives the slots back) so that nothing blocks. The packet table has a row group per
    /// `per_group` chunks, when it is written.
    fn write_in_order(
        &self,
        results: Receiver<ChunkResult>,
        groups: Receiver<GroupDone>,
        per_group: Option<u64>,
        mut sinks: Sinks<'_>,
        failed: &AtomicBool,
    ) -> (Summary, Result<(), ChunkFailure>) {
        let mut summary = Summary::default();
        let mut pending: BTreeMap<u64, Result<Encoded, ChunkFailure>> = BTreeMap::new();
        let mut pending_groups = BTreeMap::new();
        let (mut next, mut next_group) = (0u64, 0u64);
        let mut outcome: Result<(), ChunkFailure> = Ok(());
        let fail = |outcome: &mut Result<(), ChunkFailure>, e: ChunkFailure| {
            if outcome.is_ok() {
                *outcome = Err(e);
                failed.store(true, Ordering::Relaxed);
            }
        };
        // A channel whose senders are all gone is replaced by one that never delivers.
        let (no_results, no_groups) = (crossbeam_channel::never(), crossbeam_channel::never());
        let (mut results, mut groups) = (Some(results), Some(groups));
        while results.is_some() || groups.is_some() {
            crossbeam_channel::select! {
                recv(results.as_ref().unwrap_or(&no_results)) -> r => match r {
                    Ok((seq, r)) => {
                        pending.insert(seq, r);
                    }
                    Err(_) => results = None,
                },
                recv(groups.as_ref().unwrap_or(&no_groups)) -> g => match g {
                    Ok((index, g)) => {
                        pending_groups.insert(index, g);
                    }
                    Err(_) => groups = None,
                },
            }
            while let Some(r) = pending.remove(&next) {
                next += 1;
                match r {
                    Ok(encoded) if outcome.is_ok() => {
                        summary.merge(&encoded.summary);
                        if let Err((f, e)) = sinks.append(&self.pool, encoded) {
                            fail(&mut outcome, ChunkFailure::Encode(f, e));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => fail(&mut outcome, e),
                }
            }
            while let Some(g) = pending_groups.remove(&next_group) {
                next_group += 1;
                let appended = g.map_err(|e| match e {
                    GroupError::Encode(e) => ChunkFailure::Encode("parquet", e),
                    GroupError::Panic {
                        first_frame,
                        message,
                    } => ChunkFailure::Internal(first_frame, message),
                });
                let appended = appended.and_then(|chunks| match &mut sinks.parquet {
                    Some(sink) if outcome.is_ok() => sink
                        .append(chunks)
                        .map_err(|e| ChunkFailure::Encode("parquet", e)),
                    _ => Ok(()),
                });
                if let Err(e) = appended {
                    fail(&mut outcome, e);
                }
            }
        }
        if outcome.is_ok()
            && let Some(expected) = per_group.map(|p| next.div_ceil(p))
            && expected != next_group
        {
            fail(
                &mut outcome,
                ChunkFailure::Internal(
                    0,
                    format!("{next} chunks made {next_group} Parquet row groups, not {expected}"),
                ),
            );
        }
        if outcome.is_ok() {
            match sinks.finish(&self.pool) {
                Ok(flows) => summary.flows = flows,
                Err((f, e)) => outcome = Err(ChunkFailure::Encode(f, e)),
            }
        }
        (summary, outcome)
    }
}
