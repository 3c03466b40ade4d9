//! `pcaplab extract` against tshark on the corpus (both manifests): the packets of a set of
//! frames, or of a flow, cut out by pcaplab equal those `tshark -r IN -Y 'frame.number in {…}'
//! -w OUT` writes, packet for packet — timestamps, lengths, link types, interfaces and bytes as
//! tshark reads them back (`-T fields` and `-x`) — for every capture format and compression;
//! and a capture that changed since it was converted is an error (exit 2), never garbage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pcaplab_testkit::{
    Fault, FaultProxy, Rule, corpus, expected_packets, python, run_python, tshark,
};

mod common;
use common::pcaplab;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What tshark reads of a capture: per packet its time, lengths, link type and interface, then
/// every packet's bytes.
fn packets(file: &Path) -> (String, String) {
    let f = file.to_str().expect("utf8");
    let fields = tshark(&[
        "-r",
        f,
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
        "-e",
        "frame.cap_len",
        "-e",
        "frame.encap_type",
        "-e",
        "frame.interface_id",
    ]);
    (fields, tshark(&["-r", f, "-x"]))
}

/// tshark's extract of `filter` from `input`, in the input's file format as captype names it
/// (pcap, nsecpcap, modpcap, pcapng, snoop). With `two_pass`, tshark also writes the frames
/// those matching depend on (the fragments of a datagram reassembled in one of them). tshark
/// fails on a capture cut short after writing the frames before the cut, which is what is
/// compared.
fn tshark_extract(input: &Path, filter: &str, two_pass: bool, out: &Path) {
    let input = input.to_str().expect("utf8");
    let o = Command::new("captype")
        .arg(input)
        .output()
        .expect("run captype");
    let format = text(&o.stdout)
        .trim_end()
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(!format.is_empty(), "captype {input}: {}", text(&o.stderr));
    let out = out.to_str().expect("utf8");
    let o = Command::new("tshark")
        .args(two_pass.then_some("-2"))
        .args(["-r", input, "-Y", filter, "-F", &format, "-w", out])
        .output()
        .expect("run tshark");
    let err = text(&o.stderr);
    assert!(
        o.status.success()
            || (Path::new(out).is_file()
                && ["cut short", "damaged or corrupt"]
                    .iter()
                    .any(|e| err.contains(e))),
        "tshark -r {input} -Y {filter:?}: {err}"
    );
}

fn frames_filter(frames: &[u64]) -> String {
    let list: Vec<String> = frames.iter().map(u64::to_string).collect();
    format!("frame.number in {{{}}}", list.join(","))
}

/// Every capture of both manifests.
fn manifest_captures(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for m in ["manifest.csv", "manifest-depth.csv"] {
        let text = std::fs::read_to_string(dir.join(m)).expect("manifest");
        names.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split(',').next())
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        );
    }
    names
}

/// Captures whose frame numbers tshark counts differently: it lists pcapng custom blocks as
/// frames (the manifest notes them), so its `frame.number` is not ours past the first.
fn numbered_differently(dir: &Path, name: &str) -> bool {
    ["manifest.csv", "manifest-depth.csv"].iter().any(|m| {
        std::fs::read_to_string(dir.join(m))
            .expect("manifest")
            .lines()
            .any(|l| {
                l.starts_with(&format!("{name},"))
                    && l.contains("tshark lists pcapng custom blocks as frames")
            })
    })
}

/// Convert `inputs` (copied into a directory under `work`) with the default formats.
fn convert(work: &Path, inputs: &[(&Path, &str)]) -> (PathBuf, PathBuf) {
    let caps = work.join("caps");
    let out = work.join("out");
    std::fs::create_dir_all(&caps).expect("mkdir");
    for (src, name) in inputs {
        std::fs::copy(src, caps.join(name)).expect("copy");
    }
    let o = pcaplab(&[
        "convert",
        caps.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--quiet",
    ]);
    // Damaged captures fail the run after everything before their damage was written.
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}",
        text(&o.stderr)
    );
    (caps, out)
}

