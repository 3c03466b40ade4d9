//! `pcaplab extract`: the packets of a flow or of a set of frames, cut out of the capture into
//! a capture of its own format (a file, stdout, or an S3 object).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pcaplab_cloud::dataset::{Filter, FrameSet, frames_from_file};
use pcaplab_cloud::extract::{ExtractReport, ExtractRequest, Selection, extract, upload_to};
use pcaplab_cloud::{Aws, Location};
use pcaplab_core::human_bytes;

use crate::ExtractArgs;
use crate::convert::plural;

/// Where the extract goes.
enum Out {
    Stdout,
    /// Written to `partial` beside `path`, renamed over it once complete: an existing file is
    /// replaced only by a whole extract.
    File {
        path: PathBuf,
        partial: PathBuf,
    },
    S3 {
        bucket: String,
        key: String,
    },
}

fn selection(args: &ExtractArgs) -> anyhow::Result<Selection> {
    if let Some(id) = &args.flow {
        return Ok(Selection::Flow(id.trim().to_owned()));
    }
    let filter = Filter {
        // As the rows write addresses (IPv6 compressed, as tshark does).
        hosts: args.host.iter().map(ToString::to_string).collect(),
        ports: args.port.clone(),
        ip_proto: args.proto,
        since: args.since,
        until: args.until,
    };
    if !filter.is_empty() {
        return Ok(Selection::Filter(filter));
    }
    let Some(frames) = &args.frames else {
        anyhow::bail!("name what to extract: --flow COMMUNITY-ID, --frames LIST|FILE or a filter");
    };
    let path = Path::new(frames);
    let is_file = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("csv"));
    let set = if is_file {
        frames_from_file(path).map_err(|e| anyhow::anyhow!("--frames {e}"))?
    } else {
        FrameSet::parse(frames).map_err(|e| anyhow::anyhow!("--frames: {e}"))?
    };
    Ok(Selection::Frames(set))
}

fn describe(report: &ExtractReport, input: &str, out: &str) -> String {
    let how = if report.ranged {
        "by ranges"
    } else {
        "from its start"
    };
    format!(
        "{}: {} ({}) to {out}; read {} of {} {how}",
        input,
        plural(report.records, "packet"),
        human_bytes(report.bytes_written),
        human_bytes(report.bytes_read),
        human_bytes(report.object_size),
    )
}

pub fn run(args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let input = Location::parse(&args.input)?;
    if input.is_prefix() {
        anyhow::bail!("{input}: names a prefix, not a capture object");
    }
    let dataset = args.dataset.as_deref().map(Location::parse).transpose()?;
    let selection = selection(&args)?;
    let out = match args.out.as_str() {
        "-" => Out::Stdout,
        o => match Location::parse(o)? {
            Location::S3 { bucket, key } if !key.is_empty() && !key.ends_with('/') => {
                Out::S3 { bucket, key }
            }
            Location::S3 { .. } => anyhow::bail!("-o {o}: name an object, not a prefix"),
            Location::Local(path) => {
                let name = path
                    .file_name()
                    .with_context(|| format!("-o {o}: not a file name"))?
                    .to_string_lossy()
                    .into_owned();
                let partial =
                    path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
                Out::File { path, partial }
            }
        },
    };
    let uses_aws = matches!(input, Location::S3 { .. })
        || matches!(dataset, Some(Location::S3 { .. }))
        || matches!(out, Out::S3 { .. });
    let runtime = crate::service::io_runtime()?;
    let aws = uses_aws.then(|| Arc::new(runtime.block_on(Aws::load())));
    let request = ExtractRequest {
        input,
        dataset,
        name: args.name.clone(),
        selection,
    };
    let handle = runtime.handle().clone();
    let run = |w: &mut dyn Write| -> anyhow::Result<ExtractReport> {
        let report = extract(&handle, aws.as_deref(), &request, w).map_err(anyhow::Error::new)?;
        w.flush().context("writing the extract")?;
        Ok(report)
    };
    let report = match &out {
        Out::Stdout => {
            let stdout = io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            run(&mut w)?
        }
        Out::File { path, partial } => {
            let file = File::create(partial)
                .with_context(|| format!("-o {}: cannot create", path.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let result = run(&mut w).and_then(|r| {
                let file = w.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(partial, path)
                    .with_context(|| format!("-o {}: cannot write", path.display()))?;
                Ok(r)
            });
            if result.is_err() {
                let _ = std::fs::remove_file(partial);
            }
            result?
        }
        Out::S3 { bucket, key } => {
            let url = format!("s3://{bucket}/{key}");
            let aws = aws.as_deref().context("S3 needs an AWS configuration")?;
            let (control, mut writer) = upload_to(runtime.handle(), aws, bucket, key)?;
            let result = run(&mut writer);
            drop(writer);
            match result {
                Ok(r) => {
                    runtime
                        .block_on(control.commit())
                        .with_context(|| format!("-o {url}: upload failed"))?;
                    r
                }
                Err(e) => {
                    let _ = runtime.block_on(control.abort());
                    return Err(e);
                }
            }
        }
    };
    let mut stderr = io::stderr().lock();
    for w in &report.warnings {
        let _ = writeln!(stderr, "pcaplab: warning: {w}");
    }
    if !args.quiet {
        let _ = writeln!(stderr, "{}", describe(&report, &args.input, &args.out));
    }
    Ok(ExitCode::SUCCESS)
}
