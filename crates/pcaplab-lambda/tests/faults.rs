//! The real `pcaplab-lambda` binary under cargo-lambda's runtime emulator, with S3, DynamoDB
//! and SNS failing under it: the function talks to moto through the testkit's fault-injecting
//! proxy, while the test's own setup and checks talk to moto directly.
//!
//! - An SQS batch of three captures: one whose item cannot be written (DynamoDB throttling
//!   that outlives the SDK's retries), the two others hit by transient faults (S3 `503
//!   SlowDown` on their uploads, a download cut mid-body, one throttled item write). Only the
//!   faulted message is in `batchItemFailures`; the others have their items and outputs and are
//!   announced once each. Healed, the redelivered message succeeds, and the bucket's dataset
//!   and items equal a fault-free run's (the same captures in a second bucket).
//! - SNS Publish failing for good: the record fails (SQS) or the invocation fails (a direct S3
//!   event), naming the failed announcement; nothing is announced, but the item and outputs,
//!   written before, are there. Healed, a redelivery announces it once and rewrites the same
//!   item and keys.
//! - SNS Publish failing once (throttled): the SDK's retry announces it exactly once. Its
//!   answer lost after it took effect: the SDK retries, and the topic delivers the
//!   announcement twice (at-least-once, as SNS standard topics are).
//!
//! Needs `$PCAPLAB_PYTHON` (the project venv: boto3, moto[server] and cargo-lambda next to
//! it); see pcaplab-testkit for what happens without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pcaplab_testkit::{Fault, FaultProxy, Moto, Rule, keyed, own_captures, python};
use serde_json::{Value, json};

mod common;
use common::{Lambda, QUEUE, TOPIC, s3_record};

/// moto with a table, a topic and the queue subscribed to it, the captures uploaded under
/// `in/` of each bucket; the proxy in front of moto; the function behind the proxy.
struct Lab {
    moto: Moto,
    proxy: FaultProxy,
    lambda: Lambda,
}

impl Lab {
    fn start(python: &Path, buckets: &[&str], captures: &[&str]) -> Lab {
        let moto = Moto::start(python);
        let proxy = FaultProxy::start(&moto.endpoint());
        moto.py(
            r#"
create_table()
announce_to(sys.argv[1])
for b in sys.argv[2:]:
    s3.create_bucket(Bucket=b)
"#,
            &[&[QUEUE], buckets].concat(),
        );
        let own = own_captures();
        let files: Vec<_> = captures
            .iter()
            .map(|c| (own.join(c), format!("in/{c}")))
            .collect();
        for b in buckets {
            moto.upload(b, &files);
        }
        let lambda = Lambda::start(&moto, python, &proxy.endpoint());
        Lab {
            moto,
            proxy,
            lambda,
        }
    }

    /// Invoke; the invocation must succeed (an SQS batch answers even when records failed).
    fn answer(&self, event: &Value) -> Value {
        self.lambda.invoke(event).unwrap_or_else(|e| {
            panic!(
                "{e}\nfaults: {}\nfunction log:\n{}",
                self.faults(),
                self.lambda.log()
            )
        })
    }

    /// Heal every fault and deliver message `id` (the capture `in/<capture>` of the `captures`
    /// bucket) a second time: it succeeds and is announced once.
    fn redeliver_healed(&self, id: &str, capture: &str) {
        self.proxy.heal();
        let again = self.answer(&batch(vec![sqs_message(
            id,
            "captures",
            &format!("in/{capture}"),
            2,
        )]));
        assert_eq!(failed_ids(&again), Vec::<String>::new(), "{again}");
        assert_eq!(self.announced(), [format!("captures/in/{capture}")]);
    }

    /// The faults injected so far, by operation and kind (for failure messages).
    fn faults(&self) -> String {
        let counts = self.proxy.seen().iter().filter(|s| s.fault.is_some()).fold(
            BTreeMap::<String, usize>::new(),
            |mut m, s| {
                *m.entry(format!("{} {:?}", s.op, s.fault)).or_default() += 1;
                m
            },
        );
        format!("{counts:?}")
    }

