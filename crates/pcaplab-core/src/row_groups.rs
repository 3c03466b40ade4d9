//! Parquet row groups of several chunks, written by whichever workers bring the batches.
//!
//! Chunks are decoded on any worker, but a row group per chunk makes Parquet pay per chunk what
//! it should pay once per many rows: a column writer (and a zstd context) per column, its
//! dictionary, page headers, and the footer's metadata, which the file writer keeps until the
//! file is closed. So [`RowGroups::per_group`] consecutive chunks share a row group.
//!
//! A row group's columns are split into parts (column `i` in part `i % parts`), each an
//! independent stream of writes: a part takes the batches in chunk order, and different parts,
//! or parts of different row groups, are written by different workers at the same time. A
//! worker that brings a batch writes, for any part of its row group that is free, that batch
//! and every later one already waiting; a batch that comes early waits, holding its slot (so
//! memory stays bounded by the engine's slots), until every part has written it. The worker
//! that closes a row group's last part sends the row group's column chunks, in column order,
//! to the writer thread.
//!
//! No worker ever waits for another: work that cannot be done yet is left for the worker that
//! holds the part, which looks for waiting batches before it lets go of the part's writers.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::{RecordBatch, new_empty_array};
use arrow_schema::SchemaRef;
use crossbeam_channel::Sender;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};

use crate::encode::{EncodeError, ParquetEncoder, write_columns};

/// A finished row group (its index and column chunks), or why it failed.
pub type GroupDone = (u64, Result<Vec<ArrowColumnChunk>, GroupError>);

/// Why a row group could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A bug: writing a batch panicked.
    #[error("encoding the rows from frame {first_frame} panicked: {message}")]
    Panic { first_frame: u64, message: String },
}

/// The row groups of one Parquet output; `H` is what a waiting batch holds on to (its slot).
pub struct RowGroups<H> {
    encoder: ParquetEncoder,
    schema: SchemaRef,
    per_group: u64,
    /// How many leaf columns (column writers) each top-level column has.
    leaves: Vec<usize>,
    parts: usize,
    state: Mutex<State<H>>,
    done: Sender<GroupDone>,
}

struct State<H> {
    /// Batches that some part of their row group has not written yet, by chunk sequence, with
    /// how many parts have taken them.
    waiting: BTreeMap<u64, (Arc<Waiting<H>>, usize)>,
    /// Row groups with at least one batch offered, by index.
    open: HashMap<u64, Open>,
    /// Chunks in the capture, once the reader has reached its end.
    total: Option<u64>,
    /// Something failed: nothing more is written.
    failed: bool,
}

struct Waiting<H> {
    batch: RecordBatch,
    first_frame: u64,
    _hold: H,
}

struct Open {
    parts: Vec<Part>,
    /// The column chunks of the parts closed so far, with their leaf column indexes.
    closed: Vec<(usize, ArrowColumnChunk)>,
    /// Parts whose column chunks are in `closed` (a part is `Closed` before that: while its
    /// worker closes its writers without the lock).
    parts_closed: usize,
}

struct Part {
    /// The chunk sequence this part needs next.
    next: u64,
    writers: Writers,
}

enum Writers {
    /// The part's leaf column indexes and writers, free to take.
    Idle(Vec<(usize, ArrowColumnWriter)>),
    /// A worker is writing; it writes whatever waits before it lets go.
    Busy,
    Closed,
}

/// What one worker took to do for one part.
struct Job<H> {
    part: usize,
    batches: Vec<Arc<Waiting<H>>>,
    /// The part's next chunk once these are written.
    next: u64,
    writers: Vec<(usize, ArrowColumnWriter)>,
}

impl<H> RowGroups<H> {
    /// `per_group` chunks (at least 1) to a row group, whose columns are written in `parts`
    /// (at least 1) independent parts; batches have `schema`; finished row groups go to `done`.
    pub fn new(
        encoder: ParquetEncoder,
        schema: SchemaRef,
        per_group: usize,
        parts: usize,
        done: Sender<GroupDone>,
    ) -> Result<Self, EncodeError> {
        let leaves = schema
            .fields()
            .iter()
            .map(|f| Ok(compute_leaves(f, &new_empty_array(f.data_type()))?.len()))
            .collect::<Result<_, EncodeError>>()?;
        Ok(RowGroups {
            encoder,
            per_group: per_group.max(1) as u64,
            parts: parts.clamp(1, schema.fields().len().max(1)),
            schema,
            leaves,
            state: Mutex::new(State {
                waiting: BTreeMap::new(),
                open: HashMap::new(),
                total: None,
                failed: false,
            }),
            done,
        })
    }

