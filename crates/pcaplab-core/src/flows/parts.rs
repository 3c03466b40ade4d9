//! Flow parts: the flows of one range of a split capture, as its worker hands them to the merge.
//!
//! A worker converting one byte range of a capture cannot write final flow rows: a flow live
//! at the end of its range may go on in the next range, and the first packets of its range may
//! continue a flow of the previous one. So it writes, in the order its table let go of them,
//! every flow it retired (each with the reason it ended) and, at the end of its range, the
//! flows still live, marked open. The merge ([`FlowTable::merge_part`]) folds the ranges' parts
//! in file order: a flow live at the end of one range is joined by the first flow of the same
//! key in a later range exactly when that flow's first packet would have continued it — the
//! rule chunks are merged by — so without eviction the flows written do not depend on where
//! the capture was cut.
//!
//! The format is a stream of records, each a little-endian `u32` length and a [`PartRecord`]
//! in postcard (serde; compact, and about ten times faster to read back than self-describing
//! CBOR — the merge reads every flow of the capture): one [`PartRecord::Flow`] per flow, then
//! one [`PartRecord::End`] with the count, so that a part cut short is an error, not fewer
//! flows. It is compressed with zstd (level 1).
//!
//! [`FlowTable::merge_part`]: super::FlowTable::merge_part

use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use super::Flow;

/// One value of a flow part.
#[derive(Debug, Serialize, Deserialize)]
pub enum PartRecord {
    /// A flow the worker retired (`open` = false) or that was still live at the end of its
    /// range (`open` = true; its `end` is meaningless).
    Flow { flow: Box<Flow>, open: bool },
    /// The end of the part: how many flows it holds and the latest timestamp of its range's
    /// packets (ns), which tells the merge which live flows the next range can no longer
    /// continue.
    End { flows: u64, max_ts: Option<i64> },
}

/// A flow part that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("writing a flow part failed")]
    Write(#[source] io::Error),
    #[error("flow part {part}: flow {index} cannot be read back")]
    Decode {
        part: usize,
        index: u64,
        #[source]
        source: io::Error,
    },
    #[error("flow part {part}: record {index} is not a flow part's record")]
    Record {
        part: usize,
        index: u64,
        #[source]
        source: postcard::Error,
    },
    #[error("flow part {part}: record {index} says it is {len} bytes long, more than any flow")]
    Length { part: usize, index: u64, len: u32 },
    #[error("flow part {part}: it ends after {read} flows without its end record (cut short)")]
    Truncated { part: usize, read: u64 },
    #[error("flow part {part}: its end record counts {said} flows, {read} were read")]
    Count { part: usize, said: u64, read: u64 },
    #[error("flow part {part}: data after its end record")]
    Trailing { part: usize },
}

/// The longest record a part may hold (a flow with its longest names is a few hundred bytes):
/// a longer length is damage, never an allocation of that size.
const MAX_RECORD: u32 = 1 << 20;

/// Writes one range's flow part.
pub struct PartWriter<W: Write> {
    out: zstd::stream::write::Encoder<'static, W>,
    flows: u64,
    /// The record being encoded (reused).
    buf: Vec<u8>,
}

/// Write `record`, length first, through `buf`.
fn put_record<T: Serialize>(out: &mut impl Write, buf: &mut Vec<u8>, record: &T) -> io::Result<()> {
    buf.clear();
    let bytes = postcard::to_io(record, std::mem::take(buf)).map_err(io::Error::other)?;
    *buf = bytes;
    let len = u32::try_from(buf.len())
        .ok()
        .filter(|&n| n <= MAX_RECORD)
        .ok_or_else(|| io::Error::other(format!("a {}-byte flow record", buf.len())))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(buf)
}

impl<W: Write> PartWriter<W> {
    pub fn new(out: W) -> Result<Self, PartError> {
        Ok(PartWriter {
            out: zstd::stream::write::Encoder::new(out, 1).map_err(PartError::Write)?,
            flows: 0,
            buf: Vec::new(),
        })
    }