    /// The items of the captures in `bucket`: s3Id → every attribute but `processed_at` and
    /// `last_modified` (the upload's time) as canonical JSON, with the bucket's name written
    /// `BUCKET` (so two buckets' items compare).
    fn items(&self, bucket: &str) -> BTreeMap<String, String> {
        let out = self.moto.py(
            r#"
b = sys.argv[1]
for it in items():
    sid = it["s3Id"]["S"]
    if sid.startswith(b + "/"):
        canon = json.dumps({k: v for k, v in it.items() if k not in ("processed_at", "last_modified")}, sort_keys=True)
        emit("item", sid[len(b) + 1:], canon.replace(b, "BUCKET"))
"#,
            &[bucket],
        );
        keyed(&out, "item")
    }

    /// The keys the function wrote to `bucket` (everything but the captures under `in/`), with
    /// the bucket's name written `BUCKET`.
    fn outputs(&self, bucket: &str) -> BTreeSet<String> {
        self.moto
            .keys(bucket, "")
            .into_iter()
            .filter(|k| !k.starts_with("in/"))
            .map(|k| k.replace(bucket, "BUCKET"))
            .collect()
    }

    /// The s3Ids announced since the last call (SNS → the subscribed queue, drained).
    fn announced(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .moto
            .announcements(QUEUE)
            .into_iter()
            .map(|(m, _)| {
                let m: Value = serde_json::from_str(&m).expect("message JSON");
                m["s3Id"].as_str().expect("an s3Id").to_owned()
            })
            .collect();
        ids.sort();
        ids
    }
}

/// A direct S3 notification for `bucket/key` (keys here need no URL encoding).
fn s3_event(bucket: &str, key: &str) -> Value {
    json!({"Records": [s3_record(bucket, key)]})
}

/// One SQS message (its `receive`th delivery) carrying the S3 notification of `bucket/key`.
fn sqs_message(id: &str, bucket: &str, key: &str, receive: u32) -> Value {
    common::sqs_message(id, &s3_event(bucket, key), receive)
}

fn batch(messages: Vec<Value>) -> Value {
    json!({ "Records": messages })
}

/// The message ids an SQS batch's answer lists in `batchItemFailures`.
fn failed_ids(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("an id").to_owned())
        .collect()
}

/// The answer's log entry for `object` (`s3://bucket/key`).
fn entry<'a>(answer: &'a Value, object: &str) -> &'a Value {
    answer["objects"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["object"] == object))
        .unwrap_or_else(|| panic!("{object} not in the answer: {answer}"))
}

const WEB: &str = "lab-web.pcap";
const VLAN: &str = "lab-vlan-ipv6.pcapng.zst";
const SNAPLEN: &str = "lab-snaplen.pcap";

