//! `pcaplab`: convert packet captures to Parquet / CSV, and inspect them.
//!
//! Flag parsing and wiring only: every byte of packet work happens in pcaplab-core.

mod convert;
mod inputs;
mod inspect;

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pcaplab_cloud::Output;
use pcaplab_core::Format;

#[derive(Parser)]
#[command(
    name = "pcaplab",
    version,
    about = "Packet captures to analytics-ready data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert captures (local or on S3) to Parquet / CSV, and summary items to DynamoDB.
    Convert(ConvertArgs),
    /// Summarise captures: format, link types, packets, bytes, time span, protocols.
    Inspect(InspectArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// packets/date=YYYY-MM-DD/<id>.parquet
    Parquet,
    /// packets_csv/date=YYYY-MM-DD/<id>.csv
    Csv,
    /// csv/<base>.csv: the AWS lab's src,dst,len,proto
    LabCsv,
    /// dynamodb/<id>.json: the summary item, for DynamoDB's "Import from S3"
    DynamodbJson,
}

impl From<FormatArg> for Output {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Parquet => Output::Data(Format::Parquet),
            FormatArg::Csv => Output::Data(Format::Csv),
            FormatArg::LabCsv => Output::Data(Format::LabCsv),
            FormatArg::DynamodbJson => Output::DynamodbJson,
        }
    }
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// Capture files, directories (searched recursively), s3://BUCKET/KEY objects or
    /// s3://BUCKET/PREFIX/ prefixes; captures are recognised by content.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Where the outputs go: a directory (created if missing) or s3://BUCKET/PREFIX/.
    #[arg(long, short, value_name = "DIR|S3-URL")]
    out: String,
    /// Output formats, comma-separated.
    #[arg(
        long,
        short,
        value_enum,
        value_delimiter = ',',
        default_value = "parquet"
    )]
    format: Vec<FormatArg>,
    /// Write a summary item per capture to this DynamoDB table (partition key `s3Id`, String).
    #[arg(long, value_name = "NAME")]
    dynamodb_table: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    /// No progress bar, no per-file lines: only errors and the final total.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// Capture files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct EngineArgs {
    /// Worker threads [default: the number of CPUs].
    #[arg(long, short, value_name = "N")]
    jobs: Option<NonZeroUsize>,
    /// Frames per chunk (and per Parquet row group) [default: the engine's].
    #[arg(long, value_name = "N", hide = true)]
    chunk_frames: Option<NonZeroUsize>,
}

impl EngineArgs {
    fn jobs(&self) -> usize {
        self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        )
    }

    fn build(&self) -> anyhow::Result<pcaplab_core::Engine> {
        let mut builder = pcaplab_core::Engine::builder().jobs(self.jobs());
        if let Some(n) = self.chunk_frames {
            builder = builder.chunk_frames(n.get());
        }
        Ok(builder.build()?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`pcaplab inspect ... | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "pcaplab: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