    pub fn write(&mut self, flow: &Flow, open: bool) -> Result<(), PartError> {
        // Serialised by reference: the record type owns its flow only when read back.
        #[derive(Serialize)]
        enum Ref<'a> {
            Flow { flow: &'a Flow, open: bool },
        }
        put_record(&mut self.out, &mut self.buf, &Ref::Flow { flow, open })
            .map_err(PartError::Write)?;
        self.flows += 1;
        Ok(())
    }

    /// Write the end record and flush; returns the inner writer.
    pub fn finish(mut self, max_ts: Option<i64>) -> Result<W, PartError> {
        let end = PartRecord::End {
            flows: self.flows,
            max_ts,
        };
        put_record(&mut self.out, &mut self.buf, &end).map_err(PartError::Write)?;
        let mut w = self.out.finish().map_err(PartError::Write)?;
        w.flush().map_err(PartError::Write)?;
        Ok(w)
    }
}

/// Reads one range's flow part back, flow by flow; checks its end record.
pub struct PartReader<R: Read> {
    input: BufReader<zstd::stream::read::Decoder<'static, BufReader<R>>>,
    part: usize,
    read: u64,
    /// The record being decoded (reused).
    buf: Vec<u8>,
    /// The end record, once read.
    end: Option<Option<i64>>,
}

impl<R: Read> PartReader<R> {
    /// `part` is the range's index, for errors.
    pub fn new(input: R, part: usize) -> Result<Self, PartError> {
        let decoder =
            zstd::stream::read::Decoder::new(input).map_err(|source| PartError::Decode {
                part,
                index: 0,
                source,
            })?;
        Ok(PartReader {
            input: BufReader::new(decoder),
            part,
            read: 0,
            buf: Vec::new(),
            end: None,
        })
    }