#[test]
fn a_persistent_fault_fails_its_message_alone_and_transient_ones_fail_nothing() {
    let Some(py) = python() else { return };
    let lab = Lab::start(&py, &["captures", "reference"], &[WEB, VLAN, SNAPLEN]);
    let messages = |bucket: &str, receive: u32| {
        [("m-web", WEB), ("m-vlan", VLAN), ("m-snaplen", SNAPLEN)]
            .iter()
            .map(|(id, c)| sqs_message(id, bucket, &format!("in/{c}"), receive))
            .collect::<Vec<_>>()
    };

    // The reference: the same captures in another bucket, converted without a fault.
    let clean = lab.answer(&batch(messages("reference", 1)));
    assert_eq!(failed_ids(&clean), Vec::<String>::new(), "{clean}");
    assert_eq!(lab.announced().len(), 3);
    let want_items = lab.items("reference");
    let want_outputs = lab.outputs("reference");
    assert_eq!(want_items.len(), 3, "{want_items:?}");
    for c in [WEB, VLAN, SNAPLEN] {
        let id = format!("BUCKET%2Fin%2F{c}.");
        let parquet: Vec<_> = want_outputs
            .iter()
            .filter(|k| {
                k.starts_with("packets/date=") && k.contains(&id) && k.ends_with(".parquet")
            })
            .collect();
        assert_eq!(parquet.len(), 1, "{c}: {want_outputs:?}");
        let base = c.rsplit_once('.').expect("an extension").0;
        assert!(
            want_outputs.contains(&format!("csv/{base}.csv")),
            "{c}: {want_outputs:?}"
        );
    }
    assert_eq!(want_outputs.len(), 6, "{want_outputs:?}");
    lab.proxy.reset_counts();

    // lab-snaplen's item cannot be written (throttled beyond the SDK's 8 attempts); the others
    // meet faults that their clients' retries absorb.
    lab.proxy
        .inject(
            Rule::new("dynamodb:PutItem", Fault::Throttle)
                .matching(&format!("captures/in/{SNAPLEN}")),
        )
        .inject(
            Rule::new("dynamodb:PutItem", Fault::Throttle)
                .matching(&format!("captures/in/{VLAN}"))
                .times(1),
        )
        .inject(
            Rule::new("s3:PutObject", Fault::Throttle)
                .matching("lab-web")
                .times(2),
        )
        .inject(
            Rule::new("s3:GetObject", Fault::CutBody(1000))
                .matching(&format!("/captures/in/{WEB}"))
                .times(1),
        );
    let answer = lab.answer(&batch(messages("captures", 1)));
    let faults = lab.faults();
    assert_eq!(
        failed_ids(&answer),
        ["m-snaplen"],
        "{answer}\nfaults: {faults}\n{}",
        lab.lambda.log()
    );
    // Every fault fired: 8 attempts for lab-snaplen's item, 1 for lab-vlan's, 2 uploads, 1 cut.
    assert_eq!(lab.proxy.faults("dynamodb:PutItem"), 9, "{faults}");
    assert_eq!(lab.proxy.faults("s3:PutObject"), 2, "{faults}");
    assert_eq!(lab.proxy.faults("s3:GetObject"), 1, "{faults}");
    let snaplen = entry(&answer, &format!("s3://captures/in/{SNAPLEN}"));
    assert_eq!(snaplen["status"], "retry", "{answer}");
    let reason = snaplen["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("the summary item") && reason.contains("ThrottlingException"),
        "{reason}"
    );
    for c in [WEB, VLAN] {
        let e = entry(&answer, &format!("s3://captures/in/{c}"));
        assert_eq!(e["status"], "converted", "{answer}");
    }
    let items = lab.items("captures");
    let ids: Vec<&str> = items.keys().map(String::as_str).collect();
    assert_eq!(ids, [format!("in/{VLAN}"), format!("in/{WEB}")]);
    for (id, canon) in &items {
        assert_eq!(Some(canon), want_items.get(id), "{id}");
    }
    assert_eq!(
        lab.announced(),
        [format!("captures/in/{VLAN}"), format!("captures/in/{WEB}")]
    );

    // Healed, the failed message comes back (its second delivery) and succeeds.
    lab.redeliver_healed("m-snaplen", SNAPLEN);
    // One item per capture and the dataset a fault-free run writes, nothing more.
    assert_eq!(lab.items("captures"), want_items);
    assert_eq!(lab.outputs("captures"), want_outputs);
}

