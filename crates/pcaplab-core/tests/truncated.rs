//! Captures cut short — a crashed tcpdump, a partial upload — against tshark.
//!
//! What tshark does with a file that ends inside a record (established with TShark 4.0.17, the
//! corpus oracle's version, on copies cut with `head -c`): it shows every record before that one
//! and not the cut record itself — whether the cut falls in the record header, the packet
//! bytes, a pcapng block's trailing length or a snoop record's padding, for pcap (µs and ns,
//! either byte order), pcapng (Enhanced and Simple Packet Blocks) and snoop alike, plain or
//! behind gzip/zstd — and exits non-zero: "appears to have been cut short in the middle of a
//! packet". (wiretap reads a record's bytes whole or fails with a short read.)
//!
//! pcaplab shows the same frames, and one more when the cut falls after the cut record's header
//! (a pcap or snoop record header, a packet block's fixed part up to its original length): the
//! record salvaged, with the packet bytes present (`cap_len`, at most the captured length the
//! header claims), the header's original length and timestamp, and a `decode_error` that says
//! so ("truncated record: 40 of 1514 captured bytes present (the capture ends inside it)"); the
//! partial record's headers are evidence. A cut inside a header leaves nothing to show: tshark's
//! frames exactly. Either way the capture is reported damaged at the cut record's first byte.
//!
//! Where tshark says nothing, pcaplab does not follow it: a zstd file cut inside a block or its
//! checksum reads in tshark as the frames of the whole blocks before the cut (none for a file of
//! one block, as an empty capture) and no error; pcaplab keeps the same frames (and salvages the
//! record the decompressed bytes end inside) and reports the decompression error (or, when
//! nothing at all is decompressed, that the input cannot be opened). A gzip file cut anywhere,
//! even in its trailer, is an error for both.
//!
//! 1. [`cut_corpus_captures_match_tshark`]: corpus captures of each format, cut inside and at
//!    the end of their last packet record, inside a record in the middle, and inside a trailing
//!    non-packet block; tshark's frames (`frame.cap_len`, `frame.len`) and whether tshark
//!    failed, against pcaplab's rows (less the salvaged one) and damage. A compressed capture
//!    is cut twice over: the capture cut and compressed again (tshark reads the cut capture),
//!    and the compressed file itself cut (tshark reads the cut `.gz`; for `.zst`, the bytes the
//!    zstd decoder yields before its error, as its zstd support depends on how it was built).
//! 2. [`cut_project_captures`]: the project's own captures and a snoop copy of one of them made
//!    here, cut the same way, against the record boundaries read here and values tshark gave
//!    for them once; no tshark needed.
//!
//! Both also check every cut against the record boundaries this file reads itself, without
//! tshark: the rows are the packet records that end before the cut, then the salvaged record
//! when the cut falls after its header (its bytes present, its original length, the one row
//! whose `decode_error` starts "truncated record"), and the damage is at the cut record's start.
//!
//! tshark is `$PCAPLAB_TSHARK` or `tshark` on the `PATH`; without it, or without
//! `$PCAPLAB_CORPUS`, the first test says so and passes, unless `PCAPLAB_REQUIRE_ALL` is set.

mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use pcaplab_core::ReadError;
use pcaplab_core::columns::col;

use common::{corpus, decode_bytes, tshark};

// ---------------------------------------------------------------------------------------------
// Record boundaries, read here independently of pcaplab's reader
// ---------------------------------------------------------------------------------------------

