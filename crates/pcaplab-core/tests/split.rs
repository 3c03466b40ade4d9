//! Byte-range splits (`pcaplab_core::split`): every range synchronised, walked, checked and
//! read with `CaptureReader::resume` gives, concatenated, the frames of the whole read, with
//! the same damage; payloads that look like records either do not fool the synchronisation
//! or are caught by the contiguity check.
//!
//! Damage: the range whose records hold the damaged record's first byte reports it (its walk,
//! or its reader, with the offset the whole read names); the frames of the ranges before it
//! and of that range up to the damage are the whole read's. Ranges after the damage are not
//! read (the whole read stops there too).

mod common;

use std::io::Cursor;

use pcaplab_core::reader::{CaptureReader, Chunk, ReadError};
use pcaplab_core::split::{self, Preamble, SplitError, Walk};

#[derive(Clone, Debug, PartialEq)]
struct Frame {
    number: u64,
    offset: u64,
    len: u32,
    ts_ns: i64,
    cap_len: u32,
    wire_len: u32,
    interface_id: u32,
    link_type: u16,
    cut_short: bool,
    bytes: Vec<u8>,
}

/// Append every frame `reader` gives to `out`; the error it ends with.
fn drain(mut reader: CaptureReader, out: &mut Vec<Frame>) -> Option<ReadError> {
    loop {
        let mut chunk = Chunk::default();
        let r = reader.fill(&mut chunk, 256, 1 << 20);
        for (i, (f, span)) in chunk.frames.iter().zip(&chunk.records).enumerate() {
            out.push(Frame {
                number: chunk.first_frame + i as u64,
                offset: span.offset,
                len: span.len,
                ts_ns: f.ts_ns,
                cap_len: f.cap_len,
                wire_len: f.wire_len,
                interface_id: f.interface_id,
                link_type: f.link_type,
                cut_short: f.cut_short,
                bytes: chunk.frame_data(f).to_vec(),
            });
        }
        match r {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn damage_offset(e: &Option<ReadError>) -> Option<u64> {
    e.as_ref().map(|e| match e {
        ReadError::Damaged { offset, .. } | ReadError::Io { offset, .. } => *offset,
        other => panic!("unexpected error {other}"),
    })
}

/// What happened over all the splits, to show that each situation occurred.
#[derive(Default, Debug)]
struct Seen {
    splits: usize,
    ranges: usize,
    owned_nothing: usize,
    cut_inside_record: usize,
    cut_inside_ng_block: usize,
    cut_inside_header: usize,
    stale_state: usize,
    desync_repaired: usize,
    walk_error_repaired: usize,
    damaged: usize,
    /// The contiguity check of the last split's walks as made in parallel.
    raw_check: Option<Option<SplitError>>,
}

/// The frames and damage offset of reading `bytes` in ranges of `range_bytes`; `Err` for a
/// split error the protocol cannot recover from (a desync).
fn split_read(
    bytes: &[u8],
    range_bytes: u64,
    seen: &mut Seen,
) -> Result<(Vec<Frame>, Option<u64>), SplitError> {
    let len = bytes.len() as u64;
    let plan = split::plan(len, &bytes[..bytes.len().min(64)], range_bytes)?;
    let head = Preamble::from_head(bytes)?;
    let ng = plan.format == pcaplab_core::CaptureFormat::PcapNg;
    seen.splits += 1;
    seen.ranges += plan.ranges.len();
    let sync_with = |pre: &Preamble, start: u64| {
        let to = (start + split::window_len(pre)).min(len);
        split::sync(pre, &bytes[start as usize..to as usize], start, to == len)
    };
    // As the workers would, in parallel: each range with the head's state.
    let mut walks: Vec<Result<Walk, SplitError>> = Vec::new();
    for r in &plan.ranges {
        walks.push(
            sync_with(&head, r.start)
                .and_then(|s| split::walk(&head, &bytes[s.min(len) as usize..], s, r.end)),
        );
    }
    // The walks as the workers made them, before any repair: what the contiguity check says.
    let raw: Option<Vec<Walk>> = walks.iter().map(|w| w.as_ref().ok().cloned()).collect();
    if let Some(raw) = &raw {
        seen.raw_check = Some(split::check_contiguous(raw).err());
    }
    // The repair: a range synchronised on a false boundary (a desync) or walked with a stale
    // pcapng state is walked again from where the walk before it ends, with its state.
    let mut damaged_at = None;
    let mut good: Vec<Walk> = Vec::new();
    for (i, made) in walks.into_iter().enumerate() {
        let w = match (made, good.last()) {
            (Ok(w), Some(prev))
                if w.start == prev.next && prev.state_at_next.same_state(&w.state_at_start) =>
            {
                Ok(w)
            }
            (Ok(w), None) => Ok(w),
            (first, Some(prev)) => {
                match first {
                    Ok(w) if w.start != prev.next => seen.desync_repaired += 1,
                    Ok(_) => seen.stale_state += 1,
                    Err(_) => seen.walk_error_repaired += 1,
                }
                let pre = &prev.state_at_next;
                let r = plan.ranges[i];
                split::walk(pre, &bytes[prev.next as usize..], prev.next, r.end)
            }
            (Err(e), None) => Err(e),
        };
        match w {
            Ok(w) => good.push(w),
            Err(SplitError::Damaged { .. }) => {
                damaged_at = Some(i);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    split::check_contiguous(&good)?;
    let bases = split::frame_bases(&good);
    let mut frames = Vec::new();
    for (i, w) in good.iter().enumerate() {
        let r = plan.ranges[i];
        if w.owns_nothing() {
            seen.owned_nothing += 1;
        } else if w.start != r.start && i > 0 {
            // The range's first byte is inside a record (or block) that started before it.
            if ng {
                seen.cut_inside_ng_block += 1;
            } else {
                seen.cut_inside_record += 1;
            }
        }
        if i > 0 && r.start < head.offset {
            seen.cut_inside_header += 1;
        }
        let rest = bytes[w.start as usize..w.next as usize].to_vec();
        let reader = CaptureReader::resume(
            &w.state_at_start,
            Box::new(Cursor::new(rest)),
            w.start,
            bases[i],
            w.end,
        )
        .expect("resume");
        let before = frames.len();
        let err = drain(reader, &mut frames);
        if err.is_some() {
            // Only the range holding the damage ends in an error (a cut last record).
            seen.damaged += 1;
            return Ok((frames, damage_offset(&err)));
        }
        assert_eq!(
            (frames.len() - before) as u64,
            w.frames,
            "range {i}: the walk counted {} frames, the reader read {}",
            w.frames,
            frames.len() - before
        );
    }
    if let Some(i) = damaged_at {
        seen.damaged += 1;
        let (start, pre) = match good.last() {
            Some(w) => (w.next, w.state_at_next.clone()),
            None => (head.offset, head.clone()),
        };
        let base = bases
            .last()
            .map_or(1, |b| b + good.last().map_or(0, |w| w.frames));
        let reader = CaptureReader::resume(
            &pre,
            Box::new(Cursor::new(bytes[start as usize..].to_vec())),
            start,
            base,
            plan.ranges[i].end,
        )
        .expect("resume");
        let err = drain(reader, &mut frames);
        return Ok((frames, damage_offset(&err)));
    }
    Ok((frames, None))
}

fn whole_read(bytes: &[u8]) -> Option<(Vec<Frame>, Option<u64>)> {
    let reader = CaptureReader::new(Box::new(Cursor::new(bytes.to_vec()))).ok()?;
    if reader.compression() != pcaplab_core::Compression::None
        || reader.format() == pcaplab_core::CaptureFormat::Snoop
    {
        return None;
    }
    let mut frames = Vec::new();
    let err = drain(reader, &mut frames);
    Some((frames, damage_offset(&err)))
}

/// A small deterministic generator (no dependency needed for one number per file).
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

#[test]
fn every_corpus_capture_read_in_ranges_is_the_whole_read() {
    let Some(dir) = common::corpus() else { return };
    let mut seen = Seen::default();
    let mut files = 0;
    let mut seed = 0x5eed_u64;
    for name in common::manifest_files(&dir) {
        let bytes = std::fs::read(dir.join(&name)).expect("read capture");
        let Some((whole, damage)) = whole_read(&bytes) else {
            continue;
        };
        files += 1;
        let head = Preamble::from_head(&bytes).expect("preamble");
        let mut sizes = vec![
            4 * 1024 - 1,
            64 * 1024 + 7,
            1 << 20,
            1000 + lcg(&mut seed) % 200_000,
        ];
        // At most 64 ranges per read (the reads are in debug builds, in CI), except for a
        // boundary inside the file header or first block: tiny ranges, on small captures.
        sizes.retain(|&s| bytes.len() as u64 / s <= 64);
        let in_header = head.offset / 2 + 1;
        if bytes.len() as u64 / in_header <= 256 {
            sizes.push(in_header);
        }
        for size in sizes {
            let got = split_read(&bytes, size, &mut seen)
                .unwrap_or_else(|e| panic!("{name} in ranges of {size}: {e}"));
            assert_eq!(got.1, damage, "{name} in ranges of {size}: damage");
            assert_eq!(
                got.0.len(),
                whole.len(),
                "{name} in ranges of {size}: frames"
            );
            for (a, b) in got.0.iter().zip(&whole) {
                assert_eq!(a, b, "{name} in ranges of {size}");
            }
        }
    }
    eprintln!("{files} captures: {seen:?}");
    assert!(files >= 100, "only {files} corpus captures read");
    assert!(seen.owned_nothing > 0, "no range owned nothing: {seen:?}");
    assert!(seen.cut_inside_record > 0, "{seen:?}");
    assert!(seen.cut_inside_ng_block > 0, "{seen:?}");
    assert!(seen.cut_inside_header > 0, "{seen:?}");
    assert!(seen.damaged > 0, "no damaged capture: {seen:?}");
    // Syncs fooled (by payloads that look like records, or by a pcapng section state the head
    // of the file does not give, which this test does not guess) are repaired; how often is
    // printed above.
}

/// A little-endian µs pcap of `packets` (each captured whole), snap length 65535; the
/// offsets of its records.
fn pcap(packets: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut b = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let mut offsets = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        offsets.push(b.len());
        b.extend_from_slice(&record(1_700_000_000 + i as u32, p));
    }
    (b, offsets)
}

fn record(sec: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [sec, 5, data.len() as u32, data.len() as u32] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A TCP-looking segment whose payload is pcap records (a pcap file being transferred),
/// followed by `tail`.
fn carrying_records(sec: u32, tail: &[u8]) -> Vec<u8> {
    let mut p = vec![0xee; 54];
    for k in 0..3 {
        p.extend_from_slice(&record(sec, &[k as u8 + 1; 40]));
    }
    p.extend_from_slice(tail);
    p
}

#[test]
fn records_inside_payloads_do_not_fool_the_split() {
    // Payloads with pcap records in them, followed by a few bytes that are not a record: a
    // chain started inside a payload breaks there, and the true boundary is found.
    let packets: Vec<Vec<u8>> = (0..200)
        .map(|i| carrying_records(1_700_000_000 + i, &[0xee; 5]))
        .collect();
    let (bytes, offsets) = pcap(&packets);
    let (whole, _) = whole_read(&bytes).expect("whole");
    let mut seen = Seen::default();
    let mut inside_inner = 0;
    for size in (100..2000).step_by(41) {
        let (frames, damage) = split_read(&bytes, size, &mut seen).expect("split");
        assert_eq!((frames, damage), (whole.clone(), None), "ranges of {size}");
        // Range starts on an inner record's header.
        for start in (size as usize..bytes.len()).step_by(size as usize) {
            let k = offsets.partition_point(|&o| o <= start) - 1;
            let inner = offsets[k] + 16 + 54;
            if (inner..inner + 3 * 56).contains(&start) && (start - inner) % 56 == 0 {
                inside_inner += 1;
            }
        }
    }
    assert!(
        inside_inner > 3,
        "{inside_inner} ranges started on an inner record"
    );
}

#[test]
fn records_filling_a_payload_fool_the_sync_and_the_contiguity_check_says_where() {
    // Each payload ends with the inner records: a chain started on the first inner record runs
    // on, record after record, into the true ones. The range that starts there is synchronised
    // on it; the walk of the range before ends at the true boundary: a desync at that offset.
    let packets: Vec<Vec<u8>> = (0..200)
        .map(|i| carrying_records(1_700_000_000 + i, &[]))
        .collect();
    let (bytes, offsets) = pcap(&packets);
    let inner = (offsets[10] + 16 + 54) as u64;
    let mut seen = Seen::default();
    let (whole, _) = whole_read(&bytes).expect("whole");
    // Repaired (range 1 walked again from where range 0 ends), the read is whole.
    assert_eq!(
        split_read(&bytes, inner, &mut seen).expect("split"),
        (whole, None)
    );
    assert!(seen.desync_repaired >= 1, "{seen:?}");
    match seen.raw_check {
        Some(Some(SplitError::Desync {
            range: 1,
            expected,
            found,
        })) => {
            assert_eq!(found, inner);
            assert_eq!(expected, offsets[11] as u64);
        }
        other => panic!("{other:?}"),
    }
}

/// A little-endian pcapng with one Ethernet interface and an EPB per packet.
fn pcapng(packets: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut b = Vec::new();
    let w = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes());
    for v in [0x0a0d_0d0a, 28, 0x1a2b_3c4d, 1, u32::MAX, u32::MAX, 28] {
        w(&mut b, v);
    }
    for v in [1, 20, 1, 65535, 20] {
        w(&mut b, v);
    }
    let mut offsets = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        offsets.push(b.len());
        b.extend_from_slice(&epb(i as u32, p));
    }
    (b, offsets)
}

fn epb(ts: u32, data: &[u8]) -> Vec<u8> {
    let padded = data.len().div_ceil(4) * 4;
    let len = (32 + padded) as u32;
    let mut b = Vec::new();
    for v in [6, len, 0, 0, ts, data.len() as u32, data.len() as u32] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(data);
    b.resize(b.len() + padded - data.len(), 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

#[test]
fn pcapng_blocks_inside_payloads_are_found_out() {
    // Payloads holding EPBs, then a few bytes (not a block): the true boundaries are found.
    let inner = |tail: &[u8]| {
        let mut p = vec![0xee; 56];
        for k in 0..3 {
            p.extend_from_slice(&epb(k, &[k as u8 + 1; 40]));
        }
        p.extend_from_slice(tail);
        p
    };
    let packets: Vec<Vec<u8>> = (0..200).map(|_| inner(&[0xee; 8])).collect();
    let (bytes, _) = pcapng(&packets);
    let (whole, _) = whole_read(&bytes).expect("whole");
    let mut seen = Seen::default();
    for size in (100..2000).step_by(53) {
        let got = split_read(&bytes, size, &mut seen).expect("split");
        assert_eq!(got, (whole.clone(), None), "ranges of {size}");
    }
    assert!(seen.cut_inside_ng_block > 10, "{seen:?}");
    // Payloads that end with the inner blocks: unlike pcap records, they cannot run into the
    // true blocks, as the packet block's trailing length comes between (it reads as an
    // unknown block type): the true boundary is found all the same.
    let packets: Vec<Vec<u8>> = (0..200).map(|_| inner(&[])).collect();
    let (bytes, offsets) = pcapng(&packets);
    let at = (offsets[10] + 28 + 56) as u64;
    let (whole, _) = whole_read(&bytes).expect("whole");
    assert_eq!(
        split_read(&bytes, at, &mut seen).expect("split"),
        (whole, None)
    );
}

#[test]
fn compressed_snoop_and_non_captures_are_not_split() {
    let (bytes, _) = pcap(&[vec![1; 60]]);
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).expect("gzip");
        e.finish().expect("gzip")
    };
    let e = split::plan(1000, &gz, 100).expect_err("gzip");
    assert!(matches!(e, SplitError::Compressed { .. }), "{e}");
    assert!(e.to_string().contains("read from the start"), "{e}");
    let zst = zstd::encode_all(&bytes[..], 1).expect("zstd");
    let e = split::plan(1000, &zst, 100).expect_err("zstd");
    assert!(e.to_string().starts_with("zstd compressed"), "{e}");
    let e = split::plan(1000, b"snoop\0\0\0\0\0\0\x02\0\0\0\x04", 100).expect_err("snoop");
    assert!(matches!(e, SplitError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("snoop"), "{e}");
    let e = split::plan(1000, b"GIF89a..", 100).expect_err("gif");
    assert!(e.to_string().contains("47 49 46 38"), "{e}");
    assert!(matches!(
        split::plan(1000, &bytes, 0),
        Err(SplitError::ZeroRange)
    ));
    // The plan: contiguous from 0, at least one range, and serialisable.
    let plan = split::plan(1000, &bytes, 300).expect("plan");
    let spans: Vec<_> = plan
        .ranges
        .iter()
        .map(|r| (r.index, r.start, r.end))
        .collect();
    assert_eq!(
        spans,
        [(0, 0, 300), (1, 300, 600), (2, 600, 900), (3, 900, 1000)]
    );
    assert_eq!(split::plan(0, &bytes, 300).expect("plan").ranges.len(), 1);
    let json = serde_json::to_string(&plan).expect("json");
    assert_eq!(
        serde_json::from_str::<split::SplitPlan>(&json).expect("back"),
        plan
    );
    let pre = Preamble::from_head(&bytes).expect("preamble");
    let json = serde_json::to_string(&pre).expect("json");
    assert_eq!(serde_json::from_str::<Preamble>(&json).expect("back"), pre);
}
