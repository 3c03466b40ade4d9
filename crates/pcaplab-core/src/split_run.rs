//! One capture, many workers, on one machine: plan → count → convert each range → merge.
//!
//! The steps are the ones a fan-out over many machines runs (see [`crate::split`]); here they
//! run on threads of one process, which is how they are tested, and which uses a big machine
//! the way many small ones would be used:
//!
//! 1. **Plan**: cut the object into byte ranges ([`split::plan`]).
//! 2. **Count**: each range finds its first record boundary ([`split::sync`]) and walks the
//!    record headers to the first record past its end ([`split::walk`]), in parallel. The
//!    walks must join up ([`split::check_contiguous`]); their frame counts give each range the
//!    number of its first frame.
//! 3. **Convert**: each range converts its frames with [`Engine::convert_reader`], into its own
//!    outputs (one file per range of each packet output) and a flow part.
//! 4. **Merge**: the flow parts, in file order, become the flow outputs
//!    ([`Engine::merge_flow_parts`]); the ranges' summaries, in file order, the capture's.
//!
//! The rows are the rows of one conversion of the whole capture, except where state crosses a
//! range boundary as it crosses no chunk boundary: an IP datagram whose fragments straddle a
//! boundary is not reassembled (each side's fragments are rows as they are). Flows are merged
//! across boundaries exactly (as long as no flow is evicted); the summary's bounded lists
//! (talkers, names) are pruned per range before they are merged.

use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::convert::{ConvertError, Engine, Opened, Outputs, OutputsError, Report};
use crate::reader::{CaptureFormat, CaptureReader, Chunk, Compression, ReadError};
use crate::split::{self, ByteRange, Preamble, SplitError, SplitPlan, Walk};
use crate::summary::Summary;

/// Where a split conversion reads the capture from: byte ranges of one object.
pub trait RangeSource: Sync {
    /// The object's length in bytes.
    fn size(&self) -> u64;
    /// A reader of the object's bytes from `start` to `end` (to the end of the object when
    /// `None`).
    fn open(&self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send>>;
}

/// An in-memory object (tests, small captures).
impl RangeSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn open(&self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send>> {
        let len = self.len();
        let start = usize::try_from(start).unwrap_or(len).min(len);
        let end = end.map_or(len, |e| usize::try_from(e).unwrap_or(len).min(len));
        Ok(Box::new(io::Cursor::new(
            self[start..end.max(start)].to_vec(),
        )))
    }
}

/// Why a split conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum SplitRunError {
    #[error("{name}: cannot split")]
    Split {
        name: String,
        #[source]
        source: SplitError,
    },
    #[error("{name}: reading bytes {start}.. failed")]
    Read {
        name: String,
        start: u64,
        #[source]
        source: io::Error,
    },
    #[error("{name}: range {index} (bytes {start}..{end})")]
    Range {
        name: String,
        index: usize,
        start: u64,
        end: u64,
        #[source]
        source: Box<ConvertError>,
    },
    /// A range other than the last is damaged: a whole conversion would stop there, but the
    /// later ranges were converted. The caller converts the capture whole instead.
    #[error("{name}: range {index} is damaged; convert the capture whole")]
    Damaged {
        name: String,
        index: usize,
        #[source]
        source: Box<ReadError>,
    },
    #[error("{name}: merging the ranges' flows")]
    Merge {
        name: String,
        #[source]
        source: Box<ConvertError>,
    },
}

/// How a split conversion went: the capture's report (its summary merged from the ranges',
/// with the flow totals of the merge) and each range's part.
#[derive(Debug)]
pub struct SplitReport {
    pub report: Report,
    pub plan: SplitPlan,
    pub ranges: Vec<RangeDone>,
    /// Parts written: the ranges that hold a record start (the first always counts).
    pub parts: usize,
    /// Time spent planning and counting, converting the ranges, and merging.
    pub timings: [Duration; 3],
}

/// One range, counted (and converted, unless it holds no record start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeDone {
    pub range: ByteRange,
    /// Where its first record starts, and the number of that frame.
    pub first_record: u64,
    pub first_frame: u64,
    pub frames: u64,
    /// Its own synchronisation found another first record than the previous range's walk
    /// ended at (bytes inside a record that looked like a chain of headers): it was walked
    /// again from the true one.
    pub resynchronised: bool,
}