#[test]
fn a_failed_announcement_fails_its_record_until_it_is_published() {
    let Some(py) = python() else { return };
    let lab = Lab::start(&py, &["captures"], &[WEB, SNAPLEN]);
    let snaplen_url = format!("s3://captures/in/{SNAPLEN}");
    lab.proxy
        .inject(Rule::new("sns:Publish", Fault::InternalError).matching(SNAPLEN));

    // An SQS batch: lab-snaplen's record fails, lab-web's is announced.
    let answer = lab.answer(&batch(vec![
        sqs_message("m-web", "captures", &format!("in/{WEB}"), 1),
        sqs_message("m-snaplen", "captures", &format!("in/{SNAPLEN}"), 1),
    ]));
    assert_eq!(
        failed_ids(&answer),
        ["m-snaplen"],
        "{answer}\n{}",
        lab.lambda.log()
    );
    // The SDK's 3 attempts, all refused.
    assert_eq!(lab.proxy.faults("sns:Publish"), 3, "{}", lab.faults());
    // lab-web's one publish, lab-snaplen's three.
    assert_eq!(lab.proxy.count("sns:Publish"), 4);
    let e = entry(&answer, &snaplen_url);
    assert_eq!(e["status"], "retry", "{answer}");
    let reason = e["reason"].as_str().expect("a reason");
    assert!(
        reason.contains(&format!(
            "{snaplen_url}: converted, but announcing it on {TOPIC} failed"
        )) && reason.contains("InternalError"),
        "{reason}"
    );
    assert_eq!(lab.announced(), [format!("captures/in/{WEB}")]);
    // The outputs and the item were written before the announcement.
    let items = lab.items("captures");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        items[&format!("in/{SNAPLEN}")].contains(r#""status": {"S": "ok"}"#),
        "{items:?}"
    );
    let outputs = lab.outputs("captures");
    let snaplen_outputs: Vec<_> = outputs
        .iter()
        .filter(|k| k.contains("lab-snaplen"))
        .collect();
    assert_eq!(snaplen_outputs.len(), 2, "{outputs:?}");

    // A direct S3 notification: the invocation fails (Lambda retries it), naming the cause.
    let e = lab
        .lambda
        .invoke(&s3_event("captures", &format!("in/{SNAPLEN}")))
        .expect_err("the announcement cannot be published");
    assert!(e.contains("pcaplab.Retryable"), "{e}");
    assert!(
        e.contains(&format!(
            "{snaplen_url}: converted, but announcing it on {TOPIC} failed"
        )),
        "{e}"
    );
    assert_eq!(lab.proxy.faults("sns:Publish"), 6, "{}", lab.faults());
    assert_eq!(lab.announced(), Vec::<String>::new());
    assert!(
        lab.lambda.log().contains("announcing it on"),
        "{}",
        lab.lambda.log()
    );

    // Healed, the redelivered message is announced once; the item and keys are the same.
    lab.redeliver_healed("m-snaplen", SNAPLEN);
    assert_eq!(lab.items("captures"), items);
    assert_eq!(lab.outputs("captures"), outputs);
}

#[test]
fn a_transient_publish_fault_announces_once_and_a_lost_answer_twice() {
    let Some(py) = python() else { return };
    let lab = Lab::start(&py, &["captures"], &[WEB, VLAN]);

    // Throttled once: the SDK's second attempt publishes it.
    lab.proxy.inject(
        Rule::new("sns:Publish", Fault::Throttle)
            .matching(WEB)
            .times(1),
    );
    let answer = lab.answer(&s3_event("captures", &format!("in/{WEB}")));
    assert_eq!(answer["objects"][0]["status"], "converted", "{answer}");
    assert_eq!(lab.proxy.faults("sns:Publish"), 1, "{}", lab.faults());
    assert_eq!(lab.proxy.count("sns:Publish"), 2);
    assert_eq!(lab.announced(), [format!("captures/in/{WEB}")]);

    // Published, but the answer is lost: the SDK cannot tell that from a request that never
    // arrived and publishes again. An SNS standard topic is at-least-once anyway, so the
    // subscriber gets the announcement twice (consumers collapse duplicates by s3Id).
    lab.proxy.reset_counts();
    lab.proxy.inject(
        Rule::new("sns:Publish", Fault::DropAnswer)
            .matching(VLAN)
            .times(1),
    );
    let answer = lab.answer(&s3_event("captures", &format!("in/{VLAN}")));
    assert_eq!(answer["objects"][0]["status"], "converted", "{answer}");
    assert_eq!(lab.proxy.faults("sns:Publish"), 1, "{}", lab.faults());
    assert_eq!(lab.proxy.count("sns:Publish"), 2);
    assert_eq!(
        lab.announced(),
        [format!("captures/in/{VLAN}"), format!("captures/in/{VLAN}")]
    );
    assert_eq!(lab.items("captures").len(), 2);
}
