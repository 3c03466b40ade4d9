//! Convert one capture whole or in byte ranges, for `benches/split.sh`: prints one line of
//! timings (seconds) and counts.
//!
//!     cargo run --release -p pcaplab-core --example split -- FILE RANGE_BYTES [CONCURRENCY]
//!
//! RANGE_BYTES 0 converts the capture whole (the baseline). Outputs: the packet table's
//! Parquet (one file per range) and the flow table's Parquet, written to a temporary directory
//! and removed; the flow parts go to the same directory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use pcaplab_core::split_run::{RangeSource, SplitOutputs, convert_split};
use pcaplab_core::{Engine, Outputs};

/// A local file read by ranges.
struct FileRanges {
    path: PathBuf,
    len: u64,
}

impl RangeSource for FileRanges {
    fn size(&self) -> u64 {
        self.len
    }

    fn open(&self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send>> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(start))?;
        let take = end.map_or(u64::MAX, |e| e.saturating_sub(start));
        Ok(Box::new(BufReader::with_capacity(1 << 20, f.take(take))))
    }
}

fn create(dir: &Path, name: &str) -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(BufWriter::new(File::create(dir.join(name))?)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, range, rest @ ..] = &args[..] else {
        return Err("usage: split FILE RANGE_BYTES [CONCURRENCY]".into());
    };
    let range: u64 = range.parse()?;
    let concurrency: usize = rest.first().map_or(Ok(2), |c| c.parse())?;
    let path = PathBuf::from(file);
    let len = std::fs::metadata(&path)?.len();
    let dir = tempfile::tempdir()?;
    let engine = Engine::builder().build()?;
    let started = Instant::now();
    if range == 0 {
        let report = engine.convert(
            "bench",
            Box::new(BufReader::with_capacity(1 << 20, File::open(&path)?)),
            Outputs {
                parquet: Some(create(dir.path(), "packets.parquet")?),
                flows: Some(create(dir.path(), "flows.parquet")?),
                ..Outputs::default()
            },
        )?;
        println!(
            "whole: {:.2} s, {} packets, {} flows",
            started.elapsed().as_secs_f64(),
            report.summary.packets,
            report.summary.flows.map_or(0, |f| f.flows)
        );
        return Ok(());
    }
    let d = dir.path();
    let range_out = |i: usize, _: &pcaplab_core::Opened| {
        Ok(Outputs {
            parquet: Some(create(d, &format!("packets.part-{i:05}.parquet"))?),
            ..Outputs::default()
        })
    };
    let part_writer = |i: usize| create(d, &format!("flows.{i:05}.part"));
    let part_reader = |i: usize| -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(BufReader::new(File::open(
            d.join(format!("flows.{i:05}.part")),
        )?)))
    };
    let done = convert_split(
        &engine,
        "bench",
        &FileRanges { path, len },
        range,
        concurrency,
        SplitOutputs {
            range: &range_out,
            part_writer: &part_writer,
            part_reader: &part_reader,
            track_flows: true,
            flows: &|_| {
                Ok(Outputs {
                    flows: Some(create(d, "flows.parquet")?),
                    ..Outputs::default()
                })
            },
            flow_outputs: true,
        },
    )?;
    let [count, convert, merge] = done.timings.map(|t| t.as_secs_f64());
    let parts: u64 = std::fs::read_dir(d)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "split: {:.2} s (count {count:.2}, convert {convert:.2}, merge {merge:.2}), {} ranges, \
         {} packets, {} flows, flow parts {:.1} MiB",
        started.elapsed().as_secs_f64(),
        done.ranges.len(),
        done.report.summary.packets,
        done.report.summary.flows.map_or(0, |f| f.flows),
        parts as f64 / (1 << 20) as f64
    );
    Ok(())
}
