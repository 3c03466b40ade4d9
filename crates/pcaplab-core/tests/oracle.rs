//! Conformance against tshark: every corpus capture tshark can read is decoded by pcaplab and
//! compared, field by field, with tshark's output in `$PCAPLAB_CORPUS/oracle/`, over both
//! manifests (`manifest.csv` and `manifest-depth.csv`).
//!
//! Where a capture also has a depth oracle (`oracle-depth/<file>.tsv`: every occurrence of a
//! field, outermost first, and `frame.protocols`), the layers tshark decoded say which
//! occurrence is the innermost packet — the conversation, which pcaplab's main columns
//! describe — and the envelope columns (`tunnels`, `tunnel_id`, `outer_*`) and the fragment
//! columns (the frame completing each fragment's datagram, `frag_count`) and `quic_version`
//! are compared too.
//! Without one, the outermost occurrences are compared and no envelope is expected.
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

/// The `k`-th occurrence of a field ("" when it has fewer).
fn nth(row: &OracleRow, field: &str, k: usize) -> String {
    row.get(field)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.split(',').nth(k))
        .unwrap_or("")
        .to_string()
}

/// Which occurrence of each field describes the innermost packet (the conversation), read
/// from tshark's `frame.protocols` in the depth oracle, and the envelope tshark shows; without
/// a depth oracle, the outermost occurrences and no envelope.
#[derive(Debug, Default)]
struct Layers {
    eth: usize,
    /// Occurrences of `vlan.id` after the innermost Ethernet header, up to its IP header.
    vlans: std::ops::Range<usize>,
    ip4: usize,
    ip6: usize,
    /// The innermost IP header's transport occurrence; `None` when it has none.
    tcp: Option<usize>,
    udp: Option<usize>,
    /// pcaplab's names of the encapsulations, outermost first (`gre|pptp`: GRE carrying PPP,
    /// whose version tshark's `frame.protocols` does not say).
    tunnels: Vec<&'static str>,
    /// The innermost tunnel identifier; `None` when a GRE or PPTP header (whose key and call
    /// id are not in the oracle) may have set it.
    tunnel_id: Option<String>,
    /// Outermost IP addresses and UDP ports (family, has UDP), when there is a tunnel.
    outer: Option<(bool, bool)>,
    /// The innermost IPv6 header's transport protocol when extension headers precede it
    /// (tshark's `ipv6.nxt` is the first Next Header).
    ip_proto: Option<String>,
}

fn hex(v: &str) -> String {
    v.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .map(|n| n.to_string())
        .unwrap_or_else(|| v.to_string())
}

