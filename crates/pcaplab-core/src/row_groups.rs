//! Parquet row groups of several chunks, written by whichever worker brings the next batch.
//!
//! Chunks are decoded on any worker, but a row group per chunk makes Parquet pay per chunk what
//! it should pay once per many rows: a column writer (and a zstd context) per column, its
//! dictionary, page headers, and the footer's metadata, which the file writer keeps until the
//! file is closed. So [`RowGroups::per_group`] consecutive chunks share a row group. The worker
//! that brings the batch a row group needs next writes it, and every later batch of that row
//! group already waiting, into the row group's column writers; a batch that comes early waits,
//! holding its slot (so memory stays bounded by the engine's slots); the worker that writes a
//! row group's last batch closes it and sends its column chunks to the writer thread. Row groups
//! are independent, so workers write different row groups at the same time.
//!
//! No worker ever waits for another: a batch that cannot be written yet is left for the worker
//! writing its row group, which looks for waiting batches before it lets go of the writers.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};

use arrow_array::RecordBatch;
use crossbeam_channel::Sender;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter};

use crate::encode::{EncodeError, ParquetEncoder, close_writers, write_batch};

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
    per_group: u64,
    state: Mutex<State<H>>,
    done: Sender<GroupDone>,
}

struct State<H> {
    /// Batches that came before the batch their row group needs next, by chunk sequence.
    waiting: BTreeMap<u64, Waiting<H>>,
    /// Row groups with at least one batch written or being written, by index.
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
    /// The chunk sequence this row group needs next.
    next: u64,
    writers: Writers,
}

enum Writers {
    /// No batch written yet.
    New,
    Idle(Vec<ArrowColumnWriter>),
    /// A worker is writing; it writes whatever waits before it lets go.
    Busy,
}

impl<H> RowGroups<H> {
    /// `per_group` chunks (at least 1) to a row group; finished row groups go to `done`.
    pub fn new(encoder: ParquetEncoder, per_group: usize, done: Sender<GroupDone>) -> Self {
        RowGroups {
            encoder,
            per_group: per_group.max(1) as u64,
            state: Mutex::new(State {
                waiting: BTreeMap::new(),
                open: HashMap::new(),
                total: None,
                failed: false,
            }),
            done,
        }
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
    /// written now if its row group needs it next, else left waiting with `hold`.
    pub fn offer(&self, seq: u64, first_frame: u64, batch: RecordBatch, hold: H) {
        let mut st = self.lock();
        if st.failed {
            return;
        }
        st.waiting.insert(
            seq,
            Waiting {
                batch,
                first_frame,
                _hold: hold,
            },
        );
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

    /// Write what row group `r` can take now, unless another worker is writing it.
    fn drive<'s>(&'s self, r: u64, mut st: MutexGuard<'s, State<H>>) {
        loop {
            if st.failed {
                return;
            }
            let end = self.end_of(r, st.total);
            let State { waiting, open, .. } = &mut *st;
            let group = open.entry(r).or_insert(Open {
                next: r * self.per_group,
                writers: Writers::New,
            });
            if matches!(group.writers, Writers::Busy) {
                return;
            }
            let mut batches = Vec::new();
            let mut next = group.next;
            while next < end
                && let Some(w) = waiting.remove(&next)
            {
                batches.push(w);
                next += 1;
            }
            if batches.is_empty() && next < end {
                return;
            }
            let writers = std::mem::replace(&mut group.writers, Writers::Busy);
            drop(st);

            let first_frame = batches.first().map_or(0, |w| w.first_frame);
            let written = catch_unwind(AssertUnwindSafe(|| {
                let mut writers = match writers {
                    Writers::Idle(w) => w,
                    Writers::New | Writers::Busy => self.encoder.create_column_writers(0)?,
                };
                for w in &batches {
                    write_batch(&mut writers, &w.batch)?;
                }
                Ok::<_, EncodeError>(writers)
            }));
            // The batches are in the column writers now: give their slots back.
            drop(batches);

            st = self.lock();
            if st.failed {
                return;
            }
            let writers = match written {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => return self.fail_with(r, st, e.into()),
                Err(panic) => {
                    let message = crate::convert::panic_message(&*panic);
                    return self.fail_with(
                        r,
                        st,
                        GroupError::Panic {
                            first_frame,
                            message,
                        },
                    );
                }
            };
            // The capture's end may have been found while the batches were being written.
            if next == self.end_of(r, st.total) {
                st.open.remove(&r);
                drop(st);
                let closed = catch_unwind(AssertUnwindSafe(|| close_writers(writers)));
                let closed = match closed {
                    Ok(r) => r.map_err(GroupError::from),
                    Err(panic) => Err(GroupError::Panic {
                        first_frame,
                        message: crate::convert::panic_message(&*panic),
                    }),
                };
                if closed.is_err() {
                    self.fail();
                }
                // The writer thread outlives every row group: it stops when this sender, too,
                // is gone.
                let _ = self.done.send((r, closed));
                return;
            }
            if let Some(group) = st.open.get_mut(&r) {
                group.next = next;
                group.writers = Writers::Idle(writers);
            }
        }
    }

    fn fail_with(&self, r: u64, mut st: MutexGuard<'_, State<H>>, e: GroupError) {
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
        Arc::new(Schema::new(vec![Field::new("v", DataType::UInt32, false)]))
    }

    /// Chunk `seq` holds `rows` values: seq * 1000 + i.
    fn batch(seq: u64, rows: u32) -> RecordBatch {
        let values: ArrayRef = Arc::new(UInt32Array::from_iter_values(
            (0..rows).map(|i| seq as u32 * 1000 + i),
        ));
        RecordBatch::try_new(schema(), vec![values]).expect("batch")
    }

    /// Offer `chunks` batches of `rows` rows in `order`, finish, and read the file back:
    /// (rows per row group, every value in file order).
    fn run(per_group: usize, order: &[u64], finish_after: usize) -> (Vec<i64>, Vec<u32>) {
        let (tx, rx) = unbounded();
        let mut sink =
            ParquetSink::with_schema(Vec::new(), schema(), crate::encode::parquet_properties("t"))
                .expect("sink");
        let groups = RowGroups::new(sink.encoder(), per_group, tx);
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
            let col = b
                .column(0)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .expect("u32");
            values.extend(col.values().iter().copied());
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

    #[test]
    fn a_failure_gives_every_waiting_hold_back_and_writes_nothing_more() {
        let (tx, rx) = unbounded();
        let sink =
            ParquetSink::with_schema(Vec::new(), schema(), crate::encode::parquet_properties("t"))
                .expect("sink");
        let groups = RowGroups::new(sink.encoder(), 4, tx);
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
        let groups = RowGroups::new(sink.encoder(), 2, tx);
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
