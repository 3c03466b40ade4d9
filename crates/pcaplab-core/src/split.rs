//! Byte-range splits of one uncompressed pcap or pcapng capture, for many workers.
//!
//! [`plan`] cuts the object into [`ByteRange`]s. A range owns the records whose first byte is
//! inside it: range 0 also owns the file header. Each worker:
//!
//! 1. finds the first record boundary at or after its range's start with [`sync`], from a
//!    window of the object's bytes ([`window_len`] of them, or up to the end of the object);
//! 2. counts its frames with [`walk`], reading record headers only, up to the first record
//!    that starts at or after the range's end;
//!
//! then [`check_contiguous`] checks that every walk ends where the next one starts (a sync
//! fooled by a payload that looks like records becomes [`SplitError::Desync`], never a gap or
//! a duplicate), [`frame_bases`] numbers each range's first frame, and each range is read with
//! [`CaptureReader::resume`](crate::reader::CaptureReader::resume), which gives the frames
//! the whole-file reader gives for those records.
//!
//! A range that holds no record start (a range shorter than the record across it) "owns
//! nothing": its [`sync`] returns an offset at or after its end, and its walk is empty.
//!
//! pcapng sections: a worker needs the section state (the Section Header Block, the section's
//! Interface Description Blocks, and the global id of its first interface) at its start. The
//! [`Preamble`] of the head is right for every range unless a section header or an interface
//! description comes after the first packets; each [`Walk`] records the state it started with
//! and the state at its end, and [`check_contiguous`] reports a range walked with a stale one
//! ([`SplitError::State`]): walk it (and the ranges after it) again, in order, each with the
//! previous walk's [`Walk::state_at_next`]. [`sync`] with such a state returns its offset
//! directly.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::extract::{BOM, IDB, MAX_PREAMBLE, SHB};
use crate::reader::{
    CaptureFormat, CaptureReader, Chunk, Compression, MAX_RECORD, Magic, ReadError, hex_magic,
    read_some, sniff, u32_at,
};

/// The longest record the reader takes (its buffer grows to twice [`MAX_RECORD`], and a
/// record must fit in it strictly): a longer one is damage.
const READER_LIMIT: u64 = 2 * MAX_RECORD as u64;

/// How far back in time the next record of a pcap chain may go ([`sync`]): captures from
/// several queues are slightly out of order.
const CHAIN_BACK_NS: i64 = 10 * 1_000_000_000;
/// How far forward in time the next record of a pcap chain may go.
const CHAIN_FORWARD_NS: i64 = 7 * 86_400 * 1_000_000_000;
/// What a sync window holds beyond twice the largest record.
const WINDOW_SLACK: u64 = 64 << 10;
/// What a pcapng block may hold beyond the packet its interfaces allow (options, or a block
/// that is not a packet).
const NG_BLOCK_SLACK: u64 = 64 << 10;

/// Why a capture cannot be split, or a range not synchronised, walked or checked.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(
        "{} compressed captures are not split: they are read from the start",
        .compression.as_str()
    )]
    Compressed { compression: Compression },
    #[error("cannot split this capture: {reason} (only pcap and pcapng are split)")]
    Unsupported { reason: String },
    #[error("not a packet capture (first bytes: {magic})")]
    NotACapture { magic: String },
    #[error("the range size must be at least one byte")]
    ZeroRange,
    /// The file header (pcap) or section header block (pcapng) is cut short or invalid.
    #[error("bad capture header at byte {offset}: {reason}")]
    Header { offset: u64, reason: String },
    /// No record boundary in the window given (and the window does not reach the end).
    #[error("no record boundary found in the window from byte {offset}")]
    NoBoundary { offset: u64 },
    /// A record inside the range cannot be walked.
    #[error("damaged capture at byte {offset}: {reason}")]
    Damaged { offset: u64, reason: String },
    /// Range `range` starts at `found`, but the walk of the range before it ends at `expected`.
    #[error(
        "range {range} was synchronised at byte {found}, but the records before it end at \
         byte {expected}: a payload that looks like records fooled the synchronisation"
    )]
    Desync {
        range: usize,
        expected: u64,
        found: u64,
    },
    /// Range `range` was walked with another section state than the one the range before it
    /// ends with (a pcapng section header or interface description block came between).
    #[error(
        "range {range} was walked with a stale pcapng section state (a section header or \
         interface description block precedes it): walk it again with the previous walk's state"
    )]
    State { range: usize },
    #[error("read failed at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// One worker's share of the object: the records whose first byte is in `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub index: usize,
    pub start: u64,
    pub end: u64,
}

