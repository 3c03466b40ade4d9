//! Flows and application fields against a live tshark, over the whole corpus.
//!
//! Every capture of `$PCAPLAB_CORPUS/manifest.csv` and `manifest-depth.csv` that pcaplab can
//! open is converted, with flow timeouts so long that no flow is ever split by idleness, and
//! tshark reads the same file once:
//!
//! ```text
//! tshark -n -r FILE -T fields -E separator=/t -E occurrence=f -e frame.number \
//!   -e dns.qry.name -e tls.handshake.extensions_server_name -e http.host \
//!   -e tls.handshake.ja3 -e http.request.method -e http.request.uri -e dns.qry.type \
//!   -e tls.handshake.extensions_alpn_str -e http.user_agent -e http.response.code \
//!   -e http.content_type -e ssh.protocol -e dhcp.option.dhcp -e dhcp.option.hostname \
//!   -e tcp.segment -e frame.time_epoch -e eth.src -e ip.src -e ipv6.src \
//!   -e frame.protocols -e ip.dst -e ipv6.dst -e tcp.srcport -e tcp.dstport -e udp.srcport \
//!   -e udp.dstport -z conv,tcp -z conv,udp
//! ```
//!
//! 1. **Conversations.** tshark's TCP and UDP conversation tables against pcaplab's flow table:
//!    the TCP and UDP flows with ports, grouped by protocol and unordered pair of endpoints
//!    (VLAN ignored, as tshark ignores it), their `packets` summed. Per pair: present on both
//!    sides, one tshark conversation, same number of frames — or a difference.
//! 2. **Application fields.** Per frame, `dns_qname`, `tls_sni`, `http_host`, `tls_ja3`,
//!    `http_method`, `http_uri`, `dns_qtype`, `tls_alpn`, `http_user_agent`, `http_status`,
//!    `http_content_type`, `ssh_banner`, `dhcp_msg_type` and `dhcp_hostname` of the packet table
//!    against the first occurrence of tshark's field (for `tls_alpn`, whose value lists every
//!    offered protocol, its first protocol, since `occurrence=f` shows tshark's first ALPN value
//!    only; frames numbered from 1 in file order on both sides; tshark's rows for pcapng Custom
//!    Blocks are dropped first, as in `tests/oracle.rs`). Per field the
//!    test prints the frames where tshark has a value, where ours is equal, where only we have
//!    one, and the agreement; `dns_qname`, `tls_sni` and `http_host` must agree on at least 99%
//!    of tshark's values over the corpus. It also prints, for information only, the agreement
//!    if a value that tshark shows on the last segment of a TCP PDU it reassembled (`tcp.segment`)
//!    and that we show on the PDU's first segment counted as equal.
//! 3. **Services.** Per endpoint pair both sides have, the flows' `service` (joined over the
//!    pair's flows) against the protocols tshark dissected in the pair's frames
//!    (`frame.protocols`, mapped by [`SERVICES`]; frames in a tunnel or quoting a packet in an
//!    ICMP error are left out), with the agreement printed. A difference has the check
//!    `service`, the kind `tshark-only`, `ours-only` or `different`, and the pair with both sets
//!    as its subject.
//!
//! Every difference must be listed, with its reason, in `tests/flows-oracle-differences.tsv`
//! (columns: capture, check, kind, subject, reason). For an application field the check is the
//! column name, the kind `tshark-only`, `ours-only` or `different`, and the subject the frames
//! (`1-4,7,10-20/2`); one (capture, check, kind) may be split over several rows with different
//! reasons. For conversations the check is `conv_tcp` or `conv_udp`, the kind `tshark-only`,
//! `ours-only`, `frames-differ` or `tshark-split` (tshark has several conversations for the
//! pair), and the subject the pair with both frame counts (or, beyond
//! [`CONVERSATIONS_LISTED`] of a kind in a capture, their number and total frames). A capture
//! tshark cannot read is listed with check `file`, kind `tshark-unreadable`.
//!
//! A difference that is not listed fails the test, and so does a listed one that no longer
//! occurs (so the list stays true). Run with `PCAPLAB_ORACLE_WRITE=1` to rewrite the file with
//! the differences found: listed reasons are kept, new differences get the reason
//! `UNEXPLAINED`, which still fails until a person writes the reason.
//! `PCAPLAB_FLOWS_ORACLE_DUMP=<dir>` also writes pcaplab's packets and flows of every capture
//! there as CSV, to look into a difference.
//!
//! tshark is `$PCAPLAB_TSHARK` or `tshark` on the `PATH`; without it the test says so and
//! passes, unless `PCAPLAB_REQUIRE_ALL` is set. `.zst` captures are decompressed to a temporary
//! file for tshark (whose zstd support depends on how it was built); tshark reads `.gz` itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt16Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use pcaplab_core::flows::col as flow_col;
use pcaplab_core::{ConvertError, Engine, FlowConfig, Outputs};

use common::{compress_frames, corpus, expand_frames, manifest_files, read_parquet, tshark};

const DIFFERENCES: &str = "tests/flows-oracle-differences.tsv";

/// Long enough that no flow of the corpus ever times out.
const NEVER: i64 = i64::MAX / 4;

/// (our packet column, tshark field), in tshark's column order after `frame.number`.
const APP_FIELDS: [(&str, &str); 14] = [
    ("dns_qname", "dns.qry.name"),
    ("tls_sni", "tls.handshake.extensions_server_name"),
    ("http_host", "http.host"),
    ("tls_ja3", "tls.handshake.ja3"),
    ("http_method", "http.request.method"),
    ("http_uri", "http.request.uri"),
    ("dns_qtype", "dns.qry.type"),
    ("tls_alpn", "tls.handshake.extensions_alpn_str"),
    ("http_user_agent", "http.user_agent"),
    ("http_status", "http.response.code"),
    ("http_content_type", "http.content_type"),
    ("ssh_banner", "ssh.protocol"),
    ("dhcp_msg_type", "dhcp.option.dhcp"),
    ("dhcp_hostname", "dhcp.option.hostname"),
];

