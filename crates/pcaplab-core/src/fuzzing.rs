//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` call these, one line each), kept
//! here so that the fuzzers and the regression tests (`tests/fuzz_regressions.rs`, which runs
//! every input under `tests/data/fuzz/<target>/`) run exactly the same code.
//!
//! Each function takes any bytes and must neither panic, hang nor allocate without bound.
//! Beyond that, each asserts what the code it drives promises (a payload that lies inside its
//! frame, a frame the reassembly needs that the quick look picked, every datagram ending
//! exactly once, ...): a broken promise panics, which is what a fuzzer reports.
//!
//! Input layouts (the seeds built by `fuzz/seed.sh` follow them):
//!
//! - [`capture`]: a capture file as it is (pcap, pcapng, snoop, gzip or zstd).
//! - [`compressed`]: `[codec][capture]`: the capture is compressed here, then converted by the
//!   engine with every output; see [`compressed`].
//! - [`link`]: `[selector][frame]`: see [`frame`].
//! - [`fragments`]: `[config][record]*`: IP fragments described compactly and built here, and
//!   raw frames; see [`fragments`].
//! - [`app`]: `[selector][payload]`: the selector picks the transport and port (see
//!   [`APP_PORTS`]).
//! - [`messages`]: `[config][segment]*`: TCP segments of a few connections, whose application
//!   messages are followed over segments; see [`messages`].
//! - [`reassembler`]: `[config][fragment]*`: the fragment reassembler alone, with its
//!   accounting checked; see [`reassembler`].
//! - [`quic`]: `[config][datagram]*`: QUIC Initial datagrams of a few connections, most of
//!   them protected here so that their frames are reached; see [`quic`].

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::OnceLock;

use crate::app::{self, AppFields, Parsed, quic};
use crate::columns::decode_chunk_with;
use crate::convert::{ConvertError, Engine, Outputs};
use crate::dissect::defrag::{Defragmenter, may_hold_fragment};
use crate::dissect::frag::{Added, FragConfig, Fragment, Reassembler};
use crate::dissect::linktype;
use crate::dissect::{FragKey, Fragments, MAX_TUNNELS, MAX_VLANS, Packet, dissect, dissect_with};
use crate::encode::{encode_csv, encode_lab_csv};
use crate::flows::{FlowConfig, key_of};
use crate::reader::{CaptureReader, Chunk, NO_TIMESTAMP};
use crate::summary::Summary;

/// Reads an input front to back; past the end every read gives zeros or nothing.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

// ---------------------------------------------------------------------------------------------
// Whole captures, through the engine
// ---------------------------------------------------------------------------------------------

/// One engine for every input: one worker, small chunks (so that a few frames span several
/// chunks: fragments and flows across chunk boundaries), a small reassembly budget.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::builder()
            .jobs(1)
            .chunk_frames(CHUNK_FRAMES)
            .chunk_bytes(CHUNK_BYTES)
            .slots(4)
            .fragments(CAPTURE_FRAGS)
            .build()
            .expect("the fuzzing engine's settings are valid")
    })
}

const CHUNK_FRAMES: usize = 8;
const CHUNK_BYTES: usize = 64 << 10;
const CAPTURE_FRAGS: FragConfig = FragConfig {
    timeout_ns: 30_000 * MS,
    max_bytes: 64 << 10,
};

