//! Capture framing: pcap (both byte orders, µs/ns, the "modified" variant), pcapng (sections,
//! interfaces, EPB/SPB/OPB) and Sun snoop, each optionally gzip- or zstd-compressed.
//!
//! Framing is sequential and cheap; the reader copies each frame into a [`Chunk`] so that the
//! expensive part (dissection, column building, encoding) can run on other threads while the
//! reader goes on. Memory is the chunk being filled plus pcap-parser's buffer, never the file.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

use crate::dissect::defrag::may_hold_fragment;

/// pcap-parser's buffer starts at this size and doubles (up to [`MAX_RECORD`]) for larger records.
const INITIAL_BUFFER: usize = 1 << 20;
/// The largest record we accept. A damaged header claiming gigabytes must not make us allocate
/// them; real packets (BIG TCP, jumbo frames, USB) stay far below this.
pub const MAX_RECORD: usize = 16 << 20;

/// Why reading a capture stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input does not start with any capture (or compression) magic number.
    #[error("not a packet capture (first bytes: {magic})")]
    NotACapture { magic: String },
    /// A capture we recognise but cannot read (e.g. pcap version 1).
    #[error("unsupported capture: {reason}")]
    Unsupported { reason: String },
    /// The capture is damaged at `offset` (in the decompressed stream).
    #[error("damaged capture at byte {offset}: {reason}")]
    Damaged { offset: u64, reason: String },
    /// The input could not be read (I/O or decompression failure).
    #[error("read failed at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// The container format, as recognised from the magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
    Snoop,
}

impl CaptureFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::PcapNg => "pcapng",
            CaptureFormat::Snoop => "snoop",
        }
    }
}

/// Compression wrapped around the capture, recognised from the magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What the first bytes of an input say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    Capture(CaptureFormat),
    Compressed(Compression),
}

/// Recognise a capture or a compressed stream from its first (up to 8) bytes.
pub fn sniff(head: &[u8]) -> Option<Magic> {
    let b4: [u8; 4] = head.get(..4)?.try_into().ok()?;
    match b4 {
        [0x1f, 0x8b, _, _] => Some(Magic::Compressed(Compression::Gzip)),
        [0x28, 0xb5, 0x2f, 0xfd] => Some(Magic::Compressed(Compression::Zstd)),
        [0x0a, 0x0d, 0x0d, 0x0a] => Some(Magic::Capture(CaptureFormat::PcapNg)),
        _ => match u32::from_le_bytes(b4) {
            // µs, ns and Kuznetzov's "modified" pcap, in both byte orders.
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 | 0xa1b2_cd34 | 0x34cd_b2a1 => {
                Some(Magic::Capture(CaptureFormat::Pcap))
            }
            _ if head.starts_with(b"snoop\0\0\0") => Some(Magic::Capture(CaptureFormat::Snoop)),
            _ => None,
        },
    }
}

/// `ts_ns` of a frame without a timestamp (pcapng Simple Packet Blocks carry none).
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// What an input is, from its first bytes (looking inside gzip/zstd): `None` if it is not a
/// capture. Reads at most a few kilobytes.
pub fn probe(
    mut input: impl Read + Send + 'static,
) -> io::Result<Option<(Compression, CaptureFormat)>> {
    let mut head = [0u8; 8];
    let n = read_full(&mut input, &mut head)?;
    match sniff(&head[..n]) {
        Some(Magic::Capture(f)) => Ok(Some((Compression::None, f))),
        Some(Magic::Compressed(c)) => {
            let mut inner = decompress(c, &head[..n], input)?;
            let mut head = [0u8; 8];
            // A corrupt compressed stream is "not a capture" for probing purposes.
            let n = read_full(&mut inner, &mut head).unwrap_or(0);
            Ok(match sniff(&head[..n]) {
                Some(Magic::Capture(f)) => Some((c, f)),
                _ => None,
            })
        }
        None => Ok(None),
    }
}

/// The capture stream of `input`: decompressed if it is gzip or zstd (recognised by its first
/// bytes), else `input` itself. For reading records back at the offsets the rows give.
pub fn decompressed(mut input: impl Read + Send + 'static) -> io::Result<(Compression, Input)> {
    let mut head = [0u8; 8];
    let n = read_full(&mut input, &mut head)?;
    let c = match sniff(&head[..n]) {
        Some(Magic::Compressed(c)) => c,
        _ => Compression::None,
    };
    Ok((c, decompress(c, &head[..n], input)?))
}

/// The decompressed stream of `input`, whose first bytes `head` were already read from it.
fn decompress(c: Compression, head: &[u8], input: impl Read + Send + 'static) -> io::Result<Input> {
    let chained = io::Cursor::new(head.to_vec()).chain(input);
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(chained)?),
        Compression::None => Box::new(chained),
    })
}

/// Where a frame's record is in the capture stream (after decompression): the byte offset of
/// its first byte (the record header, or the pcapng block's type) and its whole length, header
/// and padding included. Reading `len` bytes at `offset` gives the record back, byte for byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordSpan {
    pub offset: u64,
    pub len: u32,
}

/// One frame's metadata; its bytes are `chunk.data[start..start + cap_len]`.
#[derive(Clone, Copy, Debug)]
pub struct FrameMeta {
    pub start: u32,
    pub cap_len: u32,
    pub wire_len: u32,
    /// Nanoseconds since the Unix epoch, UTC, or [`NO_TIMESTAMP`].
    pub ts_ns: i64,
    pub interface_id: u32,
    pub link_type: u16,
    /// The capture ends inside this frame's record, after its header: the frame is salvaged
    /// from what is there, `cap_len` of the `claimed_len` captured bytes the header announces
    /// (all of them when the cut falls after the packet bytes, in a snoop record's padding or a
    /// pcapng block's options or trailing length). Only ever the last frame of a capture; its
    /// `decode_error` says so ([`FrameMeta::cut_note`]).
    pub cut_short: bool,
    /// The captured length the record's header announces: `cap_len`, except for a frame
    /// [`cut_short`](Self::cut_short) inside its packet bytes.
    pub claimed_len: u32,
}

// The two fields above live in what was alignment padding: a frame's metadata stays 32 bytes.
const _: () = assert!(std::mem::size_of::<FrameMeta>() == 32);

impl FrameMeta {
    /// The `decode_error` of a frame salvaged from a record the capture ends inside
    /// ([`cut_short`](Self::cut_short)); `None` for every other frame.
    ///
    /// The cut comes first, as it is the cause: what the dissection of the bytes present found
    /// wrong (`dissected`, typically "truncated TCP header") follows it after "; ", since it
    /// still says how far the decoding got. (At most one such frame per capture: the
    /// allocation is of no account.)
    pub fn cut_note(&self, dissected: Option<&str>) -> Option<String> {
        if !self.cut_short {
            return None;
        }
        let mut note = format!(
            "truncated record: {} of {} captured bytes present (the capture ends inside it)",
            self.cap_len, self.claimed_len
        );
        if let Some(e) = dissected {
            note.push_str("; ");
            note.push_str(e);
        }
        Some(note)
    }
}

/// A run of consecutive frames, the unit of parallel work.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Frame number (1-based) of the first frame in this chunk.
    pub first_frame: u64,
    /// Network time before the chunk: the latest timestamp of every frame the reader framed
    /// before it, if any had one. Flows judge idleness by it, so that which packets make a flow
    /// does not depend on where chunks end, even where timestamps go backwards.
    pub time_before: Option<i64>,
    pub frames: Vec<FrameMeta>,
    /// Where each frame's record is in the capture stream, one per frame.
    pub records: Vec<RecordSpan>,
    pub data: Vec<u8>,
    /// What IP fragment reassembly found in these frames (see [`crate::dissect::defrag`]);
    /// empty unless the chunk was scanned.
    pub frags: crate::dissect::defrag::ChunkFrags,
    /// Indices of the frames that may hold an IP fragment, by a quick look taken as each was
    /// framed, while its bytes were in cache ([`may_hold_fragment`]): the reassembly's scan
    /// decodes only these.
    pub maybe_fragments: Vec<u32>,
}

impl Chunk {
    /// Empty it for the next frames, keeping its buffers.
    pub fn clear(&mut self) {
        self.first_frame = 0;
        self.time_before = None;
        self.frames.clear();
        self.records.clear();
        self.data.clear();
        self.frags = Default::default();
        self.maybe_fragments.clear();
    }

    /// Bytes its buffers hold (their capacity, not their use).
    pub fn capacity_bytes(&self) -> usize {
        self.data.capacity()
            + self.frames.capacity() * std::mem::size_of::<FrameMeta>()
            + self.records.capacity() * std::mem::size_of::<RecordSpan>()
            + self.maybe_fragments.capacity() * std::mem::size_of::<u32>()
    }

    pub fn frame_data(&self, f: &FrameMeta) -> &[u8] {
        let start = f.start as usize;
        &self.data[start..start + f.cap_len as usize]
    }

    /// The record of every frame appended since the last call is the `len` bytes at `offset`
    /// (a record holds at most one frame).
    fn placed(&mut self, offset: u64, len: u64) {
        let span = RecordSpan {
            offset,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        };
        self.records.resize(self.frames.len(), span);
    }

    /// Append a frame.
    pub(crate) fn push(
        &mut self,
        ts_ns: i64,
        interface_id: u32,
        link_type: u16,
        wire_len: u32,
        bytes: &[u8],
    ) {
        let start = self.data.len() as u32;
        if may_hold_fragment(link_type, bytes) {
            self.maybe_fragments.push(self.frames.len() as u32);
        }
        self.data.extend_from_slice(bytes);
        self.frames.push(FrameMeta {
            start,
            cap_len: bytes.len() as u32,
            wire_len,
            ts_ns,
            interface_id,
            link_type,
            cut_short: false,
            claimed_len: bytes.len() as u32,
        });
    }

