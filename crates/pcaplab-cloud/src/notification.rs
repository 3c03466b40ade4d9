//! S3 "object created" notifications, reduced to the objects they name — the shapes that
//! reach a queue or a function:
//!
//! - an S3 notification (`{"Records":[{"eventSource":"aws:s3",…}]}`);
//! - an SNS envelope holding one (S3 → SNS → …, the fan-out pattern);
//! - an EventBridge "Object Created" event.
//!
//! S3 notifications URL-encode keys the way HTML forms do (`+` is a space, `%2B` a plus); they
//! are decoded here. `s3:TestEvent`, which S3 sends when a notification is configured, names no
//! object. Only `ObjectCreated:*` records name objects to process; other records (removals,
//! say, from a broad notification) are acknowledged and dropped.

use serde::Deserialize;
use serde_json::Value;

use crate::location::Location;

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
    pub fn location(&self) -> Location {
        Location::S3 {
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
pub fn is_test_event(v: &Value) -> bool {
    v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
}

/// The objects of an S3 notification (or none for a test event).
pub fn s3_notification(v: Value) -> Result<Vec<ObjectRef>, EventError> {
    if is_test_event(&v) {
        return Ok(Vec::new());
    }
    let event: S3Notification = serde_json::from_value(v).map_err(malformed("S3 notification"))?;
    let mut objects = Vec::new();
    for record in event.records {
        // Only creations carry something to convert; other event types (removals, say) that a
        // broad trigger delivers are acknowledged.
        if !record.event_name.starts_with("ObjectCreated:") {
            continue;
        }
        objects.push(ObjectRef {
            bucket: record.s3.bucket.name,
            key: decode_key(&record.s3.object.key)?,
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
pub fn sns_envelope(v: Value) -> Result<Vec<ObjectRef>, EventError> {
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

/// A queued message's body (SQS): an S3 notification, an SNS envelope of one (S3 → SNS → SQS;
/// with raw message delivery the body is the notification itself), or an EventBridge "Object
/// Created" event (an EventBridge rule targeting the queue).
pub fn message(body: &str) -> Result<Vec<ObjectRef>, EventError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| EventError::Json(format!("SQS body: {e}")))?;
    if v.get("Type").is_some() && v.get("Message").is_some() {
        sns_envelope(v)
    } else if v.get("Records").is_some() || is_test_event(&v) {
        s3_notification(v)
    } else if v.get("detail-type").is_some() {
        eventbridge(v)
    } else {
        Err(EventError::Unknown(format!(
            "an SQS body that is neither an S3 notification, an SNS envelope nor an EventBridge event: {}",
            excerpt(body)
        )))
    }
}

// What is read of a notification: only the fields every producer sends (moto, for one, omits
// `userIdentity` and the other request fields that S3 itself includes).

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

/// `s3` of a notification record, and `detail` of an EventBridge event: the same shape.
#[derive(Deserialize)]
struct S3Entity {
    bucket: Named,
    object: Keyed,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Keyed {
    key: String,
}

#[derive(Deserialize)]
struct EventBridge {
    detail: S3Entity,
}

/// At most 200 characters of `s`, for an error message.
pub fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(200).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    e
}

/// The object of an EventBridge S3 "Object Created" event. Its key is taken as given (see
/// [`ObjectRef::alternative`]).
pub fn eventbridge(v: Value) -> Result<Vec<ObjectRef>, EventError> {
    let source = v.get("source").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("detail-type").and_then(Value::as_str).unwrap_or("");
    if source != "aws.s3" || kind != "Object Created" {
        return Err(EventError::Unknown(format!(
            "an EventBridge event {kind:?} from {source:?} (expected \"Object Created\" from \"aws.s3\")"
        )));
    }
    let event: EventBridge = serde_json::from_value(v).map_err(malformed("EventBridge event"))?;
    Ok(vec![ObjectRef {
        bucket: event.detail.bucket.name,
        key: event.detail.object.key,
        undecoded: true,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(bucket: &str, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            undecoded: false,
        }
    }

    fn s3_body(key: &str, event: &str) -> String {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-24T10:00:00.000Z", "eventName": event,
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
                   "bucket": {"name": "captures", "arn": "arn:aws:s3:::captures"},
                   "object": {"key": key, "size": 10, "eTag": "e"}}}]})
        .to_string()
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
    fn queued_bodies_of_every_shape_name_their_objects() {
        let direct = s3_body("in/a+b%2B.pcap", "ObjectCreated:Put");
        assert_eq!(
            message(&direct).expect("S3"),
            [obj("captures", "in/a b+.pcap")]
        );
        let removed = s3_body("in/gone.pcap", "ObjectRemoved:Delete");
        assert_eq!(message(&removed).expect("removal"), []);
        let wrapped = serde_json::json!({"Type": "Notification", "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": direct})
        .to_string();
        assert_eq!(
            message(&wrapped).expect("SNS"),
            [obj("captures", "in/a b+.pcap")]
        );
        let eb = serde_json::json!({"version": "0", "id": "1", "detail-type": "Object Created",
            "source": "aws.s3", "account": "1", "time": "2026-11-24T10:00:00Z",
            "region": "us-east-1", "resources": [],
            "detail": {"bucket": {"name": "captures"}, "object": {"key": "eb/x y.pcap"}}})
        .to_string();
        let got = message(&eb).expect("EventBridge");
        assert_eq!(
            (got[0].key.as_str(), got[0].undecoded),
            ("eb/x y.pcap", true)
        );
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"captures"}"#;
        assert_eq!(message(test_event).expect("test event"), []);
    }

    #[test]
    fn unusable_bodies_are_named() {
        let e = message("not json").expect_err("json");
        assert!(
            e.to_string().starts_with("the event is not JSON: SQS body"),
            "{e}"
        );
        let e = message(r#"{"hello": "world"}"#).expect_err("unknown");
        assert!(e.to_string().ends_with(r#"{"hello": "world"}"#), "{e}");
        let e = message(&s3_body("bad%FF", "ObjectCreated:Put")).expect_err("key");
        assert!(e.to_string().contains("bad%FF"), "{e}");
        let confirm = serde_json::json!({"Type": "SubscriptionConfirmation", "Message": "x"});
        let e = message(&confirm.to_string()).expect_err("confirmation");
        assert!(e.to_string().contains("SubscriptionConfirmation"), "{e}");
    }
}
