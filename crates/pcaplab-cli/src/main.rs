//! `pcaplab`: convert packet captures to Parquet / CSV, inspect them, and watch S3 for new ones.
//!
//! Flag parsing and wiring only: every byte of packet work happens in pcaplab-core.

mod convert;
mod extract;
mod inputs;
mod inspect;
mod serve;
mod service;
mod watch;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Cut the packets of a flow, or of frames, out of a capture (local or S3) into a capture
    /// of its own format: records byte-identical, in file order. Only the byte ranges needed
    /// are read from an uncompressed capture.
    Extract(ExtractArgs),
    /// Process captures as they land in S3: from an SQS queue of S3 notifications, or by
    /// polling a prefix. Runs until SIGTERM / SIGINT.
    Watch(Box<WatchArgs>),
    /// Serve the analyst page and an SNS endpoint whose messages are signature-checked.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// packets/date=YYYY-MM-DD/<id>.parquet
    Parquet,
    /// packets_csv/date=YYYY-MM-DD/<id>.csv
    Csv,
    /// csv/<base>.csv: the AWS lab's src,dst,len,proto
    LabCsv,
    /// flows/date=YYYY-MM-DD/<id>.flows.parquet: bidirectional flows (conn.log-like)
    Flows,
    /// flows_csv/date=YYYY-MM-DD/<id>.flows.csv: the same flows as CSV
    FlowsCsv,
    /// dynamodb/<id>.json: the summary item, for DynamoDB's "Import from S3"
    DynamodbJson,
}

/// The outputs `--format` asks for, each once, in a fixed order.
fn outputs(formats: &[FormatArg]) -> Vec<Output> {
    let mut outputs: Vec<Output> = formats.iter().map(|&f| f.into()).collect();
    outputs.sort();
    outputs.dedup();
    outputs
}

impl From<FormatArg> for Output {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Parquet => Output::Data(Format::Parquet),
            FormatArg::Csv => Output::Data(Format::Csv),
            FormatArg::LabCsv => Output::Data(Format::LabCsv),
            FormatArg::Flows => Output::Data(Format::Flows),
            FormatArg::FlowsCsv => Output::Data(Format::FlowsCsv),
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
    /// Output formats, comma-separated. The default makes the whole dataset: packets, flows
    /// (what `extract --flow` reads) and the summary items (what `serve --data` lists).
    #[arg(
        long,
        short,
        value_enum,
        value_delimiter = ',',
        default_value = "parquet,flows,dynamodb-json"
    )]
    format: Vec<FormatArg>,
    /// Write a summary item per capture to this DynamoDB table (partition key `s3Id`, String).
    #[arg(long, value_name = "NAME")]
    dynamodb_table: Option<String>,
    /// Convert each uncompressed pcap or pcapng capture larger than SIZE in byte ranges of
    /// SIZE (e.g. 512MiB), converted in parallel and merged: the packet outputs get one file
    /// per range (`<id>.part-NNNNN.parquet`), the flows and the item one. Compressed and snoop
    /// captures are converted whole.
    #[arg(long, value_name = "SIZE", value_parser = pcaplab_cloud::split::byte_size)]
    split_bytes: Option<u64>,
    /// Ranges converted at once with --split-bytes.
    #[arg(long, value_name = "N", default_value = "2")]
    split_workers: NonZeroUsize,
    #[command(flatten)]
    engine: EngineArgs,
    /// No progress bar, no per-file lines: only errors and the final total.
    #[arg(long, short)]
    quiet: bool,
}

fn ip_proto(s: &str) -> Result<u8, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        "sctp" => 132,
        n => n
            .parse()
            .map_err(|_| format!("{s:?}: tcp, udp, icmp, icmpv6, sctp or 0-255"))?,
    })
}