/// One record (pcap, snoop) or block (pcapng) of a capture.
#[derive(Clone, Copy, Debug)]
struct Record {
    start: usize,
    end: usize,
    /// Bytes before the packet data (the record header; a pcapng block's fixed part).
    header: usize,
    /// Where the packet data ends (before padding and a pcapng trailing length).
    data_end: usize,
    /// (captured length, original length) when the record holds a packet.
    packet: Option<(u32, u32)>,
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let w: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
    if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// The records of a whole (uncut) pcap, pcapng or snoop file.
fn records(b: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    if b.starts_with(b"snoop\0\0\0") {
        let mut at = 16;
        while at < b.len() {
            let (orig, incl, len) = (
                u32_at(b, at, true),
                u32_at(b, at + 4, true),
                u32_at(b, at + 8, true),
            );
            out.push(Record {
                start: at,
                end: at + len as usize,
                header: 24,
                data_end: at + 24 + incl as usize,
                packet: Some((incl, orig)),
            });
            at += len as usize;
        }
    } else if b.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut at = 0;
        let mut big_endian = false;
        while at < b.len() {
            if b[at..].starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
                big_endian = b[at + 8..at + 12] == [0x1a, 0x2b, 0x3c, 0x4d];
            }
            let (kind, len) = (u32_at(b, at, big_endian), u32_at(b, at + 4, big_endian));
            let (header, packet) = match kind {
                6 => {
                    let cap = u32_at(b, at + 20, big_endian);
                    (28, Some((cap, u32_at(b, at + 24, big_endian))))
                }
                3 => {
                    let orig = u32_at(b, at + 8, big_endian);
                    (12, Some((orig.min(len - 16), orig)))
                }
                _ => (8, None),
            };
            let data_end = at + header + packet.map_or(0, |p| p.0 as usize);
            out.push(Record {
                start: at,
                end: at + len as usize,
                header,
                data_end,
                packet,
            });
            at += len as usize;
        }
    } else {
        let big_endian = match u32_at(b, 0, false) {
            0xa1b2_c3d4 | 0xa1b2_3c4d => false,
            0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
            other => panic!("not a standard pcap file (magic {other:#010x})"),
        };
        let mut at = 24;
        while at < b.len() {
            let (cap, orig) = (
                u32_at(b, at + 8, big_endian),
                u32_at(b, at + 12, big_endian),
            );
            let end = at + 16 + cap as usize;
            out.push(Record {
                start: at,
                end,
                header: 16,
                data_end: end,
                packet: Some((cap, orig)),
            });
            at = end;
        }
    }
    assert_eq!(
        out.last().map(|r| r.end),
        Some(b.len()),
        "records end at EOF"
    );
    out
}

