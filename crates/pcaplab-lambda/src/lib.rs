//! pcaplab's Lambda function: a thin wrapper over pcaplab-cloud's job.
//!
//! [`events::parse`] reduces every event shape to the objects it names; [`Handler::handle`]
//! runs the shared pipeline (`pcaplab_cloud::pipeline`, which the watcher runs too) on each
//! and decides what the invocation answers:
//!
//! - a capture's own fault (not a capture, an unreadable header) is recorded in the table as
//!   `failed` with its reason and acknowledged — retrying cannot change it;
//! - anything else that failed (throttling, network faults, a missing object, a missing
//!   permission) fails its record: an SQS message is listed in `batchItemFailures` (only that
//!   message is redelivered, and after the queue's maxReceiveCount it goes to the dead-letter
//!   queue), any other event fails the invocation, which Lambda retries;
//! - a converted capture is announced on the SNS topic, if one is configured.
//!
//! The job is idempotent, so a redelivered event rewrites the same outputs and the same item.

pub mod events;

use std::sync::Arc;
use std::time::Instant;

use pcaplab_cloud::pipeline::{Outcome, Pipeline};
use pcaplab_cloud::{Aws, Job, JobError, JobOptions, Location, Output, error_chain};
use pcaplab_core::Engine;
use serde_json::{Value, json};

use crate::events::{Event, EventError, ObjectRef, SplitStep};
use md5::Digest;
use pcaplab_cloud::split::byte_size;

/// The function's configuration, from its environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `PCAPLAB_OUT`: the output root; by default the root of each object's own bucket.
    pub out: Option<Location>,
    /// `PCAPLAB_FORMATS`: default `parquet,lab-csv` (the lab's `csv/<base>.csv` keeps coming).
    pub outputs: Vec<Output>,
    /// `PCAPLAB_DYNAMODB_TABLE`: default `PacketCaptures`; empty for none.
    pub table: Option<String>,
    /// `PCAPLAB_SNS_TOPIC_ARN`: where to announce converted captures.
    pub topic: Option<String>,
    /// `PCAPLAB_FLOW_MEMORY_MB`: most memory (MiB, 1–65536) the live flows of one capture may
    /// take (default: the engine's, 32); past it flows are evicted (written early).
    pub flow_memory_mb: Option<u32>,
    /// `PCAPLAB_STATE_MACHINE_ARN` and `PCAPLAB_SPLIT_THRESHOLD` (a size such as `2GiB`):
    /// objects larger than the threshold that are uncompressed pcap or pcapng are routed to
    /// the state machine, which converts them in ranges, instead of being converted here.
    pub split: Option<Split>,
    /// `PCAPLAB_SPLIT_RANGE`: the size of the ranges the plan cuts (default 512 MiB).
    pub split_range: u64,
}

/// Where and when captures are routed to the state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub state_machine: String,
    pub threshold: u64,
}

/// The plan's ranges by default.
pub const SPLIT_RANGE: u64 = 512 << 20;
/// Ranged reads at a time while the plan counts the ranges (the count reads every byte once;
/// it waits on S3, not on the CPU).
const COUNT_READS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("PCAPLAB_OUT={value:?}: {message}")]
    Out { value: String, message: String },
    #[error(
        "PCAPLAB_FORMATS={value:?}: unknown format {format:?} (use parquet, csv, lab-csv, dynamodb-json)"
    )]
    Format { value: String, format: String },
    #[error("PCAPLAB_OUT={value:?}: the output must be on S3 (s3://BUCKET/PREFIX/)")]
    LocalOut { value: String },
    #[error("PCAPLAB_FLOW_MEMORY_MB={value:?}: must be a number of MiB from 1 to 65536")]
    FlowMemory { value: String },
    #[error("{name}: {message}")]
    Size { name: &'static str, message: String },
    #[error(
        "PCAPLAB_SPLIT_THRESHOLD is set but PCAPLAB_STATE_MACHINE_ARN is not: there is no state machine to route large captures to"
    )]
    NoStateMachine,
}

