//! Shared by the integration tests: the corpus location and a plain decode of one file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
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

/// Capture file names listed in the corpus manifest, in manifest order.
pub fn manifest_files(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("manifest.csv")).expect("manifest.csv");
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|f| !f.is_empty())
        .map(str::to_string)
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
    loop {
        let mut chunk = pcaplab_core::reader::Chunk::default();
        let r = reader.fill(&mut chunk, chunk_frames, 1 << 20);
        if !chunk.frames.is_empty() {
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