    /// Chunks per row group.
    pub fn per_group(&self) -> u64 {
        self.per_group
    }

    fn lock(&self) -> MutexGuard<'_, State<H>> {
        // Nothing panics while the lock is held; if it did, the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The batch of chunk `seq` (chunks are numbered from 0 in file order, with no gaps):
    /// written now by this worker where a part of its row group is free to, else left waiting
    /// with `hold` for the workers writing the other parts.
    pub fn offer(&self, seq: u64, first_frame: u64, batch: RecordBatch, hold: H) {
        let mut st = self.lock();
        if st.failed {
            return;
        }
        let waiting = Waiting {
            batch,
            first_frame,
            _hold: hold,
        };
        st.waiting.insert(seq, (Arc::new(waiting), 0));
        self.drive(seq / self.per_group, st);
    }

    /// Every chunk has been offered (or has failed): there are `total`. The last row group,
    /// which may have fewer chunks than the others, closes once its batches are written.
    pub fn finish(&self, total: u64) {
        let mut st = self.lock();
        st.total = Some(total);
        if total > 0 {
            self.drive((total - 1) / self.per_group, st);
        }
    }

    /// Stop: drop every waiting batch (and so give its slot back) and write nothing more.
    pub fn fail(&self) {
        let mut st = self.lock();
        st.failed = true;
        st.waiting.clear();
        st.open.clear();
    }

    /// One past the last chunk of row group `r`.
    fn end_of(&self, r: u64, total: Option<u64>) -> u64 {
        let end = (r + 1) * self.per_group;
        total.map_or(end, |t| end.min(t))
    }

    /// Row group `r`'s column writers, dealt out to its parts.
    fn open_group(&self, r: u64) -> Result<Open, EncodeError> {
        let mut writers = self
            .encoder
            .create_column_writers(0)?
            .into_iter()
            .enumerate();
        let mut parts: Vec<Vec<(usize, ArrowColumnWriter)>> =
            (0..self.parts).map(|_| Vec::new()).collect();
        for (i, &leaves) in self.leaves.iter().enumerate() {
            for _ in 0..leaves {
                if let Some(w) = writers.next() {
                    parts[i % self.parts].push(w);
                }
            }
        }
        let next = r * self.per_group;
        Ok(Open {
            parts: parts
                .into_iter()
                .map(|w| Part {
                    next,
                    writers: Writers::Idle(w),
                })
                .collect(),
            closed: Vec::new(),
            parts_closed: 0,
        })
    }

    /// Take the first part of row group `r` that is free and has batches to write or is
    /// complete, with those batches.
    fn take_job(&self, r: u64, st: &mut State<H>) -> Option<Job<H>> {
        let end = self.end_of(r, st.total);
        let parts = self.parts;
        let State { waiting, open, .. } = st;
        let group = open.get_mut(&r)?;
        for (p, part) in group.parts.iter_mut().enumerate() {
            if !matches!(part.writers, Writers::Idle(_)) {
                continue;
            }
            let mut batches = Vec::new();
            let mut next = part.next;
            while next < end
                && let Some((w, taken)) = waiting.get_mut(&next)
            {
                batches.push(Arc::clone(w));
                *taken += 1;
                if *taken == parts {
                    waiting.remove(&next);
                }
                next += 1;
            }
            if batches.is_empty() && next < end {
                continue;
            }
            let Writers::Idle(writers) = std::mem::replace(&mut part.writers, Writers::Busy) else {
                continue;
            };
            return Some(Job {
                part: p,
                batches,
                next,
                writers,
            });
        }
        None
    }