/// The ranges of one object: contiguous from 0 to `len`, at least one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPlan {
    pub format: CaptureFormat,
    pub len: u64,
    pub ranges: Vec<ByteRange>,
}

/// The capture format `head` (the first bytes of the object) starts with, if it can be split.
fn splittable(head: &[u8]) -> Result<CaptureFormat, SplitError> {
    match sniff(head) {
        Some(Magic::Compressed(compression)) => Err(SplitError::Compressed { compression }),
        Some(Magic::Capture(CaptureFormat::Snoop)) => Err(SplitError::Unsupported {
            reason: "a snoop capture".into(),
        }),
        Some(Magic::Capture(f)) => Ok(f),
        None => Err(SplitError::NotACapture {
            magic: hex_magic(&head[..head.len().min(8)]),
        }),
    }
}

/// Cut an object of `len` bytes, whose first bytes are `head` (at least its magic number),
/// into ranges of `range_bytes` (the last one shorter).
pub fn plan(len: u64, head: &[u8], range_bytes: u64) -> Result<SplitPlan, SplitError> {
    if range_bytes == 0 {
        return Err(SplitError::ZeroRange);
    }
    let format = splittable(head)?;
    let mut ranges = Vec::new();
    let mut start = 0u64;
    loop {
        let end = start.saturating_add(range_bytes).min(len);
        ranges.push(ByteRange {
            index: ranges.len(),
            start,
            end,
        });
        if end >= len {
            break;
        }
        start = end;
    }
    Ok(SplitPlan {
        format,
        len,
        ranges,
    })
}

/// What a worker needs to read records in the middle of a capture: the state the reader has
/// at byte [`offset`](Self::offset).
///
/// pcap: the 24-byte file header (byte order, µs or ns, snap length, link type, the
/// "modified" variant). pcapng: the current section's Section Header Block, its Interface
/// Description Blocks so far (in order), and the global id of its first interface
/// (`section_base`: interface ids run on across sections).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preamble {
    pub format: CaptureFormat,
    /// Where in the object this state holds.
    pub offset: u64,
    /// pcap: the file header; pcapng: the section header block.
    #[serde(with = "b64")]
    pub header: Vec<u8>,
    /// pcapng: the section's interface description blocks; pcap: none.
    #[serde(with = "b64_list")]
    pub interfaces: Vec<Vec<u8>>,
    pub section_base: u32,
}

impl Preamble {
    /// The state after the file header (pcap) or the first section header block (pcapng), at
    /// the start of `head`, the object's first bytes.
    pub fn from_head(head: &[u8]) -> Result<Preamble, SplitError> {
        let format = splittable(head)?;
        let header = match format {
            CaptureFormat::Pcap => head.get(..24).ok_or_else(|| SplitError::Header {
                offset: head.len() as u64,
                reason: "the object ends inside the 24-byte pcap file header".into(),
            })?,
            _ => {
                let bad = |reason: String| SplitError::Header { offset: 0, reason };
                let be = shb_order(head).map_err(bad)?;
                let len = u32_at(head, 4, be).unwrap_or(0) as usize;
                if !(28..=MAX_PREAMBLE).contains(&len) {
                    return Err(bad(format!("a {len}-byte section header block")));
                }
                head.get(..len).ok_or_else(|| SplitError::Header {
                    offset: head.len() as u64,
                    reason: "the object ends inside the section header block".into(),
                })?
            }
        };
        Ok(Preamble {
            format,
            offset: header.len() as u64,
            header: header.to_vec(),
            interfaces: Vec::new(),
            section_base: 0,
        })
    }

