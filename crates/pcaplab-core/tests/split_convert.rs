//! A capture converted in byte ranges (plan → count → convert each range → merge) gives the
//! rows, flows and summary of one conversion of the whole: every uncompressed pcap and pcapng
//! capture of both corpus manifests, at range sizes that cut inside records, inside pcapng
//! blocks and leave ranges without a record start.
//!
//! Where state crosses a range boundary as it crosses no chunk boundary, rows may differ, and
//! only there (each is counted and printed): the fragments of an IP datagram that straddles a
//! boundary are not reassembled, and a TCP message or QUIC handshake cut by a boundary is read
//! as at a chunk boundary. Flows may then differ in the ports such a datagram gave them, and
//! in the server names and services such a message gave them.

mod common;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use pcaplab_core::split::SplitError;
use pcaplab_core::split_run::{
    SplitOutputs, SplitRunError, convert_split, decode_summary, encode_summary,
};
use pcaplab_core::{CaptureFormat, Engine, Outputs, Report, sniff};

/// A writer into a shared buffer (the outputs must be `'static`-free boxes).
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("buffer").clone()
    }
}

/// Chunks as large as the engine allows, so that the whole conversion's chunk boundaries do
/// not add differences of their own.
fn engine() -> Engine {
    Engine::builder()
        .jobs(2)
        .chunk_frames(1 << 20)
        .chunk_bytes(64 << 20)
        .build()
        .expect("engine")
}

struct Converted {
    packets: Vec<String>,
    flows: Vec<String>,
    report: Report,
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

fn whole(engine: &Engine, name: &str, bytes: &[u8]) -> Converted {
    let (csv, flows) = (Shared::default(), Shared::default());
    let report = engine
        .convert(
            name,
            Box::new(io::Cursor::new(bytes.to_vec())),
            Outputs {
                csv: Some(Box::new(csv.clone())),
                flows_csv: Some(Box::new(flows.clone())),
                ..Outputs::default()
            },
        )
        .expect("whole conversion");
    Converted {
        packets: lines(&csv.bytes()),
        flows: lines(&flows.bytes()),
        report,
    }
}

/// A split conversion, or `None` when the capture must be converted whole after all (a range
/// before the last is damaged: a whole conversion stops there). Without `flow_rows`, the
/// flows are tracked for the summary alone (as for the summary item): no flow output.
fn split(
    engine: &Engine,
    name: &str,
    bytes: &[u8],
    range: u64,
    flow_rows: bool,
) -> Option<(Converted, usize, usize)> {
    let n = bytes.len() / range as usize + 2;
    let csvs: Vec<Shared> = (0..n).map(|_| Shared::default()).collect();
    let parts: Vec<Shared> = (0..n).map(|_| Shared::default()).collect();
    let flows = Shared::default();
    let range_out = |i: usize, _: &pcaplab_core::Opened| {
        Ok(Outputs {
            csv: Some(Box::new(csvs[i].clone()) as Box<dyn Write + Send>),
            ..Outputs::default()
        })
    };
    let part_writer = |i: usize| Ok(Box::new(parts[i].clone()) as Box<dyn Write + Send>);
    let part_reader =
        |i: usize| Ok(Box::new(io::Cursor::new(parts[i].bytes())) as Box<dyn io::Read + Send>);
    let done = match convert_split(
        engine,
        name,
        &bytes,
        range,
        3,
        SplitOutputs {
            range: &range_out,
            part_writer: &part_writer,
            part_reader: &part_reader,
            track_flows: true,
            flows: &|_| {
                Ok(Outputs {
                    flows_csv: flow_rows.then(|| Box::new(flows.clone()) as Box<dyn Write + Send>),
                    ..Outputs::default()
                })
            },
            flow_outputs: flow_rows,
        },
    ) {
        Ok(done) => done,
        Err(
            SplitRunError::Damaged { .. }
            | SplitRunError::Split {
                source: SplitError::Damaged { .. },
                ..
            },
        ) => return None,
        Err(e) => panic!("{name} in ranges of {range}: {e:#?}"),
    };
    let mut packets = Vec::new();
    for c in &csvs {
        packets.extend(lines(&c.bytes()));
    }
    let empty = done
        .ranges
        .iter()
        .filter(|r| r.frames == 0 && r.range.index > 0)
        .count();
    let resynced = done.ranges.iter().filter(|r| r.resynchronised).count();
    if resynced > 0 {
        println!("{name} in ranges of {range}: {resynced} range(s) resynchronised");
    }
    Some((
        Converted {
            packets,
            flows: lines(&flows.bytes()),
            report: done.report,
        },
        done.ranges.len(),
        empty,
    ))
}

const HEADER: &str = "capture,frame_number,ts,interface_id,link_type,cap_len,wire_len,record_offset,record_len,src_mac,dst_mac,ethertype,vlan_ids,ip_version,src_ip,dst_ip,ip_proto,ip_len,ttl,frag_offset,more_fragments,src_port,dst_port,tcp_flags,icmp_type,icmp_code,payload_len,decode_error,dns_qname,dns_qtype,dns_rcode,dns_answers,tls_sni,tls_ja3,tls_ja4,tls_alpn,tls_version,quic_version,http_method,http_host,http_uri,http_user_agent,http_status,http_content_type,ssh_banner,dhcp_msg_type,dhcp_hostname,dhcp_addr,tunnels,tunnel_id,outer_src_ip,outer_dst_ip,outer_src_port,outer_dst_port,frag_datagram,frag_count";

/// Fields of a CSV line (quotes respected).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("a field").push(c),
        }
    }
    out
}