/// After the application fields: the first segment of the TCP PDU tshark reassembled in this
/// frame (for the agreement figure that allows for reassembly, see [`FieldStats`]).
const SEGMENT_FIELD: &str = "tcp.segment";

/// Next, to recognise pcapng Custom Blocks (see [`parse_tshark`]) and, with
/// [`SERVICE_FIELDS`], a frame's conversation.
const FRAME_FIELDS: [&str; 4] = ["frame.time_epoch", "eth.src", "ip.src", "ipv6.src"];

/// Last: the protocols tshark dissected in a frame and the rest of its conversation's key, for
/// the flows' `service` (see [`frame_services`]).
const SERVICE_FIELDS: [&str; 7] = [
    "frame.protocols",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
];

/// tshark's protocol names (`frame.protocols`) → the flow `service` that pcaplab gives the
/// same content (Zeek's names). mDNS and LLMNR are DNS messages, SSDP is HTTP over UDP, to
/// pcaplab as to Zeek.
const SERVICES: [(&str, &str); 9] = [
    ("dns", "dns"),
    ("mdns", "dns"),
    ("llmnr", "dns"),
    ("http", "http"),
    ("ssdp", "http"),
    ("tls", "ssl"),
    ("quic", "quic"),
    ("ssh", "ssh"),
    ("dhcp", "dhcp"),
];

/// Conversation differences of one kind in one capture are listed one by one up to this
/// many, as a count beyond.
const CONVERSATIONS_LISTED: usize = 10;

/// The fields that must agree on at least [`REQUIRED_AGREEMENT`] of tshark's values, QUIC's
/// included (both decrypt the client's Initial packets and read the ClientHello inside).
const REQUIRED: [&str; 3] = ["dns_qname", "tls_sni", "http_host"];
const REQUIRED_AGREEMENT: f64 = 0.99;

/// `tls_alpn` is reported, not required. tshark also shows the ALPN protocol a server selected
/// (ServerHello, or EncryptedExtensions it decrypts); pcaplab's is a ClientHello's offer. The
/// listed differences whose reason starts with one of these (or "QUIC") are left out of the
/// ClientHello agreement line printed for it.
const SERVER_ALPN_REASONS: [&str; 2] = ["ServerHello", "TLS 1.3 EncryptedExtensions"];

// ---------------------------------------------------------------------------------------------
// tshark
// ---------------------------------------------------------------------------------------------

/// An unordered pair of endpoints (address text, port), smaller first.
type Pair = ((String, u16), (String, u16));

fn pair(a: (String, u16), b: (String, u16)) -> Pair {
    if a <= b { (a, b) } else { (b, a) }
}

/// `ip:port`, the port after the last colon (IPv6 addresses have colons).
fn endpoint(text: &str) -> (String, u16) {
    let (addr, port) = text
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("conversation endpoint without a port: {text}"));
    (
        addr.to_string(),
        port.parse()
            .unwrap_or_else(|_| panic!("conversation endpoint port: {text}")),
    )
}

#[derive(Default)]
struct TsharkOutput {
    /// Frame number → the application fields' values ("" when absent), in [`APP_FIELDS`] order.
    frames: BTreeMap<u64, Vec<String>>,
    /// Frame number → first segment of the TCP PDU reassembled in it, when that is another frame.
    first_segment: BTreeMap<u64, u64>,
    /// (protocol, pair) → total frames of each tshark conversation of the pair.
    conversations: BTreeMap<(u8, Pair), Vec<u64>>,
    /// (protocol, pair) → the services of its frames (see [`frame_services`]).
    services: BTreeMap<(u8, Pair), BTreeSet<&'static str>>,
}

/// The conversation of one tshark frame and the services its protocols show: `None` for a
/// frame that is not one TCP or UDP packet in one IP header (tunnelled, an ICMP error quoting
/// a packet, a fragment, no transport), whose first field occurrences would mix layers.
/// `frame` holds the [`FRAME_FIELDS`] then the [`SERVICE_FIELDS`].
fn frame_services(frame: &[&str]) -> Option<((u8, Pair), BTreeSet<&'static str>)> {
    let [
        _,
        _,
        ip_src,
        ipv6_src,
        protocols,
        ip_dst,
        ipv6_dst,
        tsp,
        tdp,
        usp,
        udp_,
    ] = frame
    else {
        panic!("frame fields: {frame:?}");
    };
    let layers: Vec<&str> = protocols.split(':').collect();
    let ips = layers
        .iter()
        .filter(|l| matches!(**l, "ip" | "ipv6"))
        .count();
    if ips != 1 || layers.iter().any(|l| l.starts_with("icmp")) {
        return None;
    }
    let (proto, sp, dp) = match (tsp.is_empty(), usp.is_empty()) {
        (false, _) => (6, tsp, tdp),
        (true, false) => (17, usp, udp_),
        _ => return None,
    };
    let (src, dst) = if ip_src.is_empty() {
        (ipv6_src, ipv6_dst)
    } else {
        (ip_src, ip_dst)
    };
    let port = |p: &str| p.parse::<u16>().ok();
    let key = pair((src.to_string(), port(sp)?), (dst.to_string(), port(dp)?));
    let services = layers
        .iter()
        .filter_map(|l| SERVICES.iter().find(|(t, _)| t == l).map(|(_, s)| *s))
        .collect();
    Some(((proto, key), services))
}