    /// Same section state (wherever it holds).
    pub fn same_state(&self, other: &Preamble) -> bool {
        (
            self.format,
            &self.header,
            &self.interfaces,
            self.section_base,
        ) == (
            other.format,
            &other.header,
            &other.interfaces,
            other.section_base,
        )
    }

    /// The bytes a reader is given before the records: the header and the interfaces.
    pub fn stream_bytes(&self) -> Vec<u8> {
        let mut bytes = self.header.clone();
        for idb in &self.interfaces {
            bytes.extend_from_slice(idb);
        }
        bytes
    }

    /// pcap: the file's byte order; pcapng: the section's.
    fn big_endian(&self) -> bool {
        match self.format {
            CaptureFormat::PcapNg => shb_order(&self.header).unwrap_or(false),
            _ => !matches!(
                u32_at(&self.header, 0, false),
                Some(0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34)
            ),
        }
    }

    /// pcap: what a chain of records is checked with.
    fn pcap(&self) -> PcapParams {
        let be = self.big_endian();
        let magic = u32_at(&self.header, 0, be).unwrap_or(0);
        let snaplen = u32_at(&self.header, 16, be).unwrap_or(0);
        PcapParams {
            big_endian: be,
            nanos: magic == 0xa1b2_3c4d,
            header: if magic == 0xa1b2_cd34 { 24 } else { 16 },
            max_cap: if snaplen == 0 || snaplen as usize > MAX_RECORD {
                MAX_RECORD as u64
            } else {
                u64::from(snaplen)
            },
        }
    }

    /// The largest record the synchronisation allows for (its chain covers more than this).
    pub fn max_record(&self) -> u64 {
        match self.format {
            CaptureFormat::PcapNg => {
                let be = self.big_endian();
                let snaplens: Vec<u32> = self
                    .interfaces
                    .iter()
                    .map(|idb| u32_at(idb, 12, be).unwrap_or(0))
                    .collect();
                let sane = !snaplens.is_empty()
                    && snaplens.iter().all(|&s| s != 0 && s as usize <= MAX_RECORD);
                let largest = match sane {
                    true => snaplens.iter().copied().max().map_or(0, u64::from),
                    false => MAX_RECORD as u64,
                };
                largest + 32 + NG_BLOCK_SLACK
            }
            _ => {
                let p = self.pcap();
                p.header as u64 + p.max_cap
            }
        }
    }
}

/// How many bytes from a range's start [`sync`] needs (fewer if the object ends first).
pub fn window_len(preamble: &Preamble) -> u64 {
    2 * preamble.max_record() + WINDOW_SLACK
}

/// The byte order of the section header block at the start of `block`: big-endian or not.
fn shb_order(block: &[u8]) -> Result<bool, String> {
    if u32_at(block, 0, false) != Some(SHB) {
        return Err("no section header block".into());
    }
    match u32_at(block, 8, false) {
        Some(BOM) => Ok(false),
        Some(m) if m == BOM.swap_bytes() => Ok(true),
        Some(m) => Err(format!(
            "section header block with byte-order magic {m:08x}"
        )),
        None => Err("section header block cut short".into()),
    }
}

struct PcapParams {
    big_endian: bool,
    nanos: bool,
    /// Record header bytes: 16, 24 in the modified format.
    header: usize,
    /// The most captured bytes a record may have: the snap length when it is sane.
    max_cap: u64,
}

