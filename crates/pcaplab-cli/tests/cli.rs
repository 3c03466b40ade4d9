//! The `pcaplab` binary end to end: directories, names, exit codes, damaged and non-capture
//! files, and our Parquet read by independent readers (pyarrow and DuckDB).

use std::path::{Path, PathBuf};
use std::process::Command;

use pcaplab_testkit::{corpus, own_captures, python, run_python};

mod common;
use common::{pcaplab, stderr};

#[test]
fn converts_a_directory_recursively_keeping_names() {
    let Some(dir) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    // A directory holding captures, a nested one, a non-capture and a damaged capture.
    let input = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(input.path().join("nested")).expect("mkdir");
    for (src, dst) in [
        ("tcpdump__pptp.pcap", "x.pcap"),
        ("chrissanders__http_google.pcapng", "y.pcapng"),
        ("zeek__iso-download.pcap.gz", "nested/iso.pcap.gz"),
        (
            "suricata-verify__bug-1450-04__tls_DER-incomplete-header.pcap",
            "nested/damaged.pcap",
        ),
        ("manifest.csv", "notes.csv"),
    ] {
        std::fs::copy(dir.join(src), input.path().join(dst)).expect("copy");
    }
    let o = pcaplab(&[
        "convert",
        input.path().to_str().expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
        "--format",
        "parquet,csv,lab-csv",
        "--jobs",
        "2",
    ]);
    let err = stderr(&o);
    // The damaged capture makes the run fail, after converting everything else.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("damaged.pcap: damaged capture at byte 5035"),
        "{err}"
    );
    assert!(
        err.contains("3 converted, 1 failed, 1 not captures"),
        "{err}"
    );
    // The documented layout: one Hive-partitioned dataset per format, the lab's csv/<base>.csv.
    for f in [
        "packets/date=2000-03-27/x.pcap.parquet",
        "packets_csv/date=2000-03-27/x.pcap.csv",
        "csv/x.csv",
        "packets/date=2010-02-09/y.pcapng.parquet",
        "csv/y.csv",
        "packets/date=2024-02-21/nested%2Fiso.pcap.gz.parquet",
        // What was decoded before the damage is kept.
        "packets/date=1994-02-14/nested%2Fdamaged.pcap.parquet",
        "packets_csv/date=1994-02-14/nested%2Fdamaged.pcap.csv",
    ] {
        assert!(
            out.path().join(f).is_file(),
            "missing {f}; have {:?}",
            walk(out.path())
        );
    }
    assert!(
        !walk(out.path())
            .iter()
            .any(|p| p.to_string_lossy().contains("notes"))
    );
    // No temporary files are left behind.
    assert_no_partial_files(out.path());
    let csv = std::fs::read_to_string(
        out.path()
            .join("packets_csv/date=1994-02-14/nested%2Fdamaged.pcap.csv"),
    )
    .expect("csv");
    assert_eq!(csv.lines().count(), 1 + 6);
    assert!(csv.starts_with("capture,frame_number,ts,"));
    assert!(
        csv.lines()
            .nth(1)
            .expect("row")
            .starts_with("nested/damaged.pcap,1,")
    );
    let lab = std::fs::read_to_string(out.path().join("csv/damaged.csv")).expect("lab csv");
    assert!(lab.starts_with("src,dst,len,proto\n"), "{lab}");
    // Like the lab's scapy loop: a row for the IP layer and one for the Ethernet layer.
    assert_eq!(lab.lines().count(), 1 + 2 * 6);
}

