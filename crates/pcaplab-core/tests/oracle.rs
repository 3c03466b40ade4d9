//! Conformance against tshark: every corpus capture tshark can read is decoded by pcaplab and
//! compared, field by field, with tshark's output in `$PCAPLAB_CORPUS/oracle/`.
//!
//! Every difference must be listed, with its reason, in `tests/oracle-differences.tsv`; a new
//! difference fails the test, and so does a listed one that no longer occurs (so the list
//! stays true). Run with `PCAPLAB_ORACLE_WRITE=1` to append new differences to the file with
//! the reason `UNEXPLAINED`, which still fails until a person writes the reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};

use common::{compress_frames, corpus, decode_file, expand_frames};

const DIFFERENCES: &str = "tests/oracle-differences.tsv";

/// One row of tshark's output, by field name.
type OracleRow = BTreeMap<String, String>;

fn read_oracle(path: &Path) -> Vec<OracleRow> {
    let text = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open oracle"))
            .read_to_string(&mut s)
            .expect("gunzip oracle");
        s
    } else {
        std::fs::read_to_string(path).expect("read oracle")
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("oracle header").split('\t').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t').chain(std::iter::repeat("")))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The outermost value of a field that tshark lists once per occurrence.
fn first(row: &OracleRow, field: &str) -> String {
    row.get(field)
        .and_then(|v| v.split(',').next())
        .unwrap_or("")
        .to_string()
}

/// Our value of each compared field for row `i`, as tshark prints it ("" for null).
struct Ours<'a>(&'a RecordBatch);

