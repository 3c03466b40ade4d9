//! One capture converted in ranges by the Lambda function's state machine roles, under
//! cargo-lambda's emulator against moto, driven as Step Functions would drive them:
//!
//! - an S3 event for a capture over the threshold is routed: an execution of the state
//!   machine is started (in moto) with the object as its input, once per upload;
//! - the plan writes the manifest; every line is invoked as the Distributed Map would invoke
//!   it, several at once; the merge reads result files shaped like the Map's ResultWriter
//!   output;
//! - the dataset (Parquet parts, lab CSV parts, flows), the summary item and the announcement
//!   are the unsplit conversion's, and the run's own objects are gone;
//! - a range whose download keeps failing is retryable and commits nothing; a failed run
//!   deletes its parts and records the failure; a range of a replaced object says it was
//!   superseded.
//!
//! Needs `$PCAPLAB_PYTHON` and `$PCAPLAB_CORPUS`; see pcaplab-testkit.

use std::collections::BTreeMap;

use pcaplab_testkit::faults::{Fault, FaultProxy, Rule};
use pcaplab_testkit::{Moto, corpus, fields, python};
use serde_json::{Value, json};

mod common;
use common::{Lambda, QUEUE, s3_record};

const FORMATS: &str = "parquet,lab-csv,flows";

/// The items by s3Id, as JSON (DynamoDB's attribute values).
fn items(moto: &Moto) -> BTreeMap<String, Value> {
    let out = moto.py(
        "for it in items(): emit('item', it['s3Id']['S'], json.dumps(it, sort_keys=True))",
        &[],
    );
    fields(&out, "item")
        .into_iter()
        .map(|f| {
            (
                f[0].clone(),
                serde_json::from_str(&f[1]).expect("item JSON"),
            )
        })
        .collect()
}

fn keys(moto: &Moto, prefix: &str) -> Vec<String> {
    let out = moto.py("dump_keys('captures', sys.argv[1])", &[prefix]);
    fields(&out, "key")
        .into_iter()
        .map(|f| f[0].clone())
        .collect()
}

/// Download both datasets and compare them with DuckDB: the split's Parquet parts read as one
/// table hold the whole conversion's frames; its lab CSV parts the whole's rows; the flows
/// are the same.
const COMPARE: &str = r#"
import tempfile, glob, duckdb
split_id, whole_id, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = tempfile.mkdtemp()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="captures"):
    for o in page.get("Contents", []):
        k = o["Key"]
        if k.startswith(("packets/", "flows/", "csv/")):
            dest = os.path.join(d, k)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            s3.download_file("captures", k, dest)
con = duckdb.connect()
q = lambda sql: con.execute(sql).fetchall()
cols = "frame_number, epoch_ns(ts), interface_id, cap_len, wire_len, record_offset, record_len, src_ip, dst_ip, ip_proto, ttl, tls_sni, dns_qname"
def frames(esc):
    files = sorted(glob.glob(f"{d}/packets/*/{esc}*.parquet"))
    return files, q(f"select {cols} from read_parquet({files!r}) order by frame_number")
fs, a = frames(split_id)
fw, b = frames(whole_id)
assert len(fs) == parts and len(fw) == 1, (fs, fw)
assert len(a) == len(b) and a == b, (len(a), len(b))
lab_s = q(f"select count(*) from read_csv('{d}/csv/*.part-*.csv', header=true)")[0][0]
lab_w = q(f"select count(*) from read_csv('{d}/csv/whole*.csv', header=true)")[0][0]
assert lab_s == lab_w, (lab_s, lab_w)
fcols = "community_id, first_frame, last_frame, packets, bytes, history, conn_state, end_reason, service"
fa = q(f"select {fcols} from read_parquet('{d}/flows/*/{split_id}*.parquet') order by all")
fb = q(f"select {fcols} from read_parquet('{d}/flows/*/{whole_id}*.parquet') order by all")
assert fa == fb, (len(fa), len(fb))
print("ok", len(a), len(fa), lab_s, flush=True)
os._exit(0)
"#;

