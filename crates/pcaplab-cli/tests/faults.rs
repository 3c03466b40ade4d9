//! `pcaplab convert s3://… --out s3://… --dynamodb-table` with S3 and DynamoDB failing under
//! it: the testkit's fault-injecting proxy between the binary and moto.
//!
//! - Transient faults of every kind (S3 `503 SlowDown` and `500`s on reads, uploads, multipart
//!   steps; a download cut mid-body; connections dropped before a request arrives and after it
//!   took effect; DynamoDB throttling and `500`s, an item written whose answer was lost): the run
//!   succeeds, and its dataset (every object's bytes) and its items equal a fault-free run's.
//! - Persistent faults on one capture's download and on another's item: exit 1, each named with
//!   its retryable error, the other captures converted; nothing half-written is visible.
//! - A changed object: the previous version's outputs leave the dataset even when the new
//!   item's write is retried after a lost answer, and when S3 refuses to delete them (the run
//!   fails retryable, the item lists them as `stale_outputs`, the next run deletes them), and
//!   when the new version is not a capture at all (recorded as failed).
//!
//! Needs `$PCAPLAB_PYTHON` (boto3, moto[server]); see pcaplab-testkit.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use pcaplab_testkit::{Fault, FaultProxy, Moto, Rule, fields, own_captures, python, udp_capture};

/// The formats compared: every byte of each is deterministic (the DynamoDB JSON lines carry
/// `processed_at`, so items are compared in the table instead).
const FORMATS: &str = "parquet,flows,lab-csv";

struct Lab {
    moto: Moto,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
}

impl Lab {
    /// moto with the `captures` and `results` buckets and the `tables`, a proxy in front of it,
    /// and the captures uploaded under `in/`: the project's own and a generated one big
    /// enough for a multipart output (`in/big.pcap`, 11 MB; its lab CSV is 14 MB).
    fn start(python: &Path, tables: &[&str]) -> Lab {
        let moto = Moto::start(python);
        let proxy = FaultProxy::start(&moto.endpoint());
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.pcap");
        udp_capture(&big, 150_000);
        let mut tables_py = String::new();
        for t in tables {
            tables_py.push_str(&format!("create_table({t:?})\n"));
        }
        moto.py(
            &format!("s3.create_bucket(Bucket='captures'); s3.create_bucket(Bucket='results')\n{tables_py}"),
            &[],
        );
        let own = own_captures();
        let mut files: Vec<_> = [
            "lab-web.pcap",
            "lab-web.pcap.gz",
            "lab-vlan-ipv6.pcapng.zst",
            "lab-snaplen.pcap",
        ]
        .iter()
        .map(|f| (own.join(f), format!("in/{f}")))
        .collect();
        files.push((big, "in/big.pcap".into()));
        moto.upload("captures", &files);
        Lab { moto, proxy, dir }
    }

    /// `pcaplab ARGS` through the proxy.
    fn pcaplab(&self, args: &[&str]) -> Output {
        self.moto
            .env_via(
                &mut Command::new(env!("CARGO_BIN_EXE_pcaplab")),
                &self.proxy.endpoint(),
            )
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run pcaplab")
    }

    fn convert(&self, prefix: &str, table: &str) -> Output {
        self.pcaplab(&[
            "convert",
            "s3://captures/in/",
            "--out",
            &format!("s3://results/{prefix}/"),
            "--dynamodb-table",
            table,
            "--format",
            FORMATS,
            "--jobs",
            "2",
        ])
    }

