//! The job behind an S3 notification, as the Lambda function and the watcher run it: process
//! the object a notification names, classify what became of it, and announce a converted
//! capture on SNS.
//!
//! - converted (whole or damaged): outputs and item written, then announced;
//! - a capture's own fault (not a capture, an unreadable header): recorded in the table as
//!   `failed` with its reason — retrying cannot change it, so the notification is done;
//! - the table holds a newer version's result: nothing to do;
//! - anything else (throttling, network faults, a missing object, a missing permission, a
//!   failed announcement) is an error: the notification must be retried.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::aws::Aws;
use crate::fanout::{S3Object, SplitContext};
use crate::job::{Job, JobError, JobReport, Request, error_chain};
use crate::notification::ObjectRef;

/// What became of one notified object.
#[derive(Debug)]
pub enum Outcome {
    Converted(Box<JobReport>),
    /// The capture's own fault, recorded in the table: done, not retried.
    Recorded(JobError),
    /// The table holds a newer version's result: nothing to do.
    Superseded,
}

/// The job and the announcement topic, built once per process.
pub struct Pipeline {
    job: Job,
    sns: Option<(aws_sdk_sns::Client, String)>,
}

/// SNS subjects: ASCII, no line breaks, at most 100 characters.
fn subject(text: &str) -> String {
    let ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    ascii.chars().take(100).collect()
}

/// The announcement of a converted capture: compact JSON and a subject.
pub fn announcement(object: &ObjectRef, r: &JobReport) -> (String, String) {
    let s = &r.report.summary;
    let ts = |t: Option<i64>| t.map(pcaplab_core::encode::rfc3339_ns);
    let outputs: serde_json::Map<String, Value> = r
        .outputs
        .iter()
        .map(|(k, u)| (k.name().to_owned(), Value::String(u.clone())))
        .collect();
    let mut message = json!({
        "s3Id": format!("{}/{}", object.bucket, object.key),
        "bucket": object.bucket,
        "key": object.key,
        "status": if r.report.damage.is_some() { "damaged" } else { "ok" },
        "packets": s.packets,
        "bytes": s.cap_bytes,
        "first_ts": ts(s.first_ts),
        "last_ts": ts(s.last_ts),
        "outputs": outputs,
        "duration_ms": r.elapsed.as_millis() as u64,
    });
    if let (Some(d), Some(m)) = (&r.report.damage, message.as_object_mut()) {
        m.insert("reason".into(), Value::String(d.to_string()));
    }
    let verb = if r.report.damage.is_some() {
        "converted (damaged)"
    } else {
        "converted"
    };
    let subject = subject(&format!(
        "pcaplab: {} {verb}, {} packets",
        object.location().file_name(),
        s.packets
    ));
    (message.to_string(), subject)
}

impl Pipeline {
    /// `topic`: the SNS topic ARN that converted captures are announced on.
    pub fn new(job: Job, aws: Option<&Arc<Aws>>, topic: Option<String>) -> Result<Self, JobError> {
        let sns = match (topic, aws) {
            (None, _) => None,
            (Some(topic), Some(aws)) => Some((aws_sdk_sns::Client::new(aws.sdk()), topic)),
            (Some(topic), None) => {
                return Err(JobError::Config {
                    url: format!("SNS topic {topic}"),
                    message: "SNS needs an AWS configuration".into(),
                });
            }
        };
        Ok(Pipeline { job, sns })
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Run the job on one notified object. `Err` means the notification must be retried.
    pub async fn process(&self, object: &ObjectRef) -> Result<Outcome, JobError> {
        let mut result = self.run(object).await;
        // EventBridge keys: if the key as given does not exist, try its URL-decoded reading.
        if let (Err(e), Some(alt)) = (&result, object.alternative())
            && e.object_not_found()
        {
            result = self.run(&alt).await;
        }
        match result {
            Ok(report) => {
                self.announce(object, &report).await?;
                Ok(Outcome::Converted(Box::new(report)))
            }
            Err(JobError::Superseded { .. }) => Ok(Outcome::Superseded),
            Err(e) if e.capture_fault() => Ok(Outcome::Recorded(e)),
            Err(e) => Err(e),
        }
    }

    /// A state machine's merge of one capture's ranges (see [`crate::fanout`]), announced
    /// like a converted capture; the run's own objects are deleted once it is announced.
    pub async fn split_merge(
        &self,
        plan: &SplitContext,
        results: &S3Object,
    ) -> Result<JobReport, JobError> {
        let (report, work) = self.job.split_merge(plan, results).await?;
        let object = ObjectRef {
            bucket: plan.object.bucket.clone(),
            key: plan.object.key.clone(),
            undecoded: false,
        };
        self.announce(&object, &report).await?;
        self.job.split_cleanup(work).await;
        Ok(report)
    }

    async fn run(&self, object: &ObjectRef) -> Result<JobReport, JobError> {
        self.job.process(&Request::new(object.location())).await
    }

    async fn announce(&self, object: &ObjectRef, report: &JobReport) -> Result<(), JobError> {
        let Some((client, topic)) = &self.sns else {
            return Ok(());
        };
        let (message, subject) = announcement(object, report);
        client
            .publish()
            .topic_arn(topic)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| JobError::Announce {
                url: object.location().to_string(),
                topic: topic.clone(),
                message: error_chain(&e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_sns_safe() {
        let s = subject(&format!("pcaplab: {}é\n converted", "x".repeat(200)));
        assert!(s.len() <= 100);
        assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s}");
    }
}