impl Ours<'_> {
    fn str(&self, name: &str, i: usize) -> String {
        let a = self
            .0
            .column_by_name(name)
            .expect("column")
            .as_string::<i32>();
        if a.is_null(i) {
            String::new()
        } else {
            a.value(i).to_string()
        }
    }
    fn num<T: arrow_array::ArrowPrimitiveType>(&self, name: &str, i: usize) -> Option<T::Native> {
        let a = self
            .0
            .column_by_name(name)
            .expect("column")
            .as_primitive::<T>();
        (!a.is_null(i)).then(|| a.value(i))
    }
    fn u(&self, name: &str, i: usize) -> Option<u64> {
        let c = self.0.column_by_name(name).expect("column");
        match c.data_type() {
            arrow_schema::DataType::UInt8 => self.num::<UInt8Type>(name, i).map(u64::from),
            arrow_schema::DataType::UInt16 => self.num::<UInt16Type>(name, i).map(u64::from),
            arrow_schema::DataType::UInt32 => self.num::<UInt32Type>(name, i).map(u64::from),
            arrow_schema::DataType::UInt64 => self.num::<UInt64Type>(name, i),
            other => panic!("{name}: {other}"),
        }
    }
    fn text(&self, name: &str, i: usize) -> String {
        self.u(name, i).map(|v| v.to_string()).unwrap_or_default()
    }
    fn vlans(&self, i: usize) -> Vec<String> {
        let a = self
            .0
            .column_by_name("vlan_ids")
            .expect("vlan_ids")
            .as_list::<i32>();
        if a.is_null(i) {
            return Vec::new();
        }
        let v = a.value(i);
        v.as_primitive::<UInt16Type>()
            .values()
            .iter()
            .map(|x| x.to_string())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Difference {
    file: String,
    frame: u64,
    field: &'static str,
    ours: String,
    tshark: String,
}

/// Differences of one kind: same capture, field and value of ours (tshark's value varies
/// from frame to frame, e.g. the quoted ports of ICMP errors); the frames where they occur.
type Groups = BTreeMap<(String, String, String), BTreeSet<u64>>;

fn group(diffs: &[Difference]) -> Groups {
    let mut g = Groups::new();
    for d in diffs {
        g.entry((d.file.clone(), d.field.to_string(), d.ours.clone()))
            .or_default()
            .insert(d.frame);
    }
    g
}

/// Compare one capture; counts go to `stats` (field → (compared, matched)).
fn compare(
    file: &str,
    batches: &[RecordBatch],
    oracle: &[OracleRow],
    tshark_frames: usize,
    stats: &mut BTreeMap<&'static str, (u64, u64)>,
    diffs: &mut Vec<Difference>,
) {
    let ours_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut check = |stats: &mut BTreeMap<&'static str, (u64, u64)>,
                     frame: u64,
                     field: &'static str,
                     ours: String,
                     tshark: String| {
        let e = stats.entry(field).or_default();
        e.0 += 1;
        if ours == tshark {
            e.1 += 1;
        } else {
            diffs.push(Difference {
                file: file.to_string(),
                frame,
                field,
                ours,
                tshark,
            });
        }
    };
    check(
        stats,
        0,
        "frame_count",
        ours_rows.to_string(),
        tshark_frames.to_string(),
    );
    let mut rows = oracle.iter();
    for b in batches {
        let o = Ours(b);
        for i in 0..b.num_rows() {
            let Some(t) = rows.next() else { return };
            let frame = o.u("frame_number", i).unwrap_or(0);
            check(
                stats,
                frame,
                "frame_number",
                frame.to_string(),
                first(t, "frame.number"),
            );
            let ts = o
                .num::<TimestampNanosecondType>("ts", i)
                .map(|ns| {
                    format!(
                        "{}.{:09}",
                        ns.div_euclid(1_000_000_000),
                        ns.rem_euclid(1_000_000_000)
                    )
                })
                .unwrap_or_default();
            check(stats, frame, "ts", ts, first(t, "frame.time_epoch"));
            check(
                stats,
                frame,
                "wire_len",
                o.text("wire_len", i),
                first(t, "frame.len"),
            );
            check(
                stats,
                frame,
                "cap_len",
                o.text("cap_len", i),
                first(t, "frame.cap_len"),
            );
            check(
                stats,
                frame,
                "src_mac",
                o.str("src_mac", i),
                first(t, "eth.src"),
            );
            check(
                stats,
                frame,
                "dst_mac",
                o.str("dst_mac", i),
                first(t, "eth.dst"),
            );
            // Our VLAN tags must be tshark's outermost ones, in order.
            let vlans = o.vlans(i);
            let tshark_vlans: Vec<String> = t
                .get("vlan.id")
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let prefix: Vec<String> = tshark_vlans
                .iter()
                .take(vlans.len().max(1))
                .cloned()
                .collect();
            check(stats, frame, "vlan_ids", vlans.join(","), prefix.join(","));
            let version = o.u("ip_version", i);
            let (src, dst, proto) = match version {
                Some(6) => ("ipv6.src", "ipv6.dst", "ipv6.nxt"),
                _ => ("ip.src", "ip.dst", "ip.proto"),
            };
            let tshark_ip = |f: &str| {
                // No IP for us: tshark must have none either, of either version.
                if version.is_none() {
                    let v4 = first(t, f);
                    if !v4.is_empty() {
                        return v4;
                    }
                    return first(
                        t,
                        &f.replace("ip.", "ipv6.").replace("ipv6.proto", "ipv6.nxt"),
                    );
                }
                first(t, f)
            };
            check(stats, frame, "src_ip", o.str("src_ip", i), tshark_ip(src));
            check(stats, frame, "dst_ip", o.str("dst_ip", i), tshark_ip(dst));
            check(
                stats,
                frame,
                "ip_proto",
                o.text("ip_proto", i),
                tshark_ip(proto),
            );
            if version != Some(6) {
                // tshark's ip.len is IPv4's total length; IPv6 has no such field there.
                check(
                    stats,
                    frame,
                    "ip_len",
                    o.text("ip_len", i),
                    first(t, "ip.len"),
                );
            }
            let ip_proto = o.u("ip_proto", i);
            let ports = match ip_proto {
                Some(6) => Some(("tcp.srcport", "tcp.dstport")),
                Some(17) => Some(("udp.srcport", "udp.dstport")),
                // SCTP ports are not in the oracle's field list.
                Some(132) => None,
                // No transport ports of ours: tshark must show none (of TCP or UDP).
                _ => Some(("", "")),
            };
            if let Some((sp, dp)) = ports {
                let pick = |f: &str, other: &str| {
                    if f.is_empty() {
                        let tcp = first(t, other);
                        if tcp.is_empty() {
                            first(t, &other.replace("tcp.", "udp."))
                        } else {
                            tcp
                        }
                    } else {
                        first(t, f)
                    }
                };
                check(
                    stats,
                    frame,
                    "src_port",
                    o.text("src_port", i),
                    pick(sp, "tcp.srcport"),
                );
                check(
                    stats,
                    frame,
                    "dst_port",
                    o.text("dst_port", i),
                    pick(dp, "tcp.dstport"),
                );
            }
            let flags = o
                .u("tcp_flags", i)
                .map(|f| format!("0x{f:04x}"))
                .unwrap_or_default();
            let tshark_flags = if ip_proto == Some(6) || ip_proto.is_none() || ports.is_some() {
                first(t, "tcp.flags")
            } else {
                String::new()
            };
            check(stats, frame, "tcp_flags", flags, tshark_flags);
        }
    }
}

fn differences_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DIFFERENCES)
}