    /// Every object under `results/<prefix>/`: relative key → (MD5 of its bytes, size); and
    /// the multipart uploads still open there.
    fn dataset(&self, prefix: &str) -> (BTreeMap<String, (String, u64)>, Vec<String>) {
        let out = self.moto.py(
            r#"
import hashlib
prefix = sys.argv[1]
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="results", Prefix=prefix):
    for o in page.get("Contents", []):
        body = s3.get_object(Bucket="results", Key=o["Key"])["Body"].read()
        emit("obj", o["Key"][len(prefix):], hashlib.md5(body).hexdigest(), len(body))
for u in s3.list_multipart_uploads(Bucket="results", Prefix=prefix).get("Uploads", []):
    emit("open", u["Key"])
"#,
            &[&format!("{prefix}/")],
        );
        let objects = fields(&out, "obj")
            .into_iter()
            .map(|f| (f[0].clone(), (f[1].clone(), f[2].parse().expect("size"))))
            .collect();
        let open = fields(&out, "open")
            .into_iter()
            .map(|f| f[0].clone())
            .collect();
        (objects, open)
    }

    /// The items of `table`: s3Id → every attribute but `processed_at`, canonical JSON, with
    /// the output prefix `results/<prefix>/` written as `results/…/`.
    fn items(&self, table: &str, prefix: &str) -> BTreeMap<String, String> {
        let ours = format!("s3://results/{prefix}/");
        self.moto
            .items_in(table)
            .into_iter()
            .map(|(id, item)| (id, item.canon.replace(&ours, "s3://results/…/")))
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn transient_faults_of_every_kind_leave_the_same_dataset_and_items() {
    let Some(py) = python() else { return };
    let lab = Lab::start(&py, &["Clean", "Faulted"]);

    let clean = lab.convert("clean", "Clean");
    assert!(clean.status.success(), "{}", text(&clean));
    let ops_clean: BTreeMap<String, usize> =
        lab.proxy.seen().iter().fold(BTreeMap::new(), |mut m, s| {
            *m.entry(s.op.clone()).or_default() += 1;
            m
        });
    // The run uses the operations faulted below (a multipart upload for the big lab CSV).
    for op in [
        "s3:GetObject",
        "s3:PutObject",
        "s3:CreateMultipartUpload",
        "s3:UploadPart",
        "s3:CompleteMultipartUpload",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    ] {
        assert!(ops_clean.contains_key(op), "{op} not used: {ops_clean:?}");
    }
    lab.proxy.reset_counts();

    // Each kind of fault, a few times, on the run that writes to `faulted/`.
    let injected = [
        // A download cut after 3 MB (of 11), another refused twice.
        (
            Rule::new("s3:GetObject", Fault::CutBody(3 << 20))
                .matching("big.pcap")
                .times(1),
            1,
        ),
        (
            Rule::new("s3:GetObject", Fault::Throttle)
                .matching("lab-web.pcap.gz")
                .times(2),
            2,
        ),
        (
            Rule::new("s3:GetObject", Fault::Drop)
                .matching("lab-snaplen")
                .times(1),
            1,
        ),
        // Uploads: 503 SlowDown, 500, a connection reset before the part arrived.
        (Rule::new("s3:PutObject", Fault::Throttle).times(3), 3),
        (
            Rule::new("s3:CreateMultipartUpload", Fault::InternalError).times(1),
            1,
        ),
        (Rule::new("s3:UploadPart", Fault::Throttle).times(2), 2),
        (Rule::new("s3:UploadPart", Fault::Drop).times(1), 1),
        (
            Rule::new("s3:CompleteMultipartUpload", Fault::InternalError).times(1),
            1,
        ),
        (
            Rule::new("s3:CompleteMultipartUpload", Fault::DropAnswer).times(1),
            1,
        ),
        (Rule::new("s3:PutObject", Fault::DropAnswer).times(1), 1),
        // A slow answer (well inside the clients' timeouts).
        (
            Rule::new("s3:GetObject", Fault::Delay(Duration::from_millis(800)))
                .matching("lab-vlan-ipv6")
                .times(1),
            1,
        ),
        // The item read before converting: throttled, then a 500.
        (Rule::new("dynamodb:GetItem", Fault::Throttle).times(2), 2),
        (
            Rule::new("dynamodb:GetItem", Fault::InternalError).times(1),
            1,
        ),
        // Items: throttled, a 500, and one written whose answer was lost (its retry must
        // not be refused as stale).
        (Rule::new("dynamodb:PutItem", Fault::Throttle).times(2), 2),
        (
            Rule::new("dynamodb:PutItem", Fault::InternalError).times(1),
            1,
        ),
        (
            Rule::new("dynamodb:PutItem", Fault::DropAnswer)
                .matching("lab-web.pcap\"")
                .times(1),
            1,
        ),
    ];
    for (rule, _) in &injected {
        lab.proxy.inject(rule.clone());
    }
    let faulted = lab.convert("faulted", "Faulted");
    let faults: BTreeMap<String, usize> = lab
        .proxy
        .seen()
        .iter()
        .filter(|s| s.fault.is_some())
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(format!("{} {:?}", s.op, s.fault)).or_default() += 1;
            m
        });
    assert!(
        faulted.status.success(),
        "{}\nfaults: {faults:?}",
        text(&faulted)
    );
    // Every fault happened as scripted.
    let expected: usize = injected.iter().map(|(_, n)| n).sum();
    assert_eq!(faults.values().sum::<usize>(), expected, "{faults:?}");
    // The cut download went on from where it was cut: a ranged GET (206).
    let big: Vec<(Option<Fault>, Option<u16>)> = lab
        .proxy
        .seen()
        .iter()
        .filter(|s| s.op == "s3:GetObject" && s.subject.ends_with("/big.pcap"))
        .map(|s| (s.fault, s.status))
        .collect();
    assert_eq!(
        big,
        [
            (Some(Fault::CutBody(3 << 20)), Some(200)),
            (None, Some(206))
        ],
        "the big capture's GETs"
    );

    // The same dataset, byte for byte, and nothing left half-done.
    let (want, open_clean) = lab.dataset("clean");
    let (got, open) = lab.dataset("faulted");
    assert!(
        open_clean.is_empty() && open.is_empty(),
        "open uploads: {open:?}"
    );
    assert_eq!(got, want, "the faulted run's dataset differs");
    assert!(want.len() >= 15, "{want:?}");
    assert!(
        want.get("csv/big.csv")
            .is_some_and(|(_, size)| *size > 8 << 20),
        "the big lab CSV is a multipart upload: {want:?}"
    );
    // The same items, one per capture.
    let want = lab.items("Clean", "clean");
    assert_eq!(want.len(), 5, "{want:?}");
    assert_eq!(lab.items("Faulted", "faulted"), want);
}