fn assert_no_partial_files(dir: &Path) {
    let leftovers: Vec<_> = walk(dir)
        .into_iter()
        // object_store stages local files as `<name>#<n>` until they are complete.
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_named_non_capture_is_an_error_and_others_still_convert() {
    let Some(dir) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let o = pcaplab(&[
        "convert",
        dir.join("manifest.csv").to_str().expect("utf8"),
        dir.join("tcpdump__pptp.pcap").to_str().expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("manifest.csv: not a packet capture (first bytes: 66 69 6c 65"),
        "{err}"
    );
    assert!(
        out.path()
            .join("packets/date=2000-03-27/tcpdump__pptp.pcap.parquet")
            .is_file()
    );
    assert!(!out.path().join("manifest.csv.parquet").exists());
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let o = pcaplab(&["convert", "--out", "x", "--format", "xml", "y"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("xml"), "{}", stderr(&o));
    let o = pcaplab(&["convert", "/nonexistent/input.pcap", "--out", "/tmp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/input.pcap"),
        "{}",
        stderr(&o)
    );
    let o = pcaplab(&["convert", "x.pcap", "--out", "o", "--jobs", "0"]);
    assert_eq!(o.status.code(), Some(2));
    for flag in [
        "--tcp-timeout",
        "--udp-timeout",
        "--other-timeout",
        "--frag-timeout",
    ] {
        let o = pcaplab(&["convert", "x.pcap", "--out", "o", flag, "0s"]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
    for memory in ["0", "lots", "65537"] {
        let o = pcaplab(&["convert", "x.pcap", "--out", "o", "--frag-memory", memory]);
        assert_eq!(o.status.code(), Some(2), "{memory}");
        assert!(stderr(&o).contains("--frag-memory"), "{}", stderr(&o));
    }
    let o = pcaplab(&["convert", "x.pcap", "--out", "o", "--udp-timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("soon"), "{}", stderr(&o));
}

#[test]
fn colliding_output_names_are_refused_before_any_work() {
    let Some(dir) = corpus() else { return };
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for d in [&a, &b] {
        std::fs::copy(dir.join("tcpdump__pptp.pcap"), d.path().join("same.pcap")).expect("copy");
    }
    let out = tempfile::tempdir().expect("tempdir");
    let o = pcaplab(&[
        "convert",
        a.path().join("same.pcap").to_str().expect("utf8"),
        b.path().join("same.pcap").to_str().expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("are both named same.pcap"),
        "{}",
        stderr(&o)
    );
    assert!(walk(out.path()).is_empty());
}

#[test]
fn inspect_summarises() {
    let Some(dir) = corpus() else { return };
    let o = pcaplab(&[
        "inspect",
        dir.join("pcapplusplus__pcapng-example.pcapng.zst")
            .to_str()
            .expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Format:          pcapng (zstd-compressed)"),
        "{text}"
    );
    assert!(
        text.contains("Link types:      ethernet (1): 59, linux-sll (113): 100"),
        "{text}"
    );
    assert!(text.contains("Packets:         159"), "{text}");
    assert!(text.contains("IP protocols:    tcp 159"), "{text}");
}

#[test]
fn own_captures_convert_cleanly() {
    let caps = own_captures();
    let out = tempfile::tempdir().expect("tempdir");
    let o = pcaplab(&[
        "convert",
        caps.to_str().expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
        "--format",
        "parquet,csv",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("5 converted, 0 failed"), "{err}");
    for f in [
        "packets/date=2024-03-01/lab-web.pcap.parquet",
        "packets_csv/date=2024-03-01/lab-vlan-ipv6.pcapng.zst.csv",
    ] {
        assert!(out.path().join(f).is_file(), "missing {f}; {err}");
    }
}

/// The summary item counts the tunnels and the reassembled datagrams, and its talkers and
/// names are the inner conversation's: the VXLAN mirror capture (12 packets, an HTTP GET for
/// eu.httpbin.org inside) and an HTTP GET in 11 IPv4 fragments.
#[test]
fn items_count_tunnels_and_fragments() {
    let Some(dir) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["convert".to_owned()];
    for f in [
        "zeek__vxlan-encapsulated-http.pcap",
        "pcapplusplus__frag_http_req.pcap",
    ] {
        args.push(dir.join(f).display().to_string());
    }
    args.extend(
        [
            "--out",
            out.path().to_str().expect("utf8"),
            "--format",
            "dynamodb-json",
            "--frag-timeout",
            "10s",
            "--frag-memory",
            "1",
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = pcaplab(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let item = |name: &str| -> serde_json::Value {
        let path = out.path().join(format!("dynamodb/{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        serde_json::from_str::<serde_json::Value>(&text).expect("json")["Item"].clone()
    };
    let vxlan = item("zeek__vxlan-encapsulated-http.pcap");
    assert_eq!(vxlan["tunnels"]["M"]["vxlan"]["N"], "12", "{vxlan}");
    assert!(vxlan.get("fragments").is_none(), "{vxlan}");
    let mut talkers: Vec<&str> = vxlan["top_talkers"]["L"]
        .as_array()
        .expect("talkers")
        .iter()
        .map(|t| t["M"]["addr"]["S"].as_str().expect("addr"))
        .collect();
    talkers.sort_unstable();
    assert_eq!(talkers, ["172.16.11.201", "54.86.237.188"], "{vxlan}");
    let hosts = &vxlan["top_http_hosts"]["L"][0]["M"]["name"]["S"];
    assert_eq!(hosts, "eu.httpbin.org", "{vxlan}");
    let frag = item("pcapplusplus__frag_http_req.pcap");
    let f = &frag["fragments"]["M"];
    assert_eq!(f["reassembled"]["N"], "1", "{frag}");
    for given_up in ["timed_out", "evicted", "invalid", "incomplete", "overlaps"] {
        assert_eq!(f[given_up]["N"], "0", "{given_up}: {frag}");
    }
    assert!(frag.get("tunnels").is_none(), "{frag}");
    let host = &frag["top_http_hosts"]["L"][0]["M"]["name"]["S"];
    assert_eq!(host, "js.bizographics.com", "{frag}");
}

/// Flows and app fields, read back by DuckDB: the flow Parquet and CSV agree, every IP packet
/// is in exactly one flow, the app columns hold what the captures carry, and the item counts
/// the flows and names.
#[test]
fn duckdb_reads_flows_and_app_fields() {
    let Some(dir) = corpus() else { return };
    let Some(py) = python() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let files = [
        "pcapplusplus__tls.pcap",
        "pcapplusplus__DnsPackets.pcap",
        "chrissanders__http_google.pcapng",
    ];
    let mut args = vec!["convert".to_owned()];
    args.extend(files.iter().map(|f| dir.join(f).display().to_string()));
    args.extend(
        [
            "--out",
            out.path().to_str().expect("utf8"),
            "--format",
            "parquet,flows,flows-csv,dynamodb-json",
        ]
        .map(str::to_owned),
    );
    let o = pcaplab(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let script = r#"
import sys, json, glob, duckdb
d = sys.argv[1]
con = duckdb.connect()
flows = f"read_parquet('{d}/flows/*/*.flows.parquet')"
packets = f"read_parquet('{d}/packets/*/*.parquet')"
csv = f"read_csv('{d}/flows_csv/*/*.flows.csv', header=true, all_varchar=true)"
n_flows = con.execute(f"select count(*) from {flows}").fetchone()[0]
assert n_flows == con.execute(f"select count(*) from {csv}").fetchone()[0]
# The CSV holds the same flows as the Parquet.
diff = con.execute(f"""select count(*) from (
  select community_id, first_frame::varchar, packets::varchar, conn_state, history from {flows}
  except select community_id, first_frame, packets, conn_state, history from {csv})""").fetchone()[0]
assert diff == 0, diff
# Every packet with an IP header is counted in exactly one flow, per capture.
per = con.execute(f"""select p.capture, p.n, f.n from
  (select capture, count(*) n from {packets} where ip_version is not null group by all) p
  join (select capture, sum(packets) n from {flows} group by all) f using (capture)
  order by all""").fetchall()
assert len(per) == 3 and all(a == b for _, a, b in per), per
# A flow's first frame is a packet of that flow's endpoints.
bad = con.execute(f"""select count(*) from {flows} f join {packets} p
  on p.capture = f.capture and p.frame_number = f.first_frame
  where not ((p.src_ip = f.src_ip and p.dst_ip = f.dst_ip) or (p.src_ip = f.dst_ip and p.dst_ip = f.src_ip))""").fetchone()[0]
assert bad == 0, bad
typ = con.execute(f"select typeof(dns_answers), typeof(dns_qtype), typeof(duration) from {packets}, {flows} limit 1").fetchone()
assert typ == ("VARCHAR[]", "USMALLINT", "DOUBLE"), typ
sni = con.execute(f"select count(*) from {packets} where tls_sni = 'ssl.gstatic.com' and tls_ja3 is not null").fetchone()[0]
assert sni >= 1, sni
dns = con.execute(f"""select count(*) from {packets}
  where dns_qname = 'www.google.com' and dns_rcode = 0 and len(dns_answers) > 0""").fetchone()[0]
assert dns >= 1, dns
http = con.execute(f"select http_method, http_host from {packets} where http_host is not null order by frame_number limit 1").fetchone()
assert http[0] == "GET" and "google" in http[1], http
states = dict(con.execute(f"select conn_state, count(*) from {flows} where ip_proto = 6 group by all").fetchall())
assert states.get("SF", 0) >= 1, states
for f in glob.glob(f"{d}/dynamodb/*.json"):
    item = json.load(open(f))["Item"]
    cap = item["s3Id"]["S"].rsplit("/", 1)[-1]
    want = con.execute(f"select count(*) from {flows} where capture like '%' || ?", [cap]).fetchone()[0]
    assert int(item["flows"]["N"]) == want, (cap, item["flows"], want)
    assert len(item["top_flows"]["L"]) >= 1
    if "DnsPackets" in cap:
        names = [e["M"]["name"]["S"] for e in item["top_dns_names"]["L"]]
        assert "www.google.com" in names, names
    if "tls" in cap:
        names = [e["M"]["name"]["S"] for e in item["top_tls_sni"]["L"]]
        assert "ssl.gstatic.com" in names, names
print("ok", n_flows)
"#;
    let stdout = run_python(
        &mut Command::new(&py),
        script,
        &[out.path().to_str().expect("utf8")],
    );
    assert!(stdout.starts_with("ok "), "{stdout}");
}

#[test]
fn pyarrow_and_duckdb_read_our_parquet() {
    let Some(dir) = corpus() else { return };
    let Some(py) = python() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let o = pcaplab(&[
        "convert",
        dir.join("zeek__vlan-qinqinq.pcap").to_str().expect("utf8"),
        dir.join("pcapplusplus__many-protocols.pcap")
            .to_str()
            .expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = r#"
import sys, pyarrow.parquet as pq, duckdb
d = sys.argv[1]
t = pq.read_table(f"{d}/packets/date=2013-03-07/zeek__vlan-qinqinq.pcap.parquet")
assert t.num_rows == 14, t.num_rows
assert str(t.schema.field("ts").type) == "timestamp[ns, tz=UTC]", t.schema.field("ts").type
assert str(t.schema.field("vlan_ids").type) == "list<item: uint16 not null>", t.schema.field("vlan_ids").type
r = t.slice(0, 1).to_pylist()[0]
assert r["capture"] == "zeek__vlan-qinqinq.pcap", r
assert r["frame_number"] == 1 and r["link_type"] == 1, r
assert len(r["vlan_ids"]) == 3, r["vlan_ids"]
assert r["ip_version"] == 4 and r["ip_proto"] == 6, r
assert r["src_port"] is not None and r["icmp_type"] is None, r
# tshark: frame.time_epoch 1362692526.869344000 (pyarrow gives microseconds to Python)
assert t.column("ts").cast("int64")[0].as_py() == 1362692526869344000, t.column("ts")[0]
con = duckdb.connect()
n, tcp, first = con.execute(
    f"select count(*), count(*) filter (where ip_proto = 6), min(frame_number) "
    f"from read_parquet('{d}/packets/*/pcapplusplus__many-protocols.pcap.parquet')").fetchone()
assert (n, first) == (4709, 1), (n, first)
assert tcp > 0
typ = con.execute(f"select typeof(ts), typeof(src_port) from read_parquet('{d}/packets/*/pcapplusplus__many-protocols.pcap.parquet') limit 1").fetchone()
assert typ == ("TIMESTAMPTZ_NS", "USMALLINT"), typ
# The whole output is one Hive-partitioned dataset: the date comes from the directory names.
parts = con.execute(
    f"select cast(date as varchar), capture, count(*) from read_parquet('{d}/packets/*/*.parquet', hive_partitioning=true) "
    f"group by all order by all").fetchall()
assert [(p[0], p[1]) for p in parts] == [("2010-06-29", "pcapplusplus__many-protocols.pcap"), ("2013-03-07", "zeek__vlan-qinqinq.pcap")], parts
assert sum(p[2] for p in parts) == 4709 + 14, parts
print("ok", n, tcp)
"#;
    let stdout = run_python(
        &mut Command::new(&py),
        script,
        &[out.path().to_str().expect("utf8")],
    );
    assert!(stdout.starts_with("ok 4709 "), "{stdout}");
}

#[test]
fn a_failed_output_leaves_no_partial_outputs() {
    let Some(dir) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    // A file where the lab-csv directory should be: that output cannot be created, so the
    // capture fails and none of its other outputs may remain.
    std::fs::write(out.path().join("csv"), b"in the way").expect("write");
    let o = pcaplab(&[
        "convert",
        dir.join("tcpdump__pptp.pcap").to_str().expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
        "--format",
        "parquet,csv,lab-csv",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("tcpdump__pptp.pcap: writing "), "{err}");
    assert!(err.contains("csv/tcpdump__pptp.csv failed"), "{err}");
    let left: Vec<PathBuf> = walk(out.path())
        .into_iter()
        .filter(|p| !p.ends_with("csv"))
        .collect();
    assert!(left.is_empty(), "outputs left: {left:?}");
}
