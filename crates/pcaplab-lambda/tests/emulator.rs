//! The real `pcaplab-lambda` binary under cargo-lambda's runtime emulator
//! (`cargo lambda watch --only-lambda-apis`, invoked with `cargo lambda invoke`), against a moto
//! server: an S3 event for a key with a space and a plus, an SQS batch with a good capture, a
//! missing object and a non-capture, a duplicate delivery, an unknown event — and the SNS
//! message, read from an SQS queue subscribed to the topic.
//!
//! Needs `$PCAPLAB_PYTHON` (the project venv: boto3, moto[server], pyarrow and cargo-lambda
//! next to it); see pcaplab-testkit for what happens without it.

use std::collections::BTreeMap;

use pcaplab_testkit::{Moto, fields, own_captures, python};
use serde_json::{Value, json};

mod common;
use common::{Lambda, QUEUE, s3_record};

fn sqs_message(id: &str, body: &Value) -> Value {
    common::sqs_message(id, body, 1)
}

/// Items by s3Id: (status, packets, every attribute but processed_at as canonical JSON).
fn items(moto: &Moto) -> BTreeMap<String, (String, String, String)> {
    let out = moto.py(
        r#"
for page in ddb.get_paginator("scan").paginate(TableName="PacketCaptures", ConsistentRead=True):
    for it in page["Items"]:
        canon = json.dumps({k: v for k, v in it.items() if k != "processed_at"}, sort_keys=True)
        emit("item", it["s3Id"]["S"], it["status"]["S"], it.get("packets", {}).get("N", "-"), canon)
"#,
        &[],
    );
    fields(&out, "item")
        .into_iter()
        .map(|f| (f[0].clone(), (f[1].clone(), f[2].clone(), f[3].clone())))
        .collect()
}

fn keys(moto: &Moto) -> Vec<String> {
    let out = moto.py(
        "for o in s3.list_objects_v2(Bucket='captures').get('Contents', []): emit('key', o['Key'])",
        &[],
    );
    fields(&out, "key")
        .into_iter()
        .map(|f| f[0].clone())
        .collect()
}

/// SNS messages delivered to the subscribed queue: their JSON and subject.
fn announcements(moto: &Moto) -> Vec<(Value, String)> {
    moto.announcements(QUEUE)
        .into_iter()
        .map(|(m, subject)| (serde_json::from_str(&m).expect("message JSON"), subject))
        .collect()
}