#[test]
fn persistent_faults_fail_their_capture_alone_and_say_it_is_retryable() {
    let Some(py) = python() else { return };
    let lab = Lab::start(&py, &["PacketCaptures"]);
    // lab-snaplen.pcap cannot be read; lab-vlan-ipv6's item cannot be written.
    lab.proxy
        .inject(Rule::new("s3:GetObject", Fault::InternalError).matching("in/lab-snaplen.pcap"));
    lab.proxy.inject(
        Rule::new("dynamodb:PutItem", Fault::Throttle).matching("lab-vlan-ipv6.pcapng.zst"),
    );
    let o = lab.convert("run", "PacketCaptures");
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let failed: Vec<&str> = stderr.lines().filter(|l| l.contains("failed  ")).collect();
    assert_eq!(failed.len(), 2, "{all}");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("s3://captures/in/lab-snaplen.pcap")
                && l.contains("InternalError")
                && l.ends_with("(retryable)")),
        "{all}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.contains("s3://captures/in/lab-vlan-ipv6.pcapng.zst")
                && l.contains("ThrottlingException")
                && l.ends_with("(retryable)")),
        "{all}"
    );
    assert!(stderr.contains("3 converted, 2 failed"), "{all}");
    // The clients retried before giving up.
    assert!(
        lab.proxy.faults("s3:GetObject") > 3,
        "{:?}",
        lab.proxy.seen()
    );
    assert!(
        lab.proxy.faults("dynamodb:PutItem") >= 8,
        "{:?}",
        lab.proxy.seen()
    );

    // The others have their items and outputs; the unreadable one has neither; the one whose
    // item failed has its outputs (committed first) and no item: a retry rewrites the same keys.
    let items = lab.items("PacketCaptures", "run");
    let ids: Vec<&str> = items.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "captures/in/big.pcap",
            "captures/in/lab-web.pcap",
            "captures/in/lab-web.pcap.gz"
        ]
    );
    let (objects, open) = lab.dataset("run");
    assert!(open.is_empty(), "open uploads: {open:?}");
    assert!(
        !objects.keys().any(|k| k.contains("lab-snaplen")),
        "{objects:?}"
    );
    assert!(
        objects.contains_key("csv/lab-vlan-ipv6.pcapng.csv"),
        "{objects:?}"
    );

    // Healed, a second run converts the two and leaves one copy of each output.
    lab.proxy.heal();
    let again = lab.convert("run", "PacketCaptures");
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(lab.items("PacketCaptures", "run").len(), 5);
    let (after, _) = lab.dataset("run");
    for (key, v) in &objects {
        assert_eq!(after.get(key), Some(v), "{key} changed");
    }
    assert_eq!(
        after.keys().filter(|k| k.contains("lab-vlan-ipv6")).count(),
        objects
            .keys()
            .filter(|k| k.contains("lab-vlan-ipv6"))
            .count(),
        "{after:?}"
    );
}