fn extract(input: &Path, out: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "extract",
        input.to_str().expect("utf8"),
        "-o",
        out.to_str().expect("utf8"),
        "--quiet",
    ];
    all.extend_from_slice(args);
    pcaplab(&all)
}

fn same_packets(what: &str, ours: &Path, theirs: &Path) {
    let (a, b) = (packets(ours), packets(theirs));
    // A pcapng Simple Packet Block has no timestamp (tshark shows none); tshark's writer makes
    // it an Enhanced Packet Block stamped 0, which it shows as the epoch.
    let theirs =
        b.0.lines()
            .zip(a.0.lines())
            .map(|(t, o)| match t.strip_prefix("0.000000000\t") {
                Some(rest) if o.starts_with('\t') => format!("\t{rest}\n"),
                _ => format!("{t}\n"),
            })
            .collect::<String>();
    assert_eq!(
        a.0, theirs,
        "{what}: packets differ (time, len, cap_len, encap, interface)"
    );
    assert_eq!(a.1, b.1, "{what}: packet bytes differ");
}

#[test]
fn frames_of_every_corpus_capture_equal_tshark_s() {
    let (Some(dir), Some(py)) = (corpus(), python()) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let mut chosen: Vec<(String, Vec<u64>)> = Vec::new();
    let mut differently = Vec::new();
    for name in manifest_captures(&dir) {
        // Captures tshark cannot open have no frames to compare with.
        if pcaplab_testkit::oracle_frames(&dir, &py, &name).is_none() {
            continue;
        }
        if numbered_differently(&dir, &name) {
            differently.push(name);
            continue;
        }
        let n = expected_packets(&dir, &py, &name);
        // Where tshark shows other frames than ours (documented in expected_packets: a
        // damaged length field it reads as another pcap variant), its frames are not ours.
        if pcaplab_testkit::oracle_frames(&dir, &py, &name) != Some(n) {
            differently.push(name);
            continue;
        }
        if n == 0 {
            continue;
        }
        let mut frames = vec![1, n.div_ceil(3), (2 * n).div_ceil(3), n];
        frames.dedup();
        chosen.push((name, frames));
    }
    // The manifests' custom-block captures and the one tshark reads as another variant, and
    // only those, are left out.
    assert!(differently.len() <= 3, "{differently:?}");
    assert!(chosen.len() >= 100, "only {} captures", chosen.len());
    let inputs: Vec<(PathBuf, String)> = chosen
        .iter()
        .map(|(n, _)| (dir.join(n), n.clone()))
        .collect();
    let refs: Vec<(&Path, &str)> = inputs
        .iter()
        .map(|(p, n)| (p.as_path(), n.as_str()))
        .collect();
    let (caps, out) = convert(work.path(), &refs);
    let failures: Vec<String> = std::thread::scope(|s| {
        let halves: Vec<_> = [0, 1]
            .into_iter()
            .map(|half| {
                let (chosen, caps, out, work) = (&chosen, &caps, &out, work.path());
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for (name, frames) in chosen.iter().skip(half).step_by(2) {
                        let input = caps.join(name);
                        let ours = work.join(format!("{name}.ours"));
                        let theirs = work.join(format!("{name}.tshark"));
                        let list: Vec<String> = frames.iter().map(u64::to_string).collect();
                        let o = extract(
                            &input,
                            &ours,
                            &[
                                "--frames",
                                &list.join(","),
                                "--dataset",
                                out.to_str().expect("utf8"),
                            ],
                        );
                        if !o.status.success() {
                            failed.push(format!("{name}: {}", text(&o.stderr)));
                            continue;
                        }
                        tshark_extract(&input, &frames_filter(frames), false, &theirs);
                        let result = std::panic::catch_unwind(|| {
                            same_packets(name, &ours, &theirs);
                        });
                        if result.is_err() {
                            failed.push(format!("{name}: frames {list:?} differ from tshark's"));
                        }
                    }
                    failed
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The flow with the most packets of a capture (TCP or UDP, outside tunnels and VLANs), from
/// its flow table: its `community_id`, a tshark filter for its packets (in the frame ranges of
/// every row with that ID: a flow idle past its timeout has several) and their count.
fn biggest_flow(py: &Path, out: &Path, name: &str) -> (String, String, u64) {
    let script = r#"
import duckdb, sys, glob
files = glob.glob(f"{sys.argv[1]}/flows/*/{sys.argv[2]}.flows.parquet")
assert len(files) == 1, files
r = duckdb.sql(f"""select community_id, any_value(ip_proto), any_value(src_ip),
  any_value(dst_ip), any_value(src_port), any_value(dst_port),
  string_agg(first_frame || '-' || last_frame, ' '), sum(packets) from '{files[0]}'
  where ip_proto in (6, 17) and tunnels is null and vlan is null
  group by community_id order by sum(packets) desc, min(first_frame) limit 1""").fetchall()[0]
print("\t".join(str(v) for v in r))
"#;
    let line = run_python(
        &mut Command::new(py),
        script,
        &[out.to_str().expect("utf8"), name],
    );
    let f: Vec<&str> = line.trim().split('\t').collect();
    let ip = if f[2].contains(':') { "ipv6" } else { "ip" };
    let l4 = if f[1] == "6" { "tcp" } else { "udp" };
    let ranges: Vec<String> = f[6]
        .split(' ')
        .map(|r| {
            let (a, b) = r.split_once('-').expect("first-last");
            format!("(frame.number >= {a} && frame.number <= {b})")
        })
        .collect();
    let conversation = format!(
        "({}) && {ip}.addr == {} && {ip}.addr == {} && {l4}.port == {} && {l4}.port == {}",
        ranges.join(" || "),
        f[2],
        f[3],
        f[4],
        f[5]
    );
    (
        f[0].to_owned(),
        conversation,
        f[7].parse().expect("packets"),
    )
}

#[test]
fn flows_equal_tshark_s_conversation_in_every_format() {
    let (Some(dir), Some(py)) = (corpus(), python()) else {
        return;
    };
    // pcap (µs, big-endian), pcapng, pcapng multi-interface (zstd), gzip; TCP and UDP.
    let names = [
        "tcpdump__afs.pcap",
        "tcpdump__pptp.pcap",
        "chrissanders__http_espn.pcapng",
        "pcapplusplus__pcapng-example.pcapng.zst",
        "scapy__dcerpc_msnrpc.pcapng.gz",
        "zeek__iso-download.pcap.gz",
    ];
    let work = tempfile::tempdir().expect("tempdir");
    let inputs: Vec<(PathBuf, &str)> = names.iter().map(|n| (dir.join(n), *n)).collect();
    let refs: Vec<(&Path, &str)> = inputs.iter().map(|(p, n)| (p.as_path(), *n)).collect();
    let (caps, out) = convert(work.path(), &refs);
    let dataset = out.to_str().expect("utf8");
    for name in names {
        let input = caps.join(name);
        let (id, filter, count) = biggest_flow(&py, &out, name);
        let ours = work.path().join(format!("{name}.flow"));
        let theirs = work.path().join(format!("{name}.flow.tshark"));
        let o = extract(&input, &ours, &["--flow", &id, "--dataset", dataset]);
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        // The conversation's frames, and the fragments of datagrams reassembled in them.
        tshark_extract(&input, &filter, true, &theirs);
        same_packets(&format!("{name} flow {id}"), &ours, &theirs);
        let got = packets(&ours).0.lines().count() as u64;
        assert_eq!(got, count, "{name}: the flow row's packets");
        // To stdout: the same bytes.
        let o = Command::new(env!("CARGO_BIN_EXE_pcaplab"))
            .args(["extract", input.to_str().expect("utf8"), "-o", "-"])
            .args(["--flow", &id, "--dataset", dataset])
            .output()
            .expect("run");
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        assert_eq!(
            o.stdout,
            std::fs::read(&ours).expect("read"),
            "{name}: stdout"
        );
        // Frames without a dataset: found by framing the capture (gzip and zstd included).
        let plain = work.path().join(format!("{name}.frames"));
        let o = extract(&input, &plain, &["--frames", "2-3"]);
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        let from_tshark = work.path().join(format!("{name}.frames.tshark"));
        tshark_extract(&input, &frames_filter(&[2, 3]), false, &from_tshark);
        same_packets(&format!("{name} frames 2-3"), &plain, &from_tshark);
    }
}

#[test]
fn a_flow_of_fragments_brings_every_fragment() {
    let (Some(dir), Some(py)) = (corpus(), python()) else {
        return;
    };
    let name = "pcapplusplus__ip4_fragments.pcap";
    let work = tempfile::tempdir().expect("tempdir");
    let (caps, out) = convert(work.path(), &[(&dir.join(name), name)]);
    // Its flows count a reassembled datagram's fragments (their packets).
    let script = r#"
import duckdb, sys, glob
f = glob.glob(f"{sys.argv[1]}/flows/*/{sys.argv[2]}.flows.parquet")[0]
p = glob.glob(f"{sys.argv[1]}/packets/*/{sys.argv[2]}.parquet")[0]
for cid, packets in duckdb.sql(f"select community_id, packets from '{f}' order by packets desc limit 3").fetchall():
    print(f"{cid}\t{packets}")
print("fragments", duckdb.sql(f"select count(*) from '{p}' where frag_datagram is not null").fetchall()[0][0])
"#;
    let listing = run_python(
        &mut Command::new(&py),
        script,
        &[out.to_str().expect("utf8"), name],
    );
    let fragments: u64 = listing
        .lines()
        .find_map(|l| l.strip_prefix("fragments "))
        .and_then(|n| n.parse().ok())
        .expect("fragment count");
    assert!(fragments > 2, "{listing}");
    let flows: BTreeMap<String, u64> = listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(c, p)| (c.to_owned(), p.parse().expect("packets")))
        .collect();
    for (id, count) in flows {
        let ours = work.path().join("flow.pcap");
        let o = extract(
            &caps.join(name),
            &ours,
            &["--flow", &id, "--dataset", out.to_str().expect("utf8")],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(packets(&ours).0.lines().count() as u64, count, "{id}");
    }
}

#[test]
fn a_capture_changed_since_it_was_converted_is_an_error() {
    let Some(dir) = corpus() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let name = "tcpdump__afs.pcap";
    let (caps, out) = convert(work.path(), &[(&dir.join(name), name)]);
    let input = caps.join(name);
    let dataset = out.to_str().expect("utf8");
    let target = work.path().join("x.pcap");
    let run = |frames: &str| extract(&input, &target, &["--frames", frames, "--dataset", dataset]);
    let o = run("5");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before = std::fs::read(&target).expect("extract");

    // Another capture under the same name: its size differs from the item's.
    std::fs::copy(dir.join("tcpdump__pptp.pcap"), &input).expect("copy");
    let o = run("5");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("changed since it was converted"), "{err}");
    assert_eq!(
        std::fs::read(&target).expect("kept"),
        before,
        "the old extract is kept"
    );

    // The same size, other bytes: record 5's header no longer says what its row does.
    let mut bytes = std::fs::read(dir.join(name)).expect("read");
    bytes.splice(24..24, [0u8; 4]);
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&input, &bytes).expect("write");
    let o = run("5");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("changed since it was converted"), "{err}");
    assert!(
        err.contains(&input.display().to_string()),
        "names the capture: {err}"
    );

    // Frames that do not exist, and bad selections, are errors naming them.
    std::fs::copy(dir.join(name), &input).expect("copy");
    for (args, needle) in [
        (
            vec!["--frames", "100000", "--dataset", dataset],
            "no frame 100000",
        ),
        (vec!["--frames", "0"], "not a frame number"),
        (vec!["--frames", "9-3"], "low to high"),
        (
            vec!["--flow", "1:nope=", "--dataset", dataset],
            "no flow with Community ID",
        ),
        (vec!["--flow", "1:x="], "need the dataset"),
        (vec!["--port", "7000"], "need the dataset"),
        (
            vec!["--port", "1", "--dataset", dataset],
            "no packet matches the filter",
        ),
        (vec!["--proto", "tcpp"], "tcp, udp, icmp"),
        (vec!["--since", "yesterday"], "2024-03-01T12:00:00Z"),
    ] {
        let o = extract(&input, &target, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read(&target).expect("kept"),
        before,
        "the old extract is kept"
    );
}

// ---------------------------------------------------------------------------------------------
// On S3 (moto's server)

/// A pcap of `frames` frames: UDP datagrams of `payload` zero bytes from 64 ports, but for
/// the frames in `small`, a small TCP exchange (10.9.9.9:4444 ⇄ 10.8.8.8:80). 1 ms apart.
fn large_capture(path: &Path, frames: u32, payload: usize, small: &[u32]) {
    use std::io::Write;
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut header = Vec::new();
    for v in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4]] {
        header.extend_from_slice(&v);
    }
    header.extend_from_slice(&262_144u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&header).expect("write");
    let zeros = vec![0u8; payload];
    for i in 0..frames {
        let tcp = small.iter().position(|&s| s == i);
        let mut p: Vec<u8> = Vec::with_capacity(64);
        p.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
        let (proto, l4, body): (u8, Vec<u8>, usize) = match tcp {
            Some(k) => {
                let (sport, dport) = if k % 2 == 0 {
                    (4444u16, 80u16)
                } else {
                    (80, 4444)
                };
                let mut t = Vec::new();
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
                t.extend_from_slice(&(1000 + k as u32).to_be_bytes());
                t.extend_from_slice(&(2000 + k as u32).to_be_bytes());
                t.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
                (6, t, 16)
            }
            None => {
                let mut u = Vec::new();
                u.extend_from_slice(&(1000 + (i % 64) as u16).to_be_bytes());
                u.extend_from_slice(&2000u16.to_be_bytes());
                u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                (17, u, payload)
            }
        };
        let (src, dst) = match tcp {
            Some(k) if k % 2 == 1 => ([10, 8, 8, 8], [10, 9, 9, 9]),
            Some(_) => ([10, 9, 9, 9], [10, 8, 8, 8]),
            None => ([10, 0, 0, 1], [10, 0, 0, 2]),
        };
        let total = (20 + l4.len() + body) as u16;
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&l4);
        let len = (p.len() + body) as u32;
        let ts = (1_700_000_000u32 + i / 1000, (i % 1000) * 1000);
        let mut rec = Vec::with_capacity(16);
        for v in [ts.0, ts.1, len, len] {
            rec.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&rec).expect("write");
        w.write_all(&p).expect("write");
        w.write_all(&zeros[..body]).expect("write");
    }
    w.flush().expect("flush");
}