/// Write result files shaped like the Distributed Map's ResultWriter output under `prefix`
/// (`<prefix>/<map run>/manifest.json` listing `SUCCEEDED_n.json` files, each an array of the
/// child executions with their Input and Output as JSON strings), the answers spread over two
/// files; returns the manifest's key.
const RESULTS: &str = r#"
prefix, lines, answers = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
run = "2f6c5a4e-0000-4000-8000-000000000001"
base = f"{prefix}{run}/"
entries = [{
    "ExecutionArn": f"arn:aws:states:us-east-1:123456789012:execution:pcaplab-split/Ranges:{run}:{i}",
    "Input": json.dumps(line), "InputDetails": {"Included": True},
    "Name": f"{run}:{i}", "Output": json.dumps(ans), "OutputDetails": {"Included": True},
    "RedriveCount": 0, "RedriveStatus": "NOT_REDRIVABLE",
    "StartDate": "2026-12-04T12:00:00.000Z", "StopDate": "2026-12-04T12:00:01.000Z",
    "Status": "SUCCEEDED"} for i, (line, ans) in enumerate(zip(lines, answers))]
half = (len(entries) + 1) // 2
files = []
for n, chunk in enumerate([entries[:half], entries[half:]]):
    key = f"{base}SUCCEEDED_{n}.json"
    body = json.dumps(chunk).encode()
    s3.put_object(Bucket="captures", Key=key, Body=body)
    files.append({"Key": key, "Size": len(body)})
manifest = {"DestinationBucket": "captures",
            "MapRunArn": f"arn:aws:states:us-east-1:123456789012:mapRun:pcaplab-split/Ranges:{run}",
            "ResultFiles": {"FAILED": [], "PENDING": [], "SUCCEEDED": files}}
s3.put_object(Bucket="captures", Key=f"{base}manifest.json", Body=json.dumps(manifest).encode())
print(f"{base}manifest.json")
"#;

/// Invoke every manifest line, `threads` at a time, as the Map would: their answers, in
/// manifest order.
fn run_ranges(lambda: &Lambda, lines: &[Value], threads: usize) -> Vec<Value> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let answers = std::sync::Mutex::new(vec![Value::Null; lines.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(line) = lines.get(i) else { break };
                    let answer = lambda
                        .invoke(line)
                        .unwrap_or_else(|e| panic!("range {i}: {e}\n{}", lambda.log()));
                    answers.lock().expect("answers")[i] = answer;
                }
            });
        }
    });
    answers.into_inner().expect("answers")
}

