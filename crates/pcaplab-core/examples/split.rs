//! Convert one capture whole or in byte ranges, for `benches/split.sh`: prints one line of
//! timings (seconds) and counts.
//!
//!     cargo run --release -p pcaplab-core --example split -- FILE RANGE_BYTES [CONCURRENCY]
//!
//! RANGE_BYTES 0 converts the capture whole (the baseline). Outputs: the packet table's
//! Parquet (one file per range) and the flow table's Parquet, written to a temporary directory
//! and removed; the flow parts go to the same directory.
//!
//! The same steps, each in its own process as the fan-out runs them (`benches/split_steps.sh`):
//!
//!     split plan FILE RANGE_BYTES DIR [CONCURRENCY]   # count; DIR/tasks.jsonl, a task a line
//!     split range FILE DIR PART                       # task PART (its line, from 0): its packet
//!                                                     # Parquet, DIR/flows-NNNNN.part and
//!                                                     # DIR/summary-NNNNN (DIR/damage-NNNNN)
//!     split merge DIR                                 # the flow parts in file order into
//!                                                     # DIR/flows.parquet; the summaries folded

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use pcaplab_core::split_run::{
    RangeSource, RangeTask, SplitOutputs, convert_range, convert_split, count, decode_summary,
    encode_summary, fold_summaries, tasks,
};
use pcaplab_core::{Engine, Outputs};

type Error = Box<dyn std::error::Error>;

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

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("plan") => plan(&args[1..]),
        Some("range") => range(&args[1..]),
        Some("merge") => merge(&args[1..]),
        _ => in_process(&args),
    }
}

/// The whole pipeline in this process, ranges on threads.
fn in_process(args: &[String]) -> Result<(), Error> {
    let [file, range, rest @ ..] = args else {
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

fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{what} {s:?}: {e}").into())
}

fn file_ranges(file: &str) -> Result<FileRanges, Error> {
    let path = PathBuf::from(file);
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("{file}: {e}"))?
        .len();
    Ok(FileRanges { path, len })
}

fn tasks_path(dir: &Path) -> PathBuf {
    dir.join("tasks.jsonl")
}

fn read_tasks(dir: &Path) -> Result<Vec<RangeTask>, Error> {
    let path = tasks_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1).into())
        })
        .collect()
}

/// Step 1 (and 2): plan and count; each range's task, a JSON line in DIR/tasks.jsonl.
fn plan(args: &[String]) -> Result<(), Error> {
    let [file, range, dir, rest @ ..] = args else {
        return Err("usage: split plan FILE RANGE_BYTES DIR [CONCURRENCY]".into());
    };
    let range: u64 = number("RANGE_BYTES", range)?;
    let concurrency: usize = rest.first().map_or(Ok(2), |c| number("CONCURRENCY", c))?;
    let source = file_ranges(file)?;
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let counted = count("bench", &source, range, concurrency)?;
    let tasks = tasks(&counted.walks, &counted.ranges);
    let mut out = create(dir, "tasks.jsonl")?;
    for task in &tasks {
        serde_json::to_writer(&mut out, task)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    println!(
        "plan: {:.2} s, {} ranges, {} tasks, {} frames",
        started.elapsed().as_secs_f64(),
        counted.ranges.len(),
        tasks.len(),
        counted.ranges.iter().map(|r| r.frames).sum::<u64>()
    );
    Ok(())
}

/// Step 3 for one task: its packet Parquet, flow part and summary.
fn range(args: &[String]) -> Result<(), Error> {
    let [file, dir, part] = args else {
        return Err("usage: split range FILE DIR PART".into());
    };
    let part: usize = number("PART", part)?;
    let source = file_ranges(file)?;
    let dir = Path::new(dir);
    let task = read_tasks(dir)?
        .into_iter()
        .nth(part)
        .ok_or_else(|| format!("{}: no task {part}", tasks_path(dir).display()))?;
    let engine = Engine::builder().build()?;
    let started = Instant::now();
    let report = convert_range(&engine, "bench", &source, &task, |_| {
        Ok(Outputs {
            parquet: Some(create(dir, &format!("packets.part-{part:05}.parquet"))?),
            flow_parts: Some(create(dir, &format!("flows-{part:05}.part"))?),
            ..Outputs::default()
        })
    })?;
    std::fs::write(
        dir.join(format!("summary-{part:05}")),
        encode_summary(&report.summary)?,
    )?;
    if let Some(damage) = &report.damage {
        std::fs::write(dir.join(format!("damage-{part:05}")), damage.to_string())?;
    }
    println!(
        "range {part}: {:.2} s, {} packets",
        started.elapsed().as_secs_f64(),
        report.summary.packets
    );
    Ok(())
}

/// Step 4: the flow parts, in file order, into DIR/flows.parquet; the summaries folded.
fn merge(args: &[String]) -> Result<(), Error> {
    let [dir] = args else {
        return Err("usage: split merge DIR".into());
    };
    let dir = Path::new(dir);
    let tasks = read_tasks(dir)?;
    let started = Instant::now();
    let open = |name: String| -> Result<File, Error> {
        File::open(dir.join(&name)).map_err(|e| format!("{name}: {e}").into())
    };
    let mut ranges = Vec::with_capacity(tasks.len());
    let mut parts: Vec<Box<dyn Read + Send>> = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let mut bytes = Vec::new();
        open(format!("summary-{:05}", t.part))?.read_to_end(&mut bytes)?;
        let damage = std::fs::read_to_string(dir.join(format!("damage-{:05}", t.part))).ok();
        ranges.push((t.index, decode_summary(&bytes)?, damage));
        parts.push(Box::new(BufReader::new(open(format!(
            "flows-{:05}.part",
            t.part
        ))?)));
    }
    let (mut summary, damage) = fold_summaries(ranges)
        .map_err(|(index, d)| format!("range {index} is damaged ({d}): convert it whole"))?;
    let engine = Engine::builder().build()?;
    let stats =
        engine.merge_flow_parts("bench", parts, Some(create(dir, "flows.parquet")?), None)?;
    let flows = stats.flows;
    summary.flows = Some(stats);
    println!(
        "merge: {:.2} s, {} parts, {} packets, {} flows{}",
        started.elapsed().as_secs_f64(),
        tasks.len(),
        summary.packets,
        flows,
        damage.map_or(String::new(), |d| format!(", damaged: {d}"))
    );
    Ok(())
}
