//! `pcaplab convert` against S3 and DynamoDB (a moto server per test): S3 → S3 with a table,
//! checked against the tshark oracle; bad inputs; a changed object; an older result never
//! replacing a newer one; and the DynamoDB JSON output.
//!
//! Needs `$PCAPLAB_PYTHON` (a Python with boto3, moto[server] and pyarrow; `moto_server` next
//! to it) and `$PCAPLAB_CORPUS`. Without them each test prints a loud SKIPPED line, or fails
//! when `$PCAPLAB_REQUIRE_ALL` is set (as in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const TABLE: &str = "PacketCaptures";

use pcaplab_testkit::{corpus, expected_packets, fields, oracle_frames, own_captures, python};

// ---------------------------------------------------------------------------------------------
// A moto server of our own (pcaplab-testkit), with this file's fixtures.

struct Moto(pcaplab_testkit::Moto);

impl std::ops::Deref for Moto {
    type Target = pcaplab_testkit::Moto;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Moto {
    fn start(python: &Path) -> Moto {
        Moto(pcaplab_testkit::Moto::start(python))
    }

    fn pcaplab(&self, args: &[&str]) -> Output {
        self.env(&mut Command::new(env!("CARGO_BIN_EXE_pcaplab")))
            .args(args)
            .output()
            .expect("run pcaplab")
    }

    /// The `PacketCaptures` table and the `captures` and `results` buckets.
    fn setup(&self) {
        self.py("s3.create_bucket(Bucket='captures'); s3.create_bucket(Bucket='results'); create_table()", &[]);
    }

    /// The ETag S3 gives `key` in the captures bucket.
    fn etag(&self, key: &str) -> String {
        self.py(
            "print(s3.head_object(Bucket='captures', Key=sys.argv[1])['ETag'])",
            &[key],
        )
        .trim()
        .to_owned()
    }

    /// Every key in the captures bucket, with its ETag.
    fn etags(&self) -> BTreeMap<String, String> {
        let out = self.py(
            "for o in s3.list_objects_v2(Bucket='captures')['Contents']: emit('etag', o['Key'], o['ETag'])",
            &[],
        );
        fields(&out, "etag")
            .into_iter()
            .map(|f| (f[0].clone(), f[1].clone()))
            .collect()
    }

    /// The Parquet dataset under `s3://results/<prefix>packets`, read back with pyarrow (Hive
    /// partitioning): per capture, its rows.
    fn dataset(&self, prefix: &str) -> BTreeMap<String, Rows> {
        let out = self.py(DATASET, &[&format!("results/{prefix}packets")]);
        let mut rows = BTreeMap::new();
        for f in fields(&out, "rows") {
            let n = |i: usize| f[i].parse::<u64>().expect("number");
            rows.insert(
                f[0].clone(),
                Rows {
                    rows: n(1),
                    ipv4: n(2),
                    ethernet: n(3),
                    dates: f[4].split(',').map(str::to_owned).collect(),
                },
            );
        }
        rows
    }
}

/// Reads `s3://<argv[1]>` as a Hive-partitioned Parquet dataset: per capture its rows, those
/// with IPv4, those with a MAC address, and the `date` partitions it is in.
const DATASET: &str = r#"
import collections
import pyarrow.fs as pafs, pyarrow.dataset as ds
fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"].split("//")[1], scheme="http",
    access_key="test", secret_key="test", region="us-east-1")
t = ds.dataset(sys.argv[1], filesystem=fs, format="parquet", partitioning="hive").to_table(
    columns=["capture", "ip_version", "src_mac", "date"])
per = collections.defaultdict(lambda: [0, 0, 0, set()])
for cap, v, mac, date in zip(*(t.column(c).to_pylist() for c in ["capture", "ip_version", "src_mac", "date"])):
    p = per[cap]
    p[0] += 1; p[1] += v == 4; p[2] += mac is not None; p[3].add(str(date))