    /// The next flow and whether it is open; `None` after the end record (checked: the count
    /// matches and nothing follows).
    pub fn next_flow(&mut self) -> Result<Option<(Flow, bool)>, PartError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let (part, read) = (self.part, self.read);
        if self.at_eof()? {
            return Err(PartError::Truncated { part, read });
        }
        let io_err = |source: io::Error| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                PartError::Truncated { part, read }
            } else {
                PartError::Decode {
                    part,
                    index: read,
                    source,
                }
            }
        };
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).map_err(io_err)?;
        let len = u32::from_le_bytes(len);
        if len > MAX_RECORD {
            return Err(PartError::Length {
                part,
                index: read,
                len,
            });
        }
        self.buf.resize(len as usize, 0);
        self.input.read_exact(&mut self.buf).map_err(io_err)?;
        let record: PartRecord =
            postcard::from_bytes(&self.buf).map_err(|source| PartError::Record {
                part,
                index: read,
                source,
            })?;
        match record {
            PartRecord::Flow { flow, open } => {
                self.read += 1;
                Ok(Some((*flow, open)))
            }
            PartRecord::End { flows, max_ts } => {
                if flows != read {
                    return Err(PartError::Count {
                        part,
                        said: flows,
                        read,
                    });
                }
                if !self.at_eof()? {
                    return Err(PartError::Trailing { part });
                }
                self.end = Some(max_ts);
                Ok(None)
            }
        }
    }

    fn at_eof(&mut self) -> Result<bool, PartError> {
        let (part, index) = (self.part, self.read);
        match self.input.fill_buf() {
            Ok(rest) => Ok(rest.is_empty()),
            Err(source) => Err(PartError::Decode {
                part,
                index,
                source,
            }),
        }
    }

    /// The latest packet timestamp of the part's range, once [`next_flow`](Self::next_flow)
    /// has returned `None`.
    pub fn max_ts(&self) -> Option<i64> {
        self.end.flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run_with_stats, tcp};
    use super::super::{ChunkFlows, EndReason, FlowConfig, FlowTable, SECOND_NS, Seen};
    use super::*;
    use crate::dissect::Packet;
    use proptest::prelude::*;

    const SYN: u16 = 0x02;
    const ACK: u16 = 0x10;
    const FIN: u16 = 0x01;

    /// What one worker writes for the packets `first..first + part.len()` (frames numbered
    /// from `first + 1`), chunk by chunk, as the engine's flow sinks do.
    fn worker(cfg: FlowConfig, part: &[(i64, Packet)], first: usize, chunk: usize) -> Vec<u8> {
        let mut table = FlowTable::new(cfg, crate::columns::Rows::Build);
        let mut w = PartWriter::new(Vec::new()).expect("part");
        for (c, piece) in part.chunks(chunk).enumerate() {
            let mut cf = ChunkFlows::default();
            for (i, (ts, p)) in piece.iter().enumerate() {
                let frame = (first + c * chunk + i + 1) as u64;
                cf.add(&cfg, p, &Seen::packet(frame, ts * SECOND_NS, 60, p));
            }
            table.merge(cf.into_shards());
            for f in table.take_retired().iter() {
                w.write(f, false).expect("write");
            }
        }
        for f in table.take_live().iter() {
            w.write(f, true).expect("write");
        }
        w.finish(table.now()).expect("finish")
    }

    /// The merge of the parts, as the engine's does it: every flow written, by first frame.
    fn merge(cfg: FlowConfig, parts: &[Vec<u8>]) -> (Vec<Flow>, super::super::FlowStats) {
        let mut table = FlowTable::new(cfg, crate::columns::Rows::Build);
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let mut r = PartReader::new(&p[..], i).expect("reader");
            while let Some((f, open)) = r.next_flow().expect("flow") {
                table.merge_part(f, open);
            }
            table.range_done(r.max_ts());
            out.extend(table.take_retired().into_vec());
        }
        let (rest, stats) = table.finish();
        out.extend(rest.into_vec());
        out.sort_by_key(|f| f.seg.first_frame);
        (out, stats)
    }

    fn split(cfg: FlowConfig, packets: &[(i64, Packet)], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().map(|&c| c.min(packets.len())));
        bounds.push(packets.len());
        bounds.sort_unstable();
        bounds
            .windows(2)
            .map(|w| worker(cfg, &packets[w[0]..w[1]], w[0], 3))
            .collect()
    }

    proptest! {
        /// Without eviction, the flows of a capture cut into ranges anywhere, merged, are the
        /// flows of the whole: same rows (end reasons, histories, counters, frames), same
        /// totals. Four connections' packets with gaps up to twice the timeout.
        #[test]
        fn merged_ranges_equal_the_whole(
            steps in prop::collection::vec((0u8..4, 0u8..5, 0i64..700), 1..60),
            cuts in prop::collection::vec(0usize..60, 0..5),
        ) {
            let cfg = FlowConfig::default();
            let mut ts = 0;
            let packets: Vec<(i64, Packet)> = steps
                .iter()
                .map(|&(conn, kind, gap)| {
                    ts += gap;
                    let flags = [SYN, SYN | ACK, ACK, FIN | ACK, 0x04][usize::from(kind)];
                    let p = if kind == 1 {
                        tcp(2, 80, 1, 40000 + u16::from(conn), flags)
                    } else {
                        tcp(1, 40000 + u16::from(conn), 2, 80, flags)
                    };
                    (ts, p)
                })
                .collect();
            let (whole, whole_stats) = run_with_stats(cfg, &packets, 3);
            let (merged, stats) = merge(cfg, &split(cfg, &packets, &cuts));
            prop_assert_eq!(&merged, &whole);
            prop_assert_eq!(stats, whole_stats);
        }
    }

    /// Found by `merged_ranges_equal_the_whole`: a flow idle past its timeout (300 s) at the
    /// capture's last packet, 9 s after the last sweep (sweeps run every quarter timeout),
    /// ended `idle` in the merged ranges and `end_of_capture` in the whole run.
    #[test]
    fn a_flow_idle_past_its_timeout_at_the_end_ended_idle_in_every_run() {
        let cfg = FlowConfig::default();
        let mut packets: Vec<(i64, Packet)> =
            (0..17).map(|_| (0, tcp(1, 40000, 2, 80, SYN))).collect();
        packets.push((292, tcp(1, 40001, 2, 80, SYN)));
        packets.push((301, tcp(1, 40001, 2, 80, SYN)));
        let ends = |flows: &[Flow]| flows.iter().map(|f| f.end).collect::<Vec<_>>();
        let want = [EndReason::Idle, EndReason::EndOfCapture];
        for chunk in [1, 3, packets.len()] {
            let (whole, _) = run_with_stats(cfg, &packets, chunk);
            assert_eq!(ends(&whole), want, "chunks of {chunk}");
        }
        for cuts in [&[][..], &[17], &[5, 18]] {
            let (merged, _) = merge(cfg, &split(cfg, &packets, cuts));
            assert_eq!(ends(&merged), want, "cut at {cuts:?}");
        }
    }

    #[test]
    fn a_flow_across_three_ranges_is_one_flow() {
        let cfg = FlowConfig::default();
        let packets: Vec<(i64, Packet)> = (0..9)
            .map(|i| (i, tcp(1, 40000, 2, 80, if i == 0 { SYN } else { ACK })))
            .collect();
        let (merged, stats) = merge(cfg, &split(cfg, &packets, &[3, 6]));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].packets(), 9);
        assert_eq!(
            (merged[0].seg.first_frame, merged[0].seg.last_frame),
            (1, 9)
        );
        assert_eq!(merged[0].end, EndReason::EndOfCapture);
        assert_eq!(stats.flows, 1);
    }

    #[test]
    fn a_part_cut_short_or_padded_is_an_error() {
        let cfg = FlowConfig::default();
        let packets: Vec<(i64, Packet)> = (0..5)
            .map(|i| (i, tcp(1, 40000 + i as u16, 2, 80, SYN)))
            .collect();
        let whole = worker(cfg, &packets, 0, 2);
        let read_all = |bytes: &[u8]| -> Result<u64, PartError> {
            let mut r = PartReader::new(bytes, 7)?;
            let mut n = 0;
            while r.next_flow()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(read_all(&whole).expect("whole part"), 5);
        // Cut inside the compressed stream: an error naming the part, never fewer flows.
        for cut in [0, whole.len() / 2, whole.len() - 1] {
            let e = read_all(&whole[..cut]).expect_err("cut part");
            assert!(e.to_string().contains("flow part 7"), "{cut}: {e}");
        }
        // A part whose end record is missing (the worker stopped before finishing it).
        let mut raw = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd");
        let (flow, _) = PartReader::new(&whole[..], 0)
            .expect("reader")
            .next_flow()
            .expect("flow")
            .expect("some");
        put_record(
            &mut raw,
            &mut Vec::new(),
            &PartRecord::Flow {
                flow: Box::new(flow),
                open: false,
            },
        )
        .expect("record");
        let unfinished = raw.finish().expect("zstd");
        assert!(matches!(
            read_all(&unfinished),
            Err(PartError::Truncated { part: 7, read: 1 })
        ));
        // A record whose length is not a flow's, and one that is not a record: errors, not
        // allocations or panics.
        for (record, says) in [
            (&(u32::MAX.to_le_bytes())[..], "more than any flow"),
            (&[3, 0, 0, 0, 9, 9, 9][..], "not a flow part's record"),
        ] {
            let bytes = zstd::encode_all(record, 1).expect("zstd");
            let e = read_all(&bytes).expect_err("bad record");
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