/// Where to cut: in the last packet record's header, right after it, in the packet bytes, one
/// byte short of the packet's end, at its end (before a snoop record's padding or a pcapng
/// block's trailing length), one byte short of the record's end and at it; in the header of a
/// packet record in the middle; inside a non-packet block after the last packet. (Each cut is a
/// tshark run.)
fn cut_points(records: &[Record]) -> Vec<usize> {
    let packets: Vec<&Record> = records.iter().filter(|r| r.packet.is_some()).collect();
    let (Some(last), Some(middle)) = (packets.last(), packets.get(packets.len() / 2)) else {
        panic!("no packets");
    };
    let mut cuts = vec![
        last.start + 1,
        last.start + last.header,
        (last.start + last.header + last.data_end) / 2,
        last.data_end - 1,
        last.data_end,
        last.end - 1,
        last.end,
        middle.start + middle.header / 2,
    ];
    if let Some(trailer) = records.iter().rfind(|r| r.start >= last.end) {
        cuts.extend([trailer.start + 4, trailer.end - 1]);
    }
    cuts.retain(|&c| c > records[0].start);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// What a reader should show of a capture cut at `cut`.
#[derive(Debug, PartialEq)]
struct Expected {
    /// The frames tshark shows: every packet record that ends before the cut.
    whole: usize,
    /// The record the cut falls in, when the cut is after its header: (bytes present, captured
    /// length claimed); pcaplab's extra, last frame.
    salvaged: Option<(u32, u32)>,
    /// pcaplab's last frame's (cap_len, wire_len).
    last: Option<(u32, u32)>,
    /// The byte offset of the damage (`None` if the cut falls between records, or if reading
    /// ends with a decompression error instead).
    damage_at: Option<u64>,
    /// Whether reading ends with an error.
    error: bool,
}

impl Expected {
    /// pcaplab's rows.
    fn rows(&self) -> usize {
        self.whole + usize::from(self.salvaged.is_some())
    }
}

fn expected(records: &[Record], cut: usize) -> Expected {
    let whole: Vec<(u32, u32)> = records
        .iter()
        .filter(|r| r.end <= cut)
        .filter_map(|r| r.packet)
        .collect();
    let inside = records.iter().find(|r| r.start < cut && cut < r.end);
    // (bytes present, claimed, original length) of the record cut after its header.
    let salvaged = inside.and_then(|r| {
        let (cap, orig) = r.packet?;
        let present = cut.checked_sub(r.start + r.header)?.min(cap as usize);
        Some((present as u32, cap, orig))
    });
    Expected {
        whole: whole.len(),
        salvaged: salvaged.map(|(present, cap, _)| (present, cap)),
        last: salvaged
            .map(|(present, _, orig)| (present, orig))
            .or(whole.last().copied()),
        damage_at: inside.map(|r| r.start as u64),
        error: inside.is_some(),
    }
}

/// The `decode_error` of a frame salvaged from a record cut short: its start (a dissection
/// error of the bytes present may follow).
fn salvage_note(present: u32, claimed: u32) -> String {
    format!(
        "truncated record: {present} of {claimed} captured bytes present (the capture ends inside \
         it)"
    )
}

// ---------------------------------------------------------------------------------------------
// pcaplab and tshark on one cut file
// ---------------------------------------------------------------------------------------------

/// What a reader showed: every frame's (cap_len, wire_len), and how reading ended.
#[derive(Debug)]
struct Seen {
    rows: Vec<(u32, u32)>,
    /// pcaplab: the rows (index, decode_error) whose decode_error starts "truncated record".
    marked: Vec<(usize, String)>,
    /// pcaplab: the damage; tshark: its exit status and error message.
    error: Option<String>,
    damage_at: Option<u64>,
}

impl Seen {
    /// pcaplab's rows but a salvaged last one: what tshark should show.
    fn tshark_view(&self) -> &[(u32, u32)] {
        let salvaged = self
            .marked
            .last()
            .is_some_and(|(i, _)| i + 1 == self.rows.len());
        &self.rows[..self.rows.len() - usize::from(salvaged)]
    }
}

fn ours(name: &str, bytes: Vec<u8>) -> Seen {
    // Chunks of 3 frames, so that a cut also falls at a chunk's end.
    let decoded = decode_bytes(name, bytes, 3);
    if let Some(e) = decoded.open_error {
        return Seen {
            rows: Vec::new(),
            marked: Vec::new(),
            error: Some(format!("does not open: {e}")),
            damage_at: None,
        };
    }
    let mut rows = Vec::new();
    let mut marked = Vec::new();
    for b in &decoded.batches {
        let column = |c: &str| {
            b.column_by_name(c)
                .unwrap_or_else(|| panic!("column {c}"))
                .clone()
        };
        let (cap, wire, errors) = (
            column(col::CAP_LEN),
            column(col::WIRE_LEN),
            column(col::DECODE_ERROR),
        );
        let (cap, wire) = (
            cap.as_primitive::<UInt32Type>(),
            wire.as_primitive::<UInt32Type>(),
        );
        let errors = errors.as_string::<i32>();
        for i in 0..b.num_rows() {
            if errors.is_valid(i) && errors.value(i).starts_with("truncated record") {
                marked.push((rows.len(), errors.value(i).to_string()));
            }
            rows.push((cap.value(i), wire.value(i)));
        }
    }
    let damage_at = match &decoded.damage {
        Some(ReadError::Damaged { offset, .. }) => Some(*offset),
        _ => None,
    };
    Seen {
        rows,
        marked,
        error: decoded.damage.map(|e| e.to_string()),
        damage_at,
    }
}

fn run_tshark(program: &OsString, path: &Path) -> Seen {
    let out = Command::new(program)
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "frame.number",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.len",
        ])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(u32, u32)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let cols: Vec<&str> = line.split('\t').collect();
            let num = |k: usize| -> u32 {
                cols.get(k)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("tshark line {line:?}"))
            };
            assert_eq!(num(0) as usize, i + 1, "tshark frame numbers: {line:?}");
            (num(1), num(2))
        })
        .collect();
    Seen {
        rows,
        marked: Vec::new(),
        error: (!out.status.success()).then(|| {
            format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        }),
        damage_at: None,
    }
}