fn manifest_lines(moto: &Moto, plan: &Value) -> Vec<Value> {
    let text = moto.py(
        "sys.stdout.write(s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read().decode())",
        &[
            plan["manifest"]["Bucket"].as_str().expect("bucket"),
            plan["manifest"]["Key"].as_str().expect("key"),
        ],
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a manifest line is JSON"))
        .collect()
}

#[test]
fn a_capture_in_ranges_through_the_state_machine_roles_is_the_whole_conversion() {
    let Some(dir) = corpus() else { return };
    let Some(py) = python() else { return };
    let moto = Moto::start(&py);
    // Mixed Ethernet traffic (TCP, UDP, DNS, TLS), 1.1 MiB, no IP fragments.
    let capture = dir.join("pcap-parser__wireshark_samples-test.pcapng");
    let machine = moto.py(
        r#"
s3.create_bucket(Bucket="captures")
create_table()
announce_to(sys.argv[1])
body = open(sys.argv[2], "rb").read()
for key in ["in/whole.pcapng", "in/split.pcapng", "in/fail.pcapng"]:
    s3.put_object(Bucket="captures", Key=key, Body=body)
sfn = boto3.client("stepfunctions")
m = sfn.create_state_machine(name="pcaplab-split", roleArn="arn:aws:iam::123456789012:role/sfn",
    definition=json.dumps({"StartAt": "Plan", "States": {"Plan": {"Type": "Pass", "End": True}}}))
print(m["stateMachineArn"])
"#,
        &[QUEUE, capture.to_str().expect("utf8")],
    );
    let machine = machine.trim().to_owned();

    // 1. The unsplit conversion, by the function without a state machine.
    {
        let lambda = Lambda::start_with(
            &moto,
            &py,
            &moto.endpoint(),
            &[("PCAPLAB_FORMATS", FORMATS)],
        );
        let answer = lambda
            .invoke(&json!({"Records": [s3_record("captures", "in/whole.pcapng")]}))
            .unwrap_or_else(|e| panic!("{e}\n{}", lambda.log()));
        assert_eq!(answer["objects"][0]["status"], "converted", "{answer}");
    }
    // The function that converts in ranges talks to moto through a fault proxy.
    let proxy = FaultProxy::start(&moto.endpoint());
    let lambda = Lambda::start_with(
        &moto,
        &py,
        &proxy.endpoint(),
        &[
            ("PCAPLAB_FORMATS", FORMATS),
            ("PCAPLAB_STATE_MACHINE_ARN", &machine),
            ("PCAPLAB_SPLIT_THRESHOLD", "512KiB"),
            ("PCAPLAB_SPLIT_RANGE", "100KiB"),
        ],
    );
    let invoke = |event: &Value| {
        lambda
            .invoke(event)
            .unwrap_or_else(|e| panic!("{event}: {e}\n{}", lambda.log()))
    };

    // 2. Routed: an execution with the object (as S3 describes it) as its input, once per
    // upload — a redelivered event finds it started.
    let routed = invoke(&json!({"Records": [s3_record("captures", "in/split.pcapng")]}));
    assert_eq!(routed["objects"][0]["status"], "routed", "{routed}");
    let execution = routed["objects"][0]["execution"]
        .as_str()
        .expect("execution")
        .to_owned();
    let input: Value = serde_json::from_str(&moto.py(
        "print(boto3.client('stepfunctions').describe_execution(executionArn=sys.argv[1])['input'])",
        &[&execution],
    ))
    .expect("input JSON");
    let size = std::fs::metadata(&capture).expect("capture").len();
    assert_eq!(input["object"]["bucket"], "captures");
    assert_eq!(input["object"]["key"], "in/split.pcapng");
    assert_eq!(input["object"]["size"], size);
    assert!(input["object"]["etag"].is_string(), "{input}");
    let again = invoke(&json!({"Records": [s3_record("captures", "in/split.pcapng")]}));
    assert_eq!(again["objects"][0]["status"], "routed", "{again}");
    let executions = moto.py(
        "print(len(boto3.client('stepfunctions').list_executions(stateMachineArn=sys.argv[1])['executions']))",
        &[&machine],
    );
    assert_eq!(executions.trim(), "1", "one execution per upload");
    // The same bytes uploaded again (the same ETag, a later modification time: S3 says it in
    // whole seconds) are another upload, and start another execution.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    moto.py(
        "s3.put_object(Bucket='captures', Key='in/split.pcapng', Body=open(sys.argv[1], 'rb').read())",
        &[capture.to_str().expect("utf8")],
    );
    let again = invoke(&json!({"Records": [s3_record("captures", "in/split.pcapng")]}));
    assert_eq!(again["objects"][0]["status"], "routed", "{again}");
    let executions = moto.py(
        "print(len(boto3.client('stepfunctions').list_executions(stateMachineArn=sys.argv[1])['executions']))",
        &[&machine],
    );
    assert_eq!(
        executions.trim(),
        "2",
        "an upload of the same bytes again is converted again"
    );

    // 3. Plan: 1.1 MiB in ranges of 100 KiB, every range owning a record start.
    let plan = invoke(&json!({"pcaplab": "plan", "object": input["object"]}));
    let lines = manifest_lines(&moto, &plan);
    assert_eq!(plan["ranges"], lines.len(), "{plan}");
    assert_eq!(lines.len(), 12, "{plan}");
    let work = plan["work"]["Prefix"]
        .as_str()
        .expect("work prefix")
        .to_owned();
    assert!(
        work.starts_with("pcaplab-split/") && work.ends_with('/'),
        "{work}"
    );
    assert_eq!(plan["manifest"]["Key"], format!("{work}manifest.jsonl"));
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["pcaplab"], "range");
        assert_eq!(line["task"]["part"], i);
        assert!(
            line.to_string().len() < 256 * 1024,
            "a Map item is at most 256 KiB"
        );
    }

    // 4. A range whose download keeps failing mid-body (after the S3 client's own retries)
    // fails as retryable and commits nothing — not "damaged at" the cut.
    proxy.inject(Rule::new("s3:GetObject", Fault::CutBody(5000)).matching("in/split.pcapng"));
    let e = lambda.invoke(&lines[2]).expect_err("a cut download");
    assert!(e.contains("pcaplab.Retryable"), "{e}");
    assert!(
        !keys(&moto, "").iter().any(|k| k.contains("part-00002")),
        "nothing of the failed range is committed"
    );
    proxy.heal();

    // The ranges, three at a time (the Map's retry of range 2 among them); then the Map's
    // result files; then the merge.
    let answers = run_ranges(&lambda, &lines, 3);
    let frames: u64 = answers
        .iter()
        .map(|a| a["frames"].as_u64().expect("frames"))
        .sum();
    assert_eq!(frames, 5898, "{answers:?}");
    let results_key = moto.py(
        RESULTS,
        &[
            &work,
            &serde_json::to_string(&lines).expect("json"),
            &serde_json::to_string(&answers).expect("json"),
        ],
    );
    let merged = invoke(&json!({
        "pcaplab": "merge",
        "plan": plan["merge"],
        "results": {"Bucket": "captures", "Key": results_key.trim()},
    }));
    assert_eq!(merged["status"], "converted", "{merged}");
    assert_eq!(merged["packets"], 5898, "{merged}");
    assert_eq!(merged["parts"], 12, "{merged}");

    // The dataset is the whole conversion's.
    let esc = |id: &str| id.replace('/', "%2F");
    let compared = moto.py(
        COMPARE,
        &[
            &esc("captures/in/split.pcapng"),
            &esc("captures/in/whole.pcapng"),
            "12",
        ],
    );
    assert!(compared.starts_with("ok 5898 "), "{compared}");
    // The item too, but for what names the object and its outputs, and the parts.
    let all = items(&moto);
    let (mut split, mut whole) = (
        all["captures/in/split.pcapng"].clone(),
        all["captures/in/whole.pcapng"].clone(),
    );
    assert_eq!(split["parts"], json!({"N": "12"}), "{split}");
    for item in [&mut split, &mut whole] {
        let m = item.as_object_mut().expect("item");
        for k in [
            "s3Id",
            "object",
            "capture",
            "outputs",
            "parts",
            "processed_at",
            "last_modified",
        ] {
            m.remove(k);
        }
    }
    let differing: Vec<&String> = split
        .as_object()
        .expect("item")
        .keys()
        .chain(whole.as_object().expect("item").keys())
        .filter(|k| split.get(k.as_str()) != whole.get(k.as_str()))
        .collect();
    assert!(differing.is_empty(), "the items differ in {differing:?}");
    // Announced like a converted capture.
    let sent: Vec<Value> = moto
        .announcements(QUEUE)
        .into_iter()
        .map(|(m, _)| serde_json::from_str(&m).expect("message"))
        .collect();
    let ours: Vec<&Value> = sent
        .iter()
        .filter(|m| m["key"] == "in/split.pcapng")
        .collect();
    assert_eq!(ours.len(), 1, "{sent:?}");
    assert_eq!(ours[0]["packets"], 5898);
    // The run's own objects are gone: manifest, flow parts, summaries, the Map's results.
    assert_eq!(keys(&moto, "pcaplab-split/"), Vec::<String>::new());

    // 5. A failed run: planned, one range converted, then the failure recorded — its parts
    // and work objects deleted, the item failed with the reason.
    let failing = json!({"bucket": "captures", "key": "in/fail.pcapng"});
    let plan = invoke(&json!({"pcaplab": "plan", "object": failing}));
    let lines = manifest_lines(&moto, &plan);
    invoke(&lines[0]);
    assert!(
        keys(&moto, "packets/")
            .iter()
            .any(|k| k.contains("fail.pcapng") && k.contains(".part-00000.")),
        "the range wrote its part"
    );
    let done = invoke(&json!({"pcaplab": "failed", "execution": {
        "object": failing,
        "plan": plan,
        "error": {"Error": "States.TaskFailed", "Cause": "range 3 timed out"},
    }}));
    assert_eq!(done["status"], "failed (recorded)", "{done}");
    assert!(
        !keys(&moto, "")
            .iter()
            .any(|k| k.contains("fail.") && k != "in/fail.pcapng"),
        "{:?}\n{}",
        keys(&moto, ""),
        lambda.log()
    );
    assert_eq!(keys(&moto, "pcaplab-split/"), Vec::<String>::new());
    let item = &items(&moto)["captures/in/fail.pcapng"];
    assert_eq!(item["status"]["S"], "failed", "{item}");
    let reason = item["reason"]["S"].as_str().expect("reason");
    assert!(
        reason.contains("States.TaskFailed") && reason.contains("range 3 timed out"),
        "{reason}"
    );

    // 6. A range of an object replaced since the plan: superseded, nothing written.
    let plan = invoke(&json!({"pcaplab": "plan", "object": failing}));
    let lines = manifest_lines(&moto, &plan);
    moto.py(
        "s3.put_object(Bucket='captures', Key='in/fail.pcapng', Body=open(sys.argv[1], 'rb').read()[:300000])",
        &[capture.to_str().expect("utf8")],
    );
    let e = lambda
        .invoke(&lines[1])
        .expect_err("a range of a replaced object");
    assert!(e.contains("pcaplab.Superseded"), "{e}");
    assert!(
        !keys(&moto, "packets/")
            .iter()
            .any(|k| k.contains("fail.pcapng")),
        "nothing written"
    );
    // An unknown role is refused by name.
    let e = lambda
        .invoke(&json!({"pcaplab": "dance"}))
        .expect_err("an unknown role");
    assert!(e.contains("unknown role \"dance\""), "{e}");
}
