//! `pcaplab convert`: expand the inputs, run the shared job on each, report.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pcaplab_cloud::layout::{self, Output};
use pcaplab_cloud::{Aws, Job, JobError, JobOptions, Location, Request};
use pcaplab_core::Format;
use pcaplab_core::human_bytes;

use crate::ConvertArgs;
use crate::inputs::expand;

/// One capture to convert.
struct Input {
    location: Location,
    /// The capture's name: its path below a named directory, its file name, or `bucket/key`.
    name: String,
    size: u64,
    /// Found in a directory or under a prefix (a non-capture there is skipped, not an error).
    listed: bool,
}

/// "1 packet", "2 packets".
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Expand local paths (directories searched by content) and S3 locations (a prefix lists every
/// object under it; captures are recognised by content when processed).
async fn inputs(args: &[String], job: &Job) -> anyhow::Result<(Vec<Input>, u64)> {
    let mut local = Vec::new();
    let mut found = Vec::new();
    for arg in args {
        let loc = Location::parse(arg)?;
        match &loc {
            Location::Local(p) => local.push(p.clone()),
            Location::S3 { bucket, key } if loc.is_prefix() => {
                let listed = job
                    .list(bucket, key)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.describe()))?;
                if listed.is_empty() {
                    bail!("{loc}: no objects under this prefix");
                }
                for l in listed {
                    found.push(Input {
                        name: l.location.s3_id(),
                        location: l.location,
                        size: l.size,
                        listed: true,
                    });
                }
            }
            Location::S3 { .. } => {
                let name = loc.s3_id();
                found.push(Input {
                    location: loc,
                    name,
                    size: 0,
                    listed: false,
                });
            }
        }
    }
    let expanded = expand(&local)?;
    for i in expanded.inputs {
        found.push(Input {
            location: Location::Local(i.path),
            name: i.rel.to_string_lossy().into_owned(),
            size: i.size,
            listed: i.listed,
        });
    }
    // An object named twice (itself and under a listed prefix) is converted once; named
    // explicitly, a non-capture is an error.
    let mut unique: Vec<Input> = Vec::with_capacity(found.len());
    let mut index: HashMap<Location, usize> = HashMap::new();
    for i in found {
        match index.get(&i.location) {
            Some(&k) => unique[k].listed &= i.listed,
            None => {
                index.insert(i.location.clone(), unique.len());
                unique.push(i);
            }
        }
    }
    Ok((unique, expanded.skipped))
}

/// Two inputs must never write the same output.
fn check_collisions(inputs: &[Input], outputs: &[Output]) -> anyhow::Result<()> {
    let mut names: HashMap<String, &Location> = HashMap::new();
    for i in inputs {
        if let Some(other) = names.insert(i.name.clone(), &i.location) {
            bail!(
                "{other} and {} are both named {}: their outputs would collide; convert them in separate runs or pass their directories",
                i.location,
                i.name
            );
        }
    }
    if outputs.contains(&Output::Data(Format::LabCsv)) {
        let mut bases: HashMap<String, &Location> = HashMap::new();
        for i in inputs {
            let file = i.location.file_name();
            let base = layout::base_name(&file).to_owned();
            if let Some(other) = bases.insert(base.clone(), &i.location) {
                bail!(
                    "{other} and {} would both write csv/{base}.csv (lab-csv); convert them in separate runs",
                    i.location
                );
            }
        }
    }
    Ok(())
}