/// What a split conversion writes, chosen by the caller per range.
pub struct SplitOutputs<'f, 'a> {
    /// The packet outputs of part `n`: the ranges that hold a record start, numbered from 0
    /// in file order (`flows`, `flows_csv` and `flow_parts` unset).
    #[allow(clippy::type_complexity)]
    pub range: &'f (dyn Fn(usize, &Opened) -> Result<Outputs<'a>, OutputsError> + Sync),
    /// Where range `index` writes its flow part, and where the merge reads it back.
    #[allow(clippy::type_complexity)]
    pub part_writer: &'f (dyn Fn(usize) -> io::Result<Box<dyn Write + Send + 'a>> + Sync),
    #[allow(clippy::type_complexity)]
    pub part_reader: &'f (dyn Fn(usize) -> io::Result<Box<dyn Read + Send + 'a>> + Sync),
    /// Track flows (for the summary's flow totals) even without a flow output.
    pub track_flows: bool,
    /// The flow outputs (`flows`, `flows_csv` of the [`Outputs`] returned; the rest is
    /// ignored), chosen once every range is converted, before the merge.
    #[allow(clippy::type_complexity)]
    pub flows: &'f (dyn Fn(&Opened) -> Result<Outputs<'a>, OutputsError> + Sync),
    /// Whether `flows` gives any flow output (flows are then tracked).
    pub flow_outputs: bool,
}

/// The head of the object read to plan: the file header or first section header block.
const HEAD: u64 = 1 << 20;

/// Convert the capture `source` holds in ranges of `range_bytes`, `concurrency` ranges at a
/// time on `engine`.
pub fn convert_split(
    engine: &Engine,
    name: &str,
    source: &dyn RangeSource,
    range_bytes: u64,
    concurrency: usize,
    outputs: SplitOutputs<'_, '_>,
) -> Result<SplitReport, SplitRunError> {
    let read_err = |start: u64| read_error(name, start);
    let started = Instant::now();
    let Counted {
        plan,
        walks,
        ranges,
    } = count(name, source, range_bytes, concurrency)?;
    let opened = opened_of(engine, name, source)?;

    let counted = Instant::now();
    // Convert: every range that owns a record, into its outputs and its flow part.
    let track_flows = outputs.track_flows || outputs.flow_outputs;
    let tasks = tasks(&walks, &ranges);
    let reports = parallel(&tasks, concurrency, |task| {
        convert_range(engine, name, source, task, |_| {
            let mut o = (outputs.range)(task.part, &opened)?;
            if track_flows {
                o.flow_parts = Some((outputs.part_writer)(task.index)?);
            }
            Ok(o)
        })
    })?;

    let converted = Instant::now();
    // Merge: the summaries and the flows, in file order.
    let (mut summary, damage) = fold_summaries(
        tasks
            .iter()
            .zip(reports)
            .map(|(t, r)| (t.index, r.summary, r.damage)),
    )
    .map_err(|(index, source)| SplitRunError::Damaged {
        name: name.to_owned(),
        index,
        source: Box::new(source),
    })?;
    if track_flows {
        let parts = tasks
            .iter()
            .map(|t| (outputs.part_reader)(t.index))
            .collect::<io::Result<Vec<_>>>()
            .map_err(read_err(0))?;
        let flow_outputs = (outputs.flows)(&opened).map_err(|source| SplitRunError::Merge {
            name: name.to_owned(),
            source: Box::new(ConvertError::Outputs {
                name: name.to_owned(),
                source,
            }),
        })?;
        let stats = engine
            .merge_flow_parts(name, parts, flow_outputs.flows, flow_outputs.flows_csv)
            .map_err(|source| SplitRunError::Merge {
                name: name.to_owned(),
                source: Box::new(source),
            })?;
        summary.flows = Some(stats);
    }
    Ok(SplitReport {
        report: Report {
            format: plan.format,
            compression: Compression::None,
            summary,
            damage,
        },
        plan,
        ranges,
        parts: tasks.len(),
        timings: [counted - started, converted - counted, converted.elapsed()],
    })
}

/// One range's work, as a worker on another machine needs it: where its records start and
/// end, the number of its first frame, the section state there, and which part it writes.
/// Made by [`tasks`] from the count pass; serialisable, so a planner can hand it on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeTask {
    /// The range's index in the plan, and the number of the part it writes (the ranges that
    /// own a record start, numbered from 0 in file order).
    pub index: usize,
    pub part: usize,
    /// The range's bytes as planned.
    pub start: u64,
    pub end: u64,
    /// Where its first record starts, and that frame's number.
    pub first_record: u64,
    pub first_frame: u64,
    /// Its frames, as counted.
    pub frames: u64,
    /// The reader's state at `first_record`.
    pub state: Preamble,
}

/// The ranges that own a record start (the first always does, so that an empty capture still
/// has its part), numbered as parts.
pub fn tasks(walks: &[Walk], ranges: &[RangeDone]) -> Vec<RangeTask> {
    walks
        .iter()
        .zip(ranges)
        .enumerate()
        .filter(|(i, (w, _))| *i == 0 || !w.owns_nothing())
        .enumerate()
        .map(|(part, (index, (w, r)))| RangeTask {
            index,
            part,
            start: r.range.start,
            end: r.range.end,
            first_record: r.first_record,
            first_frame: r.first_frame,
            frames: r.frames,
            state: w.state_at_start.clone(),
        })
        .collect()
}