    /// Append a frame salvaged from a record the capture ends inside (see
    /// [`FrameMeta::cut_short`]): `present` is what is left of the record after its header,
    /// of which at most the `claimed` captured bytes are kept. Nothing is appended for a claim
    /// beyond [`MAX_RECORD`]: a damaged length field, not a cut record.
    fn push_cut(
        &mut self,
        ts_ns: i64,
        interface_id: u32,
        link_type: u16,
        wire_len: u32,
        present: &[u8],
        claimed: u32,
    ) {
        if claimed as usize > MAX_RECORD {
            return;
        }
        let bytes = &present[..present.len().min(claimed as usize)];
        self.push(ts_ns, interface_id, link_type, wire_len, bytes);
        if let Some(f) = self.frames.last_mut() {
            f.cut_short = true;
            f.claimed_len = claimed;
        }
    }
}

/// Keeps the I/O error that pcap-parser reduces to `PcapError::ReadError`, so that we can
/// report the real cause (e.g. a corrupt gzip stream).
struct ErrorKeepingReader<R> {
    inner: R,
    last_error: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read> Read for ErrorKeepingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    if let Ok(mut slot) = self.last_error.lock() {
                        *slot = Some(e);
                    }
                    return Err(copy);
                }
                ok => return ok,
            }
        }
    }
}

/// A byte stream the reader takes.
pub type Input = Box<dyn Read + Send>;

/// Per-interface state of a pcapng section (or the single "interface" of a pcap file).
#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: u16,
    /// if_tsresol as stored: bit 7 clear = 10^-n s, set = 2^-n s.
    tsresol: u8,
    tsoffset_s: i64,
    snaplen: u32,
}

/// pcap-parser's streaming reader for either container, behind one interface: the loop that
/// pulls blocks, refills and grows the buffer is the same for both.
type BlockReader = Box<dyn PcapReaderIterator + Send>;

enum Framer {
    /// pcap or pcapng, framed by pcap-parser.
    Blocks {
        reader: BlockReader,
        kind: BlockKind,
    },
    Snoop {
        input: ErrorKeepingReader<Input>,
        link_type: u16,
        offset: u64,
        buf: Vec<u8>,
    },
}

/// What differs between pcap and pcapng: the state their blocks are read with.
enum BlockKind {
    Pcap {
        nanos: bool,
        big_endian: bool,
        link_type: u16,
        /// The file header's snap length (0: none given).
        snaplen: u32,
        /// 16 bytes, or 24 in the "modified" format (as pcap-parser reads it).
        record_header: usize,
    },
    PcapNg {
        /// Interfaces of the current section.
        interfaces: Vec<Interface>,
        /// Global id of the current section's first interface (ids run on across sections).
        section_base: u32,
        big_endian: bool,
    },
}

impl BlockKind {
    /// Take one block: a packet goes into `chunk`, a header or interface updates the state.
    fn handle(
        &mut self,
        block: PcapBlockOwned<'_>,
        chunk: &mut Chunk,
        offset: u64,
    ) -> Result<(), ReadError> {
        match (self, block) {
            (
                BlockKind::Pcap {
                    nanos, link_type, ..
                },
                PcapBlockOwned::Legacy(b),
            ) => {
                let ts = pcap_ts(*nanos, b.ts_sec, b.ts_usec);
                let cap = b.data.len().min(b.caplen as usize);
                chunk.push(ts, 0, *link_type, b.origlen, &b.data[..cap]);
                Ok(())
            }
            (
                BlockKind::PcapNg {
                    interfaces,
                    section_base,
                    big_endian,
                },
                PcapBlockOwned::NG(block),
            ) => ng_block(&block, chunk, interfaces, section_base, big_endian, offset),
            _ => Ok(()),
        }
    }

    fn big_endian(&self) -> bool {
        match self {
            BlockKind::Pcap { big_endian, .. } | BlockKind::PcapNg { big_endian, .. } => {
                *big_endian
            }
        }
    }

    /// Salvage the packet record the input ends (or fails) inside: `data` is what is left of
    /// it (pcap-parser's unconsumed bytes, which start with it). A row needs the record's
    /// header whole (pcap: 16 bytes, 24 in the modified format; an Enhanced or obsolete Packet
    /// Block's 28 bytes up to its original length; a Simple Packet Block's 12) and believable
    /// (see [`plausible_record`], [`ng_salvage`]); the row holds the packet bytes present,
    /// up to the captured length claimed. A cut inside a header leaves nothing to show.
    fn salvage(&self, data: &[u8], chunk: &mut Chunk) {
        match self {
            BlockKind::Pcap {
                nanos,
                big_endian,
                link_type,
                snaplen,
                record_header,
            } => {
                let word = |at| u32_at(data, at, *big_endian);
                let (Some(sec), Some(frac), Some(caplen), Some(origlen)) =
                    (word(0), word(4), word(8), word(12))
                else {
                    return;
                };
                let Some(present) = data.get(*record_header..) else {
                    return;
                };
                // All there: it failed to parse for another reason, it is not cut.
                if present.len() >= caplen as usize
                    || !plausible_record(*nanos, frac, caplen, origlen, *snaplen)
                {
                    return;
                }
                let ts = pcap_ts(*nanos, sec, frac);
                chunk.push_cut(ts, 0, *link_type, origlen, present, caplen);
            }
            BlockKind::PcapNg {
                interfaces,
                section_base,
                big_endian,
            } => ng_salvage(data, *big_endian, interfaces, *section_base, chunk),
        }
    }
}

/// A pcap record's timestamp in ns since the epoch (`frac`: µs, or ns in a nanosecond file).
fn pcap_ts(nanos: bool, sec: u32, frac: u32) -> i64 {
    let frac = if nanos {
        i64::from(frac)
    } else {
        i64::from(frac) * 1000
    };
    i64::from(sec) * 1_000_000_000 + frac
}

/// Whether the header of a pcap or snoop record cut short is believable enough to be kept as a
/// row: its sub-second part is less than a second, and it claims no more captured bytes than
/// the packet's original length and the file's snap length (0: none). A cut record is usually
/// what a writer had written when it stopped; but a file damaged earlier (a wrong length throws
/// the framing off, and the "header" at the damage is packet bytes) also ends inside a
/// "record", whose fields are then noise. wiretap counts the same signs against a pcap variant
/// it is trying out (`libpcap_try_header`).
fn plausible_record(nanos: bool, frac: u32, caplen: u32, origlen: u32, snaplen: u32) -> bool {
    let second = if nanos { 1_000_000_000 } else { 1_000_000 };
    frac < second && caplen <= origlen && (snaplen == 0 || caplen <= snaplen)
}

/// [`BlockKind::salvage`] for pcapng: an Enhanced, Simple or obsolete Packet Block cut short.
/// Believable means: the block length leaves room for the captured length claimed (as
/// pcap-parser requires of a whole block), the block is longer than what is there (else it
/// failed to parse for another reason), and its interface exists.
fn ng_salvage(
    data: &[u8],
    big_endian: bool,
    interfaces: &[Interface],
    section_base: u32,
    chunk: &mut Chunk,
) {
    let word = |at| u32_at(data, at, big_endian);
    let (Some(block_type), Some(block_len)) = (word(0), word(4)) else {
        return;
    };
    if data.len() as u64 >= u64::from(block_len) {
        return;
    }
    match block_type {
        EPB_TYPE | OPB_TYPE => {
            let (Some(id), Some(ts_high), Some(ts_low), Some(caplen), Some(origlen)) =
                (word(8), word(12), word(16), word(20), word(24))
            else {
                return;
            };
            // The obsolete Packet Block's interface is 16 bits (then 16 bits of drop count).
            let if_id = match (block_type, data.get(8..10)) {
                (OPB_TYPE, Some(&[a, b])) if big_endian => u32::from(u16::from_be_bytes([a, b])),
                (OPB_TYPE, Some(&[a, b])) => u32::from(u16::from_le_bytes([a, b])),
                _ => id,
            };
            let (Some(iface), Some(present)) = (interfaces.get(if_id as usize), data.get(28..))
            else {
                return;
            };
            if u64::from(caplen) + 32 > u64::from(block_len) {
                return;
            }
            let ts = ts_ns(iface, ts_high, ts_low);
            let id = section_base.saturating_add(if_id);
            chunk.push_cut(ts, id, iface.link_type, origlen, present, caplen);
        }
        SPB_TYPE => {
            let (Some(origlen), Some(iface), Some(present)) =
                (word(8), interfaces.first(), data.get(12..))
            else {
                return;
            };
            // What a whole block would give (see `ng_block`): the original length, within
            // the block and the interface's snap length.
            let Some(mut claim) = block_len.checked_sub(16).map(|room| room.min(origlen)) else {
                return;
            };
            if iface.snaplen != 0 {
                claim = claim.min(iface.snaplen);
            }
            chunk.push_cut(
                NO_TIMESTAMP,
                section_base,
                iface.link_type,
                origlen,
                present,
                claim,
            );
        }
        _ => {}
    }
}

/// The 32-bit word at `at` of `b`, if `b` holds it.
pub(crate) fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    })
}

/// Streams frames out of a capture, detecting compression and format by magic number.
pub struct CaptureReader {
    framer: Framer,
    format: CaptureFormat,
    compression: Compression,
    last_io_error: Arc<Mutex<Option<io::Error>>>,
    buffer_capacity: usize,
    next_frame: u64,
    /// The latest timestamp of the frames framed so far (see [`Chunk::time_before`]).
    latest_ts: Option<i64>,
    finished: bool,
    /// Set by [`CaptureReader::resume`]: where the records read are in the object.
    resumed: Option<Resumed>,
}