    /// Write what row group `r` can take now, part by part, until every part is either
    /// written up to the batches that have come or held by another worker.
    fn drive<'s>(&'s self, r: u64, mut st: MutexGuard<'s, State<H>>) {
        loop {
            if st.failed {
                return;
            }
            if let Entry::Vacant(vacant) = st.open.entry(r) {
                match self.open_group(r) {
                    Ok(g) => {
                        vacant.insert(g);
                    }
                    Err(e) => return self.fail_with(r, st, e.into()),
                }
            }
            let Some(job) = self.take_job(r, &mut st) else {
                return;
            };
            drop(st);

            let Job {
                part,
                batches,
                next,
                mut writers,
            } = job;
            let first_frame = batches.first().map_or(0, |w| w.first_frame);
            let written = catch_unwind(AssertUnwindSafe(|| {
                for w in &batches {
                    self.write_part(part, &mut writers, &w.batch)?;
                }
                Ok::<_, EncodeError>(())
            }));
            // Where this was the last part to write them, give the batches' slots back.
            drop(batches);
            let panicked = |panic: Box<dyn std::any::Any + Send>| GroupError::Panic {
                first_frame,
                message: crate::convert::panic_message(&*panic),
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return self.fail_with(r, self.lock(), e.into()),
                Err(panic) => return self.fail_with(r, self.lock(), panicked(panic)),
            }

            st = self.lock();
            if st.failed {
                return;
            }
            // The capture's end may have been found while the batches were being written.
            let complete = next == self.end_of(r, st.total);
            let Some(group) = st.open.get_mut(&r) else {
                return;
            };
            group.parts[part].next = next;
            if !complete {
                group.parts[part].writers = Writers::Idle(writers);
                continue;
            }
            group.parts[part].writers = Writers::Closed;
            drop(st);
            let closed = catch_unwind(AssertUnwindSafe(|| {
                writers
                    .into_iter()
                    .map(|(leaf, w)| w.close().map(|c| (leaf, c)))
                    .collect::<Result<Vec<_>, _>>()
            }));
            let closed = match closed {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return self.fail_with(r, self.lock(), EncodeError::from(e).into()),
                Err(panic) => return self.fail_with(r, self.lock(), panicked(panic)),
            };
            st = self.lock();
            if st.failed {
                return;
            }
            let Some(group) = st.open.get_mut(&r) else {
                return;
            };
            group.closed.extend(closed);
            group.parts_closed += 1;
            if group.parts_closed == group.parts.len() {
                let Some(mut group) = st.open.remove(&r) else {
                    return;
                };
                drop(st);
                group.closed.sort_unstable_by_key(|(leaf, _)| *leaf);
                let chunks = group.closed.into_iter().map(|(_, c)| c).collect();
                // The writer thread outlives every row group: it stops when this sender, too,
                // is gone.
                let _ = self.done.send((r, Ok(chunks)));
                return;
            }
        }
    }

    /// Write part `part`'s columns of `batch` (columns `part`, `part + parts`, …).
    fn write_part(
        &self,
        part: usize,
        writers: &mut [(usize, ArrowColumnWriter)],
        batch: &RecordBatch,
    ) -> Result<(), EncodeError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(parquet::errors::ParquetError::General(
                "a batch whose columns are not the output's".into(),
            )
            .into());
        }
        let columns = (part..self.schema.fields().len())
            .step_by(self.parts)
            .map(|i| (self.schema.field(i), batch.column(i)));
        write_columns(writers.iter_mut().map(|(_, w)| w), columns)
    }

    fn fail_with(&self, r: u64, mut st: MutexGuard<'_, State<H>>, e: GroupError) {
        if st.failed {
            return;
        }
        st.failed = true;
        st.waiting.clear();
        st.open.clear();
        drop(st);
        let _ = self.done.send((r, Err(e)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow_array::{ArrayRef, UInt32Array};
    use arrow_schema::{DataType, Field, Schema};
    use bytes::Bytes;
    use crossbeam_channel::unbounded;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::encode::ParquetSink;

    /// Counts live holds: a batch's hold must be dropped once it is written.
    struct Hold(Arc<AtomicUsize>);
    impl Hold {
        fn new(live: &Arc<AtomicUsize>) -> Self {
            live.fetch_add(1, Ordering::SeqCst);
            Hold(Arc::clone(live))
        }
    }
    impl Drop for Hold {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(
            ["v", "w", "x"]
                .map(|n| Field::new(n, DataType::UInt32, false))
                .to_vec(),
        ))
    }

    /// Chunk `seq` holds `rows` rows: v = seq * 1000 + i, w = v + 1, x = v + 2.
    fn batch(seq: u64, rows: u32) -> RecordBatch {
        let column = |plus: u32| -> ArrayRef {
            Arc::new(UInt32Array::from_iter_values(
                (0..rows).map(|i| seq as u32 * 1000 + i + plus),
            ))
        };
        RecordBatch::try_new(schema(), vec![column(0), column(1), column(2)]).expect("batch")
    }

    /// [`run_in`] with every number of parts: each gives the same.
    fn run(per_group: usize, order: &[u64], finish_after: usize) -> (Vec<i64>, Vec<u32>) {
        let one = run_in(1, per_group, order, finish_after);
        for parts in [2, 3, 8] {
            assert_eq!(
                run_in(parts, per_group, order, finish_after),
                one,
                "{parts} parts"
            );
        }
        one
    }

    /// Offer `chunks` batches of `rows` rows in `order`, finish, and read the file back:
    /// (rows per row group, every value in file order).
    fn run_in(
        parts: usize,
        per_group: usize,
        order: &[u64],
        finish_after: usize,
    ) -> (Vec<i64>, Vec<u32>) {
        let (tx, rx) = unbounded();
        let mut sink =
            ParquetSink::with_schema(Vec::new(), schema(), crate::encode::parquet_properties("t"))
                .expect("sink");
        let groups =
            RowGroups::new(sink.encoder(), schema(), per_group, parts, tx).expect("groups");
        let live = Arc::new(AtomicUsize::new(0));
        for (i, &seq) in order.iter().enumerate() {
            if i == finish_after {
                groups.finish(order.len() as u64);
            }
            groups.offer(seq, seq * 3, batch(seq, 3), Hold::new(&live));
        }
        if finish_after >= order.len() {
            groups.finish(order.len() as u64);
        }
        assert_eq!(live.load(Ordering::SeqCst), 0, "every hold is given back");
        let expected = (order.len() as u64).div_ceil(groups.per_group());
        drop(groups);
        let mut done: BTreeMap<u64, _> =
            rx.iter().map(|(r, c)| (r, c.expect("row group"))).collect();
        assert_eq!(done.len() as u64, expected);
        for r in 0..expected {
            sink.append(done.remove(&r).expect("every row group"))
                .expect("append");
        }
        let bytes = Bytes::from(sink.finish().expect("footer"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("valid file");
        let sizes = (0..reader.metadata().num_row_groups())
            .map(|i| reader.metadata().row_group(i).num_rows())
            .collect();
        let mut values = Vec::new();
        for b in reader.build().expect("reader") {
            let b = b.expect("batch");
            let col = |i: usize| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("u32")
                    .values()
                    .to_vec()
            };
            let (v, w, x) = (col(0), col(1), col(2));
            assert!(
                v.iter()
                    .zip(&w)
                    .zip(&x)
                    .all(|((v, w), x)| v + 1 == *w && v + 2 == *x)
            );
            values.extend(v);
        }
        (sizes, values)
    }

    fn expected_values(chunks: u64) -> Vec<u32> {
        (0..chunks)
            .flat_map(|s| (0..3).map(move |i| s as u32 * 1000 + i))
            .collect()
    }

    #[test]
    fn batches_in_order_make_row_groups_of_per_group_chunks() {
        let (sizes, values) = run(4, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], usize::MAX);
        assert_eq!(sizes, vec![12, 12, 6]);
        assert_eq!(values, expected_values(10));
    }

    #[test]
    fn batches_out_of_order_are_written_in_file_order() {
        let order = [3, 1, 0, 2, 9, 5, 4, 8, 6, 7];
        let (sizes, values) = run(4, &order, usize::MAX);
        assert_eq!(sizes, vec![12, 12, 6]);
        assert_eq!(values, expected_values(10));
    }

    #[test]
    fn the_end_may_be_known_before_the_last_batches_come() {
        // finish() comes after three batches; the last row group closes on its last batch.
        let order = [0, 2, 4, 1, 3];
        let (sizes, values) = run(2, &order, 3);
        assert_eq!(sizes, vec![6, 6, 3]);
        assert_eq!(values, expected_values(5));
        // An end that is a multiple of the row group size.
        let (sizes, _) = run(2, &[1, 0, 3, 2], 0);
        assert_eq!(sizes, vec![6, 6]);
    }

    #[test]
    fn one_chunk_per_group_is_todays_layout() {
        let (sizes, values) = run(1, &[2, 0, 1], usize::MAX);
        assert_eq!(sizes, vec![3, 3, 3]);
        assert_eq!(values, expected_values(3));
    }

    /// Workers offering at the same time, closing parts at the same time: every row group
    /// comes out whole (a part closed but not yet delivered once made a row group without
    /// its columns), in file order.
    #[test]
    fn concurrent_offers_make_whole_row_groups() {
        let chunks = 40u64;
        for round in 0..100 {
            let (tx, rx) = unbounded();
            let mut sink = ParquetSink::with_schema(
                Vec::new(),
                schema(),
                crate::encode::parquet_properties("t"),
            )
            .expect("sink");
            let parts = 1 + round % 3;
            let groups = RowGroups::new(sink.encoder(), schema(), 2, parts, tx).expect("groups");
            let live = Arc::new(AtomicUsize::new(0));
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let (groups, live) = (&groups, &live);
                    s.spawn(move || {
                        for seq in (t..chunks).step_by(4) {
                            groups.offer(seq, seq * 3, batch(seq, 3), Hold::new(live));
                        }
                    });
                }
            });
            groups.finish(chunks);
            assert_eq!(live.load(Ordering::SeqCst), 0, "round {round}");
            drop(groups);
            let mut done: BTreeMap<u64, _> =
                rx.iter().map(|(r, c)| (r, c.expect("row group"))).collect();
            assert_eq!(done.len(), 20, "round {round}");
            for r in 0..20 {
                let columns = done.remove(&r).expect("every row group");
                assert_eq!(columns.len(), 3, "round {round}, row group {r}");
                sink.append(columns).expect("append");
            }
            let bytes = Bytes::from(sink.finish().expect("footer"));
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("valid file");
            let rows: usize = reader
                .build()
                .expect("reader")
                .map(|b| b.expect("batch").num_rows())
                .sum();
            assert_eq!(rows, 120, "round {round}");
        }
    }

    #[test]
    fn a_failure_gives_every_waiting_hold_back_and_writes_nothing_more() {
        let (tx, rx) = unbounded();
        let sink =
            ParquetSink::with_schema(Vec::new(), schema(), crate::encode::parquet_properties("t"))
                .expect("sink");
        let groups = RowGroups::new(sink.encoder(), schema(), 4, 2, tx).expect("groups");
        let live = Arc::new(AtomicUsize::new(0));
        groups.offer(1, 3, batch(1, 3), Hold::new(&live));
        groups.offer(2, 6, batch(2, 3), Hold::new(&live));
        assert_eq!(
            live.load(Ordering::SeqCst),
            2,
            "chunk 0 has not come: both wait"
        );
        groups.fail();
        assert_eq!(live.load(Ordering::SeqCst), 0);
        groups.offer(0, 0, batch(0, 3), Hold::new(&live));
        groups.finish(3);
        assert_eq!(live.load(Ordering::SeqCst), 0);
        drop(groups);
        assert_eq!(rx.iter().count(), 0);
    }

    #[test]
    fn a_batch_that_does_not_fit_the_schema_fails_its_row_group() {
        let (tx, rx) = unbounded();
        let sink =
            ParquetSink::with_schema(Vec::new(), schema(), crate::encode::parquet_properties("t"))
                .expect("sink");
        let groups = RowGroups::new(sink.encoder(), schema(), 2, 2, tx).expect("groups");
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("v", DataType::UInt32, false),
                Field::new("w", DataType::UInt32, false),
            ])),
            vec![
                Arc::new(UInt32Array::from(vec![1])),
                Arc::new(UInt32Array::from(vec![2])),
            ],
        )
        .expect("sink");
        groups.offer(0, 0, wrong, ());
        groups.offer(1, 1, batch(1, 3), ());
        groups.finish(2);
        drop(groups);
        let done: Vec<_> = rx.iter().collect();
        assert_eq!(done.len(), 1);
        assert!(matches!(done[0], (0, Err(GroupError::Encode(_)))));
    }
}