for cap, (n, v4, eth, dates) in sorted(per.items()):
    emit("rows", cap, n, v4, eth, ",".join(sorted(dates)))
"#;

/// Per capture, in the Parquet dataset.
#[derive(Debug)]
struct Rows {
    rows: u64,
    /// Rows whose outermost IP header is IPv4, and rows with Ethernet addresses: the lab CSV
    /// has one `ip` line for each of the first and one `ether` line for each of the second.
    ipv4: u64,
    ethernet: u64,
    dates: BTreeSet<String>,
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The oracle

// ---------------------------------------------------------------------------------------------
// 1. S3 → S3 with a table

/// `(corpus file, key under s3://captures/, damaged)`.
const SET: &[(&str, &str, bool)] = &[
    ("tcpdump__pptp.pcap", "in/dir one/a+b.pcap", false),
    (
        "scapy__dcerpc_msnrpc.pcapng.gz",
        "in/dir one/c d+e.pcapng.gz",
        false,
    ),
    (
        "pcapplusplus__solaris.snoop",
        "in/plus+dir/sun ray.snoop",
        false,
    ),
    (
        "zeek__iso-download.pcap.gz",
        "in/zeek__iso-download.pcap.gz",
        false,
    ),
    (
        "pcapplusplus__pcapng-example.pcapng.zst",
        "in/zst/pcapplusplus__pcapng-example.pcapng.zst",
        false,
    ),
    (
        "pcapplusplus__pcapng-example.pcapng",
        "in/pcapplusplus__pcapng-example.pcapng",
        false,
    ),
    (
        "pcapng-test-generator__le_test202.pcapng",
        "in/pcapng-test-generator__le_test202.pcapng",
        false,
    ),
    (
        "pcap-parser__test017-le.pcapng",
        "in/pcap-parser__test017-le.pcapng",
        false,
    ),
    ("tcpdump__empty.pcapng", "in/tcpdump__empty.pcapng", false),
    (
        "zeek__vlan-qinqinq.pcap",
        "in/sub/zeek__vlan-qinqinq.pcap",
        false,
    ),
    (
        "zeek__linux_dlt_sll2.pcap",
        "in/sub/zeek__linux_dlt_sll2.pcap",
        false,
    ),
    (
        "pcapplusplus__nanosecs_big_endian.pcap",
        "in/sub/pcapplusplus__nanosecs_big_endian.pcap",
        false,
    ),
    (
        "zeek__pcapng-multi-interface.pcapng",
        "in/sub/zeek__pcapng-multi-interface.pcapng",
        false,
    ),
    (
        "arkime__80211http.pcap",
        "in/sub/arkime__80211http.pcap",
        false,
    ),
    (
        "chrissanders__http_google.pcapng",
        "in/chrissanders__http_google.pcapng",
        false,
    ),
    (
        "pcapplusplus__ip4_fragments.pcap",
        "in/pcapplusplus__ip4_fragments.pcap",
        false,
    ),
    (
        "tcpdump__various_gre.pcap",
        "in/tcpdump__various_gre.pcap",
        false,
    ),
    (
        "pcap-parser__modified-format.pcap",
        "in/pcap-parser__modified-format.pcap",
        false,
    ),
    (
        "pcap-parser__wireshark_samples-test.pcapng",
        "in/pcap-parser__wireshark_samples-test.pcapng",
        false,
    ),
    ("tcpdump__afs.pcap", "in/tcpdump__afs.pcap", false),
    (
        "scapy__bad_rsn_parsing_overrides_ssid.pcap",
        "in/bad/scapy__bad_rsn_parsing_overrides_ssid.pcap",
        true,
    ),
    (
        "suricata-verify__bug-1450-04__tls_DER-incomplete-header.pcap",
        "in/bad/tls DER+incomplete.pcap",
        true,
    ),
    (
        "suricata-verify__bug-6875-01__fuzz.pcap",
        "in/bad/suricata-verify__bug-6875-01__fuzz.pcap",
        true,
    ),
    (
        "libpcap__shb-option-too-long.pcapng",
        "in/bad/libpcap__shb-option-too-long.pcapng",
        true,
    ),
];

/// `s3://results/<key>` → `<key>`.
fn results_key(url: &str) -> &str {
    url.strip_prefix("s3://results/")
        .unwrap_or_else(|| panic!("{url} is not in the results bucket"))
}

/// Hive's escaping of an id, as the layout documents it (`%` and `/`).
fn escape(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}

/// The lab CSVs under `s3://results/<prefix>csv/`: key → (header, data lines, `ip` lines,
/// `ether` lines).
fn lab_csvs(moto: &Moto, prefix: &str) -> BTreeMap<String, (String, u64, u64, u64)> {
    let out = moto.py(
        r#"
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="results", Prefix=sys.argv[1]):
    for o in page.get("Contents", []):
        lines = s3.get_object(Bucket="results", Key=o["Key"])["Body"].read().decode().splitlines()
        emit("csv", o["Key"], lines[0], len(lines) - 1,
             sum(l.endswith(",ip") for l in lines[1:]), sum(l.endswith(",ether") for l in lines[1:]))
"#,
        &[&format!("{prefix}csv/")],
    );
    fields(&out, "csv")
        .into_iter()
        .map(|f| {
            let n = |i: usize| f[i].parse::<u64>().expect("number");
            (f[0].clone(), (f[1].clone(), n(2), n(3), n(4)))
        })
        .collect()
}