/// `pcaplab ARGS` talking to `moto` through `proxy`, which counts the bytes of every answer.
fn on_moto(moto: &pcaplab_testkit::Moto, proxy: &FaultProxy, args: &[&str]) -> Output {
    moto.env_via(
        &mut Command::new(env!("CARGO_BIN_EXE_pcaplab")),
        &proxy.endpoint(),
    )
    .args(args)
    .output()
    .expect("run pcaplab")
}

/// What pcaplab says it read of an object agrees with what S3 sent it: at least that much
/// (pcaplab rounds to three significant digits), and at most `read_ahead` more — what a
/// streamed GET has in flight (socket buffers, the download channel) when pcaplab stops it.
fn same_as_sent(proxy: &FaultProxy, key_path: &str, said: f64, read_ahead: u64) -> u64 {
    let sent = proxy.bytes("s3:GetObject", key_path);
    assert!(
        sent as f64 >= said * 0.99 && sent as f64 <= said * 1.01 + read_ahead as f64,
        "pcaplab says it read {said} bytes, S3 sent {sent}"
    );
    sent
}

/// Bytes from pcaplab's "read 64.5 KiB of 1.0 GiB" (human units).
fn read_bytes(report: &str) -> (f64, f64) {
    let after = report.split("; read ").nth(1).expect("a read report");
    let words: Vec<&str> = after.split_whitespace().collect();
    let bytes = |n: &str, unit: &str| -> f64 {
        let n: f64 = n.parse().expect("number");
        n * match unit {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            u => panic!("unit {u}"),
        }
    };
    (bytes(words[0], words[1]), bytes(words[3], words[4]))
}