impl Config {
    /// Read the configuration through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let out = match set("PCAPLAB_OUT") {
            None => None,
            Some(value) => match Location::parse(value.trim()) {
                Ok(l @ Location::S3 { .. }) => Some(l),
                Ok(Location::Local(_)) => return Err(ConfigError::LocalOut { value }),
                Err(e) => {
                    return Err(ConfigError::Out {
                        message: e.to_string(),
                        value,
                    });
                }
            },
        };
        let formats = set("PCAPLAB_FORMATS").unwrap_or_else(|| "parquet,lab-csv".into());
        let mut outputs = Vec::new();
        for f in formats.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let output = Output::parse(f).ok_or_else(|| ConfigError::Format {
                value: formats.clone(),
                format: f.to_owned(),
            })?;
            if !outputs.contains(&output) {
                outputs.push(output);
            }
        }
        let table = match var("PCAPLAB_DYNAMODB_TABLE") {
            None => Some("PacketCaptures".to_owned()),
            Some(t) if t.trim().is_empty() => None,
            Some(t) => Some(t.trim().to_owned()),
        };
        let flow_memory_mb = match set("PCAPLAB_FLOW_MEMORY_MB") {
            None => None,
            Some(value) => Some(
                value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|mb| (1..=65_536).contains(mb))
                    .ok_or(ConfigError::FlowMemory { value })?,
            ),
        };
        let size = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            set(name)
                .map(|v| byte_size(&v).map_err(|message| ConfigError::Size { name, message }))
                .transpose()
        };
        let split = match (
            set("PCAPLAB_STATE_MACHINE_ARN"),
            size("PCAPLAB_SPLIT_THRESHOLD")?,
        ) {
            (Some(arn), Some(threshold)) => Some(Split {
                state_machine: arn.trim().to_owned(),
                threshold,
            }),
            (None, Some(_)) => return Err(ConfigError::NoStateMachine),
            (_, None) => None,
        };
        Ok(Config {
            out,
            outputs,
            table,
            topic: set("PCAPLAB_SNS_TOPIC_ARN"),
            flow_memory_mb,
            split,
            split_range: size("PCAPLAB_SPLIT_RANGE")?.unwrap_or(SPLIT_RANGE),
        })
    }
}

/// The function, built once per execution environment (clients, engine, job).
pub struct Handler {
    pipeline: Pipeline,
    /// The state machine large captures are routed to, and the threshold.
    split: Option<(aws_sdk_sfn::Client, Split)>,
    split_range: u64,
}

/// An invocation that failed as a whole (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] EventError),
    /// Worth retrying (throttling, network faults).
    #[error("{0}")]
    Failed(String),
    /// A state machine step that no retry can help (the capture's fault, a missing part).
    #[error("{0}")]
    Fatal(String),
    /// The table holds a newer version's result, or the object was replaced: the step has
    /// nothing to do.
    #[error("{0}")]
    Superseded(String),
}

impl From<JobError> for HandlerError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Superseded { .. } => HandlerError::Superseded(e.describe()),
            e if e.retryable() => HandlerError::Failed(e.describe()),
            e => HandlerError::Fatal(e.describe()),
        }
    }
}

impl Handler {
    /// Build the clients and the job (once per execution environment).
    pub async fn new(config: Config) -> Result<Self, JobError> {
        let aws = Arc::new(Aws::load().await);
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut flows = pcaplab_core::FlowConfig::default();
        if let Some(mb) = config.flow_memory_mb {
            flows.max_bytes = usize::try_from(mb).unwrap_or(usize::MAX) << 20;
        }
        let engine = Engine::builder()
            .jobs(jobs)
            .flows(flows)
            .build()
            .map_err(|e| JobError::Config {
                url: "engine".into(),
                message: e.to_string(),
            })?;
        let job = Job::new(
            Arc::new(engine),
            Some(Arc::clone(&aws)),
            JobOptions {
                outputs: config.outputs,
                out: config.out,
                table: config.table,
                ..JobOptions::default()
            },
        )?;
        let pipeline = Pipeline::new(job, Some(&aws), config.topic)?;
        let split = config
            .split
            .map(|s| (aws_sdk_sfn::Client::new(aws.sdk()), s));
        Ok(Handler {
            pipeline,
            split,
            split_range: config.split_range,
        })
    }

