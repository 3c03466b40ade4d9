//! Writing selected records of a capture as a new capture (`pcaplab extract`).
//!
//! Every packet row records its [`RecordSpan`]: where its record lies in the decompressed
//! capture stream. Extracting rows writes the capture's [`Preamble`] (the pcap file header, the
//! snoop file header, or pcapng's blocks before the first packet), then the selected records
//! byte for byte, in file order, so the result is a capture in the input's own format.
//!
//! Two ways to get there: [`copy_records`] reads the stream forward, for inputs that cannot
//! seek (gzip, zstd, stdin); the ranged path fetches the records itself, one read per
//! [`Range`] that [`coalesce`] plans, and checks each record with [`check_record`].
//!
//! The spans are not trusted: the capture may have changed since it was converted. Before it
//! is written, each record's framing fields are checked against the recorded length (see
//! [`check_record`]; its content cannot be), and a mismatch is an error. Memory is the
//! preamble, one record and a small copy buffer, whatever the capture's size.
//!
//! pcapng needs one more thing: a record in a later section, or on an interface described
//! after the first packet, needs the Section Header or Interface Description Block that came
//! before it. [`copy_records`] walks the blocks between records and writes those; the ranged
//! path cannot see them, so it may serve a pcapng selection only when every selected row's
//! interface id is below [`Preamble::interfaces`] (interface ids run on across sections, so
//! such a row's interface, and its section, are in the preamble).

use std::io::{self, Read, Write};

use crate::reader::{CaptureFormat, MAX_RECORD, Magic, RecordSpan, sniff, u32_at};

/// The most bytes of pcapng blocks accepted before the first packet block (and the largest
/// section header or interface description block copied from between records): a damaged
/// block length must not make us buffer gigabytes.
pub const MAX_PREAMBLE: usize = 16 << 20;

/// The largest record accepted: the most the reader's buffer can hold (it grows to twice
/// [`MAX_RECORD`]), so no record it framed is refused.
const MAX_RECORD_LEN: u64 = 2 * MAX_RECORD as u64;

/// pcapng block types (the Section Header Block's reads the same in both byte orders).
pub(crate) const SHB: u32 = 0x0a0d_0d0a;
pub(crate) const IDB: u32 = 1;
const ISB: u32 = 5;
/// The Section Header Block's byte-order magic, as written by a machine of its byte order.
pub(crate) const BOM: u32 = 0x1a2b_3c4d;

/// The obsolete Packet Block (2), the Simple (3) and the Enhanced (6) Packet Block.
pub(crate) fn is_packet_block(block_type: u32) -> bool {
    matches!(block_type, 2 | 3 | 6)
}

/// Why records could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The stream does not start with a capture header we can write back.
    #[error("bad capture header at byte {offset}: {reason}")]
    Preamble { offset: u64, reason: String },
    /// The bytes at `offset` are not the record the span describes.
    #[error(
        "no such record at byte {offset} ({reason}): the capture probably changed since it \
         was converted"
    )]
    NotARecord { offset: u64, reason: String },
    /// The stream ends before the end of the `len`-byte record at `offset`.
    #[error(
        "the stream ends at byte {at}, before the end of the {len}-byte record at byte \
         {offset}: the capture probably changed (or was cut) since it was converted"
    )]
    Ended { offset: u64, len: u32, at: u64 },
    /// A pcapng block between the selected records cannot be walked.
    #[error("damaged capture at byte {offset}: {reason}")]
    Damaged { offset: u64, reason: String },
    /// The spans are not sorted by offset, overlap, or cannot be records.
    #[error("bad record list at entry {index}: {reason}")]
    Spans { index: usize, reason: String },
    #[error("read failed at byte {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("write failed: {source}")]
    Write {
        #[source]
        source: io::Error,
    },
}

/// What an extracted capture starts with, taken from the start of the original.
///
/// pcap: the 24-byte file header; snoop: the 16-byte file header; pcapng: every block from the
/// Section Header Block up to the first packet block, but the Interface Statistics Blocks (their
/// counts are the whole capture's, not the extract's). A Section Header Block's section length
/// is written as -1 ("not specified"), as the extract's sections are shorter.
#[derive(Clone, Debug)]
pub struct Preamble {
    format: CaptureFormat,
    bytes: Vec<u8>,
    end: u64,
    interfaces: u32,
    /// pcap: the file's byte order; pcapng: that of the section the first packet is in.
    big_endian: bool,
    /// Bytes of a record's header: pcap 16 (24 in the modified format), snoop 24, pcapng 8
    /// (a block's type and length).
    record_header: u32,
}