/// A reader of one byte range ([`CaptureReader::resume`]): it reads a stream made of the
/// preamble's `skip` bytes, then the object's bytes from `start`, and stops before the first
/// record that starts at or after `end`.
#[derive(Clone, Copy, Debug)]
struct Resumed {
    skip: u64,
    start: u64,
    end: u64,
}

/// Read until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    match read_some(r, buf) {
        (_, Some(e)) => Err(e),
        (n, None) => Ok(n),
    }
}

/// Read until `buf` is full or the input ends or fails: how much was read, and the failure.
/// Unlike [`read_full`], the bytes read before a failure count.
pub(crate) fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

pub(crate) fn hex_magic(head: &[u8]) -> String {
    if head.is_empty() {
        return "none, the input is empty".to_owned();
    }
    head.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A circular buffer pre-filled with the stream's first bytes: pcap-parser parses the file
/// header from its first read, which a decompressor may return short.
///
/// A read error while pre-filling (a truncated gzip stream, say) must not hide the records
/// before it: the bytes read so far are kept, and the error is handed to pcap-parser on the
/// read after its first one (see [`Deferred`]), where it becomes the capture's damage.
fn prefilled_buffer(head: &[u8], mut rest: Input) -> (circular::Buffer, Input) {
    let mut buffer = circular::Buffer::with_capacity(INITIAL_BUFFER);
    let space = buffer.space();
    space[..head.len()].copy_from_slice(head);
    let mut n = head.len();
    let mut pending = None;
    while n < space.len() {
        match rest.read(&mut space[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                pending = Some(e);
                break;
            }
        }
    }
    buffer.fill(n);
    let input = Box::new(Deferred {
        inner: rest,
        pending,
        first: true,
    });
    (buffer, input)
}

/// The input after pre-filling. Its first read, which pcap-parser's constructor makes (and
/// would fail on), returns nothing; a pending pre-fill error comes on the read after that.
struct Deferred {
    inner: Input,
    pending: Option<io::Error>,
    first: bool,
}

impl Read for Deferred {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.first) && self.pending.is_some() {
            return Ok(0);
        }
        match self.pending.take() {
            Some(e) => Err(e),
            None => self.inner.read(buf),
        }
    }
}

impl CaptureReader {
    /// Recognise the input and read its file header.
    pub fn new(input: Input) -> Result<Self, ReadError> {
        Self::open(input, Compression::None)
    }

    fn open(mut input: Input, compression: Compression) -> Result<Self, ReadError> {
        let io_err = |source| ReadError::Io { offset: 0, source };
        let mut head = [0u8; 8];
        let n = read_full(&mut input, &mut head).map_err(io_err)?;
        let head = &head[..n];
        let magic = sniff(head).ok_or_else(|| ReadError::NotACapture {
            magic: hex_magic(head),
        })?;
        let format = match magic {
            Magic::Compressed(c) if compression == Compression::None => {
                return Self::open(decompress(c, head, input).map_err(io_err)?, c);
            }
            Magic::Compressed(c) => {
                return Err(ReadError::Unsupported {
                    reason: format!("{} inside {}", c.as_str(), compression.as_str()),
                });
            }
            Magic::Capture(f) => f,
        };
        let last_io_error = Arc::new(Mutex::new(None));
        let framer = match format {
            CaptureFormat::Pcap | CaptureFormat::PcapNg => {
                let (buffer, input) = prefilled_buffer(head, input);
                let wrapped = ErrorKeepingReader {
                    inner: input,
                    last_error: Arc::clone(&last_io_error),
                };
                if format == CaptureFormat::Pcap {
                    Self::open_pcap(buffer, wrapped)?
                } else {
                    Self::open_pcapng(buffer, wrapped)?
                }
            }
            CaptureFormat::Snoop => {
                let mut rest = [0u8; 8];
                let n = read_full(&mut input, &mut rest).map_err(io_err)?;
                if n < 8 {
                    return Err(ReadError::Damaged {
                        offset: 8 + n as u64,
                        reason: "snoop file header is cut short".into(),
                    });
                }
                let version = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                if version != 2 {
                    return Err(ReadError::Unsupported {
                        reason: format!("snoop version {version} (only version 2 exists)"),
                    });
                }
                let datalink = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                Framer::Snoop {
                    input: ErrorKeepingReader {
                        inner: input,
                        last_error: Arc::clone(&last_io_error),
                    },
                    link_type: snoop_link_type(datalink),
                    offset: 16,
                    buf: Vec::new(),
                }
            }
        };
        Ok(CaptureReader {
            framer,
            format,
            compression,
            last_io_error,
            buffer_capacity: INITIAL_BUFFER,
            next_frame: 1,
            latest_ts: None,
            finished: false,
            resumed: None,
        })
    }

    /// Read the records of one byte range of an uncompressed pcap or pcapng object (see
    /// [`crate::split`]): `rest` is the object's bytes from `start`, a record boundary whose
    /// reader state is `preamble`; frames are numbered from `first_frame`; the reader stops
    /// (`fill` returns `Ok(false)`) before the first record that starts at or after `end`,
    /// and reads past `end` only as far as its last record (and its buffer) needs. `rest`
    /// may end at that record's end (the walk's `next`).
    ///
    /// Its frames, record spans, damage and salvage are those [`CaptureReader::new`] gives
    /// for the same records of the whole object: pcap-parser is given the preamble's bytes
    /// followed by `rest`, and offsets are translated back.
    pub fn resume(
        preamble: &crate::split::Preamble,
        rest: Input,
        start: u64,
        first_frame: u64,
        end: u64,
    ) -> Result<CaptureReader, ReadError> {
        if preamble.format == CaptureFormat::Snoop {
            return Err(ReadError::Unsupported {
                reason: "snoop captures are not read from the middle".into(),
            });
        }
        let head = preamble.stream_bytes();
        let skip = head.len() as u64;
        let mut reader = Self::open(
            Box::new(io::Cursor::new(head).chain(rest)),
            Compression::None,
        )?;
        if reader.compression != Compression::None || reader.format != preamble.format {
            return Err(ReadError::Unsupported {
                reason: format!(
                    "a {} preamble that reads as {} {}",
                    preamble.format.as_str(),
                    reader.compression.as_str(),
                    reader.format.as_str()
                ),
            });
        }
        if let Framer::Blocks {
            kind: BlockKind::PcapNg { section_base, .. },
            ..
        } = &mut reader.framer
        {
            *section_base = preamble.section_base;
        }
        reader.next_frame = first_frame;
        reader.resumed = Some(Resumed { skip, start, end });
        Ok(reader)
    }

    fn open_pcap(
        buffer: circular::Buffer,
        input: ErrorKeepingReader<Input>,
    ) -> Result<Framer, ReadError> {
        let mut reader =
            LegacyPcapReader::from_buffer(buffer, input).map_err(|e| ReadError::Damaged {
                offset: 0,
                reason: format!("invalid pcap file header ({})", describe(&e)),
            })?;
        // The first `next()` returns the file header, which from_buffer already validated.
        let (consumed, header) = match reader.next() {
            Ok((n, PcapBlockOwned::LegacyHeader(h))) => (n, h),
            _ => {
                return Err(ReadError::Damaged {
                    offset: 0,
                    reason: "invalid pcap file header".into(),
                });
            }
        };
        if header.version_major != 2 {
            return Err(ReadError::Unsupported {
                reason: format!(
                    "pcap version {}.{} (only 2.x is defined)",
                    header.version_major, header.version_minor
                ),
            });
        }
        let kind = BlockKind::Pcap {
            nanos: header.is_nanosecond_precision(),
            big_endian: header.is_bigendian(),
            link_type: link_type_of(header.network.0 as u32),
            snaplen: header.snaplen,
            record_header: if header.is_modified_format() { 24 } else { 16 },
        };
        reader.consume(consumed);
        Ok(Framer::Blocks {
            reader: Box::new(reader),
            kind,
        })
    }