/// `bytes` as a whole gzip or zstd stream.
fn compress(as_zstd: bool, bytes: &[u8]) -> Vec<u8> {
    if as_zstd {
        return zstd::encode_all(bytes, 3).expect("zstd");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// What a decompressor yields of a (possibly cut) stream before it fails.
fn yielded(mut decoder: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    // On error, the bytes read so far are kept in `out`.
    let _ = decoder.read_to_end(&mut out);
    out
}

/// One comparison: pcaplab reads `ours`, tshark reads `theirs` (the same capture, or its
/// decompressed bytes).
struct Case {
    label: String,
    ours: Vec<u8>,
    /// Empty when the decompressor yields nothing of a cut compressed file: tshark then shows
    /// an empty capture and succeeds, pcaplab cannot open it (an error, rightly); not compared.
    theirs: Vec<u8>,
    /// `theirs` is what the zstd decoder yields of a cut file: tshark cannot tell that it was
    /// cut, pcaplab must (a read error). Otherwise tshark and pcaplab must agree on failing.
    decompressed_for_tshark: bool,
    /// The capture's frames and damage as this file reads them.
    expected: Expected,
}

/// Run tshark on every case with bytes for it, a few at a time (each run starts a whole
/// tshark).
fn tshark_all(program: &OsString, cases: &[Case]) -> Vec<Option<Seen>> {
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let seen: Vec<(usize, Seen)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(case) = cases.get(i) else {
                            return done;
                        };
                        if case.theirs.is_empty() {
                            continue;
                        }
                        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
                        file.write_all(&case.theirs).expect("write cut capture");
                        file.flush().expect("write cut capture");
                        done.push((i, run_tshark(program, file.path())));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("tshark worker"))
            .collect()
    });
    let mut all: Vec<Option<Seen>> = cases.iter().map(|_| None).collect();
    for (i, s) in seen {
        all[i] = Some(s);
    }
    all
}

/// Check pcaplab against the expectation read from the records; `None` if they agree: the
/// rows, the last one's lengths, the salvaged row (the last, and the only one marked), the
/// damage.
fn against_records(case: &Case, o: &Seen) -> Option<String> {
    let e = &case.expected;
    let marked_ok = match e.salvaged {
        Some((present, claimed)) => {
            let note = salvage_note(present, claimed);
            matches!(o.marked.as_slice(), [(i, m)] if i + 1 == o.rows.len() && m.starts_with(&note))
        }
        None => o.marked.is_empty(),
    };
    let ok = o.rows.len() == e.rows()
        && o.rows.last().copied() == e.last
        && marked_ok
        && o.damage_at == e.damage_at
        && o.error.is_some() == e.error;
    (!ok).then(|| format!("{}: pcaplab {o:?}, the records say {e:?}", case.label))
}

// ---------------------------------------------------------------------------------------------
// The corpus against tshark
// ---------------------------------------------------------------------------------------------

