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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The decompressed stream of `input`, whose first bytes `head` were already read from it.
fn decompress(c: Compression, head: &[u8], input: impl Read + Send + 'static) -> io::Result<Input> {
    let chained = io::Cursor::new(head.to_vec()).chain(input);
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(chained)?),
        Compression::None => Box::new(chained),
    })
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
}

/// A run of consecutive frames, the unit of parallel work.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Frame number (1-based) of the first frame in this chunk.
    pub first_frame: u64,
    pub frames: Vec<FrameMeta>,
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
    pub fn frame_data(&self, f: &FrameMeta) -> &[u8] {
        let start = f.start as usize;
        &self.data[start..start + f.cap_len as usize]
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
        });
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

type Input = Box<dyn Read + Send>;

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
                let frac = if *nanos {
                    i64::from(b.ts_usec)
                } else {
                    i64::from(b.ts_usec) * 1000
                };
                let ts = i64::from(b.ts_sec) * 1_000_000_000 + frac;
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
}

/// Streams frames out of a capture, detecting compression and format by magic number.
pub struct CaptureReader {
    framer: Framer,
    format: CaptureFormat,
    compression: Compression,
    last_io_error: Arc<Mutex<Option<io::Error>>>,
    buffer_capacity: usize,
    next_frame: u64,
    finished: bool,
}

/// Read until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn hex_magic(head: &[u8]) -> String {
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
            finished: false,
        })
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
        match &self.framer {
            Framer::Blocks { reader, .. } => reader.consumed() as u64,
            Framer::Snoop { offset, .. } => *offset,
        }
    }

    /// What the record at the current offset claims to be, for error messages.
    fn record_claim(&self) -> String {
        let word = |b: &[u8], at: usize, be: bool| {
            b.get(at..at + 4).map(|w| {
                let w = [w[0], w[1], w[2], w[3]];
                if be {
                    u32::from_be_bytes(w)
                } else {
                    u32::from_le_bytes(w)
                }
            })
        };
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
        if self.finished {
            return Ok(false);
        }
        let before = chunk.frames.len();
        let result = match &mut self.framer {
            Framer::Blocks { .. } => self.fill_blocks(chunk, max_frames, max_bytes),
            Framer::Snoop { .. } => self.fill_snoop(chunk, max_frames, max_bytes),
        };
        self.next_frame += (chunk.frames.len() - before) as u64;
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
            let offset = self.offset();
            let Framer::Blocks { reader, kind } = &mut self.framer else {
                unreachable_framer()?
            };
            let failure = match reader.next() {
                Ok((consumed, block)) => {
                    let outcome = kind.handle(block, chunk, offset);
                    reader.consume(consumed);
                    outcome?;
                    continue;
                }
                Err(PcapError::Eof) => return Ok(false),
                Err(e) => ParseFailure::from(&e),
            };
            self.on_parse_error(failure)?;
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
            let n = read_full(input, &mut hdr).map_err(|source| ReadError::Io {
                offset: *offset,
                source,
            })?;
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
            let got = read_full(input, buf).map_err(|source| ReadError::Io {
                offset: *offset,
                source,
            })?;
            if got < buf.len() {
                return Err(ReadError::Damaged {
                    offset: *offset,
                    reason: "the capture ends in the middle of a record (truncated file)".into(),
                });
            }
            let ts = i64::from(ts_sec) * 1_000_000_000 + i64::from(ts_usec) * 1000;
            chunk.push(ts, 0, *link_type, orig_len, &buf[..incl_len as usize]);
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
            obsolete_packet_block(ub.data, *big_endian, interfaces, *section_base, chunk)
                .map_err(damaged)?;
        }
        // Name resolution, statistics, secrets, custom and unknown blocks carry no packets.
        _ => {}
    }
    Ok(())
}

/// The Packet Block of pcapng drafts before EPB existed (block type 2).
const OPB_TYPE: u32 = 2;

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
}