/// Step 3 for one range: convert the frames of `task` (read from `source`) into the outputs
/// `outputs` gives, exactly as a whole conversion converts them.
pub fn convert_range<'a>(
    engine: &Engine,
    name: &str,
    source: &dyn RangeSource,
    task: &RangeTask,
    outputs: impl FnOnce(&Opened) -> Result<Outputs<'a>, OutputsError>,
) -> Result<Report, SplitRunError> {
    let range_err = |source| SplitRunError::Range {
        name: name.to_owned(),
        index: task.index,
        start: task.start,
        end: task.end,
        source: Box::new(source),
    };
    let input = source
        .open(task.first_record, None)
        .map_err(read_error(name, task.first_record))?;
    let reader = CaptureReader::resume(
        &task.state,
        input,
        task.first_record,
        task.first_frame,
        task.end,
    )
    .map_err(|source| {
        range_err(ConvertError::Open {
            name: name.to_owned(),
            source,
        })
    })?;
    engine
        .convert_reader(name, reader, outputs)
        .map_err(range_err)
}

/// Step 4's summary: the ranges' summaries (each with its range index and damage), in file
/// order, merged into the capture's. A whole conversion stops at damage, so damage in a range
/// before the last means the later ranges hold frames it would not have read: that range's
/// index and damage are the error (the caller converts the capture whole).
pub fn fold_summaries<D>(
    ranges: impl IntoIterator<Item = (usize, Summary, Option<D>)>,
) -> Result<(Summary, Option<D>), (usize, D)> {
    let mut summary = Summary::default();
    let mut damage: Option<(usize, D)> = None;
    for (index, s, d) in ranges {
        if let Some(earlier) = damage.take() {
            return Err(earlier);
        }
        summary.merge(&s);
        damage = d.map(|d| (index, d));
    }
    Ok((summary, damage.map(|(_, d)| d)))
}

/// A range's summary as bytes (postcard in zstd), for a merge on another machine.
pub fn encode_summary(summary: &Summary) -> io::Result<Vec<u8>> {
    let bytes = postcard::to_stdvec(summary).map_err(io::Error::other)?;
    zstd::encode_all(&bytes[..], 3)
}

/// The most a range's summary takes decoded: its maps are bounded (talkers, names, ports,
/// timeline), so more is not a summary.
const MAX_SUMMARY: u64 = 64 << 20;

/// A range's summary read back from [`encode_summary`]'s bytes.
pub fn decode_summary(bytes: &[u8]) -> io::Result<Summary> {
    let mut plain = Vec::new();
    zstd::Decoder::new(bytes)?
        .take(MAX_SUMMARY + 1)
        .read_to_end(&mut plain)?;
    if plain.len() as u64 > MAX_SUMMARY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_SUMMARY} bytes decoded: not a range's summary"),
        ));
    }
    postcard::from_bytes(&plain).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The section state after the records of `head` (the object's first bytes) that it holds
/// whole: pcapng's interface description blocks at the start of the file, say; the file
/// header's state if they cannot be walked.
fn head_state(preamble: &Preamble, head: &[u8]) -> Preamble {
    let Ok(at) = usize::try_from(preamble.offset) else {
        return preamble.clone();
    };
    let Some(rest) = head.get(at..) else {
        return preamble.clone();
    };
    // Walk no further than half the head, so that the record it stops after is whole in it.
    let end = preamble.offset + (rest.len() / 2) as u64;
    match split::walk(preamble, io::Cursor::new(rest), preamble.offset, end) {
        Ok(w) => w.state_at_next,
        Err(_) => preamble.clone(),
    }
}

/// Reading the object from `start` failed.
fn read_error(name: &str, start: u64) -> impl Fn(io::Error) -> SplitRunError + '_ {
    move |source| SplitRunError::Read {
        name: name.to_owned(),
        start,
        source,
    }
}

enum Walked {
    Read(u64, io::Error),
    Split(SplitError),
}

/// What the count pass found: the plan, each range's walk (repaired) and its first frame.
pub struct Counted {
    pub plan: SplitPlan,
    pub walks: Vec<Walk>,
    pub ranges: Vec<RangeDone>,
}