#[test]
fn one_flow_of_a_gigabyte_capture_on_s3_is_a_few_ranged_reads() {
    let Some(py) = python() else { return };
    let moto = pcaplab_testkit::Moto::start(&py);
    let work = tempfile::tempdir().expect("tempdir");
    let big = work.path().join("big.pcap");
    let small: Vec<u32> = (0..6).map(|k| 4000 + 2000 * k).collect();
    // 16,600 frames of 65,042 bytes: 1.0 GiB.
    large_capture(&big, 16_600, 65_000, &small);
    let size = std::fs::metadata(&big).expect("size").len();
    assert!(size >= 1 << 30, "{size}");
    moto.py(
        "s3.create_bucket(Bucket='captures'); s3.create_bucket(Bucket='results')\ns3.upload_file(sys.argv[1], 'captures', 'big.pcap')",
        &[big.to_str().expect("utf8")],
    );
    std::fs::remove_file(&big).expect("rm");
    let proxy = FaultProxy::start(&moto.endpoint());
    let run = |args: &[&str]| on_moto(&moto, &proxy, args);
    let o = run(&[
        "convert",
        "s3://captures/big.pcap",
        "--out",
        "s3://results/ds/",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let flow = moto.py(
        r#"
import duckdb, tempfile
for o in s3.list_objects_v2(Bucket='results', Prefix='ds/flows/')['Contents']:
    with tempfile.NamedTemporaryFile(suffix='.parquet') as f:
        s3.download_fileobj('results', o['Key'], f)
        f.flush()
        q = f"select community_id, packets from '{f.name}' where ip_proto = 6"
        for cid, packets in duckdb.sql(q).fetchall():
            print(cid, packets)
"#,
        &[],
    );
    let (id, packets) = flow.trim().split_once(' ').expect("the TCP flow");
    assert_eq!(packets, "6", "{flow}");
    let out = work.path().join("flow.pcap");
    let extract_flow = [
        "extract",
        "s3://captures/big.pcap",
        "--flow",
        id,
        "--dataset",
        "s3://results/ds/",
        "-o",
        out.to_str().expect("utf8"),
    ];
    let started = std::time::Instant::now();
    proxy.reset_counts();
    let o = run(&extract_flow);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let elapsed = started.elapsed();
    eprintln!("extract in {elapsed:?}: {err}");
    let (read, object) = read_bytes(&err);
    assert!(object >= (1u64 << 30) as f64, "{err}");
    assert!(
        read <= object / 100.0,
        "read more than 1% of the object: {err}"
    );
    // Ranged reads: exactly what was asked for.
    let sent = same_as_sent(&proxy, "/captures/big.pcap", read, 0);
    let gets = proxy.count("s3:GetObject");
    eprintln!("S3 sent {sent} bytes of the capture in {gets} GETs (with the dataset's)");
    assert!(err.contains("by ranges"), "{err}");
    assert!(elapsed.as_secs() < 30, "{elapsed:?}: {err}");
    // What tshark sees: the six TCP packets, in order, with their ports.
    let seen = tshark(&[
        "-r",
        out.to_str().expect("utf8"),
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
    ]);
    let want: String = (0..6)
        .map(|k| {
            if k % 2 == 0 {
                "70\t4444\t80\n"
            } else {
                "70\t80\t4444\n"
            }
        })
        .collect();
    assert_eq!(seen, want);

    // Again while S3 fails: ranged reads of the capture throttled and one cut short, a read of
    // the dataset refused. Retried: the same file.
    let first = std::fs::read(&out).expect("the flow");
    proxy.inject(
        Rule::new("s3:GetObject", Fault::Throttle)
            .matching("/captures/big.pcap")
            .times(2),
    );
    proxy.inject(
        Rule::new("s3:GetObject", Fault::CutBody(100))
            .matching("/captures/big.pcap")
            .times(1),
    );
    proxy.inject(
        Rule::new("s3:GetObject", Fault::InternalError)
            .matching("/results/ds/")
            .times(1),
    );
    let o = run(&extract_flow);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(proxy.faults("s3:GetObject"), 4, "{:?}", proxy.seen());
    assert_eq!(std::fs::read(&out).expect("the flow"), first);
    proxy.heal();

    // Another object under the same key: the dataset describes another version of it.
    let other = pcaplab_testkit::own_captures().join("lab-web.pcap");
    moto.py(
        "s3.upload_file(sys.argv[1], 'captures', 'big.pcap')",
        &[other.to_str().expect("utf8")],
    );
    let o = run(&extract_flow);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("another version of the capture"), "{err}");
}

#[test]
fn a_gzip_capture_on_s3_is_read_only_up_to_the_last_record_wanted() {
    let Some(py) = python() else { return };
    let moto = pcaplab_testkit::Moto::start(&py);
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("mid.pcap");
    let small: Vec<u32> = (0..4).map(|k| 1000 + 200 * k).collect();
    // 3,000 frames of 65,042 bytes (195 MB), compressed: the flow ends at frame 1,600.
    large_capture(&plain, 3_000, 65_000, &small);
    let gz = Command::new("gzip")
        .args(["-1", "-k"])
        .arg(&plain)
        .status()
        .expect("run gzip");
    assert!(gz.success());
    let packed = work.path().join("mid.pcap.gz");
    moto.py(
        "s3.create_bucket(Bucket='captures')\ns3.upload_file(sys.argv[1], 'captures', 'mid.pcap.gz')",
        &[packed.to_str().expect("utf8")],
    );
    let proxy = FaultProxy::start(&moto.endpoint());
    let run = |args: &[&str]| on_moto(&moto, &proxy, args);
    let out = work.path().join("frames.pcap");
    let o = run(&[
        "extract",
        "s3://captures/mid.pcap.gz",
        "--frames",
        "1000,1200,1400,1600",
        "-o",
        out.to_str().expect("utf8"),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("from its start"), "{err}");
    eprintln!("{err}");
    // Framed up to frame 1,600, then copied up to it: twice about 1,600 / 3,000 of the
    // object, never all of it twice.
    let (read, object) = read_bytes(&err);
    assert!(read < 1.3 * object, "{err}");
    // Two streamed passes, each stopped early: the object is small (933 KiB), so each may
    // have had all of it in flight.
    let sent = same_as_sent(&proxy, "/captures/mid.pcap.gz", read, 2 * 1024 * 1024);
    eprintln!("S3 sent {sent} bytes");
    let theirs = work.path().join("frames.tshark");
    tshark_extract(
        &plain,
        &frames_filter(&[1000, 1200, 1400, 1600]),
        false,
        &theirs,
    );
    same_packets("gzip on S3", &out, &theirs);
}

#[test]
fn frames_come_from_what_duckdb_writes_of_a_query() {
    let (Some(dir), Some(py)) = (corpus(), python()) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let name = "chrissanders__http_espn.pcapng";
    let (caps, out) = convert(work.path(), &[(&dir.join(name), name)]);
    // DuckDB's own Parquet (Snappy, UBIGINT) and CSV (with a quoted column before ours).
    let script = r#"
import duckdb, sys
q = f"select http_host || ', ' || http_uri as what, frame_number from '{sys.argv[1]}/packets/*/{sys.argv[2]}.parquet' where http_method = 'GET'"
duckdb.sql(f"copy ({q}) to '{sys.argv[3]}/sel.parquet'")
duckdb.sql(f"copy ({q}) to '{sys.argv[3]}/sel.csv'")
print(",".join(str(r[0]) for r in duckdb.sql(f"select frame_number from ({q}) order by 1").fetchall()))
"#;
    let work_dir = work.path().to_str().expect("utf8");
    let frames = run_python(
        &mut Command::new(&py),
        script,
        &[out.to_str().expect("utf8"), name, work_dir],
    );
    let frames: Vec<u64> = frames
        .trim()
        .split(',')
        .map(|f| f.parse().expect("frame"))
        .collect();
    assert!(frames.len() > 3, "{frames:?}");
    let theirs = work.path().join("gets.tshark");
    tshark_extract(&caps.join(name), &frames_filter(&frames), false, &theirs);
    for file in ["sel.parquet", "sel.csv"] {
        let ours = work.path().join(format!("{file}.pcapng"));
        let o = extract(
            &caps.join(name),
            &ours,
            &[
                "--frames",
                work.path().join(file).to_str().expect("utf8"),
                "--dataset",
                out.to_str().expect("utf8"),
            ],
        );
        assert!(o.status.success(), "{file}: {}", text(&o.stderr));
        same_packets(file, &ours, &theirs);
    }
}

#[test]
fn filters_on_addresses_ports_protocols_and_time_equal_tshark_s() {
    let Some(dir) = corpus() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let names = ["chrissanders__http_espn.pcapng", "tcpdump__afs.pcap"];
    let inputs: Vec<(PathBuf, &str)> = names.iter().map(|n| (dir.join(n), *n)).collect();
    let refs: Vec<(&Path, &str)> = inputs.iter().map(|(p, n)| (p.as_path(), *n)).collect();
    let (caps, out) = convert(work.path(), &refs);
    let dataset = out.to_str().expect("utf8");
    for (name, args, filter) in [
        (
            names[0],
            vec![
                "--host",
                "205.234.218.129",
                "--port",
                "80",
                "--proto",
                "tcp",
            ],
            "ip.addr == 205.234.218.129 && tcp.port == 80",
        ),
        (
            names[0],
            vec![
                "--host",
                "63.85.36.72",
                "--host",
                "4.2.2.1",
                "--proto",
                "udp",
            ],
            "(ip.addr == 63.85.36.72 || ip.addr == 4.2.2.1) && udp",
        ),
        (
            names[1],
            vec![
                "--since",
                "1999-11-11T21:47:00Z",
                "--until",
                "1999-11-11T21:48:00Z",
            ],
            "frame.time_epoch >= 942356820 && frame.time_epoch < 942356880",
        ),
    ] {
        let input = caps.join(name);
        let ours = work.path().join("filtered");
        let theirs = work.path().join("filtered.tshark");
        let mut all = args.clone();
        all.extend(["--dataset", dataset]);
        let o = extract(&input, &ours, &all);
        assert!(o.status.success(), "{name} {args:?}: {}", text(&o.stderr));
        tshark_extract(&input, filter, false, &theirs);
        same_packets(&format!("{name} {args:?}"), &ours, &theirs);
        assert!(
            !packets(&ours).0.is_empty(),
            "{name} {args:?}: nothing matched"
        );
    }
}

#[test]
fn a_frame_salvaged_from_a_cut_record_is_refused_by_name() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut bytes =
        std::fs::read(pcaplab_testkit::own_captures().join("lab-web.pcap")).expect("read");
    bytes.truncate(bytes.len() - 10);
    let cut = work.path().join("cut.pcap");
    std::fs::write(&cut, &bytes).expect("write");
    let (caps, out) = convert(work.path(), &[(&cut, "cut.pcap")]);
    let input = caps.join("cut.pcap");
    let dataset = out.to_str().expect("utf8");
    let target = work.path().join("x.pcap");
    // Its 33rd and last frame is the salvaged one; the 32 before it are whole records.
    let o = extract(
        &input,
        &target,
        &["--frames", "30-32", "--dataset", dataset],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = extract(
        &input,
        &target,
        &["--frames", "32-33", "--dataset", dataset],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cut short by the end of the capture"), "{err}");
}