/// Listed differences: (file, field, ours) → (frames, reason).
fn listed() -> BTreeMap<(String, String, String), (BTreeSet<u64>, String)> {
    let Ok(text) = std::fs::read_to_string(differences_path()) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(5, '\t').collect();
            assert_eq!(
                c.len(),
                5,
                "{DIFFERENCES}: a row needs 5 tab-separated columns: {l}"
            );
            (
                (c[0].into(), c[1].into(), c[2].into()),
                (expand_frames(c[3]), c[4].to_string()),
            )
        })
        .collect()
}

#[test]
fn matches_tshark_on_the_corpus() {
    let Some(dir) = corpus() else { return };
    let mut stats: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut diffs = Vec::new();
    let mut compared_files = 0;
    let custom_block_files = common::custom_block_files(&dir);
    for file in common::manifest_files(&dir) {
        let oracle = ["tsv", "tsv.gz"]
            .iter()
            .map(|ext| dir.join("oracle").join(format!("{file}.{ext}")))
            .find(|p| p.exists());
        let Some(oracle) = oracle else { continue };
        let decoded = decode_file(&dir.join(&file), 1000);
        let mut rows = read_oracle(&oracle);
        let tshark_frames = rows.len();
        // tshark lists pcapng Custom Blocks as frames: rows without a timestamp, an Ethernet
        // or an IP header. They are not packets; drop them so the rows line up, and record
        // the frame count tshark reported.
        if custom_block_files.contains(&file) {
            rows.retain(|r| {
                !(first(r, "frame.time_epoch").is_empty()
                    && first(r, "eth.src").is_empty()
                    && first(r, "ip.src").is_empty()
                    && first(r, "ipv6.src").is_empty())
            });
        }
        compare(
            &file,
            &decoded.batches,
            &rows,
            tshark_frames,
            &mut stats,
            &mut diffs,
        );
        compared_files += 1;
    }
    assert!(
        compared_files >= 60,
        "only {compared_files} captures had an oracle"
    );

    let mut report = String::new();
    let _ = writeln!(
        report,
        "per-field match against tshark over {compared_files} captures:"
    );
    for (field, (n, ok)) in &stats {
        let _ = writeln!(
            report,
            "  {field:<13} {ok:>7}/{n:<7} {:>8.4}%",
            100.0 * *ok as f64 / (*n).max(1) as f64
        );
    }
    eprintln!("{report}");

    let listed = listed();
    let found = group(&diffs);
    let mut unexplained = Vec::new();
    for (key, frames) in &found {
        match listed.get(key) {
            Some((f, reason)) if f == frames && reason != "UNEXPLAINED" => {}
            _ => unexplained.push((key, frames)),
        }
    }
    let stale: Vec<_> = listed.keys().filter(|k| !found.contains_key(*k)).collect();

    if std::env::var_os("PCAPLAB_ORACLE_WRITE").is_some() {
        let mut text = String::from(
            "# capture\tfield\tours (empty = null)\tframes\treason   (checked by tests/oracle.rs)\n",
        );
        for (key, frames) in &found {
            let reason = listed.get(key).map_or("UNEXPLAINED", |(_, r)| r.as_str());
            let _ = writeln!(
                text,
                "{}\t{}\t{}\t{}\t{reason}",
                key.0,
                key.1,
                key.2,
                compress_frames(frames)
            );
        }
        std::fs::write(differences_path(), text).expect("write differences");
    }
    let explained: usize = found
        .iter()
        .filter(|(k, f)| {
            listed
                .get(*k)
                .is_some_and(|(lf, r)| lf == *f && r != "UNEXPLAINED")
        })
        .map(|(_, f)| f.len())
        .sum();
    eprintln!(
        "{} differences in {} groups; {explained} listed with a reason in {DIFFERENCES}",
        diffs.len(),
        found.len()
    );
    for (k, frames) in unexplained.iter().take(40) {
        eprintln!(
            "UNEXPLAINED {} {} ours={:?} frames {}",
            k.0,
            k.1,
            k.2,
            compress_frames(frames)
        );
    }
    for k in stale.iter().take(20) {
        eprintln!("STALE (listed, no longer differs) {k:?}");
    }
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "{} unexplained and {} stale groups of differences (see above)",
        unexplained.len(),
        stale.len()
    );
}

#[test]
fn frame_lists_round_trip() {
    let frames: BTreeSet<u64> = [1, 2, 3, 4, 7, 10, 12, 14, 16, 20, 21]
        .into_iter()
        .collect();
    let spec = compress_frames(&frames);
    assert_eq!(spec, "1-4,7,10-16/2,20,21");
    assert_eq!(expand_frames(&spec), frames);
    assert_eq!(expand_frames(""), BTreeSet::new());
}