/// Find the first record boundary at or after `window_start`; `window` is the object's bytes
/// from there ([`window_len`] of them, or all up to the end of the object with `at_eof`).
///
/// A result at or after the range's end means the range owns nothing. With `at_eof`, the end
/// of the object is a boundary: a window without a record start gives its end. If the
/// preamble holds at or after `window_start` (the head's, for range 0; a walk's
/// [`Walk::state_at_next`]), its offset is the boundary.
///
/// Every offset is a candidate, byte after byte; a candidate is taken when the chain of
/// records that starts there is believable header after header (pcap: no more captured bytes
/// than the snap length, or [`MAX_RECORD`] if it is not sane, nor than the original length; a
/// sub-second part less than a second; timestamps that go forward, within a week, or back by
/// at most 10 s. pcapng: a known block type, a length that is a multiple of 4 and at least
/// 12, the same length at the block's end, an interface the section has) and either covers
/// more than the largest record ([`Preamble::max_record`]) past the candidate, or ends at the
/// end of the object (exactly, or inside a last record whose header is whole and believable).
///
/// Why that length: the bytes before the first true boundary `b` belong to a record `R` that
/// starts before the window, and `b - candidate` is less than `R`'s length, so a false chain
/// that starts inside `R` must cross `b`: a false header must then straddle `b` and still be
/// believable with the true record's bytes in it, or a false record must end exactly at `b`
/// and the chain go on along the true records. The latter (a payload that is itself a capture
/// ending where the packet ends) cannot be told from the truth here; the walk of the range
/// before, which ends at `b`, can: [`check_contiguous`] reports it.
pub fn sync(
    preamble: &Preamble,
    window: &[u8],
    window_start: u64,
    at_eof: bool,
) -> Result<u64, SplitError> {
    if window_start <= preamble.offset {
        return Ok(preamble.offset);
    }
    let max = preamble.max_record();
    let pcap = preamble.pcap();
    let (be, interfaces) = (preamble.big_endian(), preamble.interfaces.len());
    // A chain that ends in a record cut by the end of the object is believed only when no
    // candidate has a whole chain: a lone false header claiming more than is left is likelier
    // than a cut capture. The nodes of such chains are remembered: a later candidate whose
    // chain reaches one ends the same way (it is even further from covering `max`), so a cut
    // capture's window costs each record once, not once per candidate before it.
    let mut cut_nodes = std::collections::HashSet::new();
    let mut path = Vec::new();
    let mut first_cut = None;
    for i in 0..window.len() {
        path.clear();
        let mut chain = Chain {
            w: &window[i..],
            base: i,
            max,
            at_eof,
            known_cut: &cut_nodes,
            path: &mut path,
        };
        let end = match preamble.format {
            CaptureFormat::PcapNg => chain.ng(be, interfaces),
            _ => chain.pcap(&pcap),
        };
        match end {
            ChainEnd::Whole => return Ok(window_start + i as u64),
            ChainEnd::Cut => {
                first_cut.get_or_insert(i);
                cut_nodes.extend(path.iter().copied());
            }
            ChainEnd::Broken => {}
        }
    }
    if let Some(i) = first_cut {
        return Ok(window_start + i as u64);
    }
    if at_eof {
        return Ok(window_start + window.len() as u64);
    }
    Err(SplitError::NoBoundary {
        offset: window_start,
    })
}

/// How a chain of records from a candidate ends (see [`sync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChainEnd {
    /// Believable, and covers more than the largest record or ends exactly at the end.
    Whole,
    /// Believable up to a record cut by the end of the object.
    Cut,
    /// Not a chain of records (or undecided: the window ends first).
    Broken,
}

/// One candidate's chain: `w` is the window from the candidate, at `base` in the window.
struct Chain<'a> {
    w: &'a [u8],
    base: usize,
    max: u64,
    at_eof: bool,
    known_cut: &'a std::collections::HashSet<usize>,
    path: &'a mut Vec<usize>,
}

