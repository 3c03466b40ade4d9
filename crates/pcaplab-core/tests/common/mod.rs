//! Shared by the integration tests: the corpus location and a plain decode of one file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use pcaplab_core::dissect::defrag::Defragmenter;
use pcaplab_core::dissect::frag::FragConfig;
use pcaplab_core::{CaptureReader, ReadError, decode_chunk};

/// The real-world corpus named by `$PCAPLAB_CORPUS`, or `None` — said loudly — when unset.
pub fn corpus() -> Option<PathBuf> {
    match std::env::var_os("PCAPLAB_CORPUS") {
        Some(d) => {
            let d = PathBuf::from(d);
            assert!(
                d.join("manifest.csv").exists(),
                "PCAPLAB_CORPUS={} has no manifest.csv",
                d.display()
            );
            Some(d)
        }
        None => {
            assert!(
                std::env::var_os("PCAPLAB_REQUIRE_ALL").is_none(),
                "PCAPLAB_CORPUS is not set and PCAPLAB_REQUIRE_ALL is: the corpus tests must run"
            );
            eprintln!(
                "\n*** SKIPPED: PCAPLAB_CORPUS is not set, so the corpus tests did not run. ***\n\
                 *** Set it to the corpus directory (.ci/run uses ../shared/captures).    ***\n"
            );
            None
        }
    }
}

/// The corpus manifests: the original captures, then the tunnel, fragment and QUIC ones.
pub const MANIFESTS: [&str; 2] = ["manifest.csv", "manifest-depth.csv"];

/// Capture file names listed in the corpus manifests, in manifest order.
pub fn manifest_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for manifest in MANIFESTS {
        let path = dir.join(manifest);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        files.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split(',').next())
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        );
    }
    files
}

/// Corpus captures with pcapng Custom Blocks (per the manifest's notes), which tshark lists as
/// frames: the oracle tests drop those rows so that the packets line up.
pub fn custom_block_files(dir: &Path) -> std::collections::BTreeSet<String> {
    MANIFESTS
        .iter()
        .filter_map(|m| std::fs::read_to_string(dir.join(m)).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.contains("custom-block"))
                .filter_map(|l| l.split(',').next().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A capture decoded without the threaded pipeline.
pub struct DecodedFile {
    pub batches: Vec<RecordBatch>,
    pub open_error: Option<ReadError>,
    pub damage: Option<ReadError>,
}

pub fn decode_bytes(name: &str, bytes: Vec<u8>, chunk_frames: usize) -> DecodedFile {
    let mut out = DecodedFile {
        batches: Vec::new(),
        open_error: None,
        damage: None,
    };
    let mut reader = match CaptureReader::new(Box::new(std::io::Cursor::new(bytes))) {
        Ok(r) => r,
        Err(e) => {
            out.open_error = Some(e);
            return out;
        }
    };
    // Fragments are reassembled across chunks, in file order, as the pipeline does.
    let mut defrag = Defragmenter::new(FragConfig::default());
    loop {
        let mut chunk = pcaplab_core::reader::Chunk::default();
        let r = reader.fill(&mut chunk, chunk_frames, 1 << 20);
        defrag.scan(&mut chunk);
        if !matches!(r, Ok(true)) {
            defrag.finish(&mut chunk);
        }
        if !chunk.frames.is_empty() || !chunk.frags.is_empty() {
            out.batches
                .push(decode_chunk(name, &chunk).expect("decode").batch);
        }
        match r {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                out.damage = Some(e);
                break;
            }
        }
    }
    out
}

pub fn decode_file(path: &Path, chunk_frames: usize) -> DecodedFile {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    decode_bytes(
        &name,
        std::fs::read(path).expect("read capture"),
        chunk_frames,
    )
}

/// The tshark to compare against (`$PCAPLAB_TSHARK`, else `tshark` on the `PATH`), or `None`
/// — said loudly — when it cannot be run. With `PCAPLAB_REQUIRE_ALL` set, a missing tshark
/// fails the test instead.
pub fn tshark() -> Option<std::ffi::OsString> {
    let program = std::env::var_os("PCAPLAB_TSHARK").unwrap_or_else(|| "tshark".into());
    let runs = std::process::Command::new(&program)
        .arg("-v")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return Some(program);
    }
    assert!(
        std::env::var_os("PCAPLAB_REQUIRE_ALL").is_none(),
        "{} cannot be run and PCAPLAB_REQUIRE_ALL is set: the tshark comparisons must run",
        program.to_string_lossy()
    );
    eprintln!(
        "\n*** SKIPPED: {} cannot be run, so the live tshark comparisons did not run. ***\n\
         *** Install tshark or set PCAPLAB_TSHARK to its path.                     ***\n",
        program.to_string_lossy()
    );
    None
}

/// Every batch of an in-memory Parquet file.
pub fn read_parquet(bytes: Vec<u8>) -> Vec<RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
        bytes,
    ))
    .expect("valid parquet")
    .build()
    .expect("parquet reader")
    .collect::<Result<_, _>>()
    .expect("parquet batches")
}

/// `1-4,7,10-20/2`: a set of frame numbers as runs with a constant step (the oracle tests'
/// difference lists).
pub fn compress_frames(frames: &std::collections::BTreeSet<u64>) -> String {
    let v: Vec<u64> = frames.iter().copied().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if i + 2 < v.len() {
            let step = v[i + 1] - v[i];
            let mut j = i + 1;
            while j + 1 < v.len() && v[j + 1] - v[j] == step {
                j += 1;
            }
            if j >= i + 2 {
                parts.push(if step == 1 {
                    format!("{}-{}", v[i], v[j])
                } else {
                    format!("{}-{}/{step}", v[i], v[j])
                });
                i = j + 1;
                continue;
            }
        }
        parts.push(v[i].to_string());
        i += 1;
    }
    parts.join(",")
}

/// The frames a [`compress_frames`] list names.
pub fn expand_frames(spec: &str) -> std::collections::BTreeSet<u64> {
    let mut out = std::collections::BTreeSet::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (range, step) = part.split_once('/').unwrap_or((part, "1"));
        let step: usize = step.parse().expect("frame list step");
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.parse().expect("frame list start"),
                    b.parse().expect("frame list end"),
                );
                out.extend((a..=b).step_by(step));
            }
            None => {
                out.insert(range.parse().expect("frame"));
            }
        }
    }
    out
}
