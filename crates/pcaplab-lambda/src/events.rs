//! Every way an S3 "object created" event reaches a Lambda function, reduced to the objects it
//! names.
//!
//! - an S3 notification, invoked directly (asynchronous invocation; the lab's wiring);
//! - SQS messages whose body is an S3 notification (S3 → SQS), or an SNS envelope holding one
//!   (S3 → SNS → SQS, the fan-out pattern; with raw message delivery the body is the
//!   notification itself);
//! - SNS records holding an S3 notification (S3 → SNS → Lambda);
//! - EventBridge "Object Created" events.
//!
//! The notifications themselves are read by [`pcaplab_cloud::notification`], which the
//! watcher shares; this module knows the Lambda event envelopes around them.

use aws_lambda_events::sqs::SqsEvent;
use pcaplab_cloud::fanout::{RangeEvent, S3Object, SplitContext, SplitObject};
use pcaplab_cloud::notification::{self, excerpt, is_test_event, s3_notification, sns_envelope};
use serde_json::Value;

pub use pcaplab_cloud::notification::{EventError, ObjectRef, decode_key};

/// One SQS message: its id (for partial batch failures) and what it names.
#[derive(Debug)]
pub struct QueuedMessage {
    pub id: String,
    pub objects: Result<Vec<ObjectRef>, EventError>,
}

/// An invocation's event.
#[derive(Debug)]
pub enum Event {
    /// Objects named by an event that is retried as a whole (direct S3, SNS, EventBridge).
    Objects(Vec<ObjectRef>),
    /// An SQS batch: each message succeeds or fails on its own.
    Queue(Vec<QueuedMessage>),
    /// A step of the state machine that converts one capture in ranges.
    Split(Box<SplitStep>),
}

/// The state machine's events (`{"pcaplab": ROLE, ...}`; see `pcaplab_cloud::fanout`).
#[derive(Debug)]
pub enum SplitStep {
    /// `{"pcaplab": "plan", "object": {...}}`: plan and count the ranges, write the manifest.
    Plan(SplitObject),
    /// A line of the manifest: convert one range.
    Range(RangeEvent),
    /// `{"pcaplab": "merge", "plan": <the plan's context>, "results": {"Bucket", "Key"}}`:
    /// merge the ranges from the Map's result manifest.
    Merge {
        plan: SplitContext,
        results: S3Object,
    },
    /// `{"pcaplab": "failed", "execution": <the state: object, plan?, error>}`.
    Failed {
        object: SplitObject,
        plan: Option<SplitContext>,
        error: String,
        cause: String,
    },
}