    /// Route `object` to the state machine if it is a capture to convert in ranges: the
    /// execution's ARN, or `None` to convert it here.
    async fn route(&self, object: &ObjectRef) -> Result<Option<String>, String> {
        let Some((client, split)) = &self.split else {
            return Ok(None);
        };
        let job = self.pipeline.job();
        let Some(target) = job
            .split_candidate(&object.location(), split.threshold)
            .await
            .map_err(|e| e.describe())?
        else {
            return Ok(None);
        };
        // One execution per upload of the object: a redelivered event finds it started, an
        // upload of the same bytes again (same ETag, a new modification time) starts another.
        let id = format!(
            "{}/{}\n{}\n{}",
            target.bucket,
            target.key,
            target.etag.as_deref().unwrap_or(""),
            target.last_modified.as_deref().unwrap_or("")
        );
        let digest = md5::Md5::digest(id.as_bytes());
        let name: String = std::iter::once("pcaplab-".to_owned())
            .chain(digest.iter().map(|b| format!("{b:02x}")))
            .collect();
        let input = json!({ "object": target }).to_string();
        match client
            .start_execution()
            .state_machine_arn(&split.state_machine)
            .name(&name)
            .input(input)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.execution_arn)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(Some(format!(
                    "{}:{name} (started before)",
                    split.state_machine
                )))
            }
            Err(e) => Err(format!(
                "{}: cannot start {}: {}",
                object.location(),
                split.state_machine,
                error_chain(&e)
            )),
        }
    }

    /// One step of the state machine that converts a capture in ranges.
    async fn split_step(&self, step: SplitStep) -> Result<Value, HandlerError> {
        let job = self.pipeline.job();
        match step {
            SplitStep::Plan(object) => {
                let plan = job
                    .split_plan(&object, self.split_range, COUNT_READS)
                    .await?;
                tracing::info!(object = %object.location(), ranges = plan.ranges, "planned");
                serde_json::to_value(plan).map_err(|e| HandlerError::Fatal(e.to_string()))
            }
            SplitStep::Range(event) => {
                let answer = job.split_range(&event).await?;
                serde_json::to_value(answer).map_err(|e| HandlerError::Fatal(e.to_string()))
            }
            SplitStep::Merge { plan, results } => {
                let started = Instant::now();
                let r = self.pipeline.split_merge(&plan, &results).await?;
                let s = &r.report.summary;
                Ok(json!({
                    "object": r.object.to_string(),
                    "status": "converted",
                    "packets": s.packets,
                    "parts": plan.parts,
                    "flows": s.flows.as_ref().map(|f| f.flows),
                    "damaged": r.report.damage.is_some(),
                    "ms": started.elapsed().as_millis() as u64,
                }))
            }
            SplitStep::Failed {
                object,
                plan,
                error,
                cause,
            } => {
                job.split_failed(&object, plan.as_ref(), &error, &cause)
                    .await?;
                Ok(json!({
                    "object": object.location().to_string(),
                    "status": "failed (recorded)",
                    "error": error,
                }))
            }
        }
    }

    /// Process every object of `objects`; the failures that need a retry, described.
    async fn process_all(&self, objects: &[ObjectRef], log: &mut Vec<Value>) -> Vec<String> {
        let mut failures = Vec::new();
        for object in objects {
            let started = Instant::now();
            let url = object.location().to_string();
            match self.route(object).await {
                Ok(None) => {}
                Ok(Some(execution)) => {
                    log.push(json!({"object": url, "status": "routed", "execution": execution}));
                    continue;
                }
                Err(reason) => {
                    log.push(json!({"object": url, "status": "retry", "reason": reason}));
                    failures.push(reason);
                    continue;
                }
            }
            match self.pipeline.process(object).await {
                Ok(Outcome::Converted(r)) => {
                    let s = &r.report.summary;
                    log.push(json!({"object": url, "status": "converted", "packets": s.packets, "damaged": r.report.damage.is_some(), "ms": started.elapsed().as_millis() as u64}));
                }
                Ok(Outcome::Recorded(e)) => {
                    log.push(json!({"object": url, "status": "failed (recorded, not retried)", "reason": e.describe()}));
                }
                Ok(Outcome::Superseded) => {
                    log.push(json!({"object": url, "status": "superseded"}));
                }
                Err(e) => {
                    log.push(json!({"object": url, "status": "retry", "reason": e.describe()}));
                    failures.push(e.describe());
                }
            }
        }
        failures
    }

    /// Handle one invocation's event.
    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
        let mut log = Vec::new();
        match events::parse(payload)? {
            Event::Objects(objects) => {
                let failures = self.process_all(&objects, &mut log).await;
                if !failures.is_empty() {
                    return Err(HandlerError::Failed(failures.join("; ")));
                }
                Ok(json!({ "objects": log }))
            }
            Event::Split(step) => self.split_step(*step).await,
            Event::Queue(messages) => {
                let mut failed_ids = Vec::new();
                for m in messages {
                    let failed = match &m.objects {
                        Ok(objects) => !self.process_all(objects, &mut log).await.is_empty(),
                        Err(e) => {
                            log.push(json!({"message": m.id, "status": "retry", "reason": e.to_string()}));
                            true
                        }
                    };
                    if failed {
                        failed_ids.push(json!({ "itemIdentifier": m.id }));
                    }
                }
                Ok(json!({ "batchItemFailures": failed_ids, "objects": log }))
            }
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::Event(_) => "pcaplab.UnrecognisedEvent",
            HandlerError::Failed(_) => "pcaplab.Retryable",
            HandlerError::Fatal(_) => "pcaplab.Failed",
            HandlerError::Superseded(_) => "pcaplab.Superseded",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_keep_the_labs_outputs_and_table() {
        let c = config(&[]).expect("config");
        assert_eq!(c.out, None);
        assert_eq!(
            c.outputs,
            [
                Output::Data(pcaplab_core::Format::Parquet),
                Output::Data(pcaplab_core::Format::LabCsv)
            ]
        );
        assert_eq!(c.table.as_deref(), Some("PacketCaptures"));
        assert_eq!(c.topic, None);
        assert_eq!(c.flow_memory_mb, None);
    }

    #[test]
    fn settings_are_read_and_checked() {
        let c = config(&[
            ("PCAPLAB_OUT", "s3://results/ds/"),
            ("PCAPLAB_FORMATS", "parquet, csv,dynamodb-json,csv"),
            ("PCAPLAB_DYNAMODB_TABLE", ""),
            ("PCAPLAB_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:1:t"),
            ("PCAPLAB_FLOW_MEMORY_MB", " 64 "),
        ])
        .expect("config");
        assert_eq!(
            c.out,
            Some(Location::parse("s3://results/ds/").expect("url"))
        );
        assert_eq!(c.outputs.len(), 3);
        assert_eq!(c.table, None);
        assert_eq!(c.topic.as_deref(), Some("arn:aws:sns:us-east-1:1:t"));
        assert_eq!(c.flow_memory_mb, Some(64));
        for bad in ["0", "65537", "lots", "-1"] {
            let e = config(&[("PCAPLAB_FLOW_MEMORY_MB", bad)]).expect_err(bad);
            assert!(e.to_string().starts_with("PCAPLAB_FLOW_MEMORY_MB="), "{e}");
        }
        // Routing to the state machine: both settings, or neither; sizes as people write them.
        assert_eq!(c.split, None);
        assert_eq!(c.split_range, SPLIT_RANGE);
        let c = config(&[
            (
                "PCAPLAB_STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:1:stateMachine:s",
            ),
            ("PCAPLAB_SPLIT_THRESHOLD", "2GiB"),
            ("PCAPLAB_SPLIT_RANGE", "256 MiB"),
        ])
        .expect("config");
        assert_eq!(
            c.split,
            Some(Split {
                state_machine: "arn:aws:states:us-east-1:1:stateMachine:s".into(),
                threshold: 2 << 30,
            })
        );
        assert_eq!(c.split_range, 256 << 20);
        // A state machine without a threshold routes nothing.
        let c = config(&[("PCAPLAB_STATE_MACHINE_ARN", "arn:x")]).expect("config");
        assert_eq!(c.split, None);
        let e = config(&[("PCAPLAB_SPLIT_THRESHOLD", "1GiB")]).expect_err("no machine");
        assert!(
            e.to_string().contains("PCAPLAB_STATE_MACHINE_ARN is not"),
            "{e}"
        );
        for (name, bad) in [
            ("PCAPLAB_SPLIT_THRESHOLD", "big"),
            ("PCAPLAB_SPLIT_RANGE", "12 parsecs"),
            ("PCAPLAB_SPLIT_RANGE", "100"),
        ] {
            let e = config(&[("PCAPLAB_STATE_MACHINE_ARN", "arn:x"), (name, bad)]).expect_err(bad);
            assert!(e.to_string().starts_with(&format!("{name}: ")), "{e}");
        }
        let e = config(&[("PCAPLAB_FORMATS", "parquet,xml")]).expect_err("format");
        assert!(e.to_string().contains("unknown format \"xml\""), "{e}");
        let e = config(&[("PCAPLAB_OUT", "/tmp/out")]).expect_err("local");
        assert!(e.to_string().contains("must be on S3"), "{e}");
        let e = config(&[("PCAPLAB_OUT", "s3://x")]).expect_err("bucket");
        assert!(e.to_string().starts_with("PCAPLAB_OUT=\"s3://x\""), "{e}");
    }
}