fn time_ns(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{e} (write e.g. 2024-03-01T12:00:00Z)"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970".to_owned())?;
    i64::try_from(d.as_nanos()).map_err(|_| "after 2262".to_owned())
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m, 1h30m)"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
struct WatchArgs {
    /// Consume S3 notifications (direct, SNS-wrapped or EventBridge) from this SQS queue.
    #[arg(long, value_name = "URL", group = "source")]
    sqs_queue_url: Option<String>,
    /// Poll this S3 prefix for new or changed objects (several watchers may share it; they
    /// claim objects in the DynamoDB table).
    #[arg(long, value_name = "s3://BUCKET/PREFIX/", group = "source")]
    poll: Option<String>,
    /// Poll mode: time between listings.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    interval: Duration,
    /// Poll mode: how long a claim lasts unless renewed (a crashed watcher's work is taken
    /// over after this).
    #[arg(long, default_value = "60s", value_parser = duration, value_name = "DURATION")]
    lease: Duration,
    /// SQS mode: visibility timeout of received messages, extended while they are processed
    /// [default: the queue's].
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    visibility_timeout: Option<Duration>,
    /// SQS mode: long-poll wait per receive (at most 20s).
    #[arg(long, default_value = "20s", value_parser = duration, value_name = "DURATION")]
    receive_wait: Duration,
    /// Captures processed at once.
    #[arg(long, default_value = "2", value_name = "N")]
    concurrency: NonZeroUsize,
    /// Take only keys starting with this prefix (repeat for several) [default: any key].
    #[arg(long = "prefix", value_name = "PREFIX")]
    prefixes: Vec<String>,
    /// Take only keys ending with this suffix, case-insensitively (repeat for several)
    /// [default: .cap .pcap .pcapng and their .gz / .zst forms].
    #[arg(long = "suffix", value_name = "SUFFIX")]
    suffixes: Vec<String>,
    /// Where the outputs go: s3://BUCKET/PREFIX/ or a directory [default: the root of each
    /// capture's own bucket].
    #[arg(long, short, value_name = "S3-URL|DIR")]
    out: Option<String>,
    /// Output formats, comma-separated.
    #[arg(
        long,
        short,
        value_enum,
        value_delimiter = ',',
        default_value = "parquet,lab-csv"
    )]
    format: Vec<FormatArg>,
    /// Write a summary item per capture to this DynamoDB table (required with --poll).
    #[arg(long, value_name = "NAME")]
    dynamodb_table: Option<String>,
    /// Announce every converted capture on this SNS topic.
    #[arg(long, value_name = "ARN")]
    sns_topic_arn: Option<String>,
    /// After SIGTERM / SIGINT, how long captures in flight may take to finish; unfinished
    /// ones are handed back for another watcher.
    #[arg(long, default_value = "25s", value_parser = duration, value_name = "DURATION")]
    shutdown_timeout: Duration,
    /// Log lines as human-readable text or JSON (filter with RUST_LOG).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Serve /healthz and Prometheus /metrics on this address (e.g. 0.0.0.0:9090).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// This watcher's name in logs and claims [default: host:pid:random].
    #[arg(long, value_name = "NAME")]
    id: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("summaries").required(true))]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Read summaries from this output directory (its dynamodb/*.json, which `pcaplab convert
    /// --out DIR` writes by default); its flows' packets are cut from the captures named there.
    #[arg(long, value_name = "DIR", group = "summaries")]
    data: Option<PathBuf>,
    /// Read summaries from this DynamoDB table.
    #[arg(long, value_name = "NAME", group = "summaries")]
    dynamodb_table: Option<String>,
    /// Confirm SNS subscriptions automatically (GET their SubscribeURL once the confirmation's
    /// signature verifies); otherwise the token is shown at /get_token.
    #[arg(long)]
    auto_confirm: bool,
    /// Accept SNS messages only from this topic (repeat for several) [default: any topic whose
    /// messages SNS signed].
    #[arg(long = "accept-topic", value_name = "ARN")]
    accept_topics: Vec<String>,
    /// Log lines as human-readable text or JSON (filter with RUST_LOG).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("select").required(true).multiple(true))]
struct ExtractArgs {
    /// The capture: a file or s3://BUCKET/KEY (plain, gzip or zstd).
    #[arg(value_name = "INPUT")]
    input: String,
    /// Where the extract goes: a file, `-` for stdout (`| wireshark -k -i -`), or
    /// s3://BUCKET/KEY.
    #[arg(long, short, value_name = "FILE|-|S3-URL")]
    out: String,
    /// The packets of the flow with this Community ID (every flow row with it), found in the
    /// dataset (needs --dataset, converted with --format parquet,flows).
    #[arg(long, value_name = "COMMUNITY-ID", group = "select",
          conflicts_with_all = ["frames", "host", "port", "proto", "since", "until"])]
    flow: Option<String>,
    /// These frames: `1,7,20-40`, or a .parquet / .csv file with a frame_number column (what
    /// DuckDB's `COPY (SELECT frame_number …) TO 'sel.parquet'` writes).
    #[arg(long, value_name = "LIST|FILE", group = "select",
          conflicts_with_all = ["host", "port", "proto", "since", "until"])]
    frames: Option<String>,
    /// Filter (needs --dataset): packets from or to this address (repeat for any of several).
    #[arg(long, value_name = "ADDR", group = "select")]
    host: Vec<std::net::IpAddr>,
    /// Filter: packets from or to this port (repeat for any of several).
    #[arg(long, value_name = "PORT", group = "select")]
    port: Vec<u16>,
    /// Filter: this IP protocol (tcp, udp, icmp, icmpv6, sctp or a number).
    #[arg(long, value_name = "PROTO", group = "select", value_parser = ip_proto)]
    proto: Option<u8>,
    /// Filter: packets at or after this time (RFC 3339, e.g. 2024-03-01T12:00:00Z).
    #[arg(long, value_name = "TIME", group = "select", value_parser = time_ns)]
    since: Option<i64>,
    /// Filter: packets before this time (RFC 3339).
    #[arg(long, value_name = "TIME", group = "select", value_parser = time_ns)]
    until: Option<i64>,
    /// The output root the capture was converted to (`convert --out`): where the records are
    /// is read from its rows. Without it, --frames frames the capture up to the last frame.
    #[arg(long, value_name = "DIR|S3-URL")]
    dataset: Option<String>,
    /// The capture's name in the dataset (its `capture` column) [default: bucket/key for S3;
    /// for a file, the trailing part of its path that names a capture there].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// No summary line on stderr (warnings and errors still go there).
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
    /// Frames per chunk [default: the engine's].
    #[arg(long, value_name = "N", hide = true)]
    chunk_frames: Option<NonZeroUsize>,
    /// Frames per Parquet row group of the packet table, in whole chunks [default: the
    /// engine's].
    #[arg(long, value_name = "N", hide = true)]
    row_group_frames: Option<NonZeroUsize>,
    /// Chunks in flight [default: the engine's].
    #[arg(long, value_name = "N", hide = true)]
    slots: Option<NonZeroUsize>,
    /// Flows: a TCP flow idle this long ends; its next packet starts a new flow (Zeek's
    /// default).
    #[arg(long, default_value = "5m", value_parser = duration, value_name = "DURATION")]
    tcp_timeout: Duration,
    /// Flows: the same for UDP.
    #[arg(long, default_value = "1m", value_parser = duration, value_name = "DURATION")]
    udp_timeout: Duration,
    /// Flows: the same for ICMP and every other IP protocol.
    #[arg(long, default_value = "1m", value_parser = duration, value_name = "DURATION")]
    other_timeout: Duration,
    /// Flows: the seed of the Community IDs (0 unless your other tools use another).
    #[arg(long, default_value = "0", value_name = "N")]
    community_id_seed: u16,
    /// Flows: most memory (MiB) the live flows of one capture may take; past it the flows
    /// least likely to grow (closed, then single-packet, then least recently seen) are
    /// written early with end_reason "evicted".
    #[arg(long, default_value = "16", value_name = "MiB",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    flow_memory: u32,
    /// IP fragments: an incomplete datagram whose first fragment is this old (capture time)
    /// is given up (Linux's default).
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    frag_timeout: Duration,
    /// IP fragments: most memory (MiB) held for incomplete datagrams per capture; past it
    /// the oldest are given up.
    #[arg(long, default_value = "8", value_name = "MiB",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    frag_memory: u32,
}

impl EngineArgs {
    fn jobs(&self) -> usize {
        self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        )
    }

    fn build(&self) -> anyhow::Result<pcaplab_core::Engine> {
        let ns = |d: Duration, flag: &str| {
            i64::try_from(d.as_nanos())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow::anyhow!("--{flag} must be between 1ns and 292 years"))
        };
        let flows = pcaplab_core::FlowConfig {
            tcp_timeout_ns: ns(self.tcp_timeout, "tcp-timeout")?,
            udp_timeout_ns: ns(self.udp_timeout, "udp-timeout")?,
            other_timeout_ns: ns(self.other_timeout, "other-timeout")?,
            community_id_seed: self.community_id_seed,
            max_bytes: usize::try_from(self.flow_memory)? << 20,
        };
        let fragments = pcaplab_core::FragConfig {
            timeout_ns: ns(self.frag_timeout, "frag-timeout")?,
            max_bytes: usize::try_from(self.frag_memory)? << 20,
        };
        let mut builder = pcaplab_core::Engine::builder()
            .jobs(self.jobs())
            .flows(flows)
            .fragments(fragments);
        if let Some(n) = self.chunk_frames {
            builder = builder.chunk_frames(n.get());
        }
        if let Some(n) = self.row_group_frames {
            builder = builder.row_group_frames(n.get());
        }
        if let Some(n) = self.slots {
            builder = builder.slots(n.get());
        }
        Ok(builder.build()?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Watch(args) => watch::run(*args),
        Command::Serve(args) => serve::run(args),
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