impl Chain<'_> {
    /// What a chain that is believable up to `pos` is, at the top of each step: `None` to go
    /// on.
    fn step(&mut self, pos: usize) -> Option<ChainEnd> {
        if pos as u64 > self.max {
            return Some(ChainEnd::Whole);
        }
        if pos == self.w.len() {
            return Some(if self.at_eof && pos > 0 {
                ChainEnd::Whole
            } else {
                ChainEnd::Broken
            });
        }
        if self.known_cut.contains(&(self.base + pos)) {
            return Some(ChainEnd::Cut);
        }
        self.path.push(self.base + pos);
        None
    }

    /// The object ends inside the record at `pos` (`believable`: it may be a cut record).
    fn cut(&self, believable: bool) -> ChainEnd {
        if self.at_eof && believable {
            ChainEnd::Cut
        } else {
            ChainEnd::Broken
        }
    }

    /// pcap records.
    fn pcap(&mut self, p: &PcapParams) -> ChainEnd {
        let second = if p.nanos { 1_000_000_000 } else { 1_000_000 };
        let mut pos = 0usize;
        let mut prev: Option<i64> = None;
        loop {
            if let Some(end) = self.step(pos) {
                return end;
            }
            let word = |at: usize| u32_at(self.w, pos + at, p.big_endian);
            let (Some(sec), Some(frac), Some(incl), Some(orig)) =
                (word(0), word(4), word(8), word(12))
            else {
                // A header cut by the end of the object, after a believable record.
                return self.cut(pos > 0);
            };
            if frac >= second || u64::from(incl) > p.max_cap || orig < incl {
                return ChainEnd::Broken;
            }
            let ts =
                i64::from(sec) * 1_000_000_000 + i64::from(frac) * if p.nanos { 1 } else { 1000 };
            if let Some(prev) = prev
                && (ts < prev - CHAIN_BACK_NS || ts > prev + CHAIN_FORWARD_NS)
            {
                return ChainEnd::Broken;
            }
            prev = Some(ts);
            let next = pos + p.header + incl as usize;
            if next > self.w.len() {
                // A record cut by the end of the object, or by the window (undecided).
                return self.cut(pos + p.header <= self.w.len());
            }
            pos = next;
        }
    }

    /// pcapng blocks, in byte order `be` of a section with `interfaces` interfaces so far.
    fn ng(&mut self, mut be: bool, mut interfaces: usize) -> ChainEnd {
        let mut pos = 0usize;
        loop {
            if let Some(end) = self.step(pos) {
                return end;
            }
            let w = self.w;
            if u32_at(w, pos, false) == Some(SHB) {
                match shb_order(&w[pos..]) {
                    Ok(order) => be = order,
                    Err(_) => return self.cut(pos > 0 && w.len() - pos < 12),
                }
                interfaces = 0;
            }
            let word = |at: usize| u32_at(w, pos + at, be);
            let (Some(t), Some(len)) = (word(0), word(4)) else {
                return self.cut(pos > 0);
            };
            if !known_block(t) || len < 12 || len % 4 != 0 || u64::from(len) >= READER_LIMIT {
                return ChainEnd::Broken;
            }
            let len = len as usize;
            match t {
                6 => match (word(8), word(20)) {
                    (Some(id), Some(cap)) if len >= 32 => {
                        if id as usize >= interfaces || cap as usize + 32 > len {
                            return ChainEnd::Broken;
                        }
                    }
                    (None, _) | (_, None) => return self.cut(pos > 0),
                    _ => return ChainEnd::Broken,
                },
                3 if len < 16 || interfaces == 0 => return ChainEnd::Broken,
                _ => {}
            }
            let next = pos + len;
            let Some(trailer) = u32_at(w, next - 4, be) else {
                return self.cut(matches!(t, 2 | 3 | 6));
            };
            if trailer as usize != len {
                return ChainEnd::Broken;
            }
            interfaces += usize::from(t == IDB);
            pos = next;
        }
    }
}

/// pcapng block types a chain may hold.
fn known_block(t: u32) -> bool {
    matches!(t, 1..=10 | SHB | 0x0bad | 0x4000_0bad | 0x8000_0001)
}

/// What the count pass found in one range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    /// The first record boundary of the range (at or after its end: it owns nothing).
    pub start: u64,
    /// The range's end, as walked to.
    pub end: u64,
    /// Frames in the range, as the reader numbers them.
    pub frames: u64,
    /// Offset of the first record at or after `end`, or of the end of the object.
    pub next: u64,
    /// The state the walk started with.
    pub state_at_start: Preamble,
    /// The state at `next`: the next range's.
    pub state_at_next: Preamble,
}

impl Walk {
    /// The range holds no record start.
    pub fn owns_nothing(&self) -> bool {
        self.start >= self.end
    }
}