/// A capture file, as it is: framing (pcap, pcapng, snoop; gzip or zstd by magic) in chunks
/// of a few frames, then what the engine does with each chunk, on this thread (see
/// [`Pipeline`]; the engine itself, with its threads and every output, is [`compressed`]'s).
pub fn capture(data: &[u8]) {
    let Ok(mut reader) = CaptureReader::new(Box::new(Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut pipeline = Pipeline::new(CAPTURE_FRAGS, FlowConfig::default());
    // Every row's record, read back where the row says it is, is that record (uncompressed
    // input, where the stream is `data`).
    let plain = matches!(crate::sniff(data), Some(crate::reader::Magic::Capture(_)));
    let preamble = crate::extract::Preamble::parse(data, true).ok().flatten();
    let mut end = 0u64;
    let mut whole = Vec::new();
    let mut damaged = false;
    loop {
        let mut chunk = Chunk::default();
        let filled = reader.fill(&mut chunk, CHUNK_FRAMES, CHUNK_BYTES);
        assert!(
            chunk.frames.len() <= CHUNK_FRAMES,
            "a chunk over its frame limit"
        );
        assert_eq!(
            chunk.records.len(),
            chunk.frames.len(),
            "a record per frame"
        );
        for (f, span) in chunk.frames.iter().zip(&chunk.records) {
            assert!(
                span.offset >= end.max(1),
                "records overlap: {span:?} after {end}"
            );
            end = span.offset + u64::from(span.len);
            if !plain {
                continue;
            }
            let record = usize::try_from(span.offset)
                .ok()
                .and_then(|at| data.get(at..at + span.len as usize))
                .unwrap_or_else(|| panic!("{span:?} beyond the {} bytes", data.len()));
            if let (Some(pre), false) = (&preamble, f.cut_short) {
                crate::extract::check_record(pre, *span, record)
                    .unwrap_or_else(|e| panic!("the row's record at {span:?}: {e}"));
            }
        }
        // On damage the frames before it stay and the capture ends there.
        damaged |= filled.is_err();
        let more = filled.unwrap_or(false);
        if plain {
            whole.extend(frames_of(&chunk));
        }
        pipeline.chunk(chunk, !more);
        if !more {
            break;
        }
    }
    // Fuzz inputs are small; the corpus's big captures (run through this in tests) have the
    // split's own corpus tests.
    if plain && !damaged && data.len() <= 64 << 10 {
        let len = data.len() as u64;
        for size in [(len / 64).max(97), len / 3 + 1] {
            in_ranges(data, size, &whole);
        }
    }
}

/// A frame as a read gives it: number, record, time, lengths, interface, link type, cut,
/// bytes.
type ReadFrame = (
    u64,
    crate::RecordSpan,
    i64,
    u32,
    u32,
    u32,
    u16,
    bool,
    Vec<u8>,
);

fn frames_of(chunk: &Chunk) -> Vec<ReadFrame> {
    chunk
        .frames
        .iter()
        .zip(&chunk.records)
        .enumerate()
        .map(|(i, (f, r))| {
            (
                chunk.first_frame + i as u64,
                *r,
                f.ts_ns,
                f.cap_len,
                f.wire_len,
                f.interface_id,
                f.link_type,
                f.cut_short,
                chunk.frame_data(f).to_vec(),
            )
        })
        .collect()
}

/// An undamaged capture read in ranges of `size` (counted, then each range resumed) is the
/// whole read, frame for frame — unless the count finds it cannot be split (a damaged
/// record the whole read did not reach, say), which is an error, never other frames.
fn in_ranges(data: &[u8], size: u64, whole: &[ReadFrame]) {
    let Ok(counted) = crate::split_run::count("fuzz", &data, size, 1) else {
        return;
    };
    let mut got = Vec::new();
    for (w, r) in counted.walks.iter().zip(&counted.ranges) {
        if w.owns_nothing() {
            continue;
        }
        let rest = data.get(w.start as usize..).unwrap_or_default().to_vec();
        let mut reader = CaptureReader::resume(
            &w.state_at_start,
            Box::new(Cursor::new(rest)),
            w.start,
            r.first_frame,
            r.range.end,
        )
        .unwrap_or_else(|e| panic!("range {}: cannot resume: {e}", r.range.index));
        loop {
            let mut chunk = Chunk::default();
            let filled = reader.fill(&mut chunk, CHUNK_FRAMES, CHUNK_BYTES);
            got.extend(frames_of(&chunk));
            if !filled.unwrap_or(false) {
                break;
            }
        }
    }
    assert_eq!(got.len(), whole.len(), "frames read in ranges of {size}");
    for (a, b) in got.iter().zip(whole) {
        assert_eq!(a, b, "a frame read in ranges of {size}");
    }
}

/// `[codec][capture]`: the capture compressed with gzip or zstd, then converted by the engine
/// with every output: the decompressing readers and their hand-over to the framers, the
/// engine's threads, Parquet, CSV and lab CSV, the flow table and its outputs, the summary and
/// its DynamoDB item.
///
/// `codec`: bit 0 gzip (0) or zstd (1); bit 1 Parquet outputs too (they are slow to write);
/// bits 2–7 ≠ 0: compressed in two members (frames), split at that many 64ths.
pub fn compressed(data: &[u8]) {
    let mut input = Input(data);
    let codec = input.u8();
    let rest = input.0;
    let split = rest.len() * usize::from(codec >> 2) / 64;
    let parts: &[&[u8]] = if codec >> 2 == 0 {
        &[rest]
    } else {
        &[&rest[..split], &rest[split..]]
    };
    let mut out = Vec::new();
    for part in parts {
        if codec & 1 == 0 {
            let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            gz.write_all(part).expect("gzip into memory");
            gz.finish().expect("gzip into memory");
        } else {
            let compressed = zstd::bulk::compress(part, 1).expect("zstd into memory");
            out.extend_from_slice(&compressed);
        }
    }
    convert(out, codec & 2 != 0);
}

fn convert(bytes: Vec<u8>, parquet: bool) {
    let sink = || -> Box<dyn Write + Send> { Box::new(std::io::sink()) };
    let outputs = Outputs {
        parquet: parquet.then(sink),
        csv: Some(sink()),
        lab_csv: Some(sink()),
        flows: parquet.then(sink),
        flows_csv: Some(sink()),
        flow_parts: None,
        track_flows: true,
        counts: Default::default(),
    };
    match engine().convert("fuzz", Box::new(Cursor::new(bytes)), outputs) {
        Ok(report) => {
            let damage = report.damage.as_ref().map(|e| e.to_string());
            let outcome = match &damage {
                Some(reason) => crate::item::Outcome::Damaged { reason },
                None => crate::item::Outcome::Ok,
            };
            let src = crate::item::ItemSource {
                s3_id: "fuzz/capture",
                name: None,
                object: None,
                etag: None,
                size: None,
                last_modified_ns: None,
                processed_at_ns: 0,
                outputs: &[],
                parts: None,
            };
            let report = (&report.summary, report.format, report.compression);
            let _ = crate::item::summary_item(&src, &outcome, Some(report), crate::item::MAX_TOP_N);
        }
        // Not a capture: an answer, not a failure.
        Err(ConvertError::Open { .. }) => {}
        // Writing to a sink cannot fail; a worker's panic or an invalid batch is a bug.
        Err(e) => panic!("conversion failed: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Frames of every link type, and inside every tunnel
// ---------------------------------------------------------------------------------------------

/// The link types [`frame`] picks from.
pub const LINK_TYPES: [u16; 15] = [
    linktype::NULL,
    linktype::ETHERNET,
    linktype::PPP,
    linktype::RAW_OPENBSD,
    linktype::RAW_BSDOS,
    linktype::PPP_HDLC,
    linktype::PPP_ETHER,
    linktype::RAW,
    linktype::IEEE802_11,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::IEEE802_11_RADIOTAP,
    linktype::IPV4,
    linktype::IPV6,
    linktype::LINUX_SLL2,
];

/// How [`frame`] carries the fuzzer's bytes into a tunnel decoder: over UDP to a tunnel's
/// port, or as the payload of an IP protocol (GRE, IP-in-IP).
#[derive(Clone, Copy, Debug)]
pub enum Carrier {
    Udp(u16),
    Ip(u8),
}

/// Every tunnel the dissector decodes: VXLAN (both ports), Geneve, GRE over UDP, GTP-U,
/// Teredo, AYIYA, GRE (with ERSPAN and PPTP), IPv4 and IPv6 in IP.
pub const CARRIERS: [Carrier; 10] = [
    Carrier::Udp(4789),
    Carrier::Udp(8472),
    Carrier::Udp(6081),
    Carrier::Udp(4754),
    Carrier::Udp(2152),
    Carrier::Udp(3544),
    Carrier::Udp(5072),
    Carrier::Ip(47),
    Carrier::Ip(4),
    Carrier::Ip(41),
];

/// Selectors: `LINK_TYPES.len() + CARRIERS.len() + 1`; the last one reads the link type
/// from the next two bytes.
pub const SELECTORS: usize = LINK_TYPES.len() + CARRIERS.len() + 1;

/// The frame a selector and the fuzzer's bytes stand for: `selector % SELECTORS` picks one of
/// [`LINK_TYPES`] (the bytes are the frame), one of [`CARRIERS`] (the bytes are what an
/// Ethernet frame with an IPv4 header — IPv6 when `selector / SELECTORS` is odd — carries, UDP
/// header included for UDP carriers), or a link type given by the next two bytes.
pub fn frame(selector: u8, bytes: &[u8]) -> (u16, Vec<u8>) {
    let pick = usize::from(selector) % SELECTORS;
    let v6 = !(usize::from(selector) / SELECTORS).is_multiple_of(2);
    if let Some(&lt) = LINK_TYPES.get(pick) {
        return (lt, bytes.to_vec());
    }
    match CARRIERS.get(pick - LINK_TYPES.len()) {
        Some(&Carrier::Udp(port)) => {
            let mut l4 = Vec::with_capacity(8 + bytes.len());
            l4.extend_from_slice(&40000u16.to_be_bytes());
            l4.extend_from_slice(&port.to_be_bytes());
            l4.extend_from_slice(&len16(8 + bytes.len()).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(bytes);
            (linktype::ETHERNET, ethernet_ip(v6, 17, None, &l4))
        }
        Some(&Carrier::Ip(proto)) => (linktype::ETHERNET, ethernet_ip(v6, proto, None, bytes)),
        None => {
            let mut input = Input(bytes);
            let lt = input.u16();
            (lt, input.0.to_vec())
        }
    }
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// An Ethernet frame with an IPv4 or IPv6 header carrying `payload` as protocol `proto`.
/// `frag`: the identification and the flags/offset word (IPv4: as in the header; IPv6: of a
/// fragment header, which is added only then).
fn ethernet_ip(v6: bool, proto: u8, frag: Option<(u32, u16)>, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 48 + payload.len());
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        let frag_len = if frag.is_some() { 8 } else { 0 };
        f.extend_from_slice(&len16(payload.len() + frag_len).to_be_bytes());
        f.push(if frag.is_some() { 44 } else { proto });
        f.push(64);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        if let Some((id, word)) = frag {
            f.extend_from_slice(&[proto, 0]);
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
    } else {
        let (id, word) = frag.unwrap_or((1, 0));
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&len16(20 + payload.len()).to_be_bytes());
        f.extend_from_slice(&(id as u16).to_be_bytes());
        f.extend_from_slice(&word.to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    f.extend_from_slice(payload);
    f
}

/// Counts the fragments a walk hands to the reassembly (and gives nothing back).
#[derive(Default)]
struct CountFragments(usize);

impl<'d> Fragments<'d> for CountFragments {
    fn fragment(&mut self, _key: &FragKey, _frag: &Fragment<'_>) -> Option<&'d [u8]> {
        self.0 += 1;
        None
    }
}

/// `[selector][bytes]`: one frame of any link type, or inside any tunnel (see [`frame`]),
/// dissected; its payload's application fields and its flow key are read too.
pub fn link(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (lt, frame) = frame(selector, bytes);
    check_packet(lt, &frame);
}

fn check_packet(lt: u16, frame: &[u8]) {
    let mut p = Packet::default();
    let mut fragments = CountFragments::default();
    dissect_with(lt, frame, &mut p, Some(&mut fragments));
    // The reassembly walks only the frames the quick look picked: it must pick every frame
    // that holds a fragment.
    assert!(
        fragments.0 == 0 || may_hold_fragment(lt, frame),
        "a fragment in a frame the quick look passed over: {p:?}"
    );
    // Without a datagram given back, the walk is the same as without the reassembly.
    let mut plain = Packet::default();
    dissect(lt, frame, &mut plain);
    assert_eq!(p, plain, "dissect and dissect_with differ");
    assert!(usize::from(p.vlan_count) <= MAX_VLANS);
    assert!(p.env.layers().len() <= MAX_TUNNELS);
    assert!(
        !p.payload_in_datagram,
        "a payload in a datagram that was never given"
    );
    if let Some((off, len)) = p.payload {
        let payload = frame
            .get(off..off.saturating_add(len))
            .expect("the payload lies inside the frame");
        if let (Some(ip), Some(sp), Some(dp)) = (p.ip, p.src_port, p.dst_port) {
            let mut fields = AppFields::default();
            app::parse_app(ip.proto, sp, dp, payload, &mut fields);
        }
    }
    let _ = key_of(&p);
}

// ---------------------------------------------------------------------------------------------
// Application payloads
// ---------------------------------------------------------------------------------------------

/// (IP protocol, server port) for [`app`]'s selector: DNS, mDNS, LLMNR, SSDP over UDP; DNS,
/// TLS and HTTP over TCP; a port and a protocol with no application parser; DHCP over UDP and
/// SSH over TCP (any TCP port reaches TLS, HTTP and SSH, which are read by content).
pub const APP_PORTS: [(u8, u16); 12] = [
    (17, 53),
    (17, 5353),
    (17, 5355),
    (17, 1900),
    (6, 53),
    (6, 443),
    (6, 80),
    (6, 8080),
    (17, 9999),
    (132, 80),
    (17, 67),
    (6, 22),
];

/// `[selector][payload]`: one transport payload through the application parsers (DNS, DHCP,
/// TLS ClientHello, SSH identification string, HTTP request or response), from either side of
/// the connection.
pub fn app(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let (proto, port) = APP_PORTS[usize::from(selector) % APP_PORTS.len()];
    let (sp, dp) = if (usize::from(selector) / APP_PORTS.len()).is_multiple_of(2) {
        (40000, port)
    } else {
        (port, 40000)
    };
    let mut fields = AppFields::default();
    let parsed = app::parse_app(proto, sp, dp, payload, &mut fields);
    assert!(
        parsed != Parsed::Complete || !fields.is_empty(),
        "a complete message without fields"
    );
    let mut again = AppFields::default();
    assert_eq!(
        app::app_fields(proto, sp, dp, payload, &mut again),
        !fields.is_empty()
    );
    assert_eq!(fields, again, "the same payload parsed twice differs");
}

// ---------------------------------------------------------------------------------------------
// The pipeline without threads: reassembly across chunks, decoding, flows, encoders
// ---------------------------------------------------------------------------------------------

struct Frame {
    ts_ns: i64,
    link_type: u16,
    wire_len: u32,
    bytes: Vec<u8>,
}

/// What [`crate::convert::Engine`] does with each chunk of a capture, on this thread and up to
/// the flow table (whose merging [`compressed`] covers): reassembly in file order, decoding
/// with the chunk's flows, the chunk's CSV and lab CSV, the summary.
struct Pipeline {
    defrag: Defragmenter,
    flows: FlowConfig,
    summary: Summary,
    next_frame: u64,
}

impl Pipeline {
    fn new(frags: FragConfig, flows: FlowConfig) -> Self {
        Pipeline {
            defrag: Defragmenter::new(frags),
            flows,
            summary: Summary::default(),
            next_frame: 1,
        }
    }

    /// The capture's next chunk (`last`: the capture ends with it).
    fn chunk(&mut self, mut chunk: Chunk, last: bool) {
        assert_eq!(
            chunk.first_frame, self.next_frame,
            "frames numbered in file order"
        );
        self.next_frame += chunk.frames.len() as u64;
        self.defrag.scan(&mut chunk);
        if last {
            self.defrag.finish(&mut chunk);
        }
        let decoded =
            decode_chunk_with("fuzz", &chunk, Some(&self.flows)).expect("a chunk always decodes");
        assert_eq!(
            decoded.batch.num_rows(),
            chunk.frames.len(),
            "one row per frame"
        );
        encode_csv(&decoded.batch).expect("CSV into memory");
        encode_lab_csv(&decoded.batch).expect("lab CSV into memory");
        self.summary.merge(&decoded.summary);
    }

    /// Frames made here, in chunks of `chunk_frames`.
    fn frames(mut self, frames: &[Frame], chunk_frames: usize) {
        let parts: Vec<&[Frame]> = if frames.is_empty() {
            vec![&[]]
        } else {
            frames.chunks(chunk_frames.max(1)).collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let mut chunk = Chunk {
                first_frame: self.next_frame,
                ..Chunk::default()
            };
            for f in part.iter() {
                chunk.push(f.ts_ns, 0, f.link_type, f.wire_len, &f.bytes);
            }
            self.chunk(chunk, i + 1 == parts.len());
        }
    }
}

const MS: i64 = 1_000_000;

/// Most frames [`fragments`] and [`messages`] make of one input (the rest is ignored): a
/// chunk costs its column builders whatever it holds, and thousands of one-frame chunks
/// would make an input take seconds without testing anything more.
const MAX_FRAMES: usize = 256;

/// `[config][record]*`: IP fragments (and any frames) through the reassembly across chunks,
/// then decoded with flows, as the engine does.
///
/// `config`: bits 0–1 the reassembly's memory cap (512 B, 4 KiB, 64 KiB, 8 MiB), bits 2–3 its
/// timeout (1 ms, 100 ms, 1 s, 30 s), bits 4–6 frames per chunk (1, 2, 3, 4, 8, 16, 64, 1024).
///
/// At most [`MAX_FRAMES`] records are read. A record starts with a byte `h`. When bit 7 is clear it is a fragment built here:
/// `[h][offset: u16, ×8 bytes, 13 bits][length: u8][time step: i8, ms; -128: no timestamp]
/// [payload]`, where `h` bit 6 = IPv6, bit 5 = more fragments, bit 4 = cut short by the snap
/// length, bits 2–3 the protocol (UDP, TCP, ICMP, GRE), bits 0–1 the datagram's
/// identification. When bit 7 is set it is any frame: `[h][selector][length: u8, plus h's
/// bits 0–5 as the high byte][time step][bytes]` (see [`frame`]).
pub fn fragments(data: &[u8]) {
    let mut input = Input(data);
    let config = input.u8();
    let frags = FragConfig {
        max_bytes: [512, 4 << 10, 64 << 10, 8 << 20][usize::from(config & 3)],
        timeout_ns: [MS, 100 * MS, 1000 * MS, 30_000 * MS][usize::from(config >> 2 & 3)],
    };
    let chunk_frames = [1, 2, 3, 4, 8, 16, 64, 1024][usize::from(config >> 4 & 7)];
    let mut frames = Vec::new();
    let mut ts = 1_700_000_000_000 * MS;
    while !input.is_empty() && frames.len() < MAX_FRAMES {
        let h = input.u8();
        let (link_type, bytes, cut) = if h & 0x80 == 0 {
            let offset = input.u16() & 0x1fff;
            let len = usize::from(input.u8());
            let step = input.u8() as i8;
            ts = step_time(ts, step);
            let payload = input.take(len);
            let v6 = h & 0x40 != 0;
            let more = h & 0x20 != 0;
            let proto = [17, 6, if v6 { 58 } else { 1 }, 47][usize::from(h >> 2 & 3)];
            let id = u32::from(h & 3) + 1;
            let frag = if v6 {
                offset << 3 | u16::from(more)
            } else {
                offset | if more { 0x2000 } else { 0 }
            };
            let bytes = ethernet_ip(v6, proto, Some((id, frag)), payload);
            (linktype::ETHERNET, bytes, h & 0x10 != 0)
        } else {
            let selector = input.u8();
            let len = usize::from(h & 0x3f) << 8 | usize::from(input.u8());
            let step = input.u8() as i8;
            ts = step_time(ts, step);
            let (lt, bytes) = frame(selector, input.take(len));
            (lt, bytes, false)
        };
        let wire_len = bytes.len() as u32;
        let mut bytes = bytes;
        if cut {
            bytes.truncate(bytes.len() - (bytes.len() - 14) / 2);
        }
        frames.push(Frame {
            ts_ns: if ts == i64::MIN { NO_TIMESTAMP } else { ts },
            link_type,
            wire_len,
            bytes,
        });
        if ts == i64::MIN {
            ts = 1_700_000_000_000 * MS;
        }
    }
    let flows = FlowConfig {
        tcp_timeout_ns: 500 * MS,
        udp_timeout_ns: 200 * MS,
        other_timeout_ns: 100 * MS,
        ..FlowConfig::default()
    };
    Pipeline::new(frags, flows).frames(&frames, chunk_frames);
}

/// The next frame's time: `step` ms later (or earlier: capture times need not grow); -128
/// means the frame has no timestamp (returned as `i64::MIN`).
fn step_time(ts: i64, step: i8) -> i64 {
    if step == i8::MIN {
        i64::MIN
    } else {
        ts.saturating_add(i64::from(step) * MS)
    }
}

/// `[config][segment]*`: TCP segments of up to eight connections, whose application
/// messages (TLS ClientHello, HTTP request head, DNS over TCP) are followed over segments.
///
/// `config`: bits 0–2 frames per chunk (1, 2, 3, 4, 8, 16, 64, 1024).
///
/// At most [`MAX_FRAMES`] segments are read. A segment: `[h][flags][length: u8][payload]` and, by `h` bits 6–7, the sequence number:
/// 0 the next one of its direction, 1 `[k: u8]` k bytes before it (a retransmission), 2
/// `[k: u8]` k bytes after it (a gap), 3 `[seq: u32]`. `h` bits 0–2: the connection, bit 3:
/// from the server, bit 4: server port 53 (else 443), bit 5: snap length cuts the payload
/// in half. `flags`: the TCP flags' low byte.
pub fn messages(data: &[u8]) {
    let mut input = Input(data);
    let config = input.u8();
    let chunk_frames = [1, 2, 3, 4, 8, 16, 64, 1024][usize::from(config & 7)];
    // Next sequence number by (connection, direction, port).
    let mut next: BTreeMap<(u8, bool, bool), u32> = BTreeMap::new();
    let mut frames = Vec::new();
    let mut ts = 1_700_000_000_000 * MS;
    while !input.is_empty() && frames.len() < MAX_FRAMES {
        let h = input.u8();
        let flags = input.u8();
        let len = usize::from(input.u8());
        let conn = h & 7;
        let from_server = h & 8 != 0;
        let dns = h & 0x10 != 0;
        let cut = h & 0x20 != 0;
        let seq_next = next
            .entry((conn, from_server, dns))
            .or_insert(u32::from(conn) << 24);
        let seq = match h >> 6 {
            0 => *seq_next,
            1 => seq_next.wrapping_sub(u32::from(input.u8())),
            2 => seq_next.wrapping_add(u32::from(input.u8())),
            _ => input.u32(),
        };
        let payload = input.take(len);
        *seq_next = seq.wrapping_add(payload.len() as u32);
        let client = 40000 + u16::from(conn);
        let server = if dns { 53 } else { 443 };
        let (sp, dp) = if from_server {
            (server, client)
        } else {
            (client, server)
        };
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&sp.to_be_bytes());
        tcp.extend_from_slice(&dp.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&1u32.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let mut bytes = ethernet_ip(false, 6, Some((1, 0x4000)), &tcp);
        // Same addresses both ways: the direction is in the ports.
        let wire_len = bytes.len() as u32;
        if cut {
            bytes.truncate(bytes.len() - payload.len() / 2);
        }
        ts += MS;
        frames.push(Frame {
            ts_ns: ts,
            link_type: linktype::ETHERNET,
            wire_len,
            bytes,
        });
    }
    Pipeline::new(FragConfig::default(), FlowConfig::default()).frames(&frames, chunk_frames);
}

/// `[config][datagram]*`: UDP datagrams of up to four QUIC connections to port 443, most of
/// them client Initial packets protected here with their connection's Initial keys (which a
/// fuzzer could not find), so that the frames, the CRYPTO stream's reassembly and the
/// ClientHello behind it are reached; through the chunk decoder (connections followed over
/// datagrams), and each connection's datagrams through a [`quic::Connection`] of its own,
/// whose CRYPTO stream must stay within [`quic::MAX_CRYPTO`].
///
/// `config`: bits 0–2 frames per chunk (as [`messages`]), bits 3–4 the version (1, 2,
/// draft 29, draft 23). At most [`MAX_FRAMES`] datagrams are read. A datagram:
/// `[h][length: u16][bytes]`; `h` bits 0–1 the connection (its Destination Connection ID),
/// bit 2 from the server, bit 3 `bytes` sent as they are (else the frames of an Initial packet
/// protected here, packet number `h >> 4`).
pub fn quic(data: &[u8]) {
    let mut input = Input(data);
    let config = input.u8();
    let chunk_frames = [1, 2, 3, 4, 8, 16, 64, 1024][usize::from(config & 7)];
    let version =
        [quic::VERSION_1, quic::VERSION_2, 0xff00_001d, 0xff00_0017][usize::from(config >> 3 & 3)];
    let mut frames = Vec::new();
    let mut conns: BTreeMap<u8, quic::Connection> = BTreeMap::new();
    let mut stats = quic::InitialStats::default();
    let mut ts = 1_700_000_000_000 * MS;
    while !input.is_empty() && frames.len() < MAX_FRAMES {
        let h = input.u8();
        let len = usize::from(input.u16());
        let bytes = input.take(len);
        let conn = h & 3;
        let datagram = if h & 8 != 0 {
            bytes.to_vec()
        } else {
            quic::seal_initial(version, &[conn; 8], h >> 4, bytes)
        };
        let c = conns.entry(conn).or_default();
        c.add_datagram(&datagram, &mut stats);
        assert!(
            c.buffered() <= quic::MAX_CRYPTO,
            "CRYPTO stream past its cap"
        );
        let mut out = AppFields::default();
        let parsed = c.client_hello(version, &mut out);
        assert!(
            out.is_empty() || out.quic_version == Some(version),
            "ClientHello fields without their QUIC version"
        );
        assert!(parsed != Parsed::Nothing || out.is_empty());
        let port = 40000 + u16::from(conn);
        let (sp, dp) = if h & 4 != 0 { (443, port) } else { (port, 443) };
        let mut udp = Vec::with_capacity(8 + datagram.len());
        udp.extend_from_slice(&sp.to_be_bytes());
        udp.extend_from_slice(&dp.to_be_bytes());
        udp.extend_from_slice(&len16(8 + datagram.len()).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&datagram);
        let bytes = ethernet_ip(false, 17, None, &udp);
        ts += MS;
        frames.push(Frame {
            ts_ns: ts,
            link_type: linktype::ETHERNET,
            wire_len: bytes.len() as u32,
            bytes,
        });
    }
    Pipeline::new(FragConfig::default(), FlowConfig::default()).frames(&frames, chunk_frames);
}

// ---------------------------------------------------------------------------------------------
// The reassembler alone
// ---------------------------------------------------------------------------------------------

/// `[config][fragment]*`: fragments of four datagrams straight into the reassembler, whose
/// promises are checked: the memory it holds stays under its cap, a datagram completes with
/// exactly the bytes up to its end, and every datagram started ends exactly once (completed,
/// invalid, timed out, evicted, or still incomplete at the end), counted as it ended.
///
/// `config`: bits 0–1 the memory cap (64 B, 1 KiB, 64 KiB, 8 MiB), bits 2–3 the timeout
/// (1 ms, 100 ms, 1 s, 30 s). A fragment: `[h][offset: u16, bytes][length: u8][time step: i8,
/// ms; -128: none][data]`; `h` bits 0–1 the datagram, bit 2 more fragments, bit 3 cut short,
/// bits 4–7 the length's high bits (×256), so that a fragment may reach past 65,535 bytes.
/// Data missing at the end of the input is made up.
pub fn reassembler(data: &[u8]) {
    let mut input = Input(data);
    let config = input.u8();
    let cfg = FragConfig {
        max_bytes: [64, 1 << 10, 64 << 10, 8 << 20][usize::from(config & 3)],
        timeout_ns: [MS, 100 * MS, 1000 * MS, 30_000 * MS][usize::from(config >> 2 & 3)],
    };
    let mut r: Reassembler<u8> = Reassembler::new(cfg);
    // Datagrams by first frame: started, and ended (how many times).
    let mut started: BTreeMap<u64, u8> = BTreeMap::new();
    let mut ended: BTreeMap<u64, u32> = BTreeMap::new();
    let (mut completed, mut invalid, mut expired) = (0u64, 0u64, 0u64);
    let mut ts = 1_700_000_000_000 * MS;
    let mut frame = 0u64;
    let mut filler = Vec::new();
    while !input.is_empty() {
        frame += 1;
        let h = input.u8();
        let offset = u32::from(input.u16());
        let len = usize::from(h >> 4) << 8 | usize::from(input.u8());
        let step = input.u8() as i8;
        let now = step_time(ts, step);
        if now != i64::MIN {
            ts = now;
        }
        let given = input.take(len);
        // Past the input's end the data is made up (so that long fragments stay cheap to
        // describe), the same bytes for the same offsets.
        let data = if given.len() == len {
            given
        } else {
            filler.clear();
            filler.extend_from_slice(given);
            filler.extend((given.len()..len).map(|i| (offset as usize + i) as u8));
            filler.as_slice()
        };
        let key = h & 3;
        let frag = Fragment {
            offset,
            more: h & 4 != 0,
            data,
            whole: h & 8 == 0,
            header: &[0x45, 0, 0, 20],
        };
        let added = r.add(key, frame, now, (len + 34) as u32, frag);
        for e in r.take_expired() {
            expired += 1;
            *ended.entry(e.first_frame).or_default() += 1;
        }
        let first = match &added {
            Added::Pending { first_frame } => *first_frame,
            Added::Complete(d) => {
                completed += 1;
                *ended.entry(d.first_frame).or_default() += 1;
                assert!(d.payload.len() <= 65_535, "a datagram over 65,535 bytes");
                assert!(d.fragments >= 1);
                assert_eq!(d.header, [0x45, 0, 0, 20], "the offset-0 fragment's header");
                d.first_frame
            }
            Added::Invalid {
                first_frame,
                expired: e,
                ..
            } => {
                invalid += 1;
                *ended.entry(*first_frame).or_default() += 1;
                assert_eq!(e.first_frame, *first_frame);
                *first_frame
            }
        };
        started.insert(first, key);
        assert!(
            r.held_bytes() <= cfg.max_bytes,
            "{} bytes held, over the cap of {}",
            r.held_bytes(),
            cfg.max_bytes
        );
    }
    let rest = r.finish();
    for e in &rest {
        *ended.entry(e.first_frame).or_default() += 1;
    }
    assert_eq!(r.held_bytes(), 0);
    let stats = r.stats();
    assert_eq!(stats.reassembled, completed);
    assert_eq!(stats.invalid, invalid);
    assert_eq!(stats.timed_out + stats.evicted, expired);
    assert_eq!(stats.incomplete, rest.len() as u64);
    for (first, times) in &ended {
        assert_eq!(*times, 1, "datagram of frame {first} ended {times} times");
        assert!(
            started.contains_key(first),
            "datagram of frame {first} never started"
        );
    }
    assert_eq!(started.len(), ended.len(), "a datagram that never ended");
}