impl Preamble {
    /// The preamble at the start of `head`, the first bytes of the decompressed stream;
    /// `Ok(None)` if it needs more of them. With `at_eof` (`head` is the whole stream), a
    /// preamble cut short is an error; a pcapng without packets is all preamble.
    pub fn parse(head: &[u8], at_eof: bool) -> Result<Option<Preamble>, ExtractError> {
        Ok(scan(head, at_eof, &mut NgScan::default())?.ok())
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// What to write first.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Offset of the first byte after the preamble in the original stream (the first record).
    /// Not `bytes().len()` for a pcapng that had statistics blocks in it.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// pcapng: the Interface Description Blocks in the preamble (of all its sections); pcap
    /// and snoop: 1. A row whose interface id is below this is in the preamble's last section,
    /// on an interface the preamble describes: it needs no block from later in the capture.
    pub fn interfaces(&self) -> u32 {
        self.interfaces
    }
}

/// The preamble at the start of `head`, or (`Ok(Err(n))`) the number of bytes of the stream
/// needed to find it, more than `head` has. A pcapng's walk goes on from where `ng` left it,
/// so that scanning a head as it grows is not quadratic in its blocks.
fn scan(
    head: &[u8],
    at_eof: bool,
    ng: &mut NgScan,
) -> Result<Result<Preamble, usize>, ExtractError> {
    let bad = |offset: usize, reason: String| ExtractError::Preamble {
        offset: offset as u64,
        reason,
    };
    // Every file header is at least 8 bytes (snoop's magic alone is).
    if head.len() < 8 && !at_eof {
        return Ok(Err(8));
    }
    let format = match sniff(head) {
        Some(Magic::Capture(f)) => f,
        Some(Magic::Compressed(c)) => {
            let reason = format!("{} data: decompress before extracting", c.as_str());
            return Err(bad(0, reason));
        }
        None => {
            let first = &head[..head.len().min(8)];
            let reason = format!("not a pcap, pcapng or snoop capture (first bytes {first:02x?})");
            return Err(bad(0, reason));
        }
    };
    let (size, big_endian, record_header) = match format {
        CaptureFormat::PcapNg => return ng.scan(head, at_eof),
        CaptureFormat::Snoop => (16, true, 24),
        CaptureFormat::Pcap => {
            let magic = u32_at(head, 0, false).unwrap_or(0);
            let little = matches!(magic, 0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34);
            let modified = matches!(magic, 0xa1b2_cd34 | 0x34cd_b2a1);
            (24, !little, if modified { 24 } else { 16 })
        }
    };
    match head.get(..size) {
        Some(bytes) => Ok(Ok(Preamble {
            format,
            bytes: bytes.to_vec(),
            end: size as u64,
            interfaces: 1,
            big_endian,
            record_header,
        })),
        None if at_eof => Err(bad(
            head.len(),
            format!(
                "the stream ends inside the {size}-byte {} file header",
                format.as_str()
            ),
        )),
        None => Ok(Err(size)),
    }
}

/// [`scan`] for pcapng: the walk through the blocks up to the first packet block, and how
/// far it went.
#[derive(Default)]
struct NgScan {
    /// Offset of the next block.
    pos: usize,
    big_endian: bool,
    interfaces: u32,
    /// The blocks kept so far.
    bytes: Vec<u8>,
}

impl NgScan {
    fn scan(&mut self, head: &[u8], at_eof: bool) -> Result<Result<Preamble, usize>, ExtractError> {
        let NgScan {
            pos,
            big_endian,
            interfaces,
            bytes,
        } = self;
        let bad = |offset: usize, reason: String| ExtractError::Preamble {
            offset: offset as u64,
            reason,
        };
        // `n` bytes are needed to go on from the block at `at`.
        let more = |n: usize, at: usize| match at_eof {
            true => Err(bad(at, "the stream ends inside this block".into())),
            false => Ok(Err(n)),
        };
        loop {
            let at = *pos;
            if at_eof && at > 0 && at == head.len() {
                break; // a capture without packets
            }
            let (Some(block_type), Some(_)) =
                (u32_at(head, at, *big_endian), u32_at(head, at + 4, false))
            else {
                return more(at + 8, at);
            };
            if is_packet_block(block_type) && at > 0 {
                break;
            }
            if block_type == SHB {
                *big_endian = match u32_at(head, at + 8, false) {
                    None => return more(at + 12, at),
                    Some(BOM) => false,
                    Some(m) if m == BOM.swap_bytes() => true,
                    Some(m) => {
                        let reason = format!("section header block with byte-order magic {m:08x}");
                        return Err(bad(at, reason));
                    }
                };
            } else if at == 0 {
                return Err(bad(0, "no section header block".into()));
            }
            let len = u32_at(head, at + 4, *big_endian).unwrap_or(0) as usize;
            if len < 12 {
                let reason = format!("a block of {len} bytes, less than its header");
                return Err(bad(at, reason));
            }
            let end = at.saturating_add(len);
            if end > MAX_PREAMBLE {
                let reason = format!(
                    "the blocks before the first packet pass the {} MiB limit",
                    MAX_PREAMBLE >> 20
                );
                return Err(bad(at, reason));
            }
            let Some(block) = head.get(at..end) else {
                return more(end, at);
            };
            if block_type != ISB {
                let from = bytes.len();
                bytes.extend_from_slice(block);
                if block_type == SHB {
                    unset_section_length(&mut bytes[from..]);
                }
                *interfaces += u32::from(block_type == IDB);
            }
            *pos = end;
        }
        Ok(Ok(Preamble {
            format: CaptureFormat::PcapNg,
            bytes: std::mem::take(bytes),
            end: *pos as u64,
            interfaces: *interfaces,
            big_endian: *big_endian,
            record_header: 8,
        }))
    }
}

/// Make a Section Header Block's 64-bit section length -1, "not specified": the section the
/// extract holds is shorter than the one the original length counted.
fn unset_section_length(shb: &mut [u8]) {
    if let Some(length) = shb.get_mut(16..24) {
        length.fill(0xff);
    }
}

/// Check that `record`, the bytes read at `span`, is one whole record of `span.len` bytes:
/// pcap: the header's captured length plus the header is the length; snoop: the record length
/// field is, and the captured bytes fit; pcapng: a packet block (Enhanced, Simple or the
/// obsolete Packet Block) whose leading and trailing block lengths are, a multiple of 4.
///
/// A pcapng record is read in the byte order of the preamble's section, else in the other one
/// (a later section may have the other byte order, which a ranged reader cannot know).
///
/// These are framing checks: a pcapng record must also have the same length at its end, but a
/// pcap record whose bytes happen to read as a header of the right length passes (a span one
/// byte off from a packet of 0 bytes can), as does a record of the same length rewritten.
pub fn check_record(pre: &Preamble, span: RecordSpan, record: &[u8]) -> Result<(), ExtractError> {
    check_in(pre, pre.big_endian, span, record)
}

/// [`check_record`], trying the byte order `big_endian` first.
fn check_in(
    pre: &Preamble,
    big_endian: bool,
    span: RecordSpan,
    record: &[u8],
) -> Result<(), ExtractError> {
    let not_it = |reason| ExtractError::NotARecord {
        offset: span.offset,
        reason,
    };
    let got = record.len() as u64;
    if got < u64::from(span.len) {
        return Err(ExtractError::Ended {
            offset: span.offset,
            len: span.len,
            at: span.offset.saturating_add(got),
        });
    }
    if got > u64::from(span.len) {
        return Err(not_it(format!(
            "{got} bytes for a {}-byte record",
            span.len
        )));
    }
    let order = check_header(pre, big_endian, span, record).map_err(not_it)?;
    if pre.format == CaptureFormat::PcapNg {
        let trailer = u32_at(record, record.len().saturating_sub(4), order);
        if trailer != Some(span.len) {
            let trailer = trailer.unwrap_or(0);
            return Err(not_it(format!(
                "a packet block whose trailing length is {trailer}, not {}",
                span.len
            )));
        }
    }
    Ok(())
}

/// Check what a record's header (the first `pre.record_header` bytes of `head`) says against
/// `span`: the byte order it was read in, or why it is not the record.
fn check_header(
    pre: &Preamble,
    big_endian: bool,
    span: RecordSpan,
    head: &[u8],
) -> Result<bool, String> {
    let len = u64::from(span.len);
    let header = u64::from(pre.record_header);
    // A pcapng block has its trailing length after its header.
    let trailer = u64::from(pre.format == CaptureFormat::PcapNg) * 4;
    if len < header + trailer {
        return Err(format!("{len} bytes is less than any record"));
    }
    let word = |at: usize, be| {
        u32_at(head, at, be)
            .map(u64::from)
            .ok_or("header cut short")
    };
    match pre.format {
        CaptureFormat::Pcap => {
            let caplen = word(8, big_endian)?;
            if caplen + header != len {
                return Err(format!(
                    "a record of {caplen} captured bytes, {} in all, not {len}",
                    caplen + header
                ));
            }
            Ok(big_endian)
        }
        CaptureFormat::Snoop => {
            let (incl_len, rec_len) = (word(4, true)?, word(8, true)?);
            if rec_len != len {
                return Err(format!("a record of {rec_len} bytes, not {len}"));
            }
            if incl_len + header > len {
                return Err(format!("{incl_len} captured bytes do not fit in {len}"));
            }
            Ok(true)
        }
        CaptureFormat::PcapNg => {
            let mut first_reason = None;
            for be in [big_endian, !big_endian] {
                let (block_type, block_len) = (word(0, be)?, word(4, be)?);
                let reason = if !is_packet_block(block_type as u32) {
                    format!("block type {block_type:#x}, not a packet block")
                } else if block_len != len {
                    format!("a packet block of {block_len} bytes, not {len}")
                } else {
                    // (Not checked: a length that is a multiple of 4, as the specification
                    // wants; the reader takes blocks that are not, and so must this.)
                    return Ok(be);
                };
                first_reason.get_or_insert(reason);
            }
            Err(first_reason.unwrap_or_default())
        }
    }
}

/// Check that `spans` can be extracted: sorted by offset, not overlapping, none empty.
pub fn check_spans(spans: &[RecordSpan]) -> Result<(), ExtractError> {
    let mut end = 0;
    for (index, span) in spans.iter().enumerate() {
        let bad = |reason| Err(ExtractError::Spans { index, reason });
        if span.len == 0 {
            return bad(format!("an empty record at byte {}", span.offset));
        }
        if index > 0 && span.offset < end {
            return bad(format!(
                "the record at byte {} starts before the previous one ends (byte {end}): \
                 records must be sorted by offset and must not overlap",
                span.offset
            ));
        }
        let Some(next) = span.offset.checked_add(u64::from(span.len)) else {
            return bad(format!("a record at byte {}", span.offset));
        };
        end = next;
    }
    Ok(())
}

/// What [`copy_records`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Records written.
    pub records: u64,
    /// Bytes taken from the input: up to the end of the last record, never further.
    pub bytes_read: u64,
    /// Bytes written: the preamble, the records and (pcapng) the blocks they need.
    pub bytes_written: u64,
}