/// Count the frames of the records from `start` (a record boundary, from [`sync`]) up to the
/// first record that starts at or after `end`; `input` is the object's bytes from `start`.
///
/// Reads record headers and skips the rest (pcapng: section header and interface description
/// blocks are read whole, they change the state). A record cut by the end of the object is
/// counted as the reader counts it (a frame salvaged from what is there, if its header is
/// whole and believable), and `next` is then the end of the object. A record the reader
/// would refuse for its framing (longer than the reader takes, a pcapng block shorter than
/// its header, an unknown byte order, a packet on an interface the section lacks) is an error
/// naming its offset; damage the reader finds inside a record (a malformed option, say) is for
/// the reader of the range to report.
pub fn walk(
    preamble: &Preamble,
    mut input: impl Read,
    start: u64,
    end: u64,
) -> Result<Walk, SplitError> {
    let mut state = preamble.clone();
    state.offset = start;
    let state_at_start = state.clone();
    let mut frames = 0u64;
    let mut pos = start;
    let mut header = Vec::new();
    let pcap = preamble.pcap();
    while pos < end {
        state.offset = pos;
        let io_err = |source| SplitError::Io {
            offset: pos,
            source,
        };
        let damaged = |reason: String| SplitError::Damaged {
            offset: pos,
            reason,
        };
        // The first bytes of the record: `want` of them, then what the record says.
        header.clear();
        let want = match preamble.format {
            CaptureFormat::PcapNg => 8,
            _ => pcap.header,
        };
        let got = read_into(&mut input, &mut header, want).map_err(io_err)?;
        if got == 0 {
            break;
        }
        if got < want {
            frames += cut_frames(&state, &header, 0)?;
            pos += got as u64;
            break;
        }
        let (len, is_frame) = match preamble.format {
            CaptureFormat::PcapNg => {
                let t0 = u32_at(&header, 0, false).unwrap_or(0);
                let mut be = state.big_endian();
                if t0 == SHB {
                    if read_into(&mut input, &mut header, 4).map_err(io_err)? < 4 {
                        frames += cut_frames(&state, &header, 0)?;
                        pos += header.len() as u64;
                        break;
                    }
                    be = shb_order(&header).map_err(damaged)?;
                }
                let t = u32_at(&header, 0, be).unwrap_or(0);
                let len = u64::from(u32_at(&header, 4, be).unwrap_or(0));
                if len < 12 {
                    return Err(damaged(format!(
                        "a block of {len} bytes, less than its header"
                    )));
                }
                let keep = if t == SHB || t == IDB {
                    if len > MAX_PREAMBLE as u64 {
                        return Err(damaged(format!("a {len}-byte section or interface block")));
                    }
                    len
                } else if matches!(t, 2 | 3 | 6 | 0x0200_0000) {
                    len.min(28)
                } else {
                    header.len() as u64
                };
                let need = keep - header.len() as u64;
                if (read_into(&mut input, &mut header, need as usize).map_err(io_err)? as u64)
                    < need
                {
                    frames += cut_frames(&state, &header, 0)?;
                    pos += header.len() as u64;
                    break;
                }
                let is_frame = match t {
                    SHB => {
                        state.section_base = state
                            .section_base
                            .saturating_add(state.interfaces.len() as u32);
                        state.interfaces.clear();
                        state.header = header.clone();
                        false
                    }
                    IDB => {
                        state.interfaces.push(header.clone());
                        false
                    }
                    6 => match u32_at(&header, 8, be) {
                        Some(id) if (id as usize) < state.interfaces.len() => true,
                        Some(id) => {
                            return Err(damaged(format!(
                                "enhanced packet block names interface {id} but the section \
                                 has {}",
                                state.interfaces.len()
                            )));
                        }
                        // Shorter than an EPB header: the reader finds it malformed.
                        None => true,
                    },
                    3 if state.interfaces.is_empty() => {
                        return Err(damaged(
                            "simple packet block in a section without interfaces".into(),
                        ));
                    }
                    // pcap-parser reads an unknown block's type little-endian whatever the
                    // section's byte order: the reader takes the obsolete Packet Block (2) in
                    // either (see `reader::ng_block`).
                    2 | 3 | 0x0200_0000 => true,
                    _ => false,
                };
                (len, is_frame)
            }
            _ => {
                let caplen = u32_at(&header, 8, pcap.big_endian).unwrap_or(0);
                (pcap.header as u64 + u64::from(caplen), true)
            }
        };
        let rest = len - header.len() as u64;
        // A record longer than the reader takes is damage, unless the object ends inside it.
        let skip = rest.min(READER_LIMIT);
        let skipped = io::copy(&mut (&mut input).take(skip), &mut io::sink()).map_err(io_err)?;
        if skipped < skip {
            frames += cut_frames(&state, &header, skipped)?;
            pos += header.len() as u64 + skipped;
            break;
        }
        if len >= READER_LIMIT {
            return Err(damaged(format!(
                "record of {len} bytes, larger than the reader takes: a damaged length field?"
            )));
        }
        frames += u64::from(is_frame);
        pos += len;
    }
    state.offset = pos;
    Ok(Walk {
        start,
        end,
        frames,
        next: pos,
        state_at_start,
        state_at_next: state,
    })
}