    fn open_pcapng(
        buffer: circular::Buffer,
        input: ErrorKeepingReader<Input>,
    ) -> Result<Framer, ReadError> {
        let reader = PcapNGReader::from_buffer(buffer, input).map_err(|e| ReadError::Damaged {
            offset: 0,
            reason: format!("invalid pcapng section header block ({})", describe(&e)),
        })?;
        Ok(Framer::Blocks {
            reader: Box::new(reader),
            kind: BlockKind::PcapNg {
                interfaces: Vec::new(),
                section_base: 0,
                big_endian: false,
            },
        })
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Byte offset (in the decompressed stream) of the next unread record.
    pub fn offset(&self) -> u64 {
        let read = self.stream_offset();
        match self.resumed {
            None => read,
            // Within the preamble: the range's start.
            Some(r) => r.start + read.saturating_sub(r.skip),
        }
    }

    /// Byte offset of the next unread record in the stream pcap-parser is given.
    fn stream_offset(&self) -> u64 {
        match &self.framer {
            Framer::Blocks { reader, .. } => reader.consumed() as u64,
            Framer::Snoop { offset, .. } => *offset,
        }
    }

    /// A resumed reader is at the first record of the next range.
    fn past_end(&self) -> bool {
        self.resumed
            .is_some_and(|r| self.stream_offset() >= r.skip && self.offset() >= r.end)
    }

    /// What the record at the current offset claims to be, for error messages.
    fn record_claim(&self) -> String {
        let word = u32_at;
        let Framer::Blocks { reader, kind } = &self.framer else {
            return String::new();
        };
        let (data, be) = (reader.data(), kind.big_endian());
        match kind {
            BlockKind::Pcap { .. } => match word(data, 8, be) {
                Some(caplen) => format!("the record claims {caplen} captured bytes"),
                None => "the record header is incomplete".into(),
            },
            BlockKind::PcapNg { .. } => match (word(data, 0, be), word(data, 4, be)) {
                (Some(t), Some(len)) => format!("block type 0x{t:08x}, length {len}"),
                _ => "the block header is incomplete".into(),
            },
        }
    }

    fn io_error(&self, what: &str) -> ReadError {
        let offset = self.offset();
        let source = self
            .last_io_error
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_else(|| io::Error::other(what.to_owned()));
        ReadError::Io { offset, source }
    }

    /// Append frames to `chunk` until it holds `max_frames` frames or `max_bytes` bytes of
    /// packet data, or the capture ends. Returns `Ok(false)` once the capture has ended.
    ///
    /// On error the frames read before the damage stay in `chunk`; the reader is then finished.
    pub fn fill(
        &mut self,
        chunk: &mut Chunk,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<bool, ReadError> {
        chunk.first_frame = self.next_frame;
        chunk.time_before = self.latest_ts;
        if self.finished {
            return Ok(false);
        }
        let before = chunk.frames.len();
        let result = match &mut self.framer {
            Framer::Blocks { .. } => self.fill_blocks(chunk, max_frames, max_bytes),
            Framer::Snoop { .. } => self.fill_snoop(chunk, max_frames, max_bytes),
        };
        let added = &chunk.frames[before..];
        self.next_frame += added.len() as u64;
        if let Some(t) = added.iter().map(|f| f.ts_ns).max()
            && t != NO_TIMESTAMP
        {
            self.latest_ts = Some(self.latest_ts.map_or(t, |l| l.max(t)));
        }
        match result {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.finished = true;
                Ok(false)
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    /// Turn a pcap-parser error into ours, or grow/refill and return `Ok(())` to retry.
    fn on_parse_error(&mut self, kind: ParseFailure) -> Result<(), ReadError> {
        let offset = self.offset();
        match kind {
            ParseFailure::Incomplete => {
                let refilled = match &mut self.framer {
                    Framer::Blocks { reader, .. } => reader.refill().is_ok(),
                    Framer::Snoop { .. } => true,
                };
                if refilled {
                    Ok(())
                } else {
                    Err(self.io_error("read failed"))
                }
            }
            ParseFailure::BufferTooSmall => {
                let grown = match &mut self.framer {
                    // The buffer grows only once it is full: a record that claims more bytes
                    // than the capture still has (a cut or damaged file) ends in the
                    // truncation path after reading what there is, not after allocating
                    // what it claims.
                    Framer::Blocks { reader, .. } if reader.data().len() < self.buffer_capacity => {
                        if reader.refill().is_err() {
                            return Err(self.io_error("read failed"));
                        }
                        true
                    }
                    Framer::Blocks { reader, .. } => {
                        grow(reader.as_mut(), &mut self.buffer_capacity)
                    }
                    Framer::Snoop { .. } => false,
                };
                if grown {
                    Ok(())
                } else {
                    Err(ReadError::Damaged {
                        offset,
                        reason: format!(
                            "record larger than the {} MiB limit ({}): a damaged length field?",
                            MAX_RECORD >> 20,
                            self.record_claim()
                        ),
                    })
                }
            }
            // The file ends inside a record (its header, its data, or a pcapng block's trailing
            // length). The damage is at the record's first byte; every frame before it is kept,
            // and so is what there is of the record itself when its header is whole
            // (`fill_blocks` salvages it, see `BlockKind::salvage`). tshark (wiretap) drops
            // such a record, for every format we read: pcaplab has one frame more, marked in
            // its `decode_error`, because the partial record's headers are evidence.
            ParseFailure::UnexpectedEof => Err(ReadError::Damaged {
                offset,
                reason: format!(
                    "the file ends inside a record ({}): truncated capture",
                    self.record_claim()
                ),
            }),
            ParseFailure::ReadError => Err(self.io_error("read failed")),
            ParseFailure::Malformed(reason) => Err(ReadError::Damaged {
                offset,
                reason: format!("{reason} ({})", self.record_claim()),
            }),
        }
    }

    fn fill_blocks(
        &mut self,
        chunk: &mut Chunk,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<bool, ReadError> {
        loop {
            if chunk.frames.len() >= max_frames || chunk.data.len() >= max_bytes {
                return Ok(true);
            }
            if self.past_end() {
                return Ok(false);
            }
            let offset = self.offset();
            let Framer::Blocks { reader, kind } = &mut self.framer else {
                unreachable_framer()?
            };
            let failure = match reader.next() {
                Ok((consumed, block)) => {
                    let outcome = kind.handle(block, chunk, offset);
                    chunk.placed(offset, consumed as u64);
                    reader.consume(consumed);
                    outcome?;
                    continue;
                }
                Err(PcapError::Eof) => return Ok(false),
                Err(e) => ParseFailure::from(&e),
            };
            // Input that ends, or fails (a cut gzip stream), inside a record: what the
            // decompressor yielded of it is all there will be.
            let cut = matches!(
                failure,
                ParseFailure::UnexpectedEof | ParseFailure::Incomplete | ParseFailure::ReadError
            );
            if let Err(e) = self.on_parse_error(failure) {
                if cut && let Framer::Blocks { reader, kind } = &self.framer {
                    // What there is of the record: up to the end of the input.
                    let data = reader.data();
                    kind.salvage(data, chunk);
                    chunk.placed(self.offset(), data.len() as u64);
                }
                return Err(e);
            }
        }
    }

    fn fill_snoop(
        &mut self,
        chunk: &mut Chunk,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<bool, ReadError> {
        let Framer::Snoop {
            input,
            link_type,
            offset,
            buf,
        } = &mut self.framer
        else {
            unreachable_framer()?
        };
        loop {
            if chunk.frames.len() >= max_frames || chunk.data.len() >= max_bytes {
                return Ok(true);
            }
            let mut hdr = [0u8; 24];
            let (n, failed) = read_some(input, &mut hdr);
            if let Some(source) = failed {
                return Err(ReadError::Io {
                    offset: *offset,
                    source,
                });
            }
            if n == 0 {
                return Ok(false);
            }
            if n < 24 {
                return Err(ReadError::Damaged {
                    offset: *offset,
                    reason: "the capture ends in the middle of a record header (truncated file)"
                        .into(),
                });
            }
            let be = |i: usize| u32::from_be_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
            let (orig_len, incl_len, rec_len, ts_sec, ts_usec) =
                (be(0), be(4), be(8) as usize, be(16), be(20));
            if rec_len < 24 + incl_len as usize || rec_len > MAX_RECORD {
                return Err(ReadError::Damaged {
                    offset: *offset,
                    reason: format!(
                        "record length {rec_len} does not fit a {incl_len}-byte packet"
                    ),
                });
            }
            buf.resize(rec_len - 24, 0);
            let (got, failed) = read_some(input, buf);
            let ts = pcap_ts(false, ts_sec, ts_usec);
            // Cut short (the input ends or fails inside the record, even if only in the padding
            // after the packet): damaged at the record's first byte, and what there is of its
            // packet is a row if the header is believable (see `on_parse_error` and
            // `plausible_record`; the length fields were checked above). tshark drops it.
            if got < buf.len() {
                if plausible_record(false, ts_usec, incl_len, orig_len, 0) {
                    chunk.push_cut(ts, 0, *link_type, orig_len, &buf[..got], incl_len);
                    chunk.placed(*offset, 24 + got as u64);
                }
                return Err(match failed {
                    Some(source) => ReadError::Io {
                        offset: *offset,
                        source,
                    },
                    None => ReadError::Damaged {
                        offset: *offset,
                        reason: "the capture ends in the middle of a record (truncated file)"
                            .into(),
                    },
                });
            }
            chunk.push(ts, 0, *link_type, orig_len, &buf[..incl_len as usize]);
            chunk.placed(*offset, rec_len as u64);
            *offset += rec_len as u64;
        }
    }
}

fn unreachable_framer<T>() -> Result<T, ReadError> {
    Err(ReadError::Unsupported {
        reason: "internal: framer changed kind".into(),
    })
}

/// Double pcap-parser's buffer (tracked in `capacity`) unless that would pass the record limit.
fn grow(reader: &mut dyn PcapReaderIterator, capacity: &mut usize) -> bool {
    let next = capacity.saturating_mul(2);
    // A record of MAX_RECORD bytes plus its header must fit.
    if next > MAX_RECORD * 2 || !reader.grow(next) {
        return false;
    }
    *capacity = next;
    true
}

/// What went wrong in pcap-parser, detached from the borrowed buffer.
enum ParseFailure {
    Incomplete,
    BufferTooSmall,
    UnexpectedEof,
    ReadError,
    Malformed(String),
}

impl From<&PcapError<&[u8]>> for ParseFailure {
    fn from(e: &PcapError<&[u8]>) -> Self {
        match e {
            PcapError::Incomplete(_) => ParseFailure::Incomplete,
            PcapError::BufferTooSmall => ParseFailure::BufferTooSmall,
            PcapError::UnexpectedEof => ParseFailure::UnexpectedEof,
            PcapError::ReadError => ParseFailure::ReadError,
            other => ParseFailure::Malformed(describe(other)),
        }
    }
}

fn describe<I: std::fmt::Debug>(e: &PcapError<I>) -> String {
    match e {
        PcapError::HeaderNotRecognized => "header not recognized".into(),
        PcapError::NomError(_, kind) => format!("malformed block ({kind:?})"),
        PcapError::OwnedNomError(_, kind) => format!("malformed block ({kind:?})"),
        PcapError::UnexpectedEof => "unexpected end of file".into(),
        PcapError::Incomplete(n) => format!("incomplete header ({n} more bytes needed)"),
        other => format!("{other}"),
    }
}

/// Handle one pcapng block: interfaces, sections, and the three kinds of packet blocks.
fn ng_block(
    block: &Block<'_>,
    chunk: &mut Chunk,
    interfaces: &mut Vec<Interface>,
    section_base: &mut u32,
    big_endian: &mut bool,
    offset: u64,
) -> Result<(), ReadError> {
    let damaged = |reason: String| ReadError::Damaged { offset, reason };
    match block {
        Block::SectionHeader(shb) => {
            if shb.major_version != 1 {
                return Err(ReadError::Unsupported {
                    reason: format!(
                        "pcapng version {}.{} (only 1.x is defined)",
                        shb.major_version, shb.minor_version
                    ),
                });
            }
            *section_base += interfaces.len() as u32;
            interfaces.clear();
            *big_endian = shb.big_endian();
        }
        Block::InterfaceDescription(idb) => {
            interfaces.push(Interface {
                link_type: link_type_of(idb.linktype.0 as u32),
                tsresol: idb.if_tsresol,
                tsoffset_s: idb.if_tsoffset,
                snaplen: idb.snaplen,
            });
        }
        Block::EnhancedPacket(epb) => {
            let iface = interfaces.get(epb.if_id as usize).ok_or_else(|| {
                damaged(format!(
                    "enhanced packet block names interface {} but the section has {}",
                    epb.if_id,
                    interfaces.len()
                ))
            })?;
            let ts = ts_ns(iface, epb.ts_high, epb.ts_low);
            chunk.push(
                ts,
                *section_base + epb.if_id,
                iface.link_type,
                epb.origlen,
                epb.packet_data(),
            );
        }
        Block::SimplePacket(spb) => {
            same_lengths(spb.block_len1, spb.block_len2).map_err(damaged)?;
            // An SPB belongs to interface 0 and has no timestamp.
            let iface = interfaces.first().ok_or_else(|| {
                damaged("simple packet block in a section without interfaces".into())
            })?;
            let mut data = spb.packet_data();
            if iface.snaplen != 0 && data.len() > iface.snaplen as usize {
                data = &data[..iface.snaplen as usize];
            }
            chunk.push(
                NO_TIMESTAMP,
                *section_base,
                iface.link_type,
                spb.origlen,
                data,
            );
        }
        // pcap-parser 0.17 reads an unknown block's type little-endian even in big-endian
        // sections, so accept the type in either byte order.
        Block::Unknown(ub)
            if ub.block_type == OPB_TYPE || ub.block_type.swap_bytes() == OPB_TYPE =>
        {
            same_lengths(ub.block_len1, ub.block_len2).map_err(damaged)?;
            obsolete_packet_block(ub.data, *big_endian, interfaces, *section_base, chunk)
                .map_err(damaged)?;
        }
        // Name resolution, statistics, secrets, custom and unknown blocks carry no packets.
        _ => {}
    }
    Ok(())
}

/// A block's leading and trailing lengths must agree (as wiretap requires; pcap-parser checks
/// them for the blocks it knows, not for Simple and obsolete Packet Blocks): otherwise the
/// block's record is not what its length says.
fn same_lengths(first: u32, second: u32) -> Result<(), String> {
    if first == second {
        Ok(())
    } else {
        Err(format!(
            "block lengths differ: {first} at its start, {second} at its end"
        ))
    }
}

/// The Packet Block of pcapng drafts before EPB existed (block type 2).
const OPB_TYPE: u32 = 2;
/// Simple and Enhanced Packet Blocks (pcap-parser's `SPB_MAGIC`, `EPB_MAGIC`).
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;

fn obsolete_packet_block(
    block: &[u8],
    big_endian: bool,
    interfaces: &[Interface],
    section_base: u32,
    chunk: &mut Chunk,
) -> Result<(), String> {
    // pcap-parser hands us the block's body (without type and lengths).
    let body = block;
    if body.len() < 20 {
        return Err("packet block shorter than its header".into());
    }
    let u16_at = |i: usize| {
        let b = [body[i], body[i + 1]];
        if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |i: usize| {
        let b = [body[i], body[i + 1], body[i + 2], body[i + 3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let if_id = u32::from(u16_at(0));
    let iface = interfaces.get(if_id as usize).ok_or_else(|| {
        format!(
            "packet block names interface {if_id} but the section has {}",
            interfaces.len()
        )
    })?;
    let (ts_high, ts_low, caplen, origlen) = (u32_at(4), u32_at(8), u32_at(12), u32_at(16));
    let data = body
        .get(20..20 + caplen as usize)
        .ok_or_else(|| format!("packet block claims {caplen} captured bytes it does not hold"))?;
    chunk.push(
        ts_ns(iface, ts_high, ts_low),
        section_base + if_id,
        iface.link_type,
        origlen,
        data,
    );
    Ok(())
}

/// pcapng timestamp → ns since the epoch, honouring if_tsresol (10^-n or 2^-n) and if_tsoffset;
/// [`NO_TIMESTAMP`] when it does not fit (after the year 2262: a damaged timestamp).
fn ts_ns(iface: &Interface, high: u32, low: u32) -> i64 {
    let units = (u128::from(high) << 32) | u128::from(low);
    let exp = u32::from(iface.tsresol & 0x7f);
    let ns: u128 = if iface.tsresol & 0x80 == 0 {
        if exp <= 9 {
            units * 10u128.pow(9 - exp)
        } else {
            units / 10u128.checked_pow(exp - 9).unwrap_or(u128::MAX)
        }
    } else if exp >= 127 {
        0
    } else {
        // Seconds and fraction apart so that the product cannot overflow.
        let secs = units >> exp;
        let frac = units & ((1u128 << exp) - 1);
        secs * 1_000_000_000 + ((frac * 1_000_000_000) >> exp)
    };
    i64::try_from(ns)
        .ok()
        .and_then(|ns| ns.checked_add(iface.tsoffset_s.checked_mul(1_000_000_000)?))
        .unwrap_or(NO_TIMESTAMP)
}

/// The LINKTYPE value: the low bits of the header field (the upper ones may carry FCS info).
fn link_type_of(raw: u32) -> u16 {
    (raw & 0x03ff_ffff).try_into().unwrap_or(u16::MAX)
}

/// snoop's datalink codes (RFC 1761 and Solaris additions) → LINKTYPE values.
fn snoop_link_type(datalink: u32) -> u16 {
    match datalink {
        0 | 4 => 1,  // IEEE 802.3 / Ethernet
        2 => 6,      // IEEE 802.5 token ring
        8 => 10,     // FDDI
        0x12 => 123, // ATM
        0x1a => 122, // IP over Fibre Channel
        _ => 0xffff, // unknown: a row with cap/wire lengths, no dissection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(tsresol: u8, tsoffset_s: i64) -> Interface {
        Interface {
            link_type: 1,
            tsresol,
            tsoffset_s,
            snaplen: 0,
        }
    }

    #[test]
    fn ts_resolutions() {
        // 1.5 s in µs (default), ns, 2^-8 s, with an offset.
        assert_eq!(ts_ns(&iface(6, 0), 0, 1_500_000), 1_500_000_000);
        assert_eq!(ts_ns(&iface(9, 0), 0, 1_500_000_000), 1_500_000_000);
        assert_eq!(ts_ns(&iface(0x88, 0), 0, 384), 1_500_000_000);
        assert_eq!(ts_ns(&iface(6, 10), 0, 1_500_000), 11_500_000_000);
        let ps: u64 = 1_500_000_000_000;
        assert_eq!(
            ts_ns(&iface(12, 0), (ps >> 32) as u32, ps as u32),
            1_500_000_000
        );
        // A 64-bit value beyond 2^32 seconds in µs (the year-2107 case).
        let units: u64 = 4_354_819_200 * 1_000_000;
        let ns = ts_ns(&iface(6, 0), (units >> 32) as u32, units as u32);
        assert_eq!(ns, 4_354_819_200 * 1_000_000_000);
        // Out-of-range values become "no timestamp" instead of panicking or wrapping.
        assert_eq!(ts_ns(&iface(6, 0), u32::MAX, u32::MAX), NO_TIMESTAMP);
        assert_eq!(ts_ns(&iface(0xff, i64::MAX), 0, 1), NO_TIMESTAMP);
        assert_eq!(ts_ns(&iface(0x7f, 0), u32::MAX, u32::MAX), 0);
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff(&[0xd4, 0xc3, 0xb2, 0xa1]),
            Some(Magic::Capture(CaptureFormat::Pcap))
        );
        assert_eq!(
            sniff(&[0xa1, 0xb2, 0x3c, 0x4d]),
            Some(Magic::Capture(CaptureFormat::Pcap))
        );
        assert_eq!(
            sniff(&[0x1f, 0x8b, 8, 0]),
            Some(Magic::Compressed(Compression::Gzip))
        );
        assert_eq!(
            sniff(b"snoop\0\0\0"),
            Some(Magic::Capture(CaptureFormat::Snoop))
        );
        assert_eq!(sniff(b"GIF89a.."), None);
        assert_eq!(sniff(b"ab"), None);
    }

    #[test]
    fn link_type_masks_fcs_bits() {
        assert_eq!(link_type_of(0x3000_0001), 1);
        assert_eq!(link_type_of(276), 276);
    }

    /// A frame as these tests see it.
    #[derive(Clone, Debug, PartialEq)]
    struct Frame {
        cap_len: u32,
        wire_len: u32,
        ts_ns: i64,
        /// For a frame salvaged from a record cut short: the captured length its header claims.
        cut: Option<u32>,
        bytes: Vec<u8>,
    }

    /// Every frame of `bytes`, and the error that ended the reading.
    fn frames_of(bytes: &[u8]) -> (Vec<Frame>, Option<ReadError>) {
        let (frames, _, error) = records_of(bytes);
        (frames, error)
    }

    /// Every frame of `bytes` and where its record is, and the error that ended the reading.
    fn records_of(bytes: &[u8]) -> (Vec<Frame>, Vec<RecordSpan>, Option<ReadError>) {
        let mut reader = match CaptureReader::new(Box::new(io::Cursor::new(bytes.to_vec()))) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Vec::new(), Some(e)),
        };
        let mut frames = Vec::new();
        let mut spans = Vec::new();
        loop {
            // Small chunks, so that a cut also falls between chunks.
            let mut chunk = Chunk::default();
            let r = reader.fill(&mut chunk, 2, 1 << 20);
            assert!(chunk.frames.len() <= 2, "a chunk over its frame limit");
            assert_eq!(
                chunk.records.len(),
                chunk.frames.len(),
                "a record per frame"
            );
            spans.extend_from_slice(&chunk.records);
            for f in &chunk.frames {
                assert!(f.cut_short || f.claimed_len == f.cap_len, "{f:?}");
                frames.push(Frame {
                    cap_len: f.cap_len,
                    wire_len: f.wire_len,
                    ts_ns: f.ts_ns,
                    cut: f.cut_short.then_some(f.claimed_len),
                    bytes: chunk.frame_data(f).to_vec(),
                });
            }
            match r {
                Ok(true) => {}
                Ok(false) => return (frames, spans, None),
                Err(e) => return (frames, spans, Some(e)),
            }
        }
    }

    /// One record of a made-up capture: where it lies, where its packet bytes start, and the
    /// frame it holds (if any).
    struct Rec {
        start: usize,
        end: usize,
        /// Bytes before the packet's: pcap 16, snoop 24, pcapng EPB and OPB 28, SPB 12.
        header: usize,
        frame: Option<Frame>,
    }

    /// What a reader should show of a capture of `records` cut at `cut`: the frame of every
    /// record that ends before the cut; then, if the cut falls inside a packet record after its
    /// header, that record salvaged: the packet bytes present (up to its captured length),
    /// marked with the captured length claimed. tshark shows the first part only.
    fn expected(records: &[Rec], cut: usize) -> Vec<Frame> {
        let mut frames: Vec<Frame> = records
            .iter()
            .filter(|r| r.end <= cut)
            .filter_map(|r| r.frame.clone())
            .collect();
        if let Some(r) = records.iter().find(|r| r.start < cut && cut < r.end)
            && let Some(f) = &r.frame
            && cut >= r.start + r.header
        {
            let present = (cut - r.start - r.header).min(f.bytes.len());
            frames.push(Frame {
                cap_len: present as u32,
                cut: Some(f.cap_len),
                bytes: f.bytes[..present].to_vec(),
                ..f.clone()
            });
        }
        frames
    }

    /// Where to cut a record: every field boundary of the record headers (and the bytes either
    /// side of it), the middle of the packet, the end of the packet and of its padding or
    /// trailing block length. (Not every byte: each reader starts with a 1 MiB buffer, slow to
    /// fill in a debug build.)
    fn cuts(r: &Rec) -> impl Iterator<Item = usize> + '_ {
        let heads = [
            1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 27, 28, 29,
        ];
        let tails = [
            (r.start + r.end) / 2,
            r.end - 5,
            r.end - 4,
            r.end - 3,
            r.end - 1,
            r.end,
        ];
        heads
            .into_iter()
            .map(|k| r.start + k)
            .chain(tails)
            .filter(|&c| r.start < c && c <= r.end)
    }

    /// The damage reasons of a capture that ends inside a record: pcap-parser's formats, snoop.
    const CUT_REASONS: [&str; 3] = [
        "the file ends inside a record (",
        "the capture ends in the middle of a record header (truncated file)",
        "the capture ends in the middle of a record (truncated file)",
    ];

    /// Cut `bytes` inside and at the end of every record from `from` on, and check what is
    /// read of it: the frames [`expected`] (tshark, TShark 4.0.17 on real captures cut with
    /// `head -c`, see `tests/truncated.rs`, shows the same but the salvaged one: wiretap drops a
    /// record it cannot read whole, header, data, padding or trailing length), and damage at the
    /// first byte of the record the cut falls in. Returns how many cuts salvaged a frame.
    fn check_cuts(what: &str, bytes: &[u8], records: &[Rec], from: usize) -> usize {
        assert_eq!(records.last().map(|r| r.end), Some(bytes.len()), "{what}");
        let points = std::iter::once(from).chain(records.iter().flat_map(cuts));
        let mut salvaged = 0;
        for cut in points.filter(|&c| c >= from) {
            let (frames, spans, error) = records_of(&bytes[..cut]);
            assert_eq!(frames, expected(records, cut), "{what} cut at {cut}");
            // Each frame's record: whole, or up to the cut for the one salvaged.
            let placed: Vec<RecordSpan> = records
                .iter()
                .filter(|r| r.frame.is_some() && r.start < cut)
                .map(|r| RecordSpan {
                    offset: r.start as u64,
                    len: (r.end.min(cut) - r.start) as u32,
                })
                .take(frames.len())
                .collect();
            assert_eq!(spans, placed, "{what} cut at {cut}");
            salvaged += usize::from(frames.last().is_some_and(|f| f.cut.is_some()));
            match records.iter().find(|r| r.start < cut && cut < r.end) {
                Some(r) => match error {
                    Some(ReadError::Damaged { offset, reason }) => {
                        assert_eq!(offset, r.start as u64, "{what} cut at {cut}: {reason}");
                        assert!(
                            CUT_REASONS.iter().any(|p| reason.starts_with(p)),
                            "{what} cut at {cut}: {reason}"
                        );
                    }
                    other => panic!("{what} cut at {cut}: expected damage, got {other:?}"),
                },
                None => assert!(error.is_none(), "{what} cut at {cut}: {error:?}"),
            }
        }
        salvaged
    }

    /// Each chunk says the latest timestamp framed before it (flows measure idle time from
    /// it), also where time goes backwards.
    #[test]
    fn a_chunk_knows_the_latest_time_before_it() {
        let packets: Vec<_> = (0..5).map(|i| (packet(60, i), 60)).collect();
        let (mut bytes, records) = pcap(false, false, &packets);
        for (r, sec) in records.iter().zip([10_u32, 30, 20, 5, 40]) {
            bytes[r.start..r.start + 4].copy_from_slice(&sec.to_le_bytes());
        }
        let mut reader = CaptureReader::new(Box::new(io::Cursor::new(bytes))).expect("a pcap");
        let mut before = Vec::new();
        loop {
            let mut chunk = Chunk::default();
            let more = reader.fill(&mut chunk, 2, 1 << 20).expect("read");
            if !chunk.frames.is_empty() {
                before.push(chunk.time_before.map(|t| t / 1_000_000_000));
            }
            if !more {
                break;
            }
        }
        assert_eq!(before, [None, Some(30), Some(30)]);
    }

    /// Made-up packet bytes of a given length.
    fn packet(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    /// A pcap file (LINKTYPE_ETHERNET, snap length 65535) with one record per (captured bytes,
    /// original length).
    fn pcap(big_endian: bool, nanos: bool, packets: &[(Vec<u8>, u32)]) -> (Vec<u8>, Vec<Rec>) {
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        out.extend_from_slice(&u16b(2));
        out.extend_from_slice(&u16b(4));
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&u32b(65535));
        out.extend_from_slice(&u32b(1));
        let mut records = Vec::new();
        for (i, (data, orig)) in packets.iter().enumerate() {
            let start = out.len();
            let sec = 1_700_000_000 + i as u32;
            for v in [sec, 1000, data.len() as u32, *orig] {
                out.extend_from_slice(&u32b(v));
            }
            out.extend_from_slice(data);
            let frac_ns = if nanos { 1000 } else { 1_000_000 };
            records.push(Rec {
                start,
                end: out.len(),
                header: 16,
                frame: Some(Frame {
                    cap_len: data.len() as u32,
                    wire_len: *orig,
                    ts_ns: i64::from(sec) * 1_000_000_000 + frac_ns,
                    cut: None,
                    bytes: data.clone(),
                }),
            });
        }
        (out, records)
    }

    /// A little-endian pcapng block of `block_type` around `body` (padded): its start and end.
    fn ng_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) -> (usize, usize) {
        let start = out.len();
        let len = (12 + body.len().next_multiple_of(4)) as u32;
        out.extend_from_slice(&block_type.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(start + len as usize - 4, 0);
        out.extend_from_slice(&len.to_le_bytes());
        (start, out.len())
    }

    /// The body of a little-endian Enhanced (or, `obsolete`, the old) Packet Block on
    /// interface 0 (µs) holding `data` whole, and the frame it holds.
    fn packet_block(obsolete: bool, ts_low: u32, data: &[u8]) -> (Vec<u8>, Frame) {
        let len = data.len() as u32;
        let mut body = Vec::new();
        // EPB: interface 0; OPB: interface 0 (16 bits), drops 0 (16 bits).
        for v in [0, 0x0006_0000, ts_low, len, len] {
            body.extend_from_slice(&u32::to_le_bytes(v));
        }
        body.extend_from_slice(data);
        if obsolete {
            // An option after the packet (opt_comment "ab"), then opt_endofopt.
            body.extend_from_slice(&[1, 0, 2, 0, b'a', b'b', 0, 0, 0, 0, 0, 0]);
        }
        let units = (0x0006_0000u64 << 32) | u64::from(ts_low);
        let frame = Frame {
            cap_len: len,
            wire_len: len,
            ts_ns: (units * 1000) as i64,
            cut: None,
            bytes: data.to_vec(),
        };
        (body, frame)
    }

    /// A little-endian pcapng file: SHB, an Ethernet IDB, then an Enhanced Packet Block per
    /// packet, with one Simple Packet Block among them (its packets' original lengths are their
    /// captured lengths).
    fn pcapng(packets: &[Vec<u8>]) -> (Vec<u8>, Vec<Rec>) {
        let mut out = Vec::new();
        let mut shb = vec![0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
        shb.extend_from_slice(&[0xff; 8]);
        let (start, end) = ng_block(&mut out, 0x0a0d_0d0a, &shb);
        let mut records = vec![Rec {
            start,
            end,
            header: 8,
            frame: None,
        }];
        let (start, end) = ng_block(&mut out, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        records.push(Rec {
            start,
            end,
            header: 8,
            frame: None,
        });
        for (i, data) in packets.iter().enumerate() {
            let len = data.len() as u32;
            let (start, end, header, frame) = if i == 1 {
                let mut body = len.to_le_bytes().to_vec();
                body.extend_from_slice(data);
                let (start, end) = ng_block(&mut out, 3, &body);
                let frame = Frame {
                    cap_len: len,
                    wire_len: len,
                    ts_ns: NO_TIMESTAMP,
                    cut: None,
                    bytes: data.clone(),
                };
                (start, end, 12, frame)
            } else {
                let (body, frame) = packet_block(false, 1000 + i as u32, data);
                let (start, end) = ng_block(&mut out, 6, &body);
                (start, end, 28, frame)
            };
            records.push(Rec {
                start,
                end,
                header,
                frame: Some(frame),
            });
        }
        (out, records)
    }

    /// A snoop file (Ethernet) with one record per (captured bytes, original length), each
    /// padded to a multiple of 4 bytes.
    fn snoop(packets: &[(Vec<u8>, u32)]) -> (Vec<u8>, Vec<Rec>) {
        let mut out = b"snoop\0\0\0".to_vec();
        out.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 4]);
        let mut records = Vec::new();
        for (i, (data, orig)) in packets.iter().enumerate() {
            let start = out.len();
            let rec_len = 24 + data.len().next_multiple_of(4);
            let sec = 900_000_000 + i as u32;
            for v in [*orig, data.len() as u32, rec_len as u32, 0, sec, 5] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(data);
            out.resize(start + rec_len, 0);
            records.push(Rec {
                start,
                end: out.len(),
                header: 24,
                frame: Some(Frame {
                    cap_len: data.len() as u32,
                    wire_len: *orig,
                    ts_ns: i64::from(sec) * 1_000_000_000 + 5000,
                    cut: None,
                    bytes: data.clone(),
                }),
            });
        }
        (out, records)
    }

    #[test]
    fn packet_blocks_whose_lengths_differ_are_damage() {
        // The third block (after the SHB and IDB) is an SPB (see `pcapng`); an obsolete
        // Packet Block goes after the packets.
        let packets = vec![packet(20, 1), packet(30, 2), packet(40, 3)];
        let (mut bytes, records) = pcapng(&packets);
        let (body, _) = packet_block(true, 7, &packet(24, 4));
        let (opb, _) = ng_block(&mut bytes, OPB_TYPE, &body);
        for (at, kept) in [(records[3].start, 1), (opb, 3)] {
            let mut bad = bytes.clone();
            let end = if at == opb { bad.len() } else { records[3].end };
            bad[end - 4] ^= 0x40;
            let (frames, error) = frames_of(&bad);
            assert_eq!(frames.len(), kept, "block at {at}");
            match error {
                Some(ReadError::Damaged { offset, reason }) => {
                    assert_eq!(offset, at as u64);
                    assert!(reason.contains("block lengths differ"), "{reason}");
                }
                other => panic!("block at {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_pcap_record_cut_after_its_header_is_salvaged() {
        let packets = [
            (packet(60, 1), 60),
            (packet(1514, 2), 1514),
            (packet(64, 3), 98),
            (packet(0, 4), 0),
            (packet(41, 5), 41),
        ];
        for (big_endian, nanos) in [(false, false), (true, true), (false, true)] {
            let (bytes, records) = pcap(big_endian, nanos, &packets);
            let what = format!("pcap (big endian {big_endian}, ns {nanos})");
            // Each of the four records with packet bytes, cut at 16 (the header's end), 17,
            // 23..=25, 27..=29, the middle and the tails but the end.
            let salvaged = check_cuts(&what, &bytes, &records, 24);
            assert_eq!(salvaged, 4 * (8 + 5), "{what}");
        }
    }

    #[test]
    fn a_pcapng_packet_block_cut_after_its_fixed_part_is_salvaged() {
        let packets = [packet(60, 1), packet(1514, 2), packet(61, 3), packet(42, 4)];
        let (bytes, records) = pcapng(&packets);
        // From the end of the section header block: a cut inside it leaves no capture to open.
        let salvaged = check_cuts("pcapng", &bytes, &records, records[0].end);
        // EPBs: cut at 28, 29 and the 6 tails but the end; the SPB: 12, 13, 15..=17, 23..=25,
        // 27..=29 and the tails.
        assert_eq!(salvaged, 3 * 7 + 11 + 5, "pcapng");
    }

    #[test]
    fn a_snoop_record_cut_after_its_header_is_salvaged() {
        // 61 and 42 bytes leave padding after the packet: a cut in the padding, the packet
        // whole, salvages the whole packet (still marked: the record is cut).
        let packets = [
            (packet(60, 1), 60),
            (packet(61, 2), 61),
            (packet(1514, 3), 1514),
            (packet(42, 4), 1514),
        ];
        let (bytes, records) = snoop(&packets);
        let salvaged = check_cuts("snoop", &bytes, &records, 16);
        // 24, 25, 27..=29 and the tails but the end, of each record.
        assert_eq!(salvaged, 4 * (5 + 5), "snoop");
    }

    #[test]
    fn an_obsolete_packet_block_cut_after_its_fixed_part_is_salvaged() {
        let (mut bytes, mut records) = pcapng(&[packet(60, 1)]);
        let (body, frame) = packet_block(true, 77, &packet(100, 7));
        let (start, end) = ng_block(&mut bytes, OPB_TYPE, &body);
        records.push(Rec {
            start,
            end,
            header: 28,
            frame: Some(frame),
        });
        let salvaged = check_cuts("pcapng OPB", &bytes, &records, records[2].end);
        assert_eq!(salvaged, 2 + 5, "pcapng OPB");
        // In a big-endian section, where the 16-bit interface id is its first two bytes.
        let be = |v: u32| v.to_be_bytes();
        let mut bytes: Vec<u8> = [
            &be(0x0a0d_0d0a)[..],
            &be(28),
            &be(0x1a2b_3c4d),
            &[0, 1, 0, 0],
            &[0xff; 8],
            &be(28),
            &be(1),
            &be(20),
            &[0, 1, 0, 0],
            &be(0),
            &be(20),
        ]
        .concat();
        let start = bytes.len();
        for v in [OPB_TYPE, 140, 0, 0, 1_000_000, 100, 1500] {
            bytes.extend_from_slice(&be(v));
        }
        bytes.extend_from_slice(&packet(40, 3));
        let (frames, error) = frames_of(&bytes);
        let salvaged = Frame {
            cap_len: 40,
            wire_len: 1500,
            ts_ns: 1_000_000_000,
            cut: Some(100),
            bytes: packet(40, 3),
        };
        assert_eq!(frames, [salvaged]);
        assert!(
            matches!(error, Some(ReadError::Damaged { offset, .. }) if offset == start as u64),
            "{error:?}"
        );
    }

    #[test]
    fn a_salvaged_frame_says_what_is_missing() {
        let mut chunk = Chunk::default();
        chunk.push(1, 0, 1, 60, &packet(60, 0));
        chunk.push_cut(2, 0, 1, 1514, &packet(40, 0), 1514);
        // Never more than claimed, nor a claim beyond the record limit.
        chunk.push_cut(3, 0, 1, 70, &packet(100, 0), 60);
        chunk.push_cut(4, 0, 1, 70, &packet(100, 0), MAX_RECORD as u32 + 1);
        let lens: Vec<_> = chunk
            .frames
            .iter()
            .map(|f| (f.cap_len, f.claimed_len))
            .collect();
        assert_eq!(lens, [(60, 60), (40, 1514), (60, 60)]);
        assert_eq!(chunk.data.len(), 160);
        let [whole, cut, all_there] = [0, 1, 2].map(|i| chunk.frames[i]);
        assert!(!whole.cut_short && cut.cut_short && all_there.cut_short);
        assert_eq!(whole.cut_note(Some("truncated TCP header")), None);
        let note =
            "truncated record: 40 of 1514 captured bytes present (the capture ends inside it)";
        assert_eq!(cut.cut_note(None).as_deref(), Some(note));
        assert_eq!(
            cut.cut_note(Some("truncated TCP header")),
            Some(format!("{note}; truncated TCP header"))
        );
        assert_eq!(
            all_there.cut_note(None).as_deref(),
            Some("truncated record: 60 of 60 captured bytes present (the capture ends inside it)")
        );
    }

    #[test]
    fn a_salvaged_frame_is_a_decode_error_row_and_counted() {
        use arrow_array::Array as _;
        use arrow_array::cast::AsArray as _;
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1, 1024);
        let mut tcp = Vec::new();
        builder.write(&mut tcp, &[0x5a; 100]).expect("write");
        let n = tcp.len() as u32;
        let (bytes, records) = pcap(false, false, &[(tcp.clone(), n), (tcp, n)]);
        let at = records[1].start + 16;
        let note = |present: usize| {
            format!(
                "truncated record: {present} of {n} captured bytes present (the capture ends \
                 inside it)"
            )
        };
        // Cut inside the TCP header (the dissection's own error follows the cut's), inside the
        // payload (the cut alone), and at the end (a whole record: no error at all).
        for (cut, error) in [
            (at + 40, Some(format!("{}; truncated TCP header", note(40)))),
            (at + 90, Some(note(90))),
            (bytes.len(), None),
        ] {
            let mut reader =
                CaptureReader::new(Box::new(io::Cursor::new(bytes[..cut].to_vec()))).expect("open");
            let mut chunk = Chunk {
                first_frame: 1,
                ..Chunk::default()
            };
            let filled = reader.fill(&mut chunk, 10, 1 << 20);
            assert_eq!(filled.is_err(), error.is_some(), "cut at {cut}: {filled:?}");
            let decoded = crate::columns::decode_chunk("cut", &chunk).expect("decode");
            let column = decoded
                .batch
                .column_by_name(crate::columns::col::DECODE_ERROR)
                .expect("decode_error")
                .as_string::<i32>();
            let errors: Vec<Option<&str>> = (0..column.len())
                .map(|i| column.is_valid(i).then(|| column.value(i)))
                .collect();
            assert_eq!(errors, [None, error.as_deref()], "cut at {cut}");
            let counted = u64::from(error.is_some());
            assert_eq!(decoded.summary.decode_errors, counted, "cut at {cut}");
            assert_eq!(decoded.summary.packets, 2, "cut at {cut}");
        }
    }

    #[test]
    fn a_cut_record_whose_header_looks_damaged_is_no_row() {
        // pcap (snap length 65535), each header followed by 10 bytes: a sub-second part of a
        // second or more, more captured than original bytes, more than the snap length; and
        // one that is believable, which is salvaged.
        for (usec, caplen, origlen, kept) in [
            (1_000_000, 100, 100, false),
            (5, 100, 99, false),
            (5, 65_536, 65_536, false),
            (999_999, 65_535, 70_000, true),
        ] {
            let (mut bytes, records) = pcap(false, false, &[(packet(60, 1), 60)]);
            let start = bytes.len();
            for v in [1u32, usec, caplen, origlen] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&packet(10, 9));
            let (frames, error) = frames_of(&bytes);
            let what = format!("pcap record ({usec}, {caplen}, {origlen})");
            assert_eq!(frames.len(), 1 + usize::from(kept), "{what}");
            assert_eq!(
                frames[0],
                records[0].frame.clone().expect("frame"),
                "{what}"
            );
            if kept {
                assert_eq!(
                    (frames[1].cap_len, frames[1].wire_len, frames[1].cut),
                    (10, origlen, Some(caplen)),
                    "{what}"
                );
                assert_eq!(frames[1].ts_ns, 1_999_999_000, "{what}");
            }
            match error {
                Some(ReadError::Damaged { offset, .. }) => assert_eq!(offset, start as u64),
                other => panic!("{what}: {other:?}"),
            }
        }
        // snoop: a sub-second part of a second, more captured than original bytes.
        for (usec, incl, orig) in [(1_000_000, 100, 100), (5, 100, 99)] {
            let (mut bytes, records) = snoop(&[(packet(60, 1), 60)]);
            for v in [orig, incl, 24u32 + incl, 0, 1, usec] {
                bytes.extend_from_slice(&v.to_be_bytes());
            }
            bytes.extend_from_slice(&packet(10, 9));
            let (frames, error) = frames_of(&bytes);
            assert_eq!(
                frames,
                [records[0].frame.clone().expect("frame")],
                "snoop {usec}"
            );
            assert!(
                matches!(error, Some(ReadError::Damaged { .. })),
                "{error:?}"
            );
        }
        // pcapng: an EPB naming an interface the section lacks, one claiming more captured
        // bytes than its block length holds, a block of an unknown type; each cut.
        for (if_id, caplen, block_len, block_type) in [
            (1, 40, 72, EPB_TYPE),
            (0, 41, 72, EPB_TYPE),
            (0, 40, 72, 0x0bad),
            (0, 40, 72, EPB_TYPE),
        ] {
            let (mut bytes, records) = pcapng(&[packet(60, 1)]);
            for v in [block_type, block_len, if_id, 0, 1, caplen, caplen] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&packet(10, 9));
            let (frames, error) = frames_of(&bytes);
            let what = format!("pcapng block {block_type} ({if_id}, {caplen}, {block_len})");
            let kept = frames.get(1).map(|f| (f.cap_len, f.cut));
            let ok = (if_id, caplen, block_type) == (0, 40, EPB_TYPE);
            assert_eq!(kept, ok.then_some((10, Some(40))), "{what}");
            assert_eq!(
                frames[0],
                records[2].frame.clone().expect("frame"),
                "{what}"
            );
            assert!(
                matches!(error, Some(ReadError::Damaged { .. })),
                "{what}: {error:?}"
            );
        }
    }

    #[test]
    fn compressed_captures_cut_short_keep_what_the_decompressor_yields() {
        use std::io::Write as _;
        let captures = [
            (
                "pcap",
                24,
                pcap(
                    false,
                    false,
                    &[
                        (packet(60, 1), 60),
                        (packet(1514, 2), 1514),
                        (packet(90, 3), 90),
                    ],
                ),
            ),
            (
                "pcapng",
                28,
                pcapng(&[packet(60, 1), packet(1514, 2), packet(90, 3)]),
            ),
            (
                "snoop",
                16,
                snoop(&[
                    (packet(60, 1), 60),
                    (packet(1514, 2), 1514),
                    (packet(90, 3), 90),
                ]),
            ),
        ];
        let mut salvaged = 0;
        for (format, from, (bytes, records)) in captures {
            // A whole gzip / zstd stream of a cut capture is the cut capture.
            let cuts = records
                .iter()
                .flat_map(|r| [r.start + 3, r.start + r.header + 7, r.end - 1, r.end]);
            for cut in cuts.filter(|&c| c >= from) {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&bytes[..cut]).expect("gzip");
                let zst = zstd::encode_all(&bytes[..cut], 1).expect("zstd");
                let plain = frames_of(&bytes[..cut]);
                assert_eq!(plain.0, expected(&records, cut), "{format} cut at {cut}");
                for (name, stream) in [("gzip", gz.finish().expect("gzip")), ("zstd", zst)] {
                    let what = format!("{name} of a {format} cut at {cut}");
                    let (frames, error) = frames_of(&stream);
                    assert_eq!(frames, plain.0, "{what}");
                    match (&error, &plain.1) {
                        (None, None) => {}
                        (
                            Some(ReadError::Damaged { offset: a, .. }),
                            Some(ReadError::Damaged { offset: b, .. }),
                        ) => assert_eq!(a, b, "{what}"),
                        other => panic!("{what}: {other:?}"),
                    }
                }
            }
            // A cut gzip stream: the frames of what the decompressor yields (a record cut
            // after its header salvaged), then an error.
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).expect("gzip");
            let gz = gz.finish().expect("gzip");
            let every_ninth = (10..gz.len()).step_by(9);
            for cut in every_ninth.chain(gz.len() - 12..gz.len()) {
                let mut yielded = Vec::new();
                let _ = flate2::read::MultiGzDecoder::new(&gz[..cut]).read_to_end(&mut yielded);
                let (frames, error) = frames_of(&gz[..cut]);
                let what = format!("{format}.gz cut at {cut} ({} bytes yielded)", yielded.len());
                assert_eq!(frames, expected(&records, yielded.len()), "{what}");
                salvaged += usize::from(frames.last().is_some_and(|f| f.cut.is_some()));
                assert!(error.is_some(), "{what}: no error");
            }
        }
        assert!(
            salvaged >= 3,
            "{salvaged} cut gzip streams salvaged a record"
        );
    }

    #[test]
    fn a_record_claiming_more_than_is_there_allocates_only_what_is_there() {
        // pcap: a record header that claims 2 GiB (beyond the limit: no row) and one that
        // claims 4 MiB (within it: a row of what is there), each followed by 10 bytes.
        for claim in [0x7fff_fff0u32, 4 << 20] {
            let (mut bytes, records) = pcap(false, false, &[(packet(60, 1), 60)]);
            // Without a snap length, the claim itself is believable.
            bytes[16..20].fill(0);
            let start = bytes.len();
            for v in [1, 2, claim, claim] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&packet(10, 9));
            // The buffer grows only as bytes arrive: the claim alone allocates nothing.
            let mut reader =
                CaptureReader::new(Box::new(io::Cursor::new(bytes.clone()))).expect("open");
            while let Ok(true) = reader.fill(&mut Chunk::default(), 2, 1 << 20) {}
            assert_eq!(reader.buffer_capacity, INITIAL_BUFFER, "claim {claim}");
            let (frames, error) = frames_of(&bytes);
            let mut want = vec![records[0].frame.clone().expect("frame")];
            if claim as usize <= MAX_RECORD {
                want.push(Frame {
                    cap_len: 10,
                    wire_len: claim,
                    ts_ns: 1_000_002_000,
                    cut: Some(claim),
                    bytes: packet(10, 9),
                });
            }
            assert_eq!(frames, want, "claim {claim}");
            match error {
                Some(ReadError::Damaged { offset, .. }) => assert_eq!(offset, start as u64),
                other => panic!("claim {claim}: {other:?}"),
            }
        }
        // snoop: a record length of 4 GiB (no row), and one of 1 MiB holding 10 bytes (a row).
        for (incl, rec_len) in [(0xffff_0000u32, 0xffff_fff0u32), (1 << 20, (1 << 20) + 24)] {
            let (mut bytes, records) = snoop(&[(packet(60, 1), 60)]);
            let start = bytes.len();
            for v in [incl, incl, rec_len, 0, 1, 2] {
                bytes.extend_from_slice(&v.to_be_bytes());
            }
            bytes.extend_from_slice(&packet(10, 9));
            let (frames, error) = frames_of(&bytes);
            let mut want = vec![records[0].frame.clone().expect("frame")];
            if rec_len as usize <= MAX_RECORD {
                want.push(Frame {
                    cap_len: 10,
                    wire_len: incl,
                    ts_ns: 1_000_002_000,
                    cut: Some(incl),
                    bytes: packet(10, 9),
                });
            }
            assert_eq!(frames, want, "record length {rec_len}");
            match error {
                Some(ReadError::Damaged { offset, .. }) => assert_eq!(offset, start as u64),
                other => panic!("record length {rec_len}: {other:?}"),
            }
        }
    }
}