/// Whether a row that differs between the split and the whole conversion differs only where
/// a range boundary may change it: a fragment (either side), or application fields.
fn allowed(cols: &[&str], a: &[String], b: &[String]) -> (bool, &'static str) {
    let col = |n: &str| cols.iter().position(|c| *c == n).expect(n);
    let is_frag = |r: &[String]| {
        r[col("more_fragments")] == "true"
            || !matches!(r[col("frag_offset")].as_str(), "" | "0")
            || !r[col("frag_datagram")].is_empty()
    };
    if is_frag(a) || is_frag(b) {
        return (true, "fragment");
    }
    let app = |n: &str| {
        ["dns_", "tls_", "quic_", "http_", "ssh_", "dhcp_"]
            .iter()
            .any(|p| n.starts_with(p))
            || n == "decode_error"
    };
    let only_app = cols
        .iter()
        .enumerate()
        .all(|(i, n)| a.get(i) == b.get(i) || app(n));
    (only_app, "message")
}

#[test]
fn ranges_convert_to_the_rows_flows_and_summary_of_the_whole() {
    let Some(dir) = common::corpus() else { return };
    let cols: Vec<&str> = HEADER.split(',').collect();
    let engine = engine();
    let (mut tried, mut ranges_total, mut empty_total, mut inside) = (0, 0, 0, 0);
    let (mut whole_after_all, mut counted_only) = (0, 0);
    let mut differences: BTreeMap<&'static str, usize> = BTreeMap::new();
    for file in common::manifest_files(&dir) {
        let bytes = std::fs::read(dir.join(&file)).expect("read capture");
        let Some(pcaplab_core::reader::Magic::Capture(CaptureFormat::Pcap | CaptureFormat::PcapNg)) =
            sniff(&bytes)
        else {
            continue;
        };
        let Ok(_) = pcaplab_core::CaptureReader::new(Box::new(io::Cursor::new(bytes.clone())))
        else {
            continue;
        };
        let base = whole(&engine, &file, &bytes);
        // A summary crosses machines (a range's, to the merge) as it was.
        let sent = encode_summary(&base.report.summary).expect("encode summary");
        assert_eq!(
            decode_summary(&sent).expect("decode summary"),
            base.report.summary,
            "{file}: summary read back"
        );
        let len = bytes.len() as u64;
        let mut counted_here = false;
        // Small ranges on small captures only: at most ~64 ranges per conversion.
        for range in [4095, 65_543, len / 3 + 1] {
            if range >= len || len / range > 64 {
                continue;
            }
            tried += 1;
            let Some((got, n, empty)) = split(&engine, &file, &bytes, range, true) else {
                assert!(
                    base.report.damage.is_some(),
                    "{file} in ranges of {range}: refused as damaged, but a whole conversion finds no damage"
                );
                whole_after_all += 1;
                continue;
            };
            ranges_total += n;
            empty_total += empty;
            inside += n - 1;
            if !counted_here {
                // Once per capture: tracked for the summary alone, the flows' totals and top
                // flows are the same (the merge counts the retired flows, keeping none).
                counted_here = true;
                let (counted, ..) =
                    split(&engine, &file, &bytes, range, false).expect("the same ranges");
                assert!(counted.flows.is_empty(), "{file}: no flow rows");
                assert_eq!(
                    counted.report.summary.flows, got.report.summary.flows,
                    "{file} in ranges of {range}: flow stats without flow rows"
                );
                counted_only += 1;
            }
            assert_eq!(
                got.packets.len(),
                base.packets.len(),
                "{file} in ranges of {range}: rows"
            );
            let mut frag_rows = 0;
            for (a, b) in got.packets.iter().zip(&base.packets) {
                if a != b {
                    let (fa, fb) = (fields(a), fields(b));
                    let (ok, why) = allowed(&cols, &fa, &fb);
                    assert!(
                        ok,
                        "{file} in ranges of {range}: row differs beyond a boundary's effect\n split: {a}\n whole: {b}"
                    );
                    *differences.entry(why).or_default() += 1;
                    frag_rows += usize::from(why == "fragment");
                }
            }
            let (s, w) = (&got.report.summary, &base.report.summary);
            assert_eq!(
                (s.packets, s.cap_bytes, s.wire_bytes, s.first_ts, s.last_ts),
                (w.packets, w.cap_bytes, w.wire_bytes, w.first_ts, w.last_ts),
                "{file} in ranges of {range}: summary totals"
            );
            assert_eq!(s.link_types, w.link_types, "{file}: link types");
            assert_eq!(
                got.report.damage.as_ref().map(|d| d.to_string()),
                base.report.damage.as_ref().map(|d| d.to_string()),
                "{file} in ranges of {range}: damage"
            );
            let (mut fs, mut fw) = (got.flows.clone(), base.flows.clone());
            fs.sort();
            fw.sort();
            if frag_rows == 0 {
                // Without fragment differences, flows differ at most in what messages named.
                let strip = |rows: &[String]| -> Vec<String> {
                    rows.iter()
                        .map(|r| {
                            let mut f = fields(r);
                            // server_name, service
                            f[24].clear();
                            f[25].clear();
                            f.join(",")
                        })
                        .collect()
                };
                let (mut a, mut b) = (strip(&fs), strip(&fw));
                a.sort();
                b.sort();
                assert_eq!(a, b, "{file} in ranges of {range}: flows");
                *differences.entry("flow (names)").or_default() +=
                    fs.iter().zip(&fw).filter(|(x, y)| x != y).count();
            } else {
                *differences.entry("flow (fragments)").or_default() +=
                    fs.len().abs_diff(fw.len()) + fs.iter().filter(|x| !fw.contains(x)).count();
            }
        }
    }
    println!(
        "{tried} split conversions ({counted_only} more without flow rows), {ranges_total} ranges \
         ({inside} boundaries, {empty_total} ranges without a record start; {whole_after_all} \
         damaged, converted whole after all); \
         rows and flows differing where a boundary cut something: {differences:?}"
    );
    assert!(tried > 50, "only {tried} split conversions ran");
    assert!(counted_only > 20, "only {counted_only} without flow rows");
    assert!(empty_total > 0, "no range was without a record start");
}
