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
use pcaplab_cloud::{Aws, Job, JobError, JobOptions, Location, Output};
use pcaplab_core::Engine;
use serde_json::{Value, json};

use crate::events::{Event, EventError, ObjectRef};

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
}

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
        Ok(Config {
            out,
            outputs,
            table,
            topic: set("PCAPLAB_SNS_TOPIC_ARN"),
            flow_memory_mb,
        })
    }
}

/// The function, built once per execution environment (clients, engine, job).
pub struct Handler {
    pipeline: Pipeline,
}

/// An invocation that failed as a whole (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{0}")]
    Failed(String),
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
        Ok(Handler { pipeline })
    }

    /// Process every object of `objects`; the failures that need a retry, described.
    async fn process_all(&self, objects: &[ObjectRef], log: &mut Vec<Value>) -> Vec<String> {
        let mut failures = Vec::new();
        for object in objects {
            let started = Instant::now();
            let url = object.location().to_string();
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
        let e = config(&[("PCAPLAB_FORMATS", "parquet,xml")]).expect_err("format");
        assert!(e.to_string().contains("unknown format \"xml\""), "{e}");
        let e = config(&[("PCAPLAB_OUT", "/tmp/out")]).expect_err("local");
        assert!(e.to_string().contains("must be on S3"), "{e}");
        let e = config(&[("PCAPLAB_OUT", "s3://x")]).expect_err("bucket");
        assert!(e.to_string().starts_with("PCAPLAB_OUT=\"s3://x\""), "{e}");
    }
}