#[test]
fn a_previous_versions_outputs_are_deleted_even_when_s3_or_dynamodb_fail_on_the_way() {
    let Some(py) = python() else { return };
    let lab = Lab::start(&py, &["PacketCaptures"]);
    let own = own_captures();
    let put = |file: &str| {
        lab.moto
            .upload("captures", &[(own.join(file), "in/x.pcap".into())])
    };
    let convert = || {
        lab.pcaplab(&[
            "convert",
            "s3://captures/in/x.pcap",
            "--out",
            "s3://results/run/",
            "--dynamodb-table",
            "PacketCaptures",
            "--format",
            FORMATS,
        ])
    };
    // The data outputs of x.pcap (versioned keys: one per version of the object).
    let versions = || -> Vec<String> {
        let (objects, _) = lab.dataset("run");
        objects
            .into_keys()
            .filter(|k| k.starts_with("packets/") && k.contains("x.pcap."))
            .collect()
    };
    put("lab-web.pcap");
    let o = convert();
    assert!(o.status.success(), "{}", text(&o));
    let v1 = versions();
    assert_eq!(v1.len(), 1, "{v1:?}");

    // 1. A new version whose item write took effect but whose answer was lost: the retried
    //    write finds its own item, yet the old version's outputs are deleted.
    put("lab-snaplen.pcap");
    lab.proxy.inject(
        Rule::new("dynamodb:PutItem", Fault::DropAnswer)
            .matching("x.pcap")
            .times(1),
    );
    let o = convert();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(lab.proxy.faults("dynamodb:PutItem"), 1);
    let v2 = versions();
    assert_eq!(
        v2.len(),
        1,
        "the old version's rows are still in the dataset: {v2:?}"
    );
    assert_ne!(v2, v1);

    // 2. A third version while S3 refuses every delete: the run converts and records, says
    //    that the old outputs are left (retryable), and the item remembers them.
    put("lab-vlan-ipv6.pcapng.zst");
    // (object_store deletes with DeleteObjects, one key per request.)
    lab.proxy
        .inject(Rule::new("s3:DeleteObjects", Fault::InternalError));
    let o = convert();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("s3://captures/in/x.pcap: converted, but 2 output(s) of its previous version could not be deleted")
            && stderr.contains("the item lists them as stale_outputs")
            && stderr.contains("(retryable)"),
        "{}",
        text(&o)
    );
    assert!(
        lab.proxy.faults("s3:DeleteObjects") >= 3,
        "{:?}",
        lab.proxy.seen()
    );
    assert_eq!(versions().len(), 2);
    let items = lab.items("PacketCaptures", "run");
    assert!(
        items["captures/in/x.pcap"].contains("stale_outputs"),
        "{items:?}"
    );

    // 3. Healed, the next run deletes them and the item forgets them.
    lab.proxy.heal();
    let o = convert();
    assert!(o.status.success(), "{}", text(&o));
    let v3 = versions();
    assert_eq!(v3.len(), 1, "{v3:?}");
    assert!(!v3.contains(&v2[0]), "{v3:?}");
    let items = lab.items("PacketCaptures", "run");
    assert!(
        !items["captures/in/x.pcap"].contains("stale_outputs"),
        "{items:?}"
    );
    assert!(items["captures/in/x.pcap"].contains("\"26\""), "{items:?}");

    // 4. A version that is not a capture: recorded as failed, and the previous version's
    //    outputs leave the dataset (the lab CSV too: the object is not that capture any more).
    let notes = lab.dir.path().join("notes.txt");
    std::fs::write(&notes, "not a capture\n").expect("write");
    lab.moto.upload("captures", &[(notes, "in/x.pcap".into())]);
    let o = convert();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a packet capture"),
        "{}",
        text(&o)
    );
    let (objects, _) = lab.dataset("run");
    assert!(
        !objects
            .keys()
            .any(|k| k.contains("x.pcap") || k == "csv/x.csv"),
        "{objects:?}"
    );
    let items = lab.items("PacketCaptures", "run");
    assert!(
        items["captures/in/x.pcap"].contains("\"failed\""),
        "{items:?}"
    );
}