/// Read the layers of one frame from its depth-oracle row.
fn layers(depth: Option<&OracleRow>) -> Layers {
    let mut l = Layers {
        tcp: Some(0),
        udp: Some(0),
        tunnel_id: Some(String::new()),
        ..Layers::default()
    };
    let Some(d) = depth else { return l };
    let protos = d.get("frame.protocols").map_or("", String::as_str);
    let tokens: Vec<&str> = protos.split(':').collect();
    // An ICMP error quotes the packet it answers: the conversation ends at the ICMP header.
    let end = tokens
        .iter()
        .position(|t| *t == "icmp" || *t == "icmpv6")
        .map_or(tokens.len(), |i| i + 1);
    let tokens = &tokens[..end];
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    let mut id_known = true;
    let mut last_ip = None;
    let (mut vlan_start, mut vlan_end) = (0, 0);
    for (i, &t) in tokens.iter().enumerate() {
        let k = *n.get(t).unwrap_or(&0);
        let prev = i.checked_sub(1).map_or("", |j| tokens[j]);
        let next = tokens.get(i + 1).copied().unwrap_or("");
        // A tunnel header carrying nothing tshark decodes (a keepalive, a heartbeat) is not
        // entered.
        let carries = match t {
            // GRE carrying something pcaplab does not decode (CDP, a keepalive).
            "gre" => matches!(
                next,
                "ip" | "ipv6" | "eth" | "vlan" | "mpls" | "ppp" | "erspan" | "cmd" | "pppoes"
            ),
            _ => !next.is_empty() && next != "data",
        };
        let prev_ip = match prev {
            "ip" => Some(4),
            p if p == "ipv6" || p.starts_with("ipv6.") => Some(6),
            _ => None,
        };
        match t {
            "eth" => {
                l.eth = k;
                vlan_start = *n.get("vlan").unwrap_or(&0);
                vlan_end = vlan_start;
            }
            "vlan" => vlan_end = k + 1,
            "ip" | "ipv6" => {
                if t == "ip" {
                    l.ip4 = k;
                } else {
                    l.ip6 = k;
                }
                last_ip = Some(i);
                l.vlans = vlan_start..vlan_end;
                match (prev_ip, t) {
                    (Some(4), "ip") => l.tunnels.push("4in4"),
                    (Some(4), _) => l.tunnels.push("6in4"),
                    (Some(6), "ip") => l.tunnels.push("4in6"),
                    (Some(_), _) => l.tunnels.push("6in6"),
                    _ => {}
                }
            }
            "vxlan" | "geneve" | "gre" | "erspan" | "gtp" | "teredo" | "ayiya" if !carries => {}
            "vxlan" => {
                l.tunnels.push("vxlan");
                l.tunnel_id = Some(nth(d, "vxlan.vni", k));
                id_known = true;
            }
            "geneve" => {
                l.tunnels.push("geneve");
                l.tunnel_id = Some(hex(&nth(d, "geneve.vni", k)));
                id_known = true;
            }
            "gre" => {
                l.tunnels.push(match (prev, next) {
                    ("udp", _) => "gre-udp",
                    (_, "ppp") => "gre|pptp",
                    _ => "gre",
                });
                id_known = false;
            }
            "erspan" => {
                let gre_proto = nth(d, "gre.proto", n.get("gre").map_or(0, |g| g - 1));
                let span = nth(d, "erspan.spanid", k);
                l.tunnels.push(match (gre_proto.as_str(), span.is_empty()) {
                    ("0x22eb", _) => "erspan3",
                    (_, false) => "erspan2",
                    _ => "erspan1",
                });
                if !span.is_empty() {
                    l.tunnel_id = Some(span);
                    id_known = true;
                }
            }
            "gtp" if next == "ip" || next == "ipv6" => {
                l.tunnels.push("gtpu");
                l.tunnel_id = Some(hex(&nth(d, "gtp.teid", k)));
                id_known = true;
            }
            "teredo" => l.tunnels.push("teredo"),
            "ayiya" => l.tunnels.push("ayiya"),
            _ => {}
        }
        *n.entry(t).or_default() += 1;
    }
    if !id_known {
        l.tunnel_id = None;
    }
    if last_ip.is_none() {
        l.vlans = vlan_start..vlan_end;
    }
    // The innermost IP's own transport header, if it has one.
    let after = last_ip.map_or(0, |i| i + 1);
    let transport = tokens[after.min(tokens.len())..]
        .iter()
        .position(|t| *t == "tcp" || *t == "udp")
        .map(|j| tokens[after + j]);
    let count = |name: &str| {
        tokens[..after.min(tokens.len())]
            .iter()
            .filter(|t| **t == name)
            .count()
    };
    if last_ip.is_some_and(|i| tokens[i] == "ipv6") {
        let rest = &tokens[after.min(tokens.len())..];
        let ext = rest.iter().take_while(|t| t.starts_with("ipv6.")).count();
        let proto = match rest.get(ext).copied() {
            Some("tcp") => Some(6),
            Some("udp") => Some(17),
            Some("icmpv6") => Some(58),
            Some("ip") => Some(4),
            Some("ipv6") => Some(41),
            Some("gre") => Some(47),
            _ => None,
        };
        if ext > 0 {
            l.ip_proto = proto.map(|p: u8| p.to_string());
        }
    }
    l.tcp = (transport == Some("tcp")).then(|| count("tcp"));
    l.udp = (transport == Some("udp")).then(|| count("udp"));
    if !l.tunnels.is_empty() {
        let first_ip = tokens.iter().position(|t| *t == "ip" || *t == "ipv6");
        l.outer = first_ip.map(|i| {
            (
                tokens[i] == "ipv6",
                tokens.get(i + 1).is_some_and(|t| *t == "udp"),
            )
        });
    }
    l
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
    fn tunnels(&self, i: usize) -> String {
        let a = self
            .0
            .column_by_name("tunnels")
            .expect("tunnels")
            .as_list::<i32>();
        if a.is_null(i) {
            return String::new();
        }
        let v = a.value(i);
        let v = v.as_string::<i32>();
        (0..v.len())
            .map(|j| v.value(j))
            .collect::<Vec<_>>()
            .join(",")
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
#[allow(clippy::too_many_arguments)]
fn compare(
    file: &str,
    batches: &[RecordBatch],
    oracle: &[OracleRow],
    depth: &BTreeMap<String, OracleRow>,
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
    // Fragments: our datagram (its first fragment's frame) → the frame that completed it;
    // tshark's completing frame → how many fragments name it.
    let mut completed_by: BTreeMap<u64, u64> = BTreeMap::new();
    for b in batches {
        let o = Ours(b);
        for i in 0..b.num_rows() {
            if let (Some(d), Some(_)) = (o.u("frag_datagram", i), o.u("frag_count", i)) {
                completed_by.insert(d, o.u("frame_number", i).unwrap_or(0));
            }
        }
    }
    let reassembled_in = |d: &OracleRow| {
        let v4 = d.get("ip.reassembled_in").map_or("", String::as_str);
        let v6 = d.get("ipv6.reassembled.in").map_or("", String::as_str);
        let v = if v4.is_empty() { v6 } else { v4 };
        v.rsplit(',').next().unwrap_or("").to_string()
    };
    let mut tshark_fragments: BTreeMap<String, u64> = BTreeMap::new();
    for d in depth.values() {
        let r = reassembled_in(d);
        if !r.is_empty() {
            *tshark_fragments.entry(r).or_default() += 1;
        }
    }
    let mut rows = oracle.iter();
    for b in batches {
        let o = Ours(b);
        for i in 0..b.num_rows() {
            let Some(t) = rows.next() else { return };
            let frame = o.u("frame_number", i).unwrap_or(0);
            let d = depth.get(&first(t, "frame.number"));
            let l = layers(d);
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
                nth(t, "eth.src", l.eth),
            );
            check(
                stats,
                frame,
                "dst_mac",
                o.str("dst_mac", i),
                nth(t, "eth.dst", l.eth),
            );
            // Our VLAN tags must be tshark's outermost ones (inside the innermost Ethernet
            // header), in order.
            let vlans = o.vlans(i);
            let all_vlans: Vec<String> = t
                .get("vlan.id")
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let tshark_vlans: Vec<String> = if d.is_some() {
                all_vlans
                    .get(l.vlans.clone())
                    .map(<[String]>::to_vec)
                    .unwrap_or_default()
            } else {
                all_vlans
            };
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
            let at = |f: &str| if f.starts_with("ipv6.") { l.ip6 } else { l.ip4 };
            let tshark_ip = |f: &str| {
                // No IP for us: tshark must have none either, of either version.
                if version.is_none() {
                    let v4 = nth(t, f, at(f));
                    if !v4.is_empty() {
                        return v4;
                    }
                    let f6 = f.replace("ip.", "ipv6.").replace("ipv6.proto", "ipv6.nxt");
                    return nth(t, &f6, at(&f6));
                }
                nth(t, f, at(f))
            };
            check(stats, frame, "src_ip", o.str("src_ip", i), tshark_ip(src));
            check(stats, frame, "dst_ip", o.str("dst_ip", i), tshark_ip(dst));
            let tshark_proto = match (&l.ip_proto, version) {
                (Some(p), Some(6)) => p.clone(),
                _ => tshark_ip(proto),
            };
            check(
                stats,
                frame,
                "ip_proto",
                o.text("ip_proto", i),
                tshark_proto,
            );
            if version != Some(6) {
                // tshark's ip.len is IPv4's total length; IPv6 has no such field there.
                check(
                    stats,
                    frame,
                    "ip_len",
                    o.text("ip_len", i),
                    nth(t, "ip.len", l.ip4),
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
            // The innermost IP header's transport occurrence.
            let port = |f: &str| {
                let k = if f.starts_with("tcp.") { l.tcp } else { l.udp };
                k.map(|k| nth(t, f, k)).unwrap_or_default()
            };
            if let Some((sp, dp)) = ports {
                let pick = |f: &str, other: &str| {
                    if f.is_empty() {
                        let tcp = port(other);
                        if tcp.is_empty() {
                            port(&other.replace("tcp.", "udp."))
                        } else {
                            tcp
                        }
                    } else {
                        port(f)
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
                port("tcp.flags")
            } else {
                String::new()
            };
            check(stats, frame, "tcp_flags", flags, tshark_flags);
            let Some(d) = d else { continue };
            // The envelope.
            // GRE carrying PPP: tshark's layers do not say the version; ours name it.
            let ours_tunnels = o.tunnels(i);
            let tshark_tunnels = l
                .tunnels
                .iter()
                .zip(ours_tunnels.split(',').chain(std::iter::repeat("")))
                .map(|(t, ours)| match *t {
                    "gre|pptp" if ours == "gre" || ours == "pptp" => ours,
                    t => t,
                })
                .collect::<Vec<_>>()
                .join(",");
            check(stats, frame, "tunnels", ours_tunnels, tshark_tunnels);
            if let Some(id) = &l.tunnel_id {
                check(
                    stats,
                    frame,
                    "tunnel_id",
                    o.text("tunnel_id", i),
                    id.clone(),
                );
            }
            let (src, dst, sport, dport) = match l.outer {
                Some((v6, udp)) => {
                    let ip = if v6 { "ipv6" } else { "ip" };
                    let udp_port = |f: &str| if udp { nth(t, f, 0) } else { String::new() };
                    (
                        nth(t, &format!("{ip}.src"), 0),
                        nth(t, &format!("{ip}.dst"), 0),
                        udp_port("udp.srcport"),
                        udp_port("udp.dstport"),
                    )
                }
                None => Default::default(),
            };
            check(stats, frame, "outer_src_ip", o.str("outer_src_ip", i), src);
            check(stats, frame, "outer_dst_ip", o.str("outer_dst_ip", i), dst);
            check(
                stats,
                frame,
                "outer_src_port",
                o.text("outer_src_port", i),
                sport,
            );
            check(
                stats,
                frame,
                "outer_dst_port",
                o.text("outer_dst_port", i),
                dport,
            );
            // Fragments: the frame that completes this one's datagram (tshark's
            // reassembled_in, empty on the completing frame itself), and on the completing
            // frame, how many fragments made it.
            let ours_in = o
                .u("frag_datagram", i)
                .and_then(|dg| completed_by.get(&dg))
                .filter(|c| **c != frame)
                .map(|c| c.to_string())
                .unwrap_or_default();
            check(
                stats,
                frame,
                "frag_reassembled_in",
                ours_in,
                reassembled_in(d),
            );
            let tshark_count = tshark_fragments
                .get(&frame.to_string())
                .map(|n| (n + 1).to_string())
                .unwrap_or_default();
            check(
                stats,
                frame,
                "frag_count",
                o.text("frag_count", i),
                tshark_count,
            );
            // QUIC: the version of the datagram's first long-header packet (tshark lists one
            // per coalesced packet; short-header packets have none).
            let ours_quic = o
                .u("quic_version", i)
                .map(|v| format!("0x{v:08x}"))
                .unwrap_or_default();
            check(
                stats,
                frame,
                "quic_version",
                ours_quic,
                first(d, "quic.version"),
            );
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
    let mut depth_files = 0;
    let custom_block_files = common::custom_block_files(&dir);
    for file in common::manifest_files(&dir) {
        let oracle = ["tsv", "tsv.gz"]
            .iter()
            .map(|ext| dir.join("oracle").join(format!("{file}.{ext}")))
            .find(|p| p.exists());
        let Some(oracle) = oracle else { continue };
        let depth_path = dir.join("oracle-depth").join(format!("{file}.tsv"));
        let depth: BTreeMap<String, OracleRow> = if depth_path.exists() {
            depth_files += 1;
            read_oracle(&depth_path)
                .into_iter()
                .map(|r| (first(&r, "frame.number"), r))
                .collect()
        } else {
            BTreeMap::new()
        };
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
            &depth,
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
    assert!(
        depth_files >= 40,
        "only {depth_files} captures had a depth oracle"
    );

    let mut report = String::new();
    let _ = writeln!(
        report,
        "per-field match against tshark over {compared_files} captures \
         ({depth_files} with a depth oracle: innermost packet, envelope and fragments):"
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