/// Uncompressed corpus captures: pcap µs and ns in both byte orders, pcapng of either byte
/// order with several interfaces, a Simple Packet Block and trailing non-packet blocks, snoop.
const PLAIN: [&str; 8] = [
    "tcpdump__pptp.pcap",
    "pcapplusplus__nanosecs_big_endian.pcap",
    "tcpdump__tcp-handshake-nano.pcap",
    "zeek__linuxsll-arp.pcap",
    "pcapplusplus__pcapng-example.pcapng",
    "pcap-parser__test016-be.pcapng",
    "zeek__pcapng-multi-interface.pcapng",
    "pcapplusplus__solaris.snoop",
];

/// Compressed corpus captures.
const COMPRESSED: [&str; 3] = [
    "zeek__iso-download.pcap.gz",
    "scapy__dcerpc_msnrpc.pcapng.gz",
    "pcapplusplus__pcapng-example.pcapng.zst",
];

fn decompress(name: &str, bytes: &[u8]) -> Vec<u8> {
    if name.ends_with(".zst") {
        zstd::decode_all(bytes).expect("zstd")
    } else {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    }
}

#[test]
fn cut_corpus_captures_match_tshark() {
    let Some(dir) = corpus() else { return };
    let Some(program) = tshark() else { return };
    let mut cases = Vec::new();
    for name in PLAIN {
        let bytes = std::fs::read(dir.join(name)).expect("read capture");
        let records = records(&bytes);
        for cut in cut_points(&records) {
            cases.push(Case {
                label: format!("{name} cut at {cut} of {}", bytes.len()),
                ours: bytes[..cut].to_vec(),
                theirs: bytes[..cut].to_vec(),
                decompressed_for_tshark: false,
                expected: expected(&records, cut),
            });
        }
    }
    for name in COMPRESSED {
        let compressed = std::fs::read(dir.join(name)).expect("read capture");
        let plain = decompress(name, &compressed);
        let records = records(&plain);
        // The capture cut, then compressed again: the damage offset is in the decompressed
        // stream, so it is the same as the plain capture's.
        for cut in cut_points(&records).into_iter().step_by(3) {
            let ours = compress(name.ends_with(".zst"), &plain[..cut]);
            cases.push(Case {
                label: format!("{name}, its capture cut at {cut} of {}", plain.len()),
                ours,
                theirs: plain[..cut].to_vec(),
                decompressed_for_tshark: false,
                expected: expected(&records, cut),
            });
        }
    }
    // The compressed file cut: a decompression error after what the decompressor yields. The
    // corpus's zstd file is a single zstd block, which yields nothing until it is whole, so a
    // zstd file of several blocks is made here too.
    let afs = std::fs::read(dir.join("tcpdump__afs.pcap")).expect("read capture");
    let mut cut_files: Vec<(String, Vec<u8>, Vec<Record>)> = COMPRESSED
        .iter()
        .map(|name| {
            let compressed = std::fs::read(dir.join(name)).expect("read");
            let records = records(&decompress(name, &compressed));
            (name.to_string(), compressed, records)
        })
        .collect();
    cut_files.push((
        "tcpdump__afs.pcap.zst (made here)".into(),
        compress(true, &afs),
        records(&afs),
    ));
    for (name, compressed, records) in cut_files {
        let n = compressed.len();
        for cut in [n / 3, n / 2, n - 9, n - 1] {
            let ours = compressed[..cut].to_vec();
            let is_zstd = name.contains(".zst");
            let decompressed = if is_zstd {
                yielded(zstd::stream::read::Decoder::new(&compressed[..cut]).expect("zstd decoder"))
            } else {
                yielded(flate2::read::MultiGzDecoder::new(&compressed[..cut]))
            };
            // The frames of what the decompressor yields (the record it ends inside salvaged),
            // then a decompression error, not damage.
            let expected = Expected {
                damage_at: None,
                error: true,
                ..expected(&records, decompressed.len())
            };
            cases.push(Case {
                label: format!("{name} cut at {cut} of {n}"),
                theirs: if is_zstd { decompressed } else { ours.clone() },
                ours,
                decompressed_for_tshark: is_zstd,
                expected,
            });
        }
    }

    let started = std::time::Instant::now();
    let theirs = tshark_all(&program, &cases);
    let mut failures = Vec::new();
    let mut salvaged = 0;
    for (case, t) in cases.iter().zip(&theirs) {
        let o = ours(&case.label, case.ours.clone());
        match t {
            // tshark's frames are pcaplab's but the salvaged one (which `against_records`
            // checks is there exactly when the cut falls after a packet record's header).
            Some(t) => {
                let failed = case.decompressed_for_tshark || t.error.is_some();
                let agree = o.tshark_view() == t.rows && o.error.is_some() == failed;
                if !agree {
                    failures.push(format!("{}: pcaplab {o:?}, tshark {t:?}", case.label));
                }
            }
            None if o.rows.is_empty() && o.error.is_some() => {}
            None => failures.push(format!(
                "{}: the decompressor yields nothing, pcaplab {o:?}",
                case.label
            )),
        }
        failures.extend(against_records(case, &o));
        salvaged += usize::from(case.expected.salvaged.is_some());
    }
    eprintln!(
        "{} cut captures compared with tshark in {:.1?}, {salvaged} with a record salvaged",
        cases.len(),
        started.elapsed()
    );
    // The cuts are real ones: most fall inside a record, and tshark reported each of those.
    let damaged = theirs
        .iter()
        .flatten()
        .filter(|t| t.error.is_some())
        .count();
    assert!(
        damaged * 2 > cases.len(),
        "{damaged} of {} cut",
        cases.len()
    );
    // And more than half of those after a packet record's header: pcaplab's extra frame.
    assert!(salvaged * 2 > damaged, "{salvaged} of {damaged} salvaged");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The project's own captures, without tshark
// ---------------------------------------------------------------------------------------------

fn project_capture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../captures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A snoop file holding the packets of a pcap file (Ethernet, µs): snoop is the one format
/// without a capture of the project's own.
fn snoop_of(pcap: &[u8]) -> Vec<u8> {
    let mut out = b"snoop\0\0\0".to_vec();
    out.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 4]);
    for r in records(pcap) {
        let (cap, orig) = r.packet.expect("packet");
        let rec_len = 24 + (cap as usize).next_multiple_of(4);
        let (sec, usec) = (
            u32_at(pcap, r.start, false),
            u32_at(pcap, r.start + 4, false),
        );
        for v in [orig, cap, rec_len as u32, 0, sec, usec] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&pcap[r.start + 16..r.end]);
        out.resize(out.len() + rec_len - 24 - cap as usize, 0);
    }
    out
}