/// Parse `-T fields` lines followed by the `-z conv` tables. `custom_blocks`: the file holds
/// pcapng Custom Blocks, which tshark lists as frames (rows without a timestamp, an Ethernet or
/// an IP header) and pcaplab skips; those rows are dropped and the frames renumbered so that
/// they are pcaplab's numbers (as tests/oracle.rs does).
fn parse_tshark(text: &str, custom_blocks: bool) -> TsharkOutput {
    let mut out = TsharkOutput::default();
    let mut lines = text.lines();
    // tshark's frame number → ours (they differ only where Custom Blocks were dropped).
    let mut ours_of: BTreeMap<u64, u64> = BTreeMap::new();
    let n = APP_FIELDS.len();
    for line in lines.by_ref() {
        if line.starts_with("=====") {
            break;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            cols.len(),
            2 + n + FRAME_FIELDS.len() + SERVICE_FIELDS.len(),
            "tshark fields line: {line:?}"
        );
        let tshark_frame: u64 = cols[0].parse().expect("tshark frame.number");
        let frame_fields = &cols[2 + n..];
        if custom_blocks
            && frame_fields[..FRAME_FIELDS.len()]
                .iter()
                .all(|c| c.is_empty())
        {
            continue;
        }
        if let Some((key, services)) = frame_services(frame_fields) {
            out.services.entry(key).or_default().extend(services);
        }
        let frame = ours_of.len() as u64 + 1;
        let frame = if custom_blocks { frame } else { tshark_frame };
        ours_of.insert(tshark_frame, frame);
        let values = cols[1..=n].iter().map(|v| v.to_string()).collect();
        out.frames.insert(frame, values);
        if let Some(first) = cols[1 + n]
            .parse::<u64>()
            .ok()
            .and_then(|s| ours_of.get(&s).copied())
            .filter(|s| *s != frame)
        {
            out.first_segment.insert(frame, first);
        }
    }
    let mut proto = None;
    for line in lines {
        let line = line.trim();
        if line.starts_with("TCP Conversations") {
            proto = Some(6);
        } else if line.starts_with("UDP Conversations") {
            proto = Some(17);
        } else if line.contains(" <-> ") {
            // A <-> B  <-frames bytes unit  ->frames bytes unit  frames bytes unit  start  dur
            let t: Vec<&str> = line.split_whitespace().collect();
            assert!(t.len() >= 12 && t[1] == "<->", "conversation line: {line}");
            let num = |i: usize| -> u64 {
                t[i].replace(',', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("frames in conversation line: {line}"))
            };
            let (back, forth, total) = (num(3), num(6), num(9));
            assert_eq!(back + forth, total, "conversation line: {line}");
            let proto = proto.expect("conversation line before a table title");
            out.conversations
                .entry((proto, pair(endpoint(t[0]), endpoint(t[2]))))
                .or_default()
                .push(total);
        }
    }
    out
}

/// Run tshark on `path`; `None` when it cannot read the file at all.
fn run_tshark(program: &OsString, path: &Path) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(["-n", "-r"]).arg(path).args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=f",
        "-e",
        "frame.number",
    ]);
    for (_, field) in APP_FIELDS {
        cmd.args(["-e", field]);
    }
    cmd.args(["-e", SEGMENT_FIELD]);
    for field in FRAME_FIELDS.into_iter().chain(SERVICE_FIELDS) {
        cmd.args(["-e", field]);
    }
    cmd.args(["-z", "conv,tcp", "-z", "conv,udp"]);
    let out = cmd.output().expect("run tshark");
    // A damaged file: tshark exits with an error after the frames it could read, and still
    // prints the conversation tables of those.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() || !text.is_empty()).then_some(text)
}

// ---------------------------------------------------------------------------------------------
// pcaplab
// ---------------------------------------------------------------------------------------------

struct Ours {
    packets: Vec<RecordBatch>,
    flows: Vec<RecordBatch>,
}

/// `None` when pcaplab cannot open the file. With `dump`, the packets and flows are also
/// written there as CSV (`<name>.csv`, `<name>.flows.csv`), to look into differences.
fn convert(engine: &Engine, name: &str, bytes: Vec<u8>, dump: Option<&Path>) -> Option<Ours> {
    let (mut parquet, mut flows) = (Vec::new(), Vec::new());
    let mut outputs = Outputs {
        parquet: Some(Box::new(&mut parquet)),
        flows: Some(Box::new(&mut flows)),
        ..Outputs::default()
    };
    if let Some(dir) = dump {
        let create = |suffix: &str| {
            let path = dir.join(format!("{name}{suffix}"));
            std::fs::File::create(&path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
        };
        outputs.csv = Some(Box::new(create(".csv")));
        outputs.flows_csv = Some(Box::new(create(".flows.csv")));
    }
    let report = engine.convert(name, Box::new(Cursor::new(bytes)), outputs);
    match report {
        Ok(_) => {}
        Err(ConvertError::Open { .. }) => return None,
        Err(e) => panic!("{name}: {e}"),
    }
    Some(Ours {
        packets: read_parquet(parquet),
        flows: read_parquet(flows),
    })
}

/// Text of a string or UInt16 column's row ("" for null).
fn text(b: &RecordBatch, name: &str, i: usize) -> String {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"));
    if c.is_null(i) {
        return String::new();
    }
    match c.data_type() {
        arrow_schema::DataType::Utf8 => c.as_string::<i32>().value(i).to_string(),
        arrow_schema::DataType::UInt16 => c.as_primitive::<UInt16Type>().value(i).to_string(),
        arrow_schema::DataType::UInt8 => c.as_primitive::<UInt8Type>().value(i).to_string(),
        other => panic!("{name}: {other}"),
    }
}

/// (protocol, pair) → packets of our TCP and UDP flows with ports, VLANs ignored.
fn our_conversations(flows: &[RecordBatch]) -> BTreeMap<(u8, Pair), u64> {
    let mut out: BTreeMap<(u8, Pair), u64> = BTreeMap::new();
    for b in flows {
        let proto = b
            .column_by_name(flow_col::IP_PROTO)
            .expect("ip_proto")
            .as_primitive::<UInt8Type>();
        let packets = b
            .column_by_name(flow_col::PACKETS)
            .expect("packets")
            .as_primitive::<UInt64Type>();
        let port = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("column {name}"))
                .as_primitive::<UInt16Type>()
                .clone()
        };
        let (sp, dp) = (port(flow_col::SRC_PORT), port(flow_col::DST_PORT));
        for i in 0..b.num_rows() {
            let p = proto.value(i);
            if !(p == 6 || p == 17) || sp.is_null(i) || dp.is_null(i) {
                continue;
            }
            let key = pair(
                (text(b, flow_col::SRC_IP, i), sp.value(i)),
                (text(b, flow_col::DST_IP, i), dp.value(i)),
            );
            *out.entry((p, key)).or_default() += packets.value(i);
        }
    }
    out
}