/// Counts for the final line.
#[derive(Default)]
struct Totals {
    ok: u64,
    failed: u64,
    skipped: u64,
    superseded: u64,
    packets: u64,
    bytes: u64,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let outputs = crate::outputs(&args.format);
    let out = Location::parse(&args.out)?;
    let uses_aws = args.dynamodb_table.is_some()
        || matches!(out, Location::S3 { .. })
        || args.inputs.iter().any(|i| i.starts_with("s3://"));
    let engine = Arc::new(args.engine.build()?);
    let jobs = args.engine.jobs();
    let runtime = crate::service::io_runtime()?;
    runtime.block_on(async {
        // The AWS chain is loaded only when needed: it may look for a region in the instance
        // metadata service, which takes seconds to time out off AWS.
        let aws = if uses_aws {
            Some(Arc::new(Aws::load().await))
        } else {
            None
        };
        let job = Job::new(
            engine,
            aws,
            JobOptions {
                outputs: outputs.clone(),
                out: Some(out),
                table: args.dynamodb_table.clone(),
                split_bytes: args.split_bytes,
                split_concurrency: args.split_workers.get(),
                ..JobOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!(e.describe()))?;
        job.check()
            .await
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
        let (inputs, skipped_local) = inputs(&args.inputs, &job).await?;
        check_collisions(&inputs, &outputs)?;
        convert_all(Arc::new(job), inputs, skipped_local, jobs, args.quiet).await
    })
}

async fn convert_all(
    job: Arc<Job>,
    inputs: Vec<Input>,
    skipped_local: u64,
    jobs: usize,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let total_bytes: u64 = inputs.iter().map(|i| i.size).sum();
    let progress = Arc::new(AtomicU64::new(0));
    let bar = (!quiet && io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let say = {
        let bar = bar.clone();
        move |line: String| match &bar {
            Some(b) => b.println(line),
            None => {
                let _ = writeln!(io::stderr(), "{line}");
            }
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    if let Some(bar) = &bar {
        let (bar, progress, done) = (bar.clone(), Arc::clone(&progress), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(progress.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }

    let started = Instant::now();
    let no_inputs = inputs.is_empty();
    let totals = Arc::new(Mutex::new(Totals {
        skipped: skipped_local,
        ..Totals::default()
    }));
    // `jobs` captures in flight; they share the engine's workers and memory budget.
    let limit = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for input in inputs {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let (job, progress, totals, say) = (
            Arc::clone(&job),
            Arc::clone(&progress),
            Arc::clone(&totals),
            say.clone(),
        );
        tasks.spawn(async move {
            let request = Request {
                location: input.location.clone(),
                name: Some(input.name.clone()),
                progress: Some(progress),
                listed: input.listed,
            };
            let result = job.process(&request).await;
            drop(permit);
            let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(r) => {
                    let s = &r.report.summary;
                    t.packets += s.packets;
                    t.bytes += s.cap_bytes;
                    match &r.report.damage {
                        None => {
                            t.ok += 1;
                            if !quiet {
                                say(format!(
                                    "ok      {}: {}, {}",
                                    input.location,
                                    plural(s.packets, "packet"),
                                    human_bytes(s.cap_bytes)
                                ));
                            }
                        }
                        Some(damage) => {
                            t.failed += 1;
                            say(format!(
                                "damaged {}: {damage}; kept {}",
                                input.location,
                                plural(s.packets, "packet")
                            ));
                        }
                    }
                }
                Err(e) if input.listed && e.not_a_capture() => t.skipped += 1,
                Err(e @ JobError::Superseded { .. }) => {
                    t.superseded += 1;
                    if !quiet {
                        say(format!("skipped {e}"));
                    }
                }
                Err(e) => {
                    t.failed += 1;
                    let again = if e.retryable() { " (retryable)" } else { "" };
                    say(format!("failed  {}{again}", e.describe()));
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let t = totals.lock().unwrap_or_else(|p| p.into_inner());
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        t.packets as f64 / secs
    } else {
        0.0
    };
    let mut line = format!(
        "{} converted, {} failed, {} not captures (skipped)",
        t.ok, t.failed, t.skipped
    );
    if t.superseded > 0 {
        line.push_str(&format!(", {} superseded by newer results", t.superseded));
    }
    line.push_str(&format!(
        ": {} packets, {} in {secs:.2} s ({rate:.0} packets/s)",
        t.packets,
        human_bytes(t.bytes),
    ));
    if no_inputs {
        line.push_str(" — no captures found");
    }
    let _ = writeln!(io::stderr(), "{line}");
    Ok(if t.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