/// Plan and count (steps 1 and 2): every range's first record and frames, `concurrency` at a
/// time, then repaired in order.
pub fn count(
    name: &str,
    source: &dyn RangeSource,
    range_bytes: u64,
    concurrency: usize,
) -> Result<Counted, SplitRunError> {
    let read_err = |start: u64| read_error(name, start);
    let split_err = |source: SplitError| SplitRunError::Split {
        name: name.to_owned(),
        source,
    };
    let len = source.size();
    let mut head = Vec::new();
    source
        .open(0, Some(len.min(HEAD)))
        .and_then(|mut r| r.read_to_end(&mut head))
        .map_err(read_err(0))?;
    let plan = split::plan(len, &head, range_bytes).map_err(split_err)?;
    let preamble = Preamble::from_head(&head).map_err(split_err)?;
    // The state the other ranges start from is unknown until the ranges before them are
    // walked; they guess the one the head of the file leads to (pcapng: its interfaces, which
    // the synchronisation checks packet blocks against), and are walked again in order below
    // where the guess was wrong.
    let guess = head_state(&preamble, &head);

    // Count: every range's first record and frames, in parallel.
    let walks = parallel(&plan.ranges, concurrency, |r| {
        let state = if r.index == 0 { &preamble } else { &guess };
        walk_range(source, state, r).map_err(|e| match e {
            Walked::Read(start, e) => read_err(start)(e),
            Walked::Split(e) => split_err(e),
        })
    })?;
    // Range 0's walk starts at a known boundary, so each range's walk ends at the true first
    // record of the next. A range whose own synchronisation disagrees (its first "record" was
    // bytes inside a record that look like headers) or that started with another section
    // state than the previous range left (pcapng sections and interfaces defined further on)
    // is walked again, in order, from there: the result never depends on the guess.
    let mut walks = walks;
    let mut resynchronised = vec![false; walks.len()];
    for i in 1..walks.len() {
        let (next, state) = (walks[i - 1].next, walks[i - 1].state_at_next.clone());
        if walks[i].start != next || !walks[i].state_at_start.same_state(&state) {
            resynchronised[i] = walks[i].start != next;
            let input = source.open(next, None).map_err(read_err(next))?;
            walks[i] = split::walk(&state, input, next, plan.ranges[i].end).map_err(split_err)?;
        }
    }
    split::check_contiguous(&walks).map_err(split_err)?;
    let ranges: Vec<RangeDone> = walks
        .iter()
        .zip(split::frame_bases(&walks))
        .zip(&plan.ranges)
        .zip(resynchronised)
        .map(|(((w, first_frame), range), resynchronised)| RangeDone {
            range: *range,
            first_record: w.start,
            first_frame,
            frames: w.frames,
            resynchronised,
        })
        .collect();

    Ok(Counted {
        plan,
        walks,
        ranges,
    })
}

/// Find range `r`'s first record and walk its records.
fn walk_range(
    source: &dyn RangeSource,
    preamble: &Preamble,
    r: &ByteRange,
) -> Result<Walk, Walked> {
    let len = source.size();
    let start = if r.index == 0 {
        preamble.offset
    } else {
        let end = r.start.saturating_add(split::window_len(preamble)).min(len);
        let mut window = Vec::new();
        source
            .open(r.start, Some(end))
            .and_then(|mut s| s.read_to_end(&mut window))
            .map_err(|e| Walked::Read(r.start, e))?;
        split::sync(preamble, &window, r.start, end == len).map_err(Walked::Split)?
    };
    let input = source
        .open(start.min(len), None)
        .map_err(|e| Walked::Read(start, e))?;
    split::walk(preamble, input, start, r.end).map_err(Walked::Split)
}

/// What a whole conversion tells the outputs when it opens the capture: its format and the
/// earliest timestamp of its first chunk (which names the outputs' date partition).
pub fn opened_of(
    engine: &Engine,
    name: &str,
    source: &dyn RangeSource,
) -> Result<Opened, SplitRunError> {
    let input = source.open(0, None).map_err(read_error(name, 0))?;
    let mut reader = CaptureReader::new(input).map_err(|source| SplitRunError::Range {
        name: name.to_owned(),
        index: 0,
        start: 0,
        end: 0,
        source: Box::new(ConvertError::Open {
            name: name.to_owned(),
            source,
        }),
    })?;
    let mut chunk = Chunk::default();
    let (frames, bytes) = engine.chunk_limits();
    // Damage in the first chunk is the first range's to report; its frames still count.
    let _ = reader.fill(&mut chunk, frames, bytes);
    Ok(Opened::of(&reader, &chunk))
}

/// `f` over `items` on up to `threads` threads; the results in order, or the first error (in
/// order).
fn parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    if failed {
                        // Later items are not worth starting.
                        next.store(items.len(), Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    let all = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(all.len());
    for r in all {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            // Not started because an earlier item failed: that error came first in order
            // or will be returned above.
            None => break,
        }
    }
    Ok(out)
}

/// The format a split plan is for (re-exported for callers that check before splitting).
pub fn splittable(head: &[u8]) -> Option<CaptureFormat> {
    split::plan(u64::MAX, head, u64::MAX).ok().map(|p| p.format)
}