#[test]
fn s3_to_s3_with_a_table_matches_the_oracle_and_is_idempotent() {
    let (Some(py), Some(corpus)) = (python(), corpus()) else {
        return;
    };
    let moto = Moto::start(&py);
    moto.setup();
    let mut files: Vec<(PathBuf, String)> = SET
        .iter()
        .map(|(f, k, _)| (corpus.join(f), (*k).to_owned()))
        .collect();
    // A non-capture under the prefix is skipped: counted, no error, no item.
    files.push((corpus.join("manifest.csv"), "in/manifest.csv".into()));
    moto.upload("captures", &files);
    let args = [
        "convert",
        "s3://captures/in/",
        "--out",
        "s3://results/ds/",
        "--format",
        "parquet,lab-csv",
        "--dynamodb-table",
        TABLE,
    ];
    let started = Instant::now();
    let o = moto.pcaplab(&args);
    let first_run = started.elapsed();
    let err = stderr(&o);
    // Damaged captures make the run fail; everything is still converted.
    assert_eq!(o.status.code(), Some(1), "{err}");
    let damaged = SET.iter().filter(|s| s.2).count();
    assert!(
        err.contains(&format!(
            "{} converted, {damaged} failed, 1 not captures (skipped)",
            SET.len() - damaged
        )),
        "{err}"
    );
    assert!(!err.contains("manifest.csv"), "{err}");

    let items = moto.items();
    let ids: BTreeSet<String> = SET.iter().map(|s| format!("captures/{}", s.1)).collect();
    assert_eq!(items.keys().cloned().collect::<BTreeSet<_>>(), ids, "{err}");
    let keys = moto.keys("results", "");
    let dataset = moto.dataset("ds/");
    let csvs = lab_csvs(&moto, "ds/");
    let etags = moto.etags();
    let mut listed = BTreeSet::new();
    let mut total = 0;
    for (file, key, is_damaged) in SET {
        let id = format!("captures/{key}");
        let url = format!("s3://captures/{key}");
        let item = &items[&id];
        let want = expected_packets(&corpus, &py, file);
        assert_eq!(item.packets, Some(want), "{id} ({file}): {item:?}");
        total += want;
        assert_eq!(Some(&item.etag), etags.get(*key), "{id}");
        if *is_damaged {
            assert_eq!(item.status, "damaged", "{id}: {item:?}");
            let reason = item.reason.as_deref().expect("a damaged item has a reason");
            assert!(
                reason.starts_with("damaged capture at byte "),
                "{id}: {reason}"
            );
            assert!(
                err.contains(&format!("damaged {url}: {reason}; kept ")),
                "{id}: {err}"
            );
        } else {
            assert_eq!(item.status, "ok", "{id}: {item:?}");
            assert_eq!(item.reason, None, "{id}");
            assert!(err.contains(&format!("ok      {url}: ")), "{id}: {err}");
        }

        // Outputs: where the layout says, and there.
        assert_eq!(
            item.outputs.keys().map(String::as_str).collect::<Vec<_>>(),
            ["lab-csv", "parquet"],
            "{id}"
        );
        // The partition is the day of the first packet, or of the object when none has a
        // timestamp.
        let day = item.first_ts.as_deref().unwrap_or(&item.last_modified)[..10].to_owned();
        let etag: String = item.etag.chars().filter(|c| *c != '"').collect();
        let parquet = &item.outputs["parquet"];
        assert_eq!(
            parquet,
            &format!(
                "s3://results/ds/packets/date={day}/{}.{etag}.parquet",
                escape(&id)
            )
        );
        let file_name = key.rsplit('/').next().expect("name");
        let base = file_name.rsplit_once('.').map_or(file_name, |(b, _)| b);
        let lab = &item.outputs["lab-csv"];
        assert_eq!(lab, &format!("s3://results/ds/csv/{base}.csv"));
        for u in [parquet, lab] {
            assert!(keys.contains(results_key(u)), "{id}: {u} does not exist");
            listed.insert(results_key(u).to_owned());
        }

        // The dataset holds the capture's packets once, in that partition.
        let rows = dataset.get(&id);
        assert_eq!(rows.map_or(0, |r| r.rows), want, "{id}: {rows:?}");
        if let Some(r) = rows {
            assert_eq!(r.dates, BTreeSet::from([day.clone()]), "{id}");
        }
        // The lab CSV: its header, then an `ip` line per IPv4 packet and an `ether` line per
        // Ethernet packet (so its line count is not the packet count in general).
        let (header, lines, ip, ether) = &csvs[results_key(lab)];
        assert_eq!(header, "src,dst,len,proto", "{lab}");
        let (v4, eth) = rows.map_or((0, 0), |r| (r.ipv4, r.ethernet));
        assert_eq!((*ip, *ether), (v4, eth), "{lab}");
        assert_eq!(*lines, ip + ether, "{lab}: lines other than ip/ether");
    }
    assert_eq!(
        dataset.values().map(|r| r.rows).sum::<u64>(),
        total,
        "dataset rows"
    );
    assert!(total > 7000, "{total}");
    // Nothing else under the output root: no stray or partial objects.
    assert_eq!(keys, listed);

    // Again: the same objects, the same items, no duplicate rows.
    let o = moto.pcaplab(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(moto.keys("results", ""), keys, "{}", stderr(&o));
    let again = moto.items();
    assert_eq!(again.len(), items.len());
    for (id, item) in &items {
        assert_eq!(again[id].canon, item.canon, "{id}");
    }
    let rows_again = moto.dataset("ds/");
    assert_eq!(
        rows_again.values().map(|r| r.rows).sum::<u64>(),
        total,
        "dataset rows after the second run"
    );
    eprintln!("s3 → s3: first run {first_run:.2?}, {total} packets");
}

// ---------------------------------------------------------------------------------------------
// 2. Bad inputs

/// `data` (a pcap file) cut in the middle of record `n` (0-based), and the offset of that
/// record's header.
fn cut_pcap(data: &[u8], n: usize) -> (Vec<u8>, usize) {
    let u32_at = |o: usize| -> u32 {
        let b: [u8; 4] = data[o..o + 4].try_into().expect("4 bytes");
        match &data[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => u32::from_le_bytes(b),
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => u32::from_be_bytes(b),
            m => panic!("not a pcap file: {m:02x?}"),
        }
    };
    let mut off = 24;
    for _ in 0..n {
        off += 16 + usize::try_from(u32_at(off + 8)).expect("usize");
    }
    let caplen = usize::try_from(u32_at(off + 8)).expect("usize");
    assert!(caplen >= 2 && off + 16 + caplen <= data.len(), "record {n}");
    (data[..off + 16 + caplen / 2].to_vec(), off)
}

#[test]
fn bad_inputs_each_get_a_clear_error_and_the_rest_convert() {
    let (Some(py), Some(corpus)) = (python(), corpus()) else {
        return;
    };
    let moto = Moto::start(&py);
    moto.setup();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = std::fs::read(corpus.join("zeek__vlan-qinqinq.pcap")).expect("read");
    let (cut, record_at) = cut_pcap(&data, 7);
    let cut_path = tmp.path().join("cut.pcap");
    std::fs::write(&cut_path, cut).expect("write");
    moto.upload(
        "captures",
        &[
            (corpus.join("tcpdump__pptp.pcap"), "in/good one.pcap".into()),
            (
                corpus.join("zeek__iso-download.pcap.gz"),
                "in/good+two.pcap.gz".into(),
            ),
            (cut_path, "in/cut.pcap".into()),
            (corpus.join("manifest.csv"), "in/notes.csv".into()),
        ],
    );
    let o = moto.pcaplab(&[
        "convert",
        "s3://captures/in/good one.pcap",
        "s3://captures/in/missing.pcap",
        "s3://captures/in/good+two.pcap.gz",
        "s3://captures/in/notes.csv",
        "s3://captures/in/cut.pcap",
        "--out",
        "s3://results/out/",
        "--format",
        "parquet",
        "--dynamodb-table",
        TABLE,
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for line in [
        "failed  s3://captures/in/missing.pcap: cannot read the object from S3: not found (NoSuchKey",
        "failed  s3://captures/in/notes.csv: not a packet capture (first bytes: 66 69 6c 65 2c",
        &format!(
            "damaged s3://captures/in/cut.pcap: damaged capture at byte {record_at}: the file ends inside a record (the record claims 1526 captured bytes): truncated capture; kept 8 packets"
        ),
        "ok      s3://captures/in/good one.pcap: 23 packets",
        "ok      s3://captures/in/good+two.pcap.gz: 289 packets",
        "2 converted, 3 failed, 0 not captures",
    ] {
        assert!(err.contains(line), "expected {line:?} in:\n{err}");
    }

    let items = moto.items();
    assert_eq!(
        items.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "captures/in/cut.pcap",
            "captures/in/good one.pcap",
            "captures/in/good+two.pcap.gz",
            "captures/in/notes.csv",
        ],
        "the missing key has no item: {items:?}"
    );
    let keys = moto.keys("results", "");
    let dataset = moto.dataset("out/");
    for (id, status, packets) in [
        ("captures/in/good one.pcap", "ok", 23),
        ("captures/in/good+two.pcap.gz", "ok", 289),
        ("captures/in/cut.pcap", "damaged", 8),
    ] {
        let item = &items[id];
        assert_eq!(
            (item.status.as_str(), item.packets),
            (status, Some(packets)),
            "{id}"
        );
        let url = &item.outputs["parquet"];
        assert!(keys.contains(results_key(url)), "{url}");
        assert_eq!(dataset[id].rows, packets, "{id}");
    }
    assert_eq!(
        oracle_frames(&corpus, &py, "tcpdump__pptp.pcap"),
        Some(23),
        "oracle"
    );
    assert_eq!(
        oracle_frames(&corpus, &py, "zeek__iso-download.pcap.gz"),
        Some(289),
        "oracle"
    );
    assert!(
        items["captures/in/cut.pcap"]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("ends inside a record")),
        "{items:?}"
    );
    let notes = &items["captures/in/notes.csv"];
    assert_eq!(notes.status, "failed");
    assert_eq!(notes.packets, None);
    assert!(notes.outputs.is_empty(), "{notes:?}");
    assert!(
        notes
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not a packet capture")),
        "{notes:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");

    // A table that does not exist: refused before any work.
    let o = moto.pcaplab(&[
        "convert",
        "s3://captures/in/good one.pcap",
        "--out",
        "s3://results/no-table/",
        "--dynamodb-table",
        "Missing",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("DynamoDB table Missing: table not found"),
        "{err}"
    );
    assert_eq!(moto.keys("results", "no-table/"), BTreeSet::new());
    assert_eq!(moto.keys("results", ""), keys);
}

// ---------------------------------------------------------------------------------------------
// 3. A changed object

#[test]
fn a_changed_object_replaces_its_old_outputs() {
    let (Some(py), Some(corpus)) = (python(), corpus()) else {
        return;
    };
    let moto = Moto::start(&py);
    moto.setup();
    let key = "in/changing capture.pcap";
    let id = format!("captures/{key}");
    let url = format!("s3://captures/{key}");
    let args = [
        "convert",
        url.as_str(),
        "--out",
        "s3://results/ds/",
        "--format",
        "parquet,csv",
        "--dynamodb-table",
        TABLE,
    ];

    moto.upload(
        "captures",
        &[(corpus.join("tcpdump__pptp.pcap"), key.into())],
    );
    let o = moto.pcaplab(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = moto.items();
    let old = &before[&id];
    assert_eq!(old.packets, Some(23));
    let old_etag = moto.etag(key);
    assert_eq!(old.etag, old_etag);
    let old_keys = moto.keys("results", "");
    assert_eq!(old_keys.len(), 2, "{old_keys:?}");

    moto.upload(
        "captures",
        &[(corpus.join("zeek__vlan-qinqinq.pcap"), key.into())],
    );
    let new_etag = moto.etag(key);
    assert_ne!(new_etag, old_etag);
    let o = moto.pcaplab(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let items = moto.items();
    assert_eq!(items.len(), 1, "{items:?}");
    let new = &items[&id];
    assert_eq!(
        (new.etag.as_str(), new.packets, new.status.as_str()),
        (new_etag.as_str(), Some(14), "ok")
    );
    assert_eq!(
        oracle_frames(&corpus, &py, "zeek__vlan-qinqinq.pcap"),
        Some(14)
    );

    // Only the new version's outputs remain: the old ones (named by the old ETag) are gone.
    let keys = moto.keys("results", "");
    let listed: BTreeSet<String> = new
        .outputs
        .values()
        .map(|u| results_key(u).to_owned())
        .collect();
    assert_eq!(keys, listed);
    for u in old.outputs.values() {
        assert!(!keys.contains(results_key(u)), "{u} was not deleted");
    }
    let tag = |e: &str| e.replace('"', "");
    let parquet: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("ds/packets/"))
        .collect();
    assert_eq!(parquet.len(), 1, "{keys:?}");
    assert!(
        parquet[0].ends_with(&format!(".{}.parquet", tag(&new_etag))),
        "{parquet:?}"
    );
    assert!(
        keys.iter().all(|k| !k.contains(&tag(&old_etag))),
        "{keys:?}"
    );
    let dataset = moto.dataset("ds/");
    assert_eq!(dataset.len(), 1, "{dataset:?}");
    assert_eq!(dataset[&id].rows, 14);
    let csv = moto.py(
        "emit('lines', len(s3.get_object(Bucket='results', Key=sys.argv[1])['Body'].read().decode().splitlines()))",
        &[results_key(&new.outputs["csv"])],
    );
    assert_eq!(fields(&csv, "lines"), [["15"]], "header + 14 rows");
}

// ---------------------------------------------------------------------------------------------
// 4. An older result never overwrites a newer one

#[test]
fn an_older_result_never_overwrites_a_newer_one() {
    let (Some(py), Some(corpus)) = (python(), corpus()) else {
        return;
    };
    let moto = Moto::start(&py);
    moto.setup();
    let key = "in/x.pcap";
    let id = format!("captures/{key}");
    let args = [
        "convert",
        "s3://captures/in/x.pcap",
        "--out",
        "s3://results/ds/",
        "--dynamodb-table",
        TABLE,
    ];
    moto.upload(
        "captures",
        &[(corpus.join("tcpdump__pptp.pcap"), key.into())],
    );
    let o = moto.pcaplab(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(moto.items()[&id].packets, Some(23));
    let keys = moto.keys("results", "");

    const FUTURE: &str = "2999-01-01T00:00:00.000000000Z";
    moto.py(
        r##"ddb.update_item(TableName=TABLE, Key={"s3Id": {"S": sys.argv[1]}},
    UpdateExpression="SET last_modified = :lm, #s = :s",
    ExpressionAttributeNames={"#s": "status"},
    ExpressionAttributeValues={":lm": {"S": sys.argv[2]}, ":s": {"S": "newer-marker"}})"##,
        &[&id, FUTURE],
    );
    let o = moto.pcaplab(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "skipped s3://captures/in/x.pcap: the table holds the result of a newer version of this object; nothing to do"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "0 converted, 0 failed, 0 not captures (skipped), 1 superseded by newer results"
        ),
        "{err}"
    );
    let items = moto.items();
    assert_eq!(items.len(), 1);
    let item = &items[&id];
    assert_eq!(
        (item.status.as_str(), item.last_modified.as_str()),
        ("newer-marker", FUTURE)
    );
    assert_eq!(moto.keys("results", ""), keys);
}

// ---------------------------------------------------------------------------------------------
// 5. DynamoDB JSON, locally

#[test]
fn dynamodb_json_output_is_importable() {
    let Some(py) = python() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let caps = own_captures();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pcaplab"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let o = cmd
        .args(["convert", caps.to_str().expect("utf8"), "--out"])
        .arg(out.path())
        .args(["--format", "parquet,dynamodb-json"])
        .output()
        .expect("run pcaplab");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");

    let script = r#"
import sys, os, json, pyarrow.parquet as pq
d = os.path.join(sys.argv[1], "dynamodb")
for name in sorted(os.listdir(d)):
    text = open(os.path.join(d, name), encoding="utf-8").read()
    doc = json.loads(text)
    item = doc["Item"]
    sid, packets = item["s3Id"], item["packets"]
    assert set(sid) == {"S"} and set(packets) == {"N"}, (sid, packets)
    parquet = item["outputs"]["M"]["parquet"]["S"]
    print("\t".join(str(x) for x in [name, text.count("\n"), text.endswith("\n"), ",".join(doc),
        sid["S"], packets["N"], item["status"]["S"], pq.read_metadata(parquet).num_rows]))
"#;
    let o = Command::new(&py)
        .args(["-c", script])
        .arg(out.path())
        .output()
        .expect("run python");
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    let inputs: BTreeSet<String> = std::fs::read_dir(&caps)
        .expect("captures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    assert_eq!(
        rows.iter()
            .map(|r| r[0].to_owned())
            .collect::<BTreeSet<_>>(),
        inputs.iter().map(|n| format!("{n}.json")).collect(),
        "{stdout}"
    );
    for r in &rows {
        let [
            name,
            newlines,
            ends,
            top,
            s3_id,
            packets,
            status,
            parquet_rows,
        ] = r[..]
        else {
            panic!("{r:?}");
        };
        assert_eq!(
            (newlines, ends, top),
            ("1", "True", "Item"),
            "{name}: one line"
        );
        let input = caps.join(name.trim_end_matches(".json"));
        assert_eq!(s3_id, input.display().to_string(), "{name}");
        assert_eq!(status, "ok", "{name}");
        let packets: u64 = packets.parse().expect("N is a number");
        assert!(packets > 0, "{name}");
        assert_eq!(parquet_rows, packets.to_string(), "{name}");
    }
}
