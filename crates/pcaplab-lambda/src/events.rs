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
//! S3 notifications URL-encode keys the way HTML forms do (`+` is a space, `%2B` a plus); they
//! are decoded here. `s3:TestEvent`, which S3 sends when a notification is configured, names no
//! object and is acknowledged.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

/// An object an event names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    /// The key as the event spelled it, when it was not decoded (EventBridge): S3 does not
    /// say whether those keys are encoded, so [`ObjectRef::alternative`] offers the other
    /// reading.
    pub undecoded: bool,
}

impl ObjectRef {
    pub fn location(&self) -> pcaplab_cloud::Location {
        pcaplab_cloud::Location::S3 {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
        }
    }

    /// For an EventBridge key, its URL-decoded reading if that differs.
    pub fn alternative(&self) -> Option<ObjectRef> {
        if !self.undecoded {
            return None;
        }
        let decoded = decode_key(&self.key).ok()?;
        (decoded != self.key).then(|| ObjectRef {
            bucket: self.bucket.clone(),
            key: decoded,
            undecoded: false,
        })
    }
}

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
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is not JSON: {0}")]
    Json(String),
    #[error("unrecognised event: {0}")]
    Unknown(String),
    #[error("malformed {shape}: {message}")]
    Malformed {
        shape: &'static str,
        message: String,
    },
    #[error("object key {key:?} is not valid URL encoding: {message}")]
    Key { key: String, message: String },
}

/// Decode an S3 notification key: `+` is a space, then percent-decoding (`%2B` is a plus).
pub fn decode_key(key: &str) -> Result<String, EventError> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| EventError::Key {
            key: key.to_owned(),
            message: e.to_string(),
        })
}

fn malformed(shape: &'static str) -> impl Fn(serde_json::Error) -> EventError {
    move |e| EventError::Malformed {
        shape,
        message: e.to_string(),
    }
}

/// Whether a JSON value is S3's test event (`{"Service":"Amazon S3","Event":"s3:TestEvent",…}`).
fn is_test_event(v: &Value) -> bool {
    v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
}

/// The objects of an S3 notification (or none for a test event).
fn s3_notification(v: Value) -> Result<Vec<ObjectRef>, EventError> {
    if is_test_event(&v) {
        return Ok(Vec::new());
    }
    let event: S3Event = serde_json::from_value(v).map_err(malformed("S3 notification"))?;
    let mut objects = Vec::new();
    for record in event.records {
        // Only creations carry something to convert; other event types (removals, say) that a
        // broad trigger delivers are acknowledged.
        if !record
            .event_name
            .as_deref()
            .is_some_and(|n| n.starts_with("ObjectCreated:"))
        {
            continue;
        }
        let bucket = record.s3.bucket.name.ok_or_else(|| EventError::Malformed {
            shape: "S3 notification",
            message: "a record without s3.bucket.name".into(),
        })?;
        let key = record.s3.object.key.ok_or_else(|| EventError::Malformed {
            shape: "S3 notification",
            message: "a record without s3.object.key".into(),
        })?;
        objects.push(ObjectRef {
            bucket,
            key: decode_key(&key)?,
            undecoded: false,
        });
    }
    Ok(objects)
}

/// SNS's envelope, as it arrives in an SQS body (or an SNS record's `Sns` field). Only what we
/// read: the signature fields differ in spelling between the two transports.
#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

/// The objects of an S3 notification wrapped in an SNS envelope.
fn sns_envelope(v: Value) -> Result<Vec<ObjectRef>, EventError> {
    let envelope: SnsEnvelope = serde_json::from_value(v).map_err(malformed("SNS envelope"))?;
    if envelope.kind != "Notification" {
        return Err(EventError::Unknown(format!(
            "an SNS {} message, not a Notification",
            envelope.kind
        )));
    }
    let inner: Value = serde_json::from_str(&envelope.message)
        .map_err(|e| EventError::Json(format!("SNS message: {e}")))?;
    s3_notification(inner)
}

/// An SQS message body: an S3 notification, or an SNS envelope of one.
fn sqs_body(body: &str) -> Result<Vec<ObjectRef>, EventError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| EventError::Json(format!("SQS body: {e}")))?;
    if v.get("Type").is_some() && v.get("Message").is_some() {
        sns_envelope(v)
    } else if v.get("Records").is_some() || is_test_event(&v) {
        s3_notification(v)
    } else {
        Err(EventError::Unknown(format!(
            "an SQS body that is neither an S3 notification nor an SNS envelope: {}",
            excerpt(body)
        )))
    }
}

#[derive(Deserialize, serde::Serialize)]
struct EbBucket {
    name: String,
}

#[derive(Deserialize, serde::Serialize)]
struct EbObject {
    key: String,
}

/// The `detail` of EventBridge's S3 "Object Created".
#[derive(Deserialize, serde::Serialize)]
struct EbDetail {
    bucket: EbBucket,
    object: EbObject,
}

fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(200).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    e
}

/// Recognise an invocation's event.
pub fn parse(payload: Value) -> Result<Event, EventError> {
    if is_test_event(&payload) {
        return Ok(Event::Objects(Vec::new()));
    }
    if let (Some(source), Some(kind)) = (
        payload.get("source").and_then(Value::as_str),
        payload.get("detail-type").and_then(Value::as_str),
    ) {
        if source != "aws.s3" || kind != "Object Created" {
            return Err(EventError::Unknown(format!(
                "an EventBridge event {kind:?} from {source:?} (expected \"Object Created\" from \"aws.s3\")"
            )));
        }
        let event: EventBridgeEvent<EbDetail> =
            serde_json::from_value(payload).map_err(malformed("EventBridge event"))?;
        return Ok(Event::Objects(vec![ObjectRef {
            bucket: event.detail.bucket.name,
            key: event.detail.object.key,
            undecoded: true,
        }]));
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
                serde_json::from_value(payload).map_err(malformed("SQS event"))?;
            let messages = event
                .records
                .into_iter()
                .map(|m| QueuedMessage {
                    id: m.message_id.unwrap_or_default(),
                    objects: match m.body {
                        Some(body) => sqs_body(&body),
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
        }
    }

    #[test]
    fn keys_are_decoded_like_forms() {
        assert_eq!(decode_key("a+b%2Bc.pcap").expect("key"), "a b+c.pcap");
        assert_eq!(decode_key("x%20y%C3%A9").expect("key"), "x yé");
        assert_eq!(decode_key("plain/key.cap").expect("key"), "plain/key.cap");
        let e = decode_key("bad%FF%FE").expect_err("not UTF-8");
        assert!(e.to_string().contains("bad%FF%FE"), "{e}");
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