/// The decompressed stream being copied from: what [`scan`] read past the preamble, then the
/// rest of the input.
struct Stream<'a> {
    ahead: io::Cursor<Vec<u8>>,
    input: &'a mut dyn Read,
    /// Offset of the next byte.
    pos: u64,
    /// Bytes taken from `input`.
    read: u64,
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.ahead.read(buf)?;
        if n == 0 {
            n = self.input.read(buf)?;
            self.read += n as u64;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Stream<'_> {
    /// Append the next `n` bytes to `buf`, fewer if the stream ends first.
    fn append(&mut self, buf: &mut Vec<u8>, n: u64) -> Result<(), ExtractError> {
        let read = self.by_ref().take(n).read_to_end(buf);
        read.map(drop).map_err(|source| self.read_error(source))
    }

    /// Discard the next `n` bytes: whether they were all there.
    fn skip(&mut self, n: u64) -> Result<bool, ExtractError> {
        let skipped = io::copy(&mut self.by_ref().take(n), &mut io::sink());
        skipped
            .map(|skipped| skipped == n)
            .map_err(|source| self.read_error(source))
    }

    fn read_error(&self, source: io::Error) -> ExtractError {
        ExtractError::Read {
            offset: self.pos,
            source,
        }
    }
}

/// Where the extract goes, counting what is written.
struct Sink<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl Sink<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ExtractError> {
        self.out
            .write_all(bytes)
            .map_err(|source| ExtractError::Write { source })?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Write the capture made of `spans`' records of `input` (the decompressed stream, read from
/// its start) to `out`: its preamble, then each record, checked ([`check_record`]), in order.
///
/// `spans` must be sorted by offset and must not overlap ([`check_spans`]). The input is read
/// forward and only up to the end of the last record. Between records, pcap and snoop bytes
/// are discarded unread; pcapng blocks are walked one by one, and the Section Header and
/// Interface Description Blocks among them are written too, before the next record, so that
/// its section and interface are described.
///
/// On error, what was written so far is not a complete extract.
pub fn copy_records(
    input: &mut dyn Read,
    spans: &[RecordSpan],
    out: &mut dyn Write,
) -> Result<CopyStats, ExtractError> {
    check_spans(spans)?;
    let mut stream = Stream {
        ahead: io::Cursor::new(Vec::new()),
        input,
        pos: 0,
        read: 0,
    };
    let (mut head, mut at_eof, mut ng) = (Vec::new(), false, NgScan::default());
    let pre = loop {
        match scan(&head, at_eof, &mut ng)? {
            Ok(pre) => break pre,
            Err(need) => {
                let before = head.len();
                let want = need.saturating_sub(before) as u64;
                stream.append(&mut head, want)?;
                // (`scan` always wants more than it has: `want` is never 0.)
                at_eof = want == 0 || ((head.len() - before) as u64) < want;
            }
        }
    };
    if let Some(first) = spans.first()
        && first.offset < pre.end
    {
        return Err(ExtractError::Spans {
            index: 0,
            reason: format!(
                "the record at byte {} is inside the file header, which ends at byte {}",
                first.offset, pre.end
            ),
        });
    }
    let mut records = 0;
    let mut sink = Sink { out, written: 0 };
    sink.put(&pre.bytes)?;
    // What the scan read of the first packet block is the stream's next bytes.
    stream.ahead = io::Cursor::new(head.split_off(head.len().min(pre.end as usize)));
    stream.pos = pre.end;
    let mut big_endian = pre.big_endian;
    let mut record = Vec::new();
    for &span in spans {
        let ended = |at| ExtractError::Ended {
            offset: span.offset,
            len: span.len,
            at,
        };
        if pre.format == CaptureFormat::PcapNg {
            walk_blocks(&mut stream, span, &mut big_endian, &mut sink)?;
        } else if !stream.skip(span.offset.saturating_sub(stream.pos))? {
            return Err(ended(stream.pos));
        }
        if u64::from(span.len) > MAX_RECORD_LEN {
            return Err(ExtractError::NotARecord {
                offset: span.offset,
                reason: format!("{} bytes, more than any record the reader frames", span.len),
            });
        }
        // The header first: a span that is not a record's says so without reading its length.
        let header = u64::from(pre.record_header.min(span.len));
        record.clear();
        stream.append(&mut record, header)?;
        if (record.len() as u64) < header {
            return Err(ended(stream.pos));
        }
        check_header(&pre, big_endian, span, &record).map_err(|reason| {
            ExtractError::NotARecord {
                offset: span.offset,
                reason,
            }
        })?;
        stream.append(&mut record, u64::from(span.len) - header)?;
        check_in(&pre, big_endian, span, &record)?;
        sink.put(&record)?;
        records += 1;
    }
    sink.out
        .flush()
        .map_err(|source| ExtractError::Write { source })?;
    Ok(CopyStats {
        records,
        bytes_read: stream.read,
        bytes_written: sink.written,
    })
}

/// Go through the pcapng blocks from the stream's position to `span`'s offset: write the
/// Section Header and Interface Description Blocks (following the byte order of each section
/// met), discard the others.
fn walk_blocks(
    stream: &mut Stream<'_>,
    span: RecordSpan,
    big_endian: &mut bool,
    sink: &mut Sink<'_>,
) -> Result<(), ExtractError> {
    let ended = |at| ExtractError::Ended {
        offset: span.offset,
        len: span.len,
        at,
    };
    let mut block = Vec::new();
    while stream.pos < span.offset {
        let at = stream.pos;
        let damaged = |reason| ExtractError::Damaged { offset: at, reason };
        block.clear();
        stream.append(&mut block, 8)?;
        let Some(block_type) = u32_at(&block, 4, false).and(u32_at(&block, 0, *big_endian)) else {
            return Err(ended(stream.pos));
        };
        if block_type == SHB {
            stream.append(&mut block, 4)?;
            *big_endian = match u32_at(&block, 8, false) {
                None => return Err(ended(stream.pos)),
                Some(BOM) => false,
                Some(m) if m == BOM.swap_bytes() => true,
                Some(m) => {
                    return Err(damaged(format!(
                        "section header block with byte-order magic {m:08x}"
                    )));
                }
            };
        }
        let len = u32_at(&block, 4, *big_endian).map_or(0, u64::from);
        if len < 12 {
            return Err(damaged(format!(
                "a block of {len} bytes, less than its header"
            )));
        }
        if at.saturating_add(len) > span.offset {
            return Err(ExtractError::NotARecord {
                offset: span.offset,
                reason: format!("inside the {len}-byte block at byte {at}"),
            });
        }
        let rest = len - block.len() as u64;
        if block_type == SHB || block_type == IDB {
            if len > MAX_PREAMBLE as u64 {
                let limit = MAX_PREAMBLE >> 20;
                return Err(damaged(format!(
                    "a {len}-byte block, over the {limit} MiB limit"
                )));
            }
            stream.append(&mut block, rest)?;
            if (block.len() as u64) < len {
                return Err(ended(stream.pos));
            }
            if block_type == SHB {
                unset_section_length(&mut block);
            }
            sink.put(&block)?;
        } else if !stream.skip(rest)? {
            return Err(ended(stream.pos));
        }
    }
    Ok(())
}

/// One read of the ranged path: bytes `start..end` of the decompressed stream, which hold the
/// records `spans` (indices into the slice given to [`coalesce`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
    pub spans: std::ops::Range<usize>,
}

