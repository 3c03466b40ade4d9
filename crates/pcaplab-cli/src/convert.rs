//! `pcaplab convert`.

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pcaplab_core::{ConvertError, Engine, Format, Outputs, Report};

use crate::ConvertArgs;
use crate::inputs::{Counting, Input, expand};

/// An output being written: a hidden temporary name in the final directory, renamed into
/// place only when complete, so a crash never leaves a partial file under the final name.
/// Dropped without [`PendingFile::commit`] (a failed conversion, a failed sibling output),
/// it removes its temporary file.
struct PendingFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl PendingFile {
    fn create(dest: PathBuf) -> io::Result<(Self, File)> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
        let file = File::create(&tmp)?;
        let pending = PendingFile {
            tmp,
            dest,
            committed: false,
        };
        Ok((pending, file))
    }

    fn commit(mut self) -> anyhow::Result<()> {
        fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("renaming to {}", self.dest.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The outcome of one file, for the line printed about it and the totals.
enum Outcome {
    Converted(Report),
    Failed(anyhow::Error),
}

/// Output path for `input` in `format`: the input's full name plus the format's extension.
fn output_path(out: &Path, input: &Input, format: Format) -> PathBuf {
    let mut name = input.rel.clone().into_os_string();
    name.push(".");
    name.push(format.extension());
    out.join(name)
}

fn convert_one(
    engine: &Engine,
    input: &Input,
    out: &Path,
    formats: &[Format],
    progress: &Arc<AtomicU64>,
) -> Outcome {
    let run = || -> anyhow::Result<Report> {
        let file = File::open(&input.path).with_context(|| format!("{}", input.path.display()))?;
        let reader = Box::new(Counting {
            inner: file,
            count: Arc::clone(progress),
        });
        let mut pending = Vec::new();
        let mut outputs = Outputs::default();
        for &f in formats {
            let dest = output_path(out, input, f);
            let (p, file) = PendingFile::create(dest.clone())
                .with_context(|| format!("creating {}", dest.display()))?;
            pending.push(p);
            outputs.set(f, Box::new(BufWriter::with_capacity(1 << 20, file)));
        }
        let name = input.rel.to_string_lossy();
        // On any error below, the pending files drop and remove their temporary files.
        let report = engine.convert(&name, reader, outputs)?;
        for p in pending {
            p.commit()?;
        }
        Ok(report)
    };
    match run() {
        Ok(report) => Outcome::Converted(report),
        Err(e) => Outcome::Failed(e),
    }
}

/// "1 packet", "2 packets".
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `PATH: cause: cause…` — a conversion error names the capture by its relative name, which the
/// line replaces with the path the user knows.
pub fn describe_failure(path: &Path, e: &anyhow::Error) -> String {
    let mut line = path.display().to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> =
        match e.downcast_ref::<ConvertError>() {
            Some(ConvertError::Write { format, source, .. }) => {
                line.push_str(&format!(": writing {format} output failed"));
                Some(source)
            }
            Some(ConvertError::Open { source, .. }) => Some(source),
            Some(other @ ConvertError::Internal { .. }) => {
                line.push_str(&format!(": {other}"));
                None
            }
            None => {
                return format!("{e:#}");
            }
        };
    while let Some(c) = cause {
        line.push_str(&format!(": {c}"));
        cause = c.source();
    }
    line
}

/// Human-readable bytes.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let mut formats: Vec<Format> = args.format.iter().map(|&f| f.into()).collect();
    formats.sort();
    formats.dedup();
    let expanded = expand(&args.inputs)?;
    fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;
    let engine = args.engine.build()?;
    let jobs = args.engine.jobs();

    let total_bytes: u64 = expanded.inputs.iter().map(|i| i.size).sum();
    let progress = Arc::new(AtomicU64::new(0));
    let bar = if !args.quiet && io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => {
            let _ = writeln!(io::stderr(), "{line}");
        }
    };

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64)); // files ok, failed, packets, bytes
    let inputs = &expanded.inputs;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if let Some(bar) = &bar {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(progress.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        // One thread per file in flight; they share the engine's workers and memory budget.
        let workers: Vec<_> = (0..jobs.min(inputs.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(input) = inputs.get(i) else { break };
                        let outcome = convert_one(&engine, input, &args.out, &formats, &progress);
                        let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Outcome::Converted(report) => {
                                let s = &report.summary;
                                t.2 += s.packets;
                                t.3 += s.cap_bytes;
                                match &report.damage {
                                    None => {
                                        t.0 += 1;
                                        if !args.quiet {
                                            say(format!(
                                                "ok      {}: {} packets, {}",
                                                input.path.display(),
                                                s.packets,
                                                human_bytes(s.cap_bytes)
                                            ));
                                        }
                                    }
                                    Some(damage) => {
                                        t.1 += 1;
                                        say(format!(
                                            "damaged {}: {damage}; kept the {} decoded before it",
                                            input.path.display(),
                                            plural(s.packets, "packet")
                                        ));
                                    }
                                }
                            }
                            Outcome::Failed(e) => {
                                t.1 += 1;
                                say(format!("failed  {}", describe_failure(&input.path, &e)));
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        done.store(true, Ordering::Relaxed);
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (ok, failed, packets, bytes) = *totals.lock().unwrap_or_else(|p| p.into_inner());
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        packets as f64 / secs
    } else {
        0.0
    };
    let mut line = format!(
        "{ok} converted, {failed} failed, {} not captures (skipped): {packets} packets, {} in {secs:.2} s ({rate:.0} packets/s)",
        expanded.skipped,
        human_bytes(bytes),
    );
    if expanded.inputs.is_empty() {
        line.push_str(" — no captures found");
    }
    let _ = writeln!(io::stderr(), "{line}");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