/// (protocol, pair) → the services of our TCP and UDP flows with ports (VLANs ignored, the
/// flows of a pair joined).
fn our_services(flows: &[RecordBatch]) -> BTreeMap<(u8, Pair), BTreeSet<String>> {
    let mut out: BTreeMap<(u8, Pair), BTreeSet<String>> = BTreeMap::new();
    for b in flows {
        let proto = b
            .column_by_name(flow_col::IP_PROTO)
            .expect("ip_proto")
            .as_primitive::<UInt8Type>();
        for i in 0..b.num_rows() {
            let p = proto.value(i);
            let (sp, dp) = (
                text(b, flow_col::SRC_PORT, i),
                text(b, flow_col::DST_PORT, i),
            );
            if !(p == 6 || p == 17) || sp.is_empty() || dp.is_empty() {
                continue;
            }
            let port = |t: &str| t.parse::<u16>().expect("port");
            let key = pair(
                (text(b, flow_col::SRC_IP, i), port(&sp)),
                (text(b, flow_col::DST_IP, i), port(&dp)),
            );
            let services = out.entry((p, key)).or_default();
            let service = text(b, flow_col::SERVICE, i);
            services.extend(
                service
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out
}

/// Frame number → our application fields' values ("" for null), in [`APP_FIELDS`] order.
fn our_app_fields(packets: &[RecordBatch]) -> BTreeMap<u64, Vec<String>> {
    let mut out = BTreeMap::new();
    for b in packets {
        let frame = b
            .column_by_name("frame_number")
            .expect("frame_number")
            .as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            let values = APP_FIELDS
                .iter()
                .map(|(c, _)| {
                    let mut v = text(b, c, i);
                    if *c == "tls_alpn" {
                        // tshark's first occurrence: the first offered protocol.
                        v.truncate(v.find(',').unwrap_or(v.len()));
                    }
                    v
                })
                .collect();
            out.insert(frame.value(i), values);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Differences and the list of them
// ---------------------------------------------------------------------------------------------

/// (capture, check, kind).
type Key = (String, String, String);

/// What the corpus showed: frame differences of the application fields, conversation
/// differences (subject), and files tshark could not read.
#[derive(Default)]
struct Found {
    frames: BTreeMap<Key, BTreeSet<u64>>,
    subjects: BTreeSet<(Key, String)>,
}

struct ListedRow {
    key: Key,
    subject: String,
    reason: String,
}

fn is_frame_check(check: &str) -> bool {
    APP_FIELDS.iter().any(|(c, _)| *c == check)
}

fn differences_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DIFFERENCES)
}

fn listed() -> Vec<ListedRow> {
    let Ok(text) = std::fs::read_to_string(differences_path()) else {
        return Vec::new();
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
            ListedRow {
                key: (c[0].into(), c[1].into(), c[2].into()),
                subject: c[3].into(),
                reason: c[4].into(),
            }
        })
        .collect()
}

const HEADER: &str = "\
# Differences between pcaplab and tshark checked by tests/flows_oracle.rs (see its doc comment).
# capture\tcheck\tkind\tsubject (frames, or conversation with ours/tshark frames)\treason
";

/// Compare `found` with the list; returns (unexplained, stale) descriptions. With `write`,
/// the list is rewritten: reasons kept where they still apply, `UNEXPLAINED` for the rest.
fn check_listed(found: &Found, write: bool) -> (Vec<String>, Vec<String>) {
    let rows = listed();
    let mut unexplained = Vec::new();
    let mut stale = Vec::new();
    let mut out_rows: Vec<(Key, String, String)> = Vec::new();

    // Frames: the rows of one key must not overlap; together they must be the found set.
    let mut by_key: BTreeMap<&Key, Vec<(BTreeSet<u64>, &str)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| is_frame_check(&r.key.1)) {
        by_key
            .entry(&r.key)
            .or_default()
            .push((expand_frames(&r.subject), r.reason.as_str()));
    }
    let keys: BTreeSet<&Key> = by_key.keys().copied().chain(found.frames.keys()).collect();
    let empty = BTreeSet::new();
    for key in keys {
        let f = found.frames.get(key).unwrap_or(&empty);
        let mut covered = BTreeSet::new();
        for (frames, reason) in by_key.get(key).map(Vec::as_slice).unwrap_or_default() {
            assert!(
                covered.is_disjoint(frames),
                "{DIFFERENCES}: rows of {key:?} overlap"
            );
            covered.extend(frames.iter().copied());
            let gone: BTreeSet<u64> = frames.difference(f).copied().collect();
            if !gone.is_empty() {
                stale.push(format!("{key:?} frames {}", compress_frames(&gone)));
            }
            let kept: BTreeSet<u64> = frames.intersection(f).copied().collect();
            if *reason == "UNEXPLAINED" {
                if !kept.is_empty() {
                    unexplained.push(format!("{key:?} frames {}", compress_frames(&kept)));
                }
                continue;
            }
            if !kept.is_empty() {
                out_rows.push((key.clone(), compress_frames(&kept), reason.to_string()));
            }
        }
        let new: BTreeSet<u64> = f.difference(&covered).copied().collect();
        if !new.is_empty() {
            unexplained.push(format!("{key:?} frames {}", compress_frames(&new)));
        }
        let not_explained: BTreeSet<u64> = f
            .iter()
            .copied()
            .filter(|fr| {
                !by_key.get(key).is_some_and(|rs| {
                    rs.iter()
                        .any(|(frames, r)| *r != "UNEXPLAINED" && frames.contains(fr))
                })
            })
            .collect();
        if !not_explained.is_empty() {
            out_rows.push((
                key.clone(),
                compress_frames(&not_explained),
                "UNEXPLAINED".into(),
            ));
        }
    }

    // Conversations and files: one row per difference.
    let listed_subjects: BTreeMap<(Key, String), &str> = rows
        .iter()
        .filter(|r| !is_frame_check(&r.key.1))
        .map(|r| ((r.key.clone(), r.subject.clone()), r.reason.as_str()))
        .collect();
    for k in listed_subjects.keys() {
        if !found.subjects.contains(k) {
            stale.push(format!("{:?} {}", k.0, k.1));
        }
    }
    for k in &found.subjects {
        let reason = match listed_subjects.get(k) {
            Some(r) if *r != "UNEXPLAINED" => r.to_string(),
            _ => {
                unexplained.push(format!("{:?} {}", k.0, k.1));
                "UNEXPLAINED".into()
            }
        };
        out_rows.push((k.0.clone(), k.1.clone(), reason));
    }

    if write {
        out_rows.sort_by(|a, b| {
            let first = |r: &(Key, String, String)| {
                if is_frame_check(&r.0.1) {
                    expand_frames(&r.1).first().copied().unwrap_or(0)
                } else {
                    0
                }
            };
            (&a.0, first(a), &a.1).cmp(&(&b.0, first(b), &b.1))
        });
        let mut text = String::from(HEADER);
        for (k, subject, reason) in &out_rows {
            let _ = writeln!(text, "{}\t{}\t{}\t{subject}\t{reason}", k.0, k.1, k.2);
        }
        std::fs::write(differences_path(), text).expect("write the differences");
    }
    (unexplained, stale)
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct FieldStats {
    /// Frames where tshark has a value, and where ours equals it.
    tshark: u64,
    agree: u64,
    /// Frames where tshark shows a value on the last segment of a TCP PDU it reassembled, we
    /// have none there but the same value on the PDU's first segment: the same request, found
    /// without reassembly. Still differences (listed); only an extra agreement figure.
    on_first_segment: u64,
    /// Frames where only we have a value.
    ours_only: u64,
}

#[derive(Default)]
struct ConvStats {
    files: u64,
    tshark: u64,
    tshark_pairs: u64,
    ours: u64,
    equal: u64,
    different: u64,
}

fn compare_app_fields(
    file: &str,
    tshark: &TsharkOutput,
    ours: &BTreeMap<u64, Vec<String>>,
    stats: &mut [FieldStats; APP_FIELDS.len()],
    found: &mut Found,
    examples: &mut BTreeMap<Key, Vec<String>>,
) {
    let frames: BTreeSet<u64> = tshark.frames.keys().chain(ours.keys()).copied().collect();
    let none = vec![String::new(); APP_FIELDS.len()];
    for frame in frames {
        let t = tshark.frames.get(&frame).unwrap_or(&none);
        let o = ours.get(&frame).unwrap_or(&none);
        let first = tshark
            .first_segment
            .get(&frame)
            .and_then(|f| ours.get(f))
            .unwrap_or(&none);
        for (i, (column, _)) in APP_FIELDS.iter().enumerate() {
            let (t, o) = (&t[i], &o[i]);
            let s = &mut stats[i];
            if !t.is_empty() {
                s.tshark += 1;
            }
            let kind = match (t.is_empty(), o.is_empty()) {
                _ if t == o => {
                    if !t.is_empty() {
                        s.agree += 1;
                    }
                    continue;
                }
                (true, _) => {
                    s.ours_only += 1;
                    "ours-only"
                }
                (_, true) => {
                    if first[i] == *t {
                        s.on_first_segment += 1;
                    }
                    "tshark-only"
                }
                _ => "different",
            };
            let key = (file.to_string(), column.to_string(), kind.to_string());
            let ex = examples.entry(key.clone()).or_default();
            if ex.len() < 3 {
                ex.push(format!("frame {frame}: ours {o:?}, tshark {t:?}"));
            }
            found.frames.entry(key).or_default().insert(frame);
        }
    }
}

fn compare_conversations(
    file: &str,
    tshark: &BTreeMap<(u8, Pair), Vec<u64>>,
    ours: &BTreeMap<(u8, Pair), u64>,
    stats: &mut ConvStats,
    found: &mut Found,
) {
    stats.files += 1;
    stats.tshark += tshark.values().map(|v| v.len() as u64).sum::<u64>();
    stats.tshark_pairs += tshark.len() as u64;
    stats.ours += ours.len() as u64;
    let keys: BTreeSet<&(u8, Pair)> = tshark.keys().chain(ours.keys()).collect();
    // (capture, check, kind) → (subject, our frames, tshark's frames) per conversation.
    let mut kinds: BTreeMap<Key, Vec<(String, u64, u64)>> = BTreeMap::new();
    for key in keys {
        let (proto, ((a, pa), (b, pb))) = key;
        let t = tshark.get(key);
        let o = ours.get(key).copied();
        let t_sum: Option<u64> = t.map(|v| v.iter().sum());
        let kind = match (o, t) {
            (Some(o), Some(t)) if t.len() == 1 && t[0] == o => {
                stats.equal += 1;
                continue;
            }
            (None, _) => "tshark-only",
            (_, None) => "ours-only",
            (Some(o), Some(t)) if t.len() > 1 && t_sum == Some(o) => "tshark-split",
            _ => "frames-differ",
        };
        stats.different += 1;
        let t_text = t.map_or("-".to_string(), |v| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("+")
        });
        let o_text = o.map_or("-".to_string(), |n| n.to_string());
        let check = if *proto == 6 { "conv_tcp" } else { "conv_udp" };
        kinds
            .entry((file.to_string(), check.to_string(), kind.to_string()))
            .or_default()
            .push((
                format!("{a}:{pa} <-> {b}:{pb} ours={o_text} tshark={t_text}"),
                o.unwrap_or(0),
                t_sum.unwrap_or(0),
            ));
    }
    // One row per conversation, or a summary where a capture has many of one kind.
    for (key, list) in kinds {
        if list.len() <= CONVERSATIONS_LISTED {
            for (subject, _, _) in list {
                found.subjects.insert((key.clone(), subject));
            }
        } else {
            let ours: u64 = list.iter().map(|(_, o, _)| o).sum();
            let tshark: u64 = list.iter().map(|(_, _, t)| t).sum();
            found.subjects.insert((
                key,
                format!(
                    "{} conversations, ours={ours} tshark={tshark} frames in all",
                    list.len()
                ),
            ));
        }
    }
}

#[derive(Default)]
struct ServiceStats {
    /// Endpoint pairs that both sides have.
    pairs: u64,
    /// Of those, the pairs where tshark shows a service, and where ours are the same.
    tshark: u64,
    agree: u64,
    /// Pairs where only we show one.
    ours_only: u64,
}

/// The flows' `service` against the protocols tshark dissected in each conversation's frames
/// ([`SERVICES`]), per endpoint pair that both sides have. A difference is listed per pair,
/// or where a capture has more than [`CONVERSATIONS_LISTED`] of one kind with the same two
/// sets, as one row counting them.
fn compare_services(
    file: &str,
    tshark: &BTreeMap<(u8, Pair), BTreeSet<&'static str>>,
    ours: &BTreeMap<(u8, Pair), BTreeSet<String>>,
    stats: &mut ServiceStats,
    found: &mut Found,
) {
    let mut kinds: BTreeMap<(Key, String), Vec<String>> = BTreeMap::new();
    for (key, o) in ours {
        let (proto, ((a, pa), (b, pb))) = key;
        let Some(t) = tshark.get(key) else { continue };
        stats.pairs += 1;
        let t: BTreeSet<String> = t.iter().map(|s| s.to_string()).collect();
        if !t.is_empty() {
            stats.tshark += 1;
        }
        let kind = match (t.is_empty(), o.is_empty()) {
            _ if t == *o => {
                if !t.is_empty() {
                    stats.agree += 1;
                }
                continue;
            }
            (true, _) => {
                stats.ours_only += 1;
                "ours-only"
            }
            (_, true) => "tshark-only",
            _ => "different",
        };
        let join = |s: &BTreeSet<String>| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.iter().cloned().collect::<Vec<_>>().join(",")
            }
        };
        let sets = format!("ours={} tshark={}", join(o), join(&t));
        let transport = if *proto == 6 { "tcp" } else { "udp" };
        kinds
            .entry(((file.to_string(), "service".into(), kind.into()), sets))
            .or_default()
            .push(format!("{transport} {a}:{pa} <-> {b}:{pb}"));
    }
    for ((key, sets), pairs) in kinds {
        if pairs.len() <= CONVERSATIONS_LISTED {
            for p in pairs {
                found.subjects.insert((key.clone(), format!("{p} {sets}")));
            }
        } else {
            found
                .subjects
                .insert((key, format!("{} pairs {sets}", pairs.len())));
        }
    }
}