#[test]
fn cut_project_captures() {
    let web = project_capture("lab-web.pcap");
    let ng = project_capture("lab-vlan-ipv6.pcapng");
    let captures = [
        ("lab-web.pcap", web.clone()),
        ("lab-snaplen.pcap", project_capture("lab-snaplen.pcap")),
        ("lab-vlan-ipv6.pcapng", ng.clone()),
        ("snoop copy of lab-web.pcap", snoop_of(&web)),
    ];
    let mut failures = Vec::new();
    let (mut cuts, mut salvaged) = (0, 0);
    for (name, bytes) in &captures {
        let records = records(bytes);
        for cut in cut_points(&records) {
            let case = Case {
                label: format!("{name} cut at {cut}"),
                ours: bytes[..cut].to_vec(),
                theirs: Vec::new(),
                decompressed_for_tshark: false,
                expected: expected(&records, cut),
            };
            failures.extend(against_records(
                &case,
                &ours(&case.label, case.ours.clone()),
            ));
            cuts += 1;
            salvaged += usize::from(case.expected.salvaged.is_some());
        }
    }
    // The same through the decompressors: the cut capture, compressed.
    for (name, plain, as_zstd) in [
        ("lab-web.pcap.gz", &web, false),
        ("lab-vlan-ipv6.pcapng.zst", &ng, true),
    ] {
        let records = records(plain);
        for cut in cut_points(&records) {
            let case = Case {
                label: format!("{name}, its capture cut at {cut}"),
                ours: compress(as_zstd, &plain[..cut]),
                theirs: Vec::new(),
                decompressed_for_tshark: false,
                expected: expected(&records, cut),
            };
            failures.extend(against_records(
                &case,
                &ours(&case.label, case.ours.clone()),
            ));
            cuts += 1;
            salvaged += usize::from(case.expected.salvaged.is_some());
        }
    }
    assert!(cuts > 30, "{cuts} cuts");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The cuts after the last record's header: at the header's end, in the packet bytes, one
    // byte short of them (pcap, snoop: 3 cuts, for each of the two pcap files, the snoop copy
    // and the gzip one); pcapng also at the packet's end, in the trailing length (5, plain and
    // zstd).
    assert_eq!(
        salvaged,
        3 * 4 + 5 * 2,
        "{salvaged} of {cuts} cuts salvaged a record"
    );

    // Values TShark 4.0.17 gave for these cuts (`head -c N FILE`; frames, last frame's
    // frame.cap_len and frame.len): they anchor the record reading above. pcaplab shows those
    // frames, then, where the cut falls after the last record's header, that record salvaged:
    // (bytes present, the captured length claimed, original length), as the records say.
    #[rustfmt::skip]
    let tshark_said = [
        // Inside the last record's packet bytes, in its header, and one byte short.
        ("lab-web.pcap", 7040, 32, (98, 98), Some(7023), Some((1, 96, 96))),
        ("lab-web.pcap", 7028, 32, (98, 98), Some(7023), None),
        ("lab-web.pcap", 7134, 32, (98, 98), Some(7023), Some((95, 96, 96))),
        ("lab-snaplen.pcap", 2538, 32, (64, 98), Some(2490), Some((32, 64, 96))),
        // Inside the last Enhanced Packet Block: its header, packet, trailing length.
        ("lab-vlan-ipv6.pcapng", 3296, 25, (61, 61), Some(3288), None),
        ("lab-vlan-ipv6.pcapng", 3360, 25, (61, 61), Some(3288), Some((44, 89, 89))),
        ("lab-vlan-ipv6.pcapng", 3411, 25, (61, 61), Some(3288), Some((89, 89, 89))),
        // The compressed file cut (gzip's data, then its trailer): no offset to compare; what
        // gzip yields ends inside a record (bytes 1644 and 7132), then at the end (7135).
        ("lab-web.pcap.gz", 862, 11, (60, 60), None, Some((567, 1514, 1514))),
        ("lab-web.pcap.gz", 1714, 32, (98, 98), None, Some((93, 96, 96))),
        ("lab-web.pcap.gz", 1723, 33, (96, 96), None, None),
    ];
    for (name, cut, frames, last, damage_at, salvaged) in tshark_said {
        let bytes = project_capture(name);
        let o = ours(name, bytes[..cut].to_vec());
        let theirs = o.tshark_view();
        assert_eq!(
            (theirs.len(), theirs.last().copied(), o.error.is_some()),
            (frames, Some(last), true),
            "{name} cut at {cut}: {o:?}"
        );
        if damage_at.is_some() {
            assert_eq!(o.damage_at, damage_at, "{name} cut at {cut}: {o:?}");
        }
        let extra = o.marked.last().map(|(_, m)| m.as_str());
        match salvaged {
            Some((present, claimed, orig)) => {
                assert_eq!(o.rows.len(), frames + 1, "{name} cut at {cut}: {o:?}");
                assert_eq!(o.rows.last(), Some(&(present, orig)), "{name} cut at {cut}");
                assert!(
                    extra.is_some_and(|m| m.starts_with(&salvage_note(present, claimed))),
                    "{name} cut at {cut}: {o:?}"
                );
            }
            None => assert_eq!(o.rows.len(), frames, "{name} cut at {cut}: {o:?}"),
        }
    }
}