/// Append up to `n` bytes of `input` to `buf`; how many came.
fn read_into(input: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    let from = buf.len();
    buf.resize(from + n, 0);
    let (got, failed) = read_some(input, &mut buf[from..]);
    buf.truncate(from + got);
    match failed {
        Some(e) => Err(e),
        None => Ok(got),
    }
}

/// The frames the reader makes of the record at `state.offset` that the object ends inside:
/// its first bytes `header`, then `more` bytes. The reader itself decides, from a copy of the
/// record whose bytes after `header` are zeros (what it keeps depends on the header and on how
/// much is there, not on the packet's bytes).
fn cut_frames(state: &Preamble, header: &[u8], more: u64) -> Result<u64, SplitError> {
    let more = more.min(READER_LIMIT + 8) as usize;
    let mut record = header.to_vec();
    record.resize(header.len() + more, 0);
    let offset = state.offset;
    let as_split = |e: ReadError| SplitError::Damaged {
        offset,
        reason: format!("the reader cannot resume here: {e}"),
    };
    let mut reader = CaptureReader::resume(
        state,
        Box::new(io::Cursor::new(record)),
        offset,
        1,
        u64::MAX,
    )
    .map_err(as_split)?;
    let mut chunk = Chunk::default();
    while let Ok(true) = reader.fill(&mut chunk, usize::MAX, usize::MAX) {}
    Ok(chunk.frames.len() as u64)
}

/// Check that the walks of consecutive ranges (in order, all of them) fit: each ends where
/// the next starts, and with the state the next started with.
///
/// On [`SplitError::Desync`] or [`SplitError::State`] for range `k`, the walk of range `k - 1`
/// is right about where range `k` starts and in which state (range 0 starts at the file
/// header, exactly): walking range `k` again from `expected` with that walk's
/// [`Walk::state_at_next`] repairs it, at the cost of one more walk of the range.
pub fn check_contiguous(walks: &[Walk]) -> Result<(), SplitError> {
    for (i, pair) in walks.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        if a.next != b.start {
            return Err(SplitError::Desync {
                range: i + 1,
                expected: a.next,
                found: b.start,
            });
        }
        if !a.state_at_next.same_state(&b.state_at_start) {
            return Err(SplitError::State { range: i + 1 });
        }
    }
    Ok(())
}

/// Each range's first frame number: 1 plus the frames of the ranges before it.
pub fn frame_bases(walks: &[Walk]) -> Vec<u64> {
    let mut next = 1u64;
    walks
        .iter()
        .map(|w| {
            let base = next;
            next = next.saturating_add(w.frames);
            base
        })
        .collect()
}

/// Bytes as base64 text in the plan's JSON.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A list of byte strings as base64 texts.
mod b64_list {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|b| STANDARD.encode(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .into_iter()
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .collect()
    }
}