#[test]
fn the_lambda_binary_handles_s3_and_sqs_events_under_the_emulator() {
    let Some(py) = python() else { return };
    let moto = Moto::start(&py);
    let own = own_captures();
    moto.py(
        r#"
s3.create_bucket(Bucket="captures")
create_table()
announce_to(sys.argv[1])
s3.upload_file(sys.argv[2], "captures", "in/lab web+1.pcap")
s3.upload_file(sys.argv[3], "captures", "in/two.pcapng.zst")
s3.put_object(Bucket="captures", Key="in/notes.txt", Body=b"not a capture")
"#,
        &[
            QUEUE,
            own.join("lab-web.pcap").to_str().expect("utf8"),
            own.join("lab-vlan-ipv6.pcapng.zst").to_str().expect("utf8"),
        ],
    );
    let lambda = Lambda::start(&moto, &py, &moto.endpoint());

    // 1. The lab's wiring: an S3 notification, key URL-encoded (`+` a space, `%2B` a plus).
    let event = json!({"Records": [s3_record("captures", "in/lab+web%2B1.pcap")]});
    let answer = lambda
        .invoke(&event)
        .unwrap_or_else(|e| panic!("{e}\n{}", lambda.log()));
    assert_eq!(answer["objects"][0]["status"], "converted", "{answer}");
    assert_eq!(
        answer["objects"][0]["object"],
        "s3://captures/in/lab web+1.pcap"
    );
    assert_eq!(answer["objects"][0]["packets"], 33);
    let items_1 = items(&moto);
    let (status, packets, _) = &items_1["captures/in/lab web+1.pcap"];
    assert_eq!((status.as_str(), packets.as_str()), ("ok", "33"));
    let keys_1 = keys(&moto);
    let parquet: Vec<&String> = keys_1
        .iter()
        .filter(|k| k.starts_with("packets/date=2024-03-01/captures%2Fin%2Flab web+1.pcap."))
        .collect();
    assert_eq!(parquet.len(), 1, "{keys_1:?}");
    let rows = moto.py(
        r#"
import io, pyarrow.parquet as pq
body = s3.get_object(Bucket="captures", Key=sys.argv[1])["Body"].read()
print(pq.read_table(io.BytesIO(body)).num_rows, flush=True)
# pyarrow's threads can abort the interpreter's shutdown after boto3 ran ("terminate called
# without an active exception"); the answer is out, so leave at once.
os._exit(0)
"#,
        &[parquet[0]],
    );
    assert_eq!(rows.trim(), "33");
    let csv = moto.py(
        "sys.stdout.write(s3.get_object(Bucket='captures', Key='csv/lab web+1.csv')['Body'].read().decode())",
        &[],
    );
    assert!(csv.starts_with("src,dst,len,proto\n"), "{csv}");
    assert!(csv.lines().count() > 33, "{csv}");
    // The announcement, through SNS → SQS.
    let sent = announcements(&moto);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (message, subject) = &sent[0];
    assert_eq!(subject, "pcaplab: lab web+1.pcap converted, 33 packets");
    assert_eq!(message["s3Id"], "captures/in/lab web+1.pcap");
    assert_eq!(message["packets"], 33);
    assert_eq!(message["status"], "ok");
    assert_eq!(message["first_ts"], "2024-03-01T12:00:00.000000000Z");
    assert_eq!(
        message["outputs"]["parquet"],
        format!("s3://captures/{}", parquet[0])
    );
    assert_eq!(
        message["outputs"]["lab-csv"],
        "s3://captures/csv/lab web+1.csv"
    );

    // 2. A duplicate delivery: the same keys and the same item, announced again.
    lambda
        .invoke(&event)
        .unwrap_or_else(|e| panic!("{e}\n{}", lambda.log()));
    assert_eq!(keys(&moto), keys_1);
    assert_eq!(
        items(&moto)["captures/in/lab web+1.pcap"].2,
        items_1["captures/in/lab web+1.pcap"].2
    );
    assert_eq!(announcements(&moto).len(), 1);

    // 3. An SQS batch: a good capture, a missing object, a non-capture. Only the missing one
    //    is redelivered; the non-capture is recorded as failed and acknowledged.
    let batch = json!({"Records": [
        sqs_message("m-good", &json!({"Records": [s3_record("captures", "in/two.pcapng.zst")]})),
        sqs_message("m-missing", &json!({"Records": [s3_record("captures", "in/missing.pcap")]})),
        sqs_message("m-notes", &json!({"Records": [s3_record("captures", "in/notes.txt")]})),
    ]});
    let answer = lambda
        .invoke(&batch)
        .unwrap_or_else(|e| panic!("{e}\n{}", lambda.log()));
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "m-missing"}]),
        "{answer}"
    );
    let all = items(&moto);
    assert_eq!(all["captures/in/two.pcapng.zst"].0, "ok");
    assert_eq!(all["captures/in/two.pcapng.zst"].1, "26");
    assert_eq!(all["captures/in/notes.txt"].0, "failed");
    assert!(
        all["captures/in/notes.txt"]
            .2
            .contains("not a packet capture"),
        "{:?}",
        all["captures/in/notes.txt"]
    );
    assert!(!all.contains_key("captures/in/missing.pcap"));
    let sent = announcements(&moto);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0["s3Id"], "captures/in/two.pcapng.zst");

    // 4. S3's test event is acknowledged; an unknown event is a clear error.
    let answer = lambda
        .invoke(&json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "captures"}))
        .unwrap_or_else(|e| panic!("{e}\n{}", lambda.log()));
    assert_eq!(answer["objects"], json!([]));
    let e = lambda
        .invoke(&json!({"hello": "world"}))
        .expect_err("unknown event");
    assert!(e.contains("unrecognised event"), "{e}");
    assert!(e.contains("pcaplab.UnrecognisedEvent"), "{e}");

    // The function said how long its initialisation took.
    assert!(lambda.log().contains("init_ms="), "{}", lambda.log());
}
