//! `pcaplab convert --split-bytes`: one capture converted in byte ranges by parallel workers
//! and merged, end to end — the parts read back by DuckDB as one table with the frames of the
//! whole conversion, the flows and the summary item of the whole conversion, compressed
//! captures converted whole, bad sizes refused; and against moto, an object converted in
//! ranges and then replaced: every part of its earlier version deleted.
//!
//! (Row-by-row equivalence with the whole conversion, at many range sizes over the corpus, is
//! the core's `tests/split_convert.rs`.)

use std::path::Path;
use std::process::Command;

use pcaplab_testkit::{corpus, fields, python, run_python};

mod common;
use common::{pcaplab, stderr};

/// `pcaplab convert CAPTURE --out OUT --quiet ARGS`, which must succeed.
fn convert(capture: &str, out: &Path, args: &[&str]) {
    let out = out.to_str().expect("utf8");
    let o = pcaplab(&[&["convert", capture, "--out", out, "--quiet"], args].concat());
    assert!(o.status.success(), "{}", stderr(&o));
}

const ALL: &str = "parquet,csv,lab-csv,flows,flows-csv,dynamodb-json";

/// The files under `dir` whose path contains `needle`.
fn files(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(needle) {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// DuckDB over both datasets: the parts read as one table give the whole conversion's frames
/// (number, time, lengths, record offsets, addresses); the flows and the lab CSV's rows are
/// the same; the items differ only in their outputs, `parts` and `processed_at`.
const COMPARE: &str = r#"
import sys, json, glob, duckdb
split, whole, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
cols = "frame_number, epoch_ns(ts), interface_id, cap_len, wire_len, record_offset, record_len, src_ip, dst_ip, ip_proto, ttl"
def q(sql):
    return con.execute(sql).fetchall()
a = q(f"select {cols} from read_parquet('{split}/packets/*/*.parquet', hive_partitioning=true) order by frame_number")
b = q(f"select {cols} from read_parquet('{whole}/packets/*/*.parquet', hive_partitioning=true) order by frame_number")
assert len(a) == len(b) and a == b, (len(a), len(b))
n_files = len(glob.glob(f"{split}/packets/*/*.part-*.parquet"))
assert n_files == parts, (n_files, parts)
# The CSV parts (each with its header) hold the same frames.
csv = q(f"select count(*), count(distinct frame_number), min(frame_number), max(frame_number) from read_csv('{split}/packets_csv/*/*.part-*.csv', header=true, union_by_name=true)")
assert csv[0] == (len(b), len(b), 1, len(b)), csv
lab_split = q(f"select count(*) from read_csv('{split}/csv/*.part-*.csv', header=true)")[0][0]
lab_whole = q(f"select count(*) from read_csv('{whole}/csv/*.csv', header=true)")[0][0]
assert lab_split == lab_whole, (lab_split, lab_whole)
fcols = "community_id, first_frame, last_frame, packets, bytes, history, conn_state, end_reason"
fa = q(f"select {fcols} from read_parquet('{split}/flows/*/*.parquet') order by all")
fb = q(f"select {fcols} from read_parquet('{whole}/flows/*/*.parquet') order by all")
assert fa == fb, (len(fa), len(fb))
ia = json.load(open(glob.glob(f"{split}/dynamodb/*.json")[0]))["Item"]
ib = json.load(open(glob.glob(f"{whole}/dynamodb/*.json")[0]))["Item"]
assert ia.pop("parts") == {"N": str(parts)}, ia
for i in (ia, ib):
    i.pop("processed_at"); i.pop("outputs")
assert ia == ib, [k for k in set(ia) | set(ib) if ia.get(k) != ib.get(k)]
print("ok", len(a), parts, len(fa))
"#;

#[test]
fn ranges_make_the_dataset_of_the_whole_conversion() {
    let Some(dir) = corpus() else { return };
    let Some(py) = python() else { return };
    // Mixed Ethernet traffic without fragments: every row and flow is the whole's.
    let capture = dir.join("pcap-parser__wireshark_samples-test.pcapng");
    let capture = capture.to_str().expect("utf8");
    let (split, whole) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    convert(capture, whole.path(), &["--format", ALL]);
    convert(
        capture,
        split.path(),
        &[
            "--format",
            ALL,
            "--split-bytes",
            "100KiB",
            "--split-workers",
            "3",
        ],
    );
    // 1.1 MiB in ranges of 100 KiB: 12 ranges, each holding record starts.
    let parts = files(split.path(), "packets/").len();
    assert_eq!(parts, 12, "{:?}", files(split.path(), ""));
    let out = run_python(
        &mut Command::new(&py),
        COMPARE,
        &[
            split.path().to_str().expect("utf8"),
            whole.path().to_str().expect("utf8"),
            &parts.to_string(),
        ],
    );
    assert!(out.starts_with("ok 5898 12 "), "{out}");

    // Back to the packets from the parts: extract reads them as one table, and finds the
    // records the whole conversion's dataset finds (frames in every part, a port, the
    // biggest flow, whose frames span the capture).
    let flow = run_python(
        &mut Command::new(&py),
        "import sys, duckdb\nprint(duckdb.sql(f\"select community_id from read_parquet('{sys.argv[1]}/flows/*/*.parquet') order by packets desc, community_id\").fetchall()[0][0])",
        &[whole.path().to_str().expect("utf8")],
    );
    let flow = flow.trim();
    for selection in [
        ["--frames", "1-3,600,2000-2100,5890-5898"],
        ["--port", "53"],
        ["--flow", flow],
    ] {
        let got: Vec<Vec<u8>> = [&split, &whole]
            .iter()
            .map(|dataset| {
                let o = Command::new(env!("CARGO_BIN_EXE_pcaplab"))
                    .args(["extract", capture, "-o", "-", "--dataset"])
                    .arg(dataset.path())
                    .args(selection)
                    .output()
                    .expect("run pcaplab extract");
                assert!(o.status.success(), "{selection:?}: {}", stderr(&o));
                o.stdout
            })
            .collect();
        assert!(
            got[0].len() > 24 * 3,
            "{selection:?}: {} bytes",
            got[0].len()
        );
        assert!(
            got[0] == got[1],
            "{selection:?}: the parts give other packets"
        );
    }
}

#[test]
fn compressed_captures_are_converted_whole_and_bad_sizes_refused() {
    let Some(dir) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    // 11 KiB of zstd: larger than the range size, but read from the start.
    let gz = dir.join("pcapplusplus__pcapng-example.pcapng.zst");
    convert(
        gz.to_str().expect("utf8"),
        out.path(),
        &["--split-bytes", "4KiB"],
    );
    assert!(
        files(out.path(), ".part-").is_empty(),
        "{:?}",
        files(out.path(), "")
    );
    assert_eq!(files(out.path(), "packets/").len(), 1);
    for bad in ["0", "12", "5 parsecs", "99999999999999999999GiB"] {
        let o = pcaplab(&[
            "convert",
            gz.to_str().expect("utf8"),
            "--out",
            out.path().to_str().expect("utf8"),
            "--split-bytes",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("--split-bytes"),
            "{bad}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_new_version_deletes_every_part_of_the_old_one() {
    let Some(dir) = corpus() else { return };
    let Some(py) = python() else { return };
    let moto = pcaplab_testkit::Moto::start(&py);
    moto.py(
        "s3.create_bucket(Bucket='captures'); s3.create_bucket(Bucket='results'); create_table()",
        &[],
    );
    let put = |file: &str| {
        moto.py(
            "s3.upload_file(sys.argv[1], 'captures', 'in/big.pcapng')",
            &[dir.join(file).to_str().expect("utf8")],
        );
    };
    let convert = || {
        let o = moto
            .env(&mut Command::new(env!("CARGO_BIN_EXE_pcaplab")))
            .args([
                "convert",
                "s3://captures/in/big.pcapng",
                "--out",
                "s3://results/",
                "--format",
                "parquet,lab-csv,flows,dynamodb-json",
                "--dynamodb-table",
                "PacketCaptures",
                "--split-bytes",
                "600KiB",
                "--quiet",
            ])
            .output()
            .expect("run pcaplab");
        assert!(o.status.success(), "{}", stderr(&o));
    };
    put("pcap-parser__wireshark_samples-test.pcapng");
    convert();
    let items = moto.items();
    let item = &items["captures/in/big.pcapng"];
    let first = moto.keys("results", "");
    let parquet: Vec<_> = first.iter().filter(|k| k.starts_with("packets/")).collect();
    // 1.1 MiB in ranges of 600 KiB: two parts.
    assert_eq!(parquet.len(), 2, "{first:?}");
    assert!(format!("{item:?}").contains("part-00000"), "{item:?}");
    // Another capture under the same key, small enough (510 KiB) to be converted whole.
    put("tcpdump__afs.pcap");
    convert();
    let second = moto.keys("results", "");
    let left: Vec<_> = second.iter().filter(|k| k.contains(".part-")).collect();
    assert!(left.is_empty(), "parts of the old version left: {left:?}");
    assert_eq!(
        second.iter().filter(|k| k.starts_with("packets/")).count(),
        1,
        "{second:?}"
    );
    let n = fields(
        &moto.py(
            "emit('n', len(s3.list_objects_v2(Bucket='results').get('Contents', [])))",
            &[],
        ),
        "n",
    );
    assert_eq!(n[0][0], second.len().to_string());
}