/// Read a state machine event.
fn split_step(role: &str, payload: Value) -> Result<SplitStep, EventError> {
    fn field<T: serde::de::DeserializeOwned>(
        payload: &Value,
        pointer: &str,
        shape: &'static str,
    ) -> Result<T, EventError> {
        let v = payload
            .pointer(pointer)
            .ok_or_else(|| EventError::Malformed {
                shape,
                message: format!("no {pointer}"),
            })?;
        serde_json::from_value(v.clone()).map_err(|e| EventError::Malformed {
            shape,
            message: format!("{pointer}: {e}"),
        })
    }
    match role {
        "plan" => Ok(SplitStep::Plan(field(&payload, "/object", "plan event")?)),
        "range" => Ok(SplitStep::Range(serde_json::from_value(payload).map_err(
            |e| EventError::Malformed {
                shape: "range event",
                message: e.to_string(),
            },
        )?)),
        "merge" => Ok(SplitStep::Merge {
            plan: field(&payload, "/plan", "merge event")?,
            results: field(&payload, "/results", "merge event")?,
        }),
        "failed" => {
            let text = |p: &str| {
                payload
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Ok(SplitStep::Failed {
                object: field(&payload, "/execution/object", "failed event")?,
                plan: payload
                    .pointer("/execution/plan/merge")
                    .and_then(|p| serde_json::from_value(p.clone()).ok()),
                error: text("/execution/error/Error"),
                cause: text("/execution/error/Cause"),
            })
        }
        other => Err(EventError::Unknown(format!(
            "a pcaplab event of an unknown role {other:?} (plan, range, merge or failed)"
        ))),
    }
}

/// Recognise an invocation's event.
pub fn parse(payload: Value) -> Result<Event, EventError> {
    if is_test_event(&payload) {
        return Ok(Event::Objects(Vec::new()));
    }
    if let Some(role) = payload.get("pcaplab").and_then(Value::as_str) {
        let role = role.to_owned();
        return Ok(Event::Split(Box::new(split_step(&role, payload)?)));
    }
    if payload.get("source").is_some() && payload.get("detail-type").is_some() {
        return Ok(Event::Objects(notification::eventbridge(payload)?));
    }
    let source = payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match source.as_deref() {
        Some("aws:s3") => Ok(Event::Objects(s3_notification(payload)?)),
        Some("aws:sqs") => {
            let event: SqsEvent =
                serde_json::from_value(payload).map_err(|e| EventError::Malformed {
                    shape: "SQS event",
                    message: e.to_string(),
                })?;
            let messages = event
                .records
                .into_iter()
                .map(|m| QueuedMessage {
                    id: m.message_id.unwrap_or_default(),
                    objects: match m.body {
                        Some(body) => notification::message(&body),
                        None => Err(EventError::Unknown("an SQS message without a body".into())),
                    },
                })
                .collect();
            Ok(Event::Queue(messages))
        }
        Some("aws:sns") => {
            let records = payload
                .get("Records")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut objects = Vec::new();
            for r in records {
                let sns = r.get("Sns").cloned().ok_or_else(|| EventError::Malformed {
                    shape: "SNS event",
                    message: "a record without Sns".into(),
                })?;
                objects.extend(sns_envelope(sns)?);
            }
            Ok(Event::Objects(objects))
        }
        Some(other) => Err(EventError::Unknown(format!(
            "records from {other:?} (expected aws:s3, aws:sqs or aws:sns)"
        ))),
        None => Err(EventError::Unknown(excerpt(&payload.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/events")
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).expect("fixture");
        serde_json::from_str(&text).expect("fixture JSON")
    }

    fn obj(bucket: &str, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            undecoded: false,
        }
    }

    fn objects(e: Event) -> Vec<ObjectRef> {
        match e {
            Event::Objects(o) => o,
            Event::Queue(q) => panic!("expected objects, got a queue: {q:?}"),
            Event::Split(s) => panic!("expected objects, got a state machine step: {s:?}"),
        }
    }

    #[test]
    fn state_machine_steps_are_read_by_role_and_refused_by_name() {
        let object =
            serde_json::json!({"bucket": "b", "key": "k.pcap", "etag": "\"e\"", "size": 9});
        match parse(serde_json::json!({"pcaplab": "plan", "object": object})) {
            Ok(Event::Split(step)) => match *step {
                SplitStep::Plan(o) => {
                    assert_eq!(
                        (o.bucket.as_str(), o.key.as_str(), o.size),
                        ("b", "k.pcap", 9)
                    );
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        // A failure caught before the plan answered: no plan, the error as Step Functions
        // gives it.
        let failed = serde_json::json!({"pcaplab": "failed", "execution": {
            "object": object, "error": {"Error": "pcaplab.Failed", "Cause": "{}"}}});
        match parse(failed) {
            Ok(Event::Split(step)) => match *step {
                SplitStep::Failed { plan, error, .. } => {
                    assert!(plan.is_none());
                    assert_eq!(error, "pcaplab.Failed");
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        for (event, says) in [
            (
                serde_json::json!({"pcaplab": "plan"}),
                "malformed plan event: no /object",
            ),
            (
                serde_json::json!({"pcaplab": "plan", "object": {"bucket": 3}}),
                "malformed plan event: /object:",
            ),
            (
                serde_json::json!({"pcaplab": "range", "task": {}}),
                "malformed range event",
            ),
            (
                serde_json::json!({"pcaplab": "merge", "plan": {}}),
                "malformed merge event",
            ),
            (
                serde_json::json!({"pcaplab": "dance"}),
                "unknown role \"dance\"",
            ),
        ] {
            let e = parse(event.clone()).expect_err("refused");
            assert!(e.to_string().contains(says), "{event}: {e}");
        }
    }

    #[test]
    fn a_direct_s3_notification_names_its_created_objects() {
        let got = objects(parse(fixture("s3-put")).expect("parse"));
        // The removal record is acknowledged, not processed.
        assert_eq!(
            got,
            [
                obj("captures", "incoming/a b+c.pcap"),
                obj("captures", "incoming/x yé.pcapng.gz"),
            ]
        );
    }

    #[test]
    fn the_test_event_names_nothing() {
        assert!(objects(parse(fixture("s3-test-event")).expect("parse")).is_empty());
    }

    #[test]
    fn sqs_messages_succeed_or_fail_one_by_one() {
        let Event::Queue(messages) = parse(fixture("sqs-s3")).expect("parse") else {
            panic!("expected a queue")
        };
        let ids: Vec<&str> = messages.iter().map(|m| &m.id[..9]).collect();
        assert_eq!(ids, ["00000001-", "00000002-", "00000003-", "00000004-"]);
        assert_eq!(
            messages[0].objects.as_ref().expect("S3 body"),
            &[obj("captures", "q/one 1.pcap")]
        );
        // S3's test event, as SQS delivers it.
        assert!(messages[1].objects.as_ref().expect("test event").is_empty());
        let e = messages[2].objects.as_ref().expect_err("not JSON");
        assert!(
            e.to_string().starts_with("the event is not JSON: SQS body"),
            "{e}"
        );
        let e = messages[3].objects.as_ref().expect_err("unknown body");
        assert!(e.to_string().ends_with(r#"{"hello": "world"}"#), "{e}");
    }

    #[test]
    fn sns_envelopes_in_sqs_are_opened() {
        let Event::Queue(messages) = parse(fixture("sqs-sns-s3")).expect("parse") else {
            panic!("expected a queue")
        };
        assert_eq!(
            messages[0].objects.as_ref().expect("envelope"),
            &[
                obj("captures", "fan/out+1.pcap"),
                obj("captures", "fan/out 2.pcap")
            ]
        );
        let e = messages[1]
            .objects
            .as_ref()
            .expect_err("not a notification");
        assert!(e.to_string().contains("SubscriptionConfirmation"), "{e}");
    }

    #[test]
    fn sns_records_are_opened() {
        assert_eq!(
            objects(parse(fixture("sns-s3")).expect("parse")),
            [obj("captures", "direct/sns x.pcap")]
        );
    }

    #[test]
    fn eventbridge_keys_are_taken_as_given_with_a_decoded_alternative() {
        let got = objects(parse(fixture("eventbridge-object-created")).expect("parse"));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].bucket.as_str(), got[0].key.as_str()),
            ("captures", "eb/a b.pcap")
        );
        assert!(got[0].undecoded);
        // Nothing to decode in this key; an encoded-looking one offers its decoded reading.
        assert_eq!(got[0].alternative(), None);
        let encoded = ObjectRef {
            key: "eb/a+b%2B.pcap".into(),
            ..got[0].clone()
        };
        assert_eq!(encoded.alternative(), Some(obj("captures", "eb/a b+.pcap")));
    }

    #[test]
    fn unknown_shapes_are_named() {
        let e = parse(serde_json::json!({"foo": 1})).expect_err("unknown");
        assert_eq!(e.to_string(), "unrecognised event: {\"foo\":1}");
        let e = parse(serde_json::json!({"Records": [{"eventSource": "aws:kinesis"}]}))
            .expect_err("kinesis");
        assert!(e.to_string().contains("\"aws:kinesis\""), "{e}");
        let e = parse(serde_json::json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}))
            .expect_err("other EventBridge event");
        assert!(e.to_string().contains("EC2 Instance"), "{e}");
        let mut broken = fixture("s3-put");
        broken["Records"][0]["s3"] = serde_json::json!("nope");
        let e = parse(broken).expect_err("malformed");
        assert!(
            e.to_string().starts_with("malformed S3 notification: "),
            "{e}"
        );
    }
}