/// One `-T fields` line: frame number, application fields, first segment, frame fields.
fn fields_line(frame: u64, app: [&str; APP_FIELDS.len()], segment: &str, time: &str) -> String {
    let mut cols = vec![frame.to_string()];
    cols.extend(app.iter().map(|v| v.to_string()));
    cols.push(segment.to_string());
    cols.extend([
        time.to_string(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    cols.extend(SERVICE_FIELDS.map(|_| String::new()));
    cols.join("\t")
}

#[test]
fn frame_services_read_one_conversation() {
    fn frame(protocols: &str, tcp: bool) -> [&str; 11] {
        let (t, u) = if tcp { ("80", "") } else { ("", "53") };
        [
            "1.0", "", "10.0.0.1", "", protocols, "10.0.0.2", "", t, "40000", u, "40001",
        ]
    }
    let (key, services) =
        frame_services(&frame("eth:ethertype:ip:tcp:http:data-text-lines", true)).expect("tcp");
    assert_eq!(
        key,
        (6, pair(("10.0.0.1".into(), 80), ("10.0.0.2".into(), 40000)))
    );
    assert_eq!(services, BTreeSet::from(["http"]));
    let (key, services) = frame_services(&frame("eth:ethertype:ip:udp:mdns", false)).expect("udp");
    assert_eq!(key.0, 17);
    assert_eq!(services, BTreeSet::from(["dns"]));
    let (_, services) =
        frame_services(&frame("eth:ethertype:ip:udp:quic:tls", false)).expect("quic");
    assert_eq!(services, BTreeSet::from(["quic", "ssl"]));
    // Tunnelled, or an ICMP error quoting a packet: not one conversation.
    assert!(
        frame_services(&frame(
            "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp",
            true
        ))
        .is_none()
    );
    assert!(frame_services(&frame("eth:ethertype:ip:icmp:ip:udp:dns", false)).is_none());
}

#[test]
fn tshark_output_parses() {
    let host = [
        "",
        "",
        "a.example",
        "",
        "GET",
        "/",
        "",
        "h2",
        "curl/8",
        "",
        "",
        "",
        "",
        "",
    ];
    let text = [
        fields_line(1, [""; APP_FIELDS.len()], "", "1.0"),
        fields_line(2, host, "1", "1.1"),
        "================================================================================".into(),
        "UDP Conversations".into(),
        "Filter:<No Filter>".into(),
        "  | Frames  Bytes | ".into(),
        "10.0.0.1:5353 <-> 224.0.0.251:5353   0 0 bytes   14 3038 bytes   14 3038 bytes  \
         1217.3  60.2"
            .into(),
        "================================================================================".into(),
        "TCP Conversations".into(),
        "2001:618:400::5199:cc70:35995 <-> 2001:618:1:8000::5:80  12 13 kB  16 2323 bytes  \
         28 15 kB  0.0  1.5"
            .into(),
        "2001:618:1:8000::5:80 <-> 2001:618:400::5199:cc70:35995  1 1 kB  1 60 bytes  \
         2 1 kB  9.0  1.5"
            .into(),
    ]
    .join("\n");
    let t = parse_tshark(&text, false);
    assert_eq!(t.frames.len(), 2);
    assert_eq!(t.frames[&2][2], "a.example");
    assert_eq!(t.frames[&2][7], "h2");
    assert_eq!(t.first_segment, BTreeMap::from([(2, 1)]));
    let udp = pair(("10.0.0.1".into(), 5353), ("224.0.0.251".into(), 5353));
    assert_eq!(t.conversations[&(17, udp)], vec![14]);
    let tcp = pair(
        ("2001:618:400::5199:cc70".into(), 35995),
        ("2001:618:1:8000::5".into(), 80),
    );
    assert_eq!(t.conversations[&(6, tcp)], vec![28, 2]);

    // A Custom Block (no timestamp, no Ethernet, no IP) is not a frame of ours.
    let text = [
        fields_line(1, [""; APP_FIELDS.len()], "", ""),
        fields_line(2, host, "", "1.0"),
    ]
    .join("\n");
    let t = parse_tshark(&text, true);
    assert_eq!(t.frames.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(t.frames[&1][2], "a.example");
}

#[test]
fn matches_tshark_on_the_corpus() {
    let Some(dir) = corpus() else { return };
    let Some(program) = tshark() else { return };
    let started = std::time::Instant::now();
    let engine = Engine::builder()
        .jobs(2)
        .flows(FlowConfig {
            tcp_timeout_ns: NEVER,
            udp_timeout_ns: NEVER,
            other_timeout_ns: NEVER,
            ..FlowConfig::default()
        })
        .build()
        .expect("engine");
    let custom_block_files = common::custom_block_files(&dir);

    let dump = std::env::var_os("PCAPLAB_FLOWS_ORACLE_DUMP").map(PathBuf::from);
    let mut field_stats: [FieldStats; APP_FIELDS.len()] = Default::default();
    let mut conv_stats = ConvStats::default();
    let mut service_stats = ServiceStats::default();
    let mut found = Found::default();
    let mut examples: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut unopened = Vec::new();
    let mut app_files = 0;
    for file in manifest_files(&dir) {
        let path = dir.join(&file);
        // tshark runs while pcaplab converts.
        let (tshark_path, _temp) = if file.ends_with(".zst") {
            let mut temp = tempfile::Builder::new()
                .suffix(".pcapng")
                .tempfile()
                .expect("temporary file");
            let compressed = std::fs::File::open(&path).expect("open capture");
            zstd::stream::copy_decode(compressed, &mut temp).expect("zstd-decompress");
            (temp.path().to_path_buf(), Some(temp))
        } else {
            (path.clone(), None)
        };
        let tshark_run = {
            let program = program.clone();
            std::thread::spawn(move || run_tshark(&program, &tshark_path))
        };
        let ours = convert(
            &engine,
            &file,
            std::fs::read(&path).expect("read capture"),
            dump.as_deref(),
        );
        let tshark_text = tshark_run.join().expect("tshark thread");
        let Some(ours) = ours else {
            unopened.push(file);
            continue;
        };
        let Some(tshark_text) = tshark_text else {
            found.subjects.insert((
                (file.clone(), "file".into(), "tshark-unreadable".into()),
                "-".into(),
            ));
            continue;
        };
        let t = parse_tshark(&tshark_text, custom_block_files.contains(&file));
        compare_conversations(
            &file,
            &t.conversations,
            &our_conversations(&ours.flows),
            &mut conv_stats,
            &mut found,
        );
        compare_services(
            &file,
            &t.services,
            &our_services(&ours.flows),
            &mut service_stats,
            &mut found,
        );
        compare_app_fields(
            &file,
            &t,
            &our_app_fields(&ours.packets),
            &mut field_stats,
            &mut found,
            &mut examples,
        );
        app_files += 1;
    }
    assert!(
        app_files >= 60,
        "only {app_files} captures were compared (pcaplab could not open {unopened:?})"
    );

    let mut report = String::new();
    let _ = writeln!(
        report,
        "application fields against tshark over {app_files} captures \
         (pcaplab cannot open {}: {}):",
        unopened.len(),
        unopened.join(", ")
    );
    let _ = writeln!(
        report,
        "  {:<12} {:>7} {:>7} {:>9} {:>8}  {:>12} {:>9}",
        "field", "tshark", "agree", "only ours", "agree %", "on 1st seg.", "with it %"
    );
    let mut below = Vec::new();
    // tshark's ALPN values of server messages, from the listed differences.
    let mut server_alpn = 0;
    for row in listed() {
        if row.key.1 == "tls_alpn"
            && row.key.2 == "tshark-only"
            && SERVER_ALPN_REASONS
                .iter()
                .any(|r| row.reason.starts_with(r))
        {
            server_alpn += expand_frames(&row.subject).len() as u64;
        }
    }
    for ((column, _), s) in APP_FIELDS.iter().zip(&field_stats) {
        let share = s.agree as f64 / s.tshark.max(1) as f64;
        let with_first = (s.agree + s.on_first_segment) as f64 / s.tshark.max(1) as f64;
        let _ = writeln!(
            report,
            "  {column:<12} {:>7} {:>7} {:>9} {:>7.2}%  {:>12} {:>8.2}%",
            s.tshark,
            s.agree,
            s.ours_only,
            100.0 * share,
            s.on_first_segment,
            100.0 * with_first
        );
        if REQUIRED.contains(column) && (s.tshark == 0 || share < REQUIRED_AGREEMENT) {
            below.push(*column);
        }
        if *column == "tls_alpn" {
            let hellos = s.tshark.saturating_sub(server_alpn);
            let _ = writeln!(
                report,
                "  {column:<12} {hellos:>7} {:>7} {:>9} {:>7.2}%  (ClientHellos, TCP and QUIC: \
                 not a server's choice; reported, not required)",
                s.agree,
                "",
                100.0 * s.agree as f64 / hellos.max(1) as f64
            );
        }
    }
    let _ = writeln!(
        report,
        "(\"on 1st seg.\": tshark shows the value on the last segment of a TCP PDU it \
         reassembled, pcaplab the same value on the PDU's first segment; listed as differences)\n\
         TCP+UDP conversations over {} captures: tshark {} conversations of {} endpoint pairs, \
         pcaplab {} endpoint pairs; {} pairs equal, {} differ",
        conv_stats.files,
        conv_stats.tshark,
        conv_stats.tshark_pairs,
        conv_stats.ours,
        conv_stats.equal,
        conv_stats.different
    );
    let s = &service_stats;
    let _ = writeln!(
        report,
        "flow service against tshark's frame.protocols over {} endpoint pairs both have: tshark \
         shows a service on {}, pcaplab the same on {} ({:.2}%); pcaplab alone on {}",
        s.pairs,
        s.tshark,
        s.agree,
        100.0 * s.agree as f64 / s.tshark.max(1) as f64,
        s.ours_only
    );
    eprintln!("{report}");

    let write = std::env::var_os("PCAPLAB_ORACLE_WRITE").is_some();
    let (unexplained, stale) = check_listed(&found, write);
    let frame_diffs: usize = found.frames.values().map(BTreeSet::len).sum();
    eprintln!(
        "{frame_diffs} application-field differences in {} groups, {} conversation/file \
         differences; listed in {DIFFERENCES}",
        found.frames.len(),
        found.subjects.len()
    );
    let short = |s: &str| -> String {
        let mut t: String = s.chars().take(300).collect();
        if t.len() < s.len() {
            t.push_str("...");
        }
        t
    };
    for u in unexplained.iter().take(60) {
        eprintln!("UNEXPLAINED {}", short(u));
    }
    for (key, ex) in &examples {
        if unexplained
            .iter()
            .any(|u| u.starts_with(&format!("{key:?}")))
        {
            for e in ex {
                eprintln!("  e.g. {} {} {}: {e}", key.0, key.1, key.2);
            }
        }
    }
    for s in stale.iter().take(40) {
        eprintln!("STALE (listed, no longer differs) {}", short(s));
    }
    // Where tshark's values that we miss went, by listed reason (its text up to the first
    // colon), so that the figures above can be read.
    let mut why: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in listed() {
        if let Some(frames) = found.frames.get(&r.key).filter(|_| r.key.2 != "ours-only") {
            let short: String = r
                .reason
                .split(':')
                .next()
                .unwrap_or("")
                .chars()
                .take(90)
                .collect();
            *why.entry((r.key.1.clone(), short)).or_default() +=
                expand_frames(&r.subject).intersection(frames).count();
        }
    }
    eprintln!("tshark's values that pcaplab does not have, by reason:");
    for ((field, reason), n) in &why {
        eprintln!("  {field:<12} {n:>5}  {reason}");
    }
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
    let mut failures = Vec::new();
    if !below.is_empty() {
        failures.push(format!(
            "{below:?} agree with tshark on less than {}% of its values",
            100.0 * REQUIRED_AGREEMENT
        ));
    }
    if !unexplained.is_empty() || !stale.is_empty() {
        failures.push(format!(
            "{} unexplained and {} stale differences",
            unexplained.len(),
            stale.len()
        ));
    }
    assert!(failures.is_empty(), "{} (see above)", failures.join("; "));
}