impl Range {
    /// The bytes of `span` (one of this range's) in `data`, the bytes read for this range.
    /// Clipped to what `data` holds: a read cut short gives a short record, which
    /// [`check_record`] reports.
    pub fn record<'a>(&self, data: &'a [u8], span: RecordSpan) -> &'a [u8] {
        let from = usize::try_from(span.offset.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let from = from.min(data.len());
        let to = from.saturating_add(span.len as usize).min(data.len());
        &data[from..to]
    }
}

/// Plan the reads of the ranged path: group `spans` (sorted by offset, see [`check_spans`])
/// into ranges of the stream, each read with one request, from which the records are sliced
/// ([`Range::record`]).
///
/// A span joins the range before it when the gap between them is at most `max_gap` bytes and
/// the range stays within `max_batch` bytes; a record longer than `max_batch` is a range of its
/// own. A larger `max_gap` trades bytes read for fewer requests: on object storage, where a
/// request costs as much as transferring about a megabyte, a gap of a few hundred kilobytes is
/// cheaper read than skipped. `max_batch` bounds the memory one read needs. Every span is in
/// exactly one range, and the ranges are in the order of the spans.
pub fn coalesce(spans: &[RecordSpan], max_gap: u64, max_batch: u64) -> Vec<Range> {
    let mut ranges: Vec<Range> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        let end = span.offset.saturating_add(u64::from(span.len));
        match ranges.last_mut() {
            Some(r)
                if span.offset >= r.start
                    && span.offset.saturating_sub(r.end) <= max_gap
                    && end.max(r.end) - r.start <= max_batch =>
            {
                r.end = r.end.max(end);
                r.spans.end = i + 1;
            }
            _ => ranges.push(Range {
                start: span.offset,
                end,
                spans: i..i + 1,
            }),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{CaptureReader, Chunk, NO_TIMESTAMP, ReadError};
    use std::io::Cursor;

    /// A frame as the reader shows it.
    #[derive(Clone, Debug, PartialEq)]
    struct Frame {
        bytes: Vec<u8>,
        ts_ns: i64,
        link_type: u16,
        interface_id: u32,
        wire_len: u32,
    }

    /// Every frame of a capture, as `CaptureReader` reads it.
    fn frames_of(capture: &[u8]) -> Result<Vec<Frame>, ReadError> {
        let mut reader = CaptureReader::new(Box::new(Cursor::new(capture.to_vec())))?;
        let mut frames = Vec::new();
        loop {
            let mut chunk = Chunk::default();
            let more = reader.fill(&mut chunk, 3, 1 << 20)?;
            frames.extend(chunk.frames.iter().map(|f| Frame {
                bytes: chunk.frame_data(f).to_vec(),
                ts_ns: f.ts_ns,
                link_type: f.link_type,
                interface_id: f.interface_id,
                wire_len: f.wire_len,
            }));
            if !more {
                return Ok(frames);
            }
        }
    }

    /// Made-up packet bytes.
    fn packet(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| seed.wrapping_add((i as u8).wrapping_mul(7)))
            .collect()
    }

    fn span(start: usize, end: usize) -> RecordSpan {
        RecordSpan {
            offset: start as u64,
            len: (end - start) as u32,
        }
    }

    /// A made-up capture: its bytes, the packet records' spans and the frames they hold, and
    /// the pcapng blocks (type, span) an extract must carry along.
    struct Capture {
        bytes: Vec<u8>,
        records: Vec<(RecordSpan, Frame)>,
        blocks: Vec<(u32, RecordSpan)>,
    }

    impl Capture {
        fn slice(&self, s: RecordSpan) -> &[u8] {
            &self.bytes[s.offset as usize..(s.offset + u64::from(s.len)) as usize]
        }

        /// What extracting the records `selected` (indices into `records`) must write: the
        /// preamble (`head`), then before each record the section and interface blocks since
        /// the previous one, then the record.
        fn expected(&self, head: &[u8], selected: &[usize]) -> Vec<u8> {
            let mut out = head.to_vec();
            let mut from = self.records[0].0.offset;
            for &i in selected {
                let s = self.records[i].0;
                for &(t, b) in &self.blocks {
                    if (t == SHB || t == IDB) && b.offset >= from && b.offset < s.offset {
                        let at = out.len();
                        out.extend_from_slice(self.slice(b));
                        if t == SHB {
                            out[at + 16..at + 24].fill(0xff);
                        }
                    }
                }
                out.extend_from_slice(self.slice(s));
                from = s.offset + u64::from(s.len);
            }
            out
        }
    }

    /// A pcap capture (Ethernet); `modified`: Kuznetzov's format, 24-byte record headers.
    fn pcap(big_endian: bool, nanos: bool, modified: bool, packets: &[Vec<u8>]) -> Capture {
        let w = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let magic = match (nanos, modified) {
            (true, _) => 0xa1b2_3c4d,
            (false, true) => 0xa1b2_cd34,
            (false, false) => 0xa1b2_c3d4,
        };
        let mut bytes = w(magic).to_vec();
        let version = if big_endian {
            [0, 2, 0, 4]
        } else {
            [2, 0, 4, 0]
        };
        bytes.extend_from_slice(&version);
        for v in [0, 0, 65535, 1] {
            bytes.extend_from_slice(&w(v));
        }
        let mut records = Vec::new();
        for (i, data) in packets.iter().enumerate() {
            let start = bytes.len();
            let (sec, frac) = (1_700_000_000 + i as u32, 1000 + i as u32);
            for v in [sec, frac, data.len() as u32, data.len() as u32 + 4] {
                bytes.extend_from_slice(&w(v));
            }
            if modified {
                // ifindex, protocol, packet type, padding
                bytes.extend_from_slice(&[0, 0, 0, 1, 8, 0, 0, 0]);
            }
            bytes.extend_from_slice(data);
            let unit = if nanos { 1 } else { 1000 };
            let frame = Frame {
                bytes: data.clone(),
                ts_ns: i64::from(sec) * 1_000_000_000 + i64::from(frac) * unit,
                link_type: 1,
                interface_id: 0,
                wire_len: data.len() as u32 + 4,
            };
            records.push((span(start, bytes.len()), frame));
        }
        Capture {
            bytes,
            records,
            blocks: Vec::new(),
        }
    }

    /// A snoop capture (Ethernet), records padded to 4 bytes.
    fn snoop(packets: &[Vec<u8>]) -> Capture {
        let mut bytes = b"snoop\0\0\0\0\0\0\x02\0\0\0\x04".to_vec();
        let mut records = Vec::new();
        for (i, data) in packets.iter().enumerate() {
            let start = bytes.len();
            let len = data.len() as u32;
            let sec = 900_000_000 + i as u32;
            let rec_len = 24 + len.next_multiple_of(4);
            for v in [len + 10, len, rec_len, 0, sec, 7] {
                bytes.extend_from_slice(&v.to_be_bytes());
            }
            bytes.extend_from_slice(data);
            bytes.resize(start + rec_len as usize, 0);
            let frame = Frame {
                bytes: data.clone(),
                ts_ns: i64::from(sec) * 1_000_000_000 + 7000,
                link_type: 1,
                interface_id: 0,
                wire_len: len + 10,
            };
            records.push((span(start, bytes.len()), frame));
        }
        Capture {
            bytes,
            records,
            blocks: Vec::new(),
        }
    }

    /// A pcapng capture built block by block, in the byte order of the current section.
    struct Ng {
        c: Capture,
        big_endian: bool,
        /// Global id of the current section's first interface, link types of its interfaces.
        base: u32,
        links: Vec<u16>,
    }

    impl Ng {
        fn new() -> Ng {
            let c = Capture {
                bytes: Vec::new(),
                records: Vec::new(),
                blocks: Vec::new(),
            };
            Ng {
                c,
                big_endian: false,
                base: 0,
                links: Vec::new(),
            }
        }

        fn w32(&self, v: u32) -> [u8; 4] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn w16(&self, v: u16) -> [u8; 2] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn block(&mut self, block_type: u32, body: &[u8]) -> RecordSpan {
            let start = self.c.bytes.len();
            let len = 12 + body.len().next_multiple_of(4) as u32;
            let (t, l) = (self.w32(block_type), self.w32(len));
            self.c.bytes.extend_from_slice(&t);
            self.c.bytes.extend_from_slice(&l);
            self.c.bytes.extend_from_slice(body);
            self.c.bytes.resize(start + len as usize - 4, 0);
            self.c.bytes.extend_from_slice(&l);
            let s = span(start, self.c.bytes.len());
            self.c.blocks.push((block_type, s));
            s
        }

        /// A section header, with a section length (which an extract must unset).
        fn shb(&mut self, big_endian: bool, section_len: u64) {
            self.big_endian = big_endian;
            self.base += self.links.len() as u32;
            self.links.clear();
            let mut body = self.w32(BOM).to_vec();
            body.extend_from_slice(&self.w16(1));
            body.extend_from_slice(&self.w16(0));
            let len = if big_endian {
                section_len.to_be_bytes()
            } else {
                section_len.to_le_bytes()
            };
            body.extend_from_slice(&len);
            self.block(SHB, &body);
        }

        fn idb(&mut self, link_type: u16) {
            let mut body = self.w16(link_type).to_vec();
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&self.w32(0));
            self.links.push(link_type);
            self.block(IDB, &body);
        }

        fn isb(&mut self) {
            let body: Vec<u8> = [0, 0, 5].iter().flat_map(|&v| self.w32(v)).collect();
            self.block(ISB, &body);
        }

        fn packet(&mut self, block_type: u32, if_id: u32, data: &[u8]) {
            let len = data.len() as u32;
            let ts_low = 1_000_000 * (self.c.records.len() as u32 + 1) + 3;
            let mut body = match block_type {
                3 => self.w32(len).to_vec(),
                2 => [&self.w16(if_id as u16)[..], &self.w16(0)].concat(),
                _ => self.w32(if_id).to_vec(),
            };
            if block_type != 3 {
                for v in [0, ts_low, len, len] {
                    body.extend_from_slice(&self.w32(v));
                }
            }
            body.extend_from_slice(data);
            let s = self.block(block_type, &body);
            let frame = Frame {
                bytes: data.to_vec(),
                ts_ns: match block_type {
                    3 => NO_TIMESTAMP,
                    _ => i64::from(ts_low) * 1000,
                },
                link_type: self.links[if_id as usize],
                interface_id: self.base + if_id,
                wire_len: len,
            };
            self.c.records.push((s, frame));
        }
    }

    /// Two sections, the second big-endian; an interface described after packets; statistics
    /// blocks before the first packet and between packets; a custom block before the first
    /// packet (kept) and between packets (dropped); the three kinds of packet blocks.
    fn pcapng() -> Capture {
        let mut ng = Ng::new();
        ng.shb(false, 4321);
        ng.idb(1);
        ng.isb();
        ng.block(0x0bad, b"custom");
        ng.packet(6, 0, &packet(60, 1));
        ng.packet(6, 0, &packet(61, 2));
        ng.isb();
        ng.block(0x0bad, b"custom");
        ng.idb(101);
        ng.packet(3, 0, &packet(62, 3));
        ng.packet(6, 1, &packet(40, 4));
        ng.isb();
        ng.shb(true, 1000);
        ng.idb(1);
        ng.packet(2, 0, &packet(70, 5));
        ng.packet(6, 0, &packet(1514, 6));
        ng.c
    }

    fn copy(bytes: &[u8], spans: &[RecordSpan]) -> Result<(Vec<u8>, CopyStats), ExtractError> {
        let mut out = Vec::new();
        let stats = copy_records(&mut Cursor::new(bytes), spans, &mut out)?;
        Ok((out, stats))
    }

    /// Extract every subset of the records of `c` and check the result: exactly the bytes
    /// expected, and the selected frames when read back.
    fn check_every_selection(what: &str, c: &Capture, head: &[u8]) {
        let all: Vec<Frame> = c.records.iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(
            frames_of(&c.bytes).expect(what),
            all,
            "{what}: the capture made"
        );
        for mask in 0u32..1 << c.records.len() {
            let selected: Vec<usize> = (0..c.records.len())
                .filter(|i| mask >> i & 1 == 1)
                .collect();
            let spans: Vec<RecordSpan> = selected.iter().map(|&i| c.records[i].0).collect();
            let what = format!("{what}, records {selected:?}");
            let (out, stats) = copy(&c.bytes, &spans).expect(&what);
            assert_eq!(out, c.expected(head, &selected), "{what}");
            let frames = frames_of(&out).expect(&what);
            let want: Vec<Frame> = selected.iter().map(|&i| all[i].clone()).collect();
            assert_eq!(frames, want, "{what}");
            // (The preamble ends where the first record starts.)
            let last_end = spans
                .last()
                .map_or(c.records[0].0.offset, |s| s.offset + u64::from(s.len));
            assert_eq!(stats.records, selected.len() as u64, "{what}");
            assert_eq!(stats.bytes_written, out.len() as u64, "{what}");
            // Read up to the last record; only pcapng reads a block header past its preamble.
            let read_ahead = if spans.is_empty() && !c.blocks.is_empty() {
                8
            } else {
                0
            };
            assert_eq!(stats.bytes_read, last_end + read_ahead, "{what}");
        }
    }

    fn packets() -> Vec<Vec<u8>> {
        vec![packet(60, 1), packet(1514, 2), packet(0, 3), packet(61, 4)]
    }

    #[test]
    fn pcap_extracts_read_back_as_the_selected_frames() {
        for (big_endian, nanos, modified) in [
            (false, false, false),
            (true, true, false),
            (false, false, true),
        ] {
            let c = pcap(big_endian, nanos, modified, &packets());
            let what = format!("pcap (be {big_endian}, ns {nanos}, modified {modified})");
            let pre = Preamble::parse(&c.bytes, false).expect(&what).expect(&what);
            assert_eq!(pre.format(), CaptureFormat::Pcap);
            assert_eq!(
                (pre.bytes(), pre.end(), pre.interfaces()),
                (&c.bytes[..24], 24, 1)
            );
            assert_eq!(pre.record_header, if modified { 24 } else { 16 }, "{what}");
            check_every_selection(&what, &c, &c.bytes[..24]);
        }
    }

    #[test]
    fn snoop_extracts_read_back_as_the_selected_frames() {
        let mut packets = packets();
        packets.push(packet(3, 5));
        let c = snoop(&packets);
        let pre = Preamble::parse(&c.bytes[..16], true)
            .expect("snoop")
            .expect("snoop");
        assert_eq!(
            (pre.format(), pre.bytes(), pre.end()),
            (CaptureFormat::Snoop, &c.bytes[..16], 16)
        );
        check_every_selection("snoop", &c, &c.bytes[..16]);
    }

    #[test]
    fn pcapng_extracts_carry_the_sections_and_interfaces_they_need() {
        let c = pcapng();
        let first = c.records[0].0.offset as usize;
        // The preamble: the section header (length unset), the interface and the custom block,
        // not the statistics block.
        let [shb, idb, _isb, custom] = [0, 1, 2, 3].map(|i| c.slice(c.blocks[i].1));
        let mut head = [shb, idb, custom].concat();
        head[16..24].fill(0xff);
        for n in [first + 8, c.bytes.len()] {
            let pre = Preamble::parse(&c.bytes[..n], false)
                .expect("pcapng")
                .expect("pcapng");
            assert_eq!(pre.format(), CaptureFormat::PcapNg);
            assert_eq!(
                (pre.bytes(), pre.end(), pre.interfaces()),
                (&head[..], first as u64, 1)
            );
        }
        check_every_selection("pcapng", &c, &head);
        // A record of the second section brings its section header (section length unset) and
        // interface, and the first section's interface described late.
        let (out, _) = copy(&c.bytes, &[c.records[4].0]).expect("copy");
        let [late_idb, shb2, idb2] = [8, 12, 13].map(|i| c.slice(c.blocks[i].1));
        let mut shb2 = shb2.to_vec();
        assert_eq!(shb2[16..24], 1000u64.to_be_bytes());
        shb2[16..24].fill(0xff);
        let want = [&head[..], late_idb, &shb2, idb2, c.slice(c.records[4].0)].concat();
        assert_eq!(out, want);
    }

    #[test]
    fn a_pcapng_without_packets_is_all_preamble() {
        let mut ng = Ng::new();
        ng.shb(true, u64::MAX);
        ng.idb(1);
        ng.idb(105);
        let bytes = ng.c.bytes;
        assert!(Preamble::parse(&bytes, false).expect("parse").is_none());
        let pre = Preamble::parse(&bytes, true)
            .expect("parse")
            .expect("parse");
        assert_eq!(
            (pre.bytes(), pre.end(), pre.interfaces()),
            (&bytes[..], bytes.len() as u64, 2)
        );
        let (out, stats) = copy(&bytes, &[]).expect("copy");
        assert_eq!((out, stats.records), (bytes.clone(), 0));
        assert_eq!(frames_of(&bytes).expect("read"), []);
    }

    /// Each format's capture, and where its preamble ends.
    fn captures() -> Vec<(&'static str, Capture)> {
        vec![
            ("pcap", pcap(false, false, false, &packets())),
            ("pcap modified", pcap(false, false, true, &packets())),
            ("snoop", snoop(&packets())),
            ("pcapng", pcapng()),
        ]
    }

    #[test]
    fn a_preamble_cut_short_needs_more_or_is_an_error_at_eof() {
        for (what, c) in captures() {
            let end = c.records[0].0.offset as usize;
            // Where a pcapng may end without packets: after a whole block but the first.
            let boundaries: Vec<usize> = c
                .blocks
                .iter()
                .skip(1)
                .map(|b| b.1.offset as usize)
                .collect();
            for n in 0..end {
                let head = &c.bytes[..n];
                assert!(
                    matches!(Preamble::parse(head, false), Ok(None)),
                    "{what} cut at {n}"
                );
                match Preamble::parse(head, true) {
                    Ok(Some(pre)) if boundaries.contains(&n) => assert_eq!(pre.end(), n as u64),
                    Err(ExtractError::Preamble { offset, .. }) => {
                        assert!(offset <= n as u64, "{what} cut at {n}: offset {offset}")
                    }
                    other => panic!("{what} cut at {n}: {other:?}"),
                }
                // And copying from it fails the same way, writing nothing.
                let mut out = Vec::new();
                let r = copy_records(&mut Cursor::new(head), &[c.records[0].0], &mut out);
                assert!(r.is_err(), "{what} cut at {n}");
            }
        }
        let e = Preamble::parse(&pcap(false, false, false, &[]).bytes[..20], true);
        let message = e.expect_err("cut").to_string();
        assert_eq!(
            message,
            "bad capture header at byte 20: the stream ends inside the 24-byte pcap file header"
        );
    }

    #[test]
    fn what_is_not_a_capture_header_is_an_error() {
        let gzip = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let e = Preamble::parse(&gzip, false).expect_err("gzip").to_string();
        assert!(e.contains("gzip data: decompress before extracting"), "{e}");
        let e = Preamble::parse(b"GIF89a..", false)
            .expect_err("gif")
            .to_string();
        assert!(e.contains("not a pcap, pcapng or snoop capture"), "{e}");
        assert!(Preamble::parse(b"", true).is_err());
        // pcapng: a bad byte-order magic, a block shorter than its header, and blocks past the
        // preamble limit, which is refused before the bytes are there.
        let mut ng = Ng::new();
        ng.shb(false, 0);
        let shb = ng.c.bytes.clone();
        let mut bad_bom = shb.clone();
        bad_bom[8] = 0x4e;
        let e = Preamble::parse(&bad_bom, true)
            .expect_err("bom")
            .to_string();
        assert!(e.contains("byte-order magic"), "{e}");
        let mut short = shb.clone();
        short.extend_from_slice(&[1, 0, 0, 0, 8, 0, 0, 0]);
        let e = Preamble::parse(&short, false)
            .expect_err("short")
            .to_string();
        assert!(
            e.contains(&format!("at byte {}: a block of 8 bytes", shb.len())),
            "{e}"
        );
        let mut huge = shb.clone();
        huge.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0x02]);
        let e = Preamble::parse(&huge, false).expect_err("huge").to_string();
        assert!(e.contains("pass the 16 MiB limit"), "{e}");
        let mut huge_shb = shb[..12].to_vec();
        huge_shb[4..8].copy_from_slice(&(20u32 << 20).to_le_bytes());
        assert!(Preamble::parse(&huge_shb, false).is_err());
    }

    #[test]
    fn a_preamble_of_many_small_blocks_is_read_in_one_walk() {
        // 200 000 custom blocks (2.4 MB) before the first packet: scanned again from the start
        // at each block, this would take hours.
        let mut ng = Ng::new();
        ng.shb(false, u64::MAX);
        ng.idb(1);
        for _ in 0..200_000 {
            ng.block(0x0bad, b"");
        }
        ng.packet(6, 0, &packet(60, 1));
        let c = ng.c;
        let s = c.records[0].0;
        let (out, stats) = copy(&c.bytes, &[s]).expect("copy");
        assert_eq!(out, c.bytes);
        assert_eq!(stats.bytes_read, c.bytes.len() as u64);
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        for (what, c) in captures() {
            let spans: Vec<RecordSpan> = c.records.iter().map(|r| r.0).collect();
            let (mut clean, mut tries) = (0, 0);
            for at in 0..c.bytes.len() {
                for value in [0, 0xff, c.bytes[at] ^ 0x80] {
                    let mut bytes = c.bytes.clone();
                    bytes[at] = value;
                    let copied = copy(&bytes, &spans);
                    clean += usize::from(copied.is_ok());
                    tries += 1;
                    if let Ok(Some(pre)) = Preamble::parse(&bytes, true) {
                        for &s in &spans {
                            let from = (s.offset as usize).min(bytes.len());
                            let to = (from + s.len as usize).min(bytes.len());
                            let _ = check_record(&pre, s, &bytes[from..to]);
                        }
                    }
                }
            }
            // Packet bytes are not checked (a change there goes through); framing fields are.
            assert!(0 < clean && clean < tries, "{what}: {clean} of {tries}");
        }
    }

    /// A reader that fails if asked for a byte past `limit`.
    struct Limited<'a> {
        data: &'a [u8],
        pos: usize,
        limit: usize,
    }

    impl Read for Limited<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos >= self.limit && !buf.is_empty() {
                return Err(io::Error::other(format!("read past byte {}", self.limit)));
            }
            let n = buf
                .len()
                .min(self.limit - self.pos)
                .min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn the_copy_stops_reading_at_the_end_of_the_last_record() {
        for (what, c) in captures() {
            for last in 0..c.records.len() - 1 {
                let spans = [c.records[0].0, c.records[last].0];
                let spans = &spans[usize::from(last == 0)..];
                let limit = (spans[spans.len() - 1].offset + u64::from(spans[spans.len() - 1].len))
                    as usize;
                let mut input = Limited {
                    data: &c.bytes,
                    pos: 0,
                    limit,
                };
                let mut out = Vec::new();
                let stats = copy_records(&mut input, spans, &mut out).expect(what);
                assert_eq!(
                    (stats.bytes_read, input.pos),
                    (limit as u64, limit),
                    "{what}"
                );
                assert_eq!(stats.records, spans.len() as u64, "{what}");
            }
        }
    }

    #[test]
    fn spans_that_are_not_records_are_errors_naming_the_offset() {
        for (what, c) in captures() {
            let s = c.records[1].0;
            let near = [
                RecordSpan {
                    offset: s.offset + 1,
                    ..s
                },
                RecordSpan {
                    offset: s.offset - 1,
                    ..s
                },
                RecordSpan {
                    len: s.len + 4,
                    ..s
                },
                RecordSpan {
                    len: s.len - 1,
                    ..s
                },
                RecordSpan { len: 4, ..s },
            ];
            for bad in near {
                let what = format!("{what}, {bad:?} for {s:?}");
                match copy(&c.bytes, &[bad]) {
                    Err(e @ ExtractError::NotARecord { offset, .. }) => {
                        assert_eq!(offset, bad.offset, "{what}");
                        let message = e.to_string();
                        assert!(
                            message.starts_with(&format!("no such record at byte {offset} (")),
                            "{what}: {message}"
                        );
                        assert!(
                            message
                                .ends_with("the capture probably changed since it was converted"),
                            "{message}"
                        );
                    }
                    other => panic!("{what}: {other:?}"),
                }
                // The same record checked alone (a ranged read) is no record either.
                let pre = Preamble::parse(&c.bytes, true).expect(&what).expect(&what);
                let start = bad.offset as usize;
                let bytes = &c.bytes[start..(start + bad.len as usize).min(c.bytes.len())];
                assert!(check_record(&pre, bad, bytes).is_err(), "{what}");
            }
            // Past the end of the stream, or cut by it: the stream ended early.
            let total = c.bytes.len() as u64;
            let past = RecordSpan {
                offset: total + 100,
                len: 76,
            };
            for (bytes, span) in [
                (&c.bytes[..], past),
                (&c.bytes[..s.offset as usize + 30], s),
            ] {
                match copy(bytes, &[span]) {
                    Err(e @ ExtractError::Ended { offset, at, .. }) => {
                        assert_eq!(offset, span.offset, "{what}");
                        assert!(at <= span.offset + u64::from(span.len), "{what}");
                        assert!(
                            e.to_string().contains(&format!("record at byte {offset}")),
                            "{what}: {e}"
                        );
                    }
                    other => panic!("{what}, {span:?}: {other:?}"),
                }
            }
            let pre = Preamble::parse(&c.bytes, true).expect(what).expect(what);
            let short = &c.slice(s)[..s.len as usize - 1];
            let e = check_record(&pre, s, short).expect_err(what).to_string();
            assert!(
                e.contains(&format!("record at byte {}", s.offset)),
                "{what}: {e}"
            );
            check_record(&pre, s, c.slice(s)).expect(what);
            let mut long = c.slice(s).to_vec();
            long.push(0);
            assert!(check_record(&pre, s, &long).is_err(), "{what}");
        }
    }

    #[test]
    fn pcapng_spans_must_be_packet_blocks() {
        let c = pcapng();
        // The late interface description block, and a span inside the statistics block.
        let idb = c.blocks[8].1;
        let isb = c.blocks[11].1;
        for (bad, reason) in [
            (idb, "block type 0x1, not a packet block".to_owned()),
            (
                RecordSpan {
                    offset: isb.offset + 4,
                    len: 12,
                },
                format!("inside the {}-byte block at byte {}", isb.len, isb.offset),
            ),
        ] {
            match copy(&c.bytes, &[bad]) {
                Err(ExtractError::NotARecord { offset, reason: r }) => {
                    assert_eq!((offset, r), (bad.offset, reason));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // A big-endian record checked against the little-endian first section's preamble.
        let pre = Preamble::parse(&c.bytes, true).expect("pre").expect("pre");
        assert!(!pre.big_endian);
        for &(s, _) in &c.records {
            check_record(&pre, s, c.slice(s)).expect("either byte order");
        }
        // A trailing length that differs.
        let s = c.records[0].0;
        let mut record = c.slice(s).to_vec();
        let n = record.len();
        record[n - 4] ^= 4;
        let e = check_record(&pre, s, &record)
            .expect_err("trailer")
            .to_string();
        assert!(e.contains("trailing length"), "{e}");
    }

    #[test]
    fn unsorted_or_overlapping_spans_are_refused_before_anything_is_read() {
        let c = pcap(false, false, false, &packets());
        let [a, b] = [c.records[0].0, c.records[1].0];
        let cases = [
            vec![b, a],
            vec![a, a],
            vec![
                a,
                RecordSpan {
                    offset: a.offset + 4,
                    len: 8,
                },
            ],
            vec![
                a,
                RecordSpan {
                    offset: b.offset,
                    len: 0,
                },
            ],
            vec![RecordSpan {
                offset: u64::MAX - 2,
                len: 8,
            }],
        ];
        for spans in cases {
            let mut input = Limited {
                data: &c.bytes,
                pos: 0,
                limit: 0,
            };
            let mut out = Vec::new();
            match copy_records(&mut input, &spans, &mut out) {
                Err(ExtractError::Spans { index, .. }) => assert_eq!(index, spans.len() - 1),
                other => panic!("{spans:?}: {other:?}"),
            }
            assert!(out.is_empty());
        }
        // A span inside the file header.
        let header = RecordSpan { offset: 8, len: 16 };
        let e = copy(&c.bytes, &[header]).expect_err("header").to_string();
        assert!(
            e.contains("inside the file header, which ends at byte 24"),
            "{e}"
        );
    }

    #[test]
    fn coalesce_groups_spans_into_reads() {
        let s = |offset, len| RecordSpan { offset, len };
        assert_eq!(coalesce(&[], 10, 100), []);
        let spans = [
            s(100, 10),
            s(110, 10),
            s(125, 5),
            s(200, 50),
            s(250, 300),
            s(550, 10),
        ];
        let r = |start, end, spans: std::ops::Range<usize>| Range { start, end, spans };
        // Adjacent records only.
        assert_eq!(
            coalesce(&spans, 0, 1000),
            [r(100, 120, 0..2), r(125, 130, 2..3), r(200, 560, 3..6)]
        );
        // Gaps of up to 5 bytes; up to 70.
        assert_eq!(
            coalesce(&spans, 5, 1000),
            [r(100, 130, 0..3), r(200, 560, 3..6)]
        );
        assert_eq!(coalesce(&spans, 70, 1000), [r(100, 560, 0..6)]);
        // At most 100 bytes a read, but a 300-byte record alone.
        assert_eq!(
            coalesce(&spans, 70, 100),
            [
                r(100, 130, 0..3),
                r(200, 250, 3..4),
                r(250, 550, 4..5),
                r(550, 560, 5..6)
            ]
        );
        // The records sliced out of each range's bytes, a short read giving a short record.
        let data: Vec<u8> = (0..=255).cycle().take(600).collect();
        for range in coalesce(&spans, 70, 100) {
            let read = &data[range.start as usize..range.end as usize];
            for &span in &spans[range.spans.clone()] {
                let (a, b) = (
                    span.offset as usize,
                    (span.offset + u64::from(span.len)) as usize,
                );
                assert_eq!(range.record(read, span), &data[a..b]);
            }
        }
        let range = r(100, 130, 0..3);
        assert_eq!(range.record(&data[100..112], s(110, 10)), &data[110..112]);
        assert_eq!(range.record(&data[100..105], s(125, 5)), &[] as &[u8]);
    }

    #[test]
    fn coalesce_covers_every_span_once_within_the_limits() {
        let mut seed = 0x2545_f491_u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let mut spans = Vec::new();
            let mut at = next(100);
            for _ in 0..next(40) {
                let len = 1 + next(300) as u32;
                spans.push(RecordSpan { offset: at, len });
                at += u64::from(len) + next(3) * next(200);
            }
            let (gap, batch) = (next(150), 1 + next(1000));
            let ranges = coalesce(&spans, gap, batch);
            let mut covered = 0;
            for (k, range) in ranges.iter().enumerate() {
                assert_eq!(range.spans.start, covered, "contiguous, in order");
                covered = range.spans.end;
                let inside = &spans[range.spans.clone()];
                assert_eq!(range.start, inside[0].offset);
                let last = inside[inside.len() - 1];
                assert_eq!(range.end, last.offset + u64::from(last.len));
                assert!(range.end - range.start <= batch || inside.len() == 1);
                for w in inside.windows(2) {
                    assert!(w[1].offset - (w[0].offset + u64::from(w[0].len)) <= gap);
                }
                // Each range is as large as it could be: the next span did not fit.
                if let Some(next) = ranges.get(k + 1) {
                    let first = spans[next.spans.start];
                    let gap_to = first.offset - range.end;
                    let grown = first.offset + u64::from(first.len) - range.start;
                    assert!(gap_to > gap || grown > batch);
                }
            }
            assert_eq!(covered, spans.len());
        }
    }

    #[test]
    fn the_ranged_path_writes_what_the_copy_writes() {
        for (what, c) in captures() {
            let spans: Vec<RecordSpan> = c.records.iter().step_by(2).map(|r| r.0).collect();
            let pre = Preamble::parse(&c.bytes, true).expect(what).expect(what);
            let mut out = pre.bytes().to_vec();
            for range in coalesce(&spans, 100, 2000) {
                let data = &c.bytes[range.start as usize..range.end as usize];
                for &span in &spans[range.spans.clone()] {
                    let record = range.record(data, span);
                    check_record(&pre, span, record).expect(what);
                    out.extend_from_slice(record);
                }
            }
            let (copied, _) = copy(&c.bytes, &spans).expect(what);
            if what == "pcapng" {
                // The copy carries the blocks between records along; ranges cannot.
                assert!(copied.len() > out.len(), "{what}");
            } else {
                assert_eq!(out, copied, "{what}");
            }
        }
    }
}
