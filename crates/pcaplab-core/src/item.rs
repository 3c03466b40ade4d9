//! The DynamoDB item that records one capture's conversion, as plain data.
//!
//! The core has no AWS SDK: the cloud side converts [`Item`] to its SDK types, or writes
//! [`Item::to_dynamodb_json`] lines for DynamoDB's "Import from S3". Every string and map is
//! bounded here, so an item always fits DynamoDB's 400 KB limit whatever the capture holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::app::Services;
use crate::dissect::frag::FragStats;
use crate::encode::rfc3339_ns;
use crate::flows::Flow;
use crate::reader::{CaptureFormat, Compression, NO_TIMESTAMP};
use crate::summary::{Summary, Traffic, ip_proto_name, link_type_name};

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Most entries in `top_talkers` and `top_ports`, whatever the caller asks for.
pub const MAX_TOP_N: usize = 100;
/// Longest `reason`, "…" included.
pub const MAX_REASON_BYTES: usize = 2048;
/// Longest `s3Id`: DynamoDB's partition key limit. An S3 "bucket/key" (at most 1088 bytes)
/// always fits; only an absurdly long local path is cut.
const MAX_ID_BYTES: usize = 2048;
/// S3 ETags are under 100 bytes; this only bounds what a caller might pass.
const MAX_ETAG_BYTES: usize = 1024;
/// Most entries in `link_types`, "other" included.
const MAX_LINK_TYPES: usize = 32;
/// Bounds on `outputs` (a run writes a handful of formats).
const MAX_OUTPUTS: usize = 16;
const MAX_OUTPUT_NAME_BYTES: usize = 255;
const MAX_URL_BYTES: usize = 4096;
/// Longest name in `top_dns_names`, `top_tls_sni`, `top_http_hosts` and a flow's
/// `server_name` (a DNS name is at most 253 bytes).
const MAX_NAME_BYTES: usize = 256;

/// A DynamoDB attribute value (the subset the summary uses).
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    S(String),
    /// A number as decimal text, as DynamoDB carries it.
    N(String),
    Bool(bool),
    Null,
    L(Vec<AttrValue>),
    M(BTreeMap<String, AttrValue>),
}

impl AttrValue {
    /// Size as DynamoDB counts it (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>).
    fn size(&self) -> usize {
        match self {
            AttrValue::S(s) => s.len(),
            // DynamoDB counts about one byte per two significant digits plus one (at most
            // 21); a byte per digit over-counts, which is the safe side.
            AttrValue::N(n) => n.bytes().filter(u8::is_ascii_digit).count() + 1,
            AttrValue::Bool(_) | AttrValue::Null => 1,
            AttrValue::L(l) => 3 + l.iter().map(|v| 1 + v.size()).sum::<usize>(),
            AttrValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + v.size()).sum::<usize>(),
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            AttrValue::S(s) => {
                out.push_str("{\"S\":");
                write_json_str(s, out);
                out.push('}');
            }
            AttrValue::N(n) => {
                out.push_str("{\"N\":");
                write_json_str(n, out);
                out.push('}');
            }
            AttrValue::Bool(b) => out.push_str(if *b {
                "{\"BOOL\":true}"
            } else {
                "{\"BOOL\":false}"
            }),
            AttrValue::Null => out.push_str("{\"NULL\":true}"),
            AttrValue::L(l) => {
                out.push_str("{\"L\":[");
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push_str("]}");
            }
            AttrValue::M(m) => {
                out.push_str("{\"M\":");
                write_json_map(m, out);
                out.push('}');
            }
        }
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json_map(m: &BTreeMap<String, AttrValue>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(k, out);
        out.push(':');
        v.write_json(out);
    }
    out.push('}');
}

/// A DynamoDB item: attribute name → value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Item(pub BTreeMap<String, AttrValue>);

impl Item {
    /// Size as DynamoDB counts it (names' UTF-8 length plus values' sizes), rounded up where
    /// DynamoDB's rule is approximate — compare with [`MAX_ITEM_BYTES`].
    pub fn size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.size()).sum()
    }

    /// One line of DynamoDB JSON as "Import from S3" reads it: `{"Item":{"s3Id":{"S":"…"},…}}`,
    /// without a trailing newline.
    pub fn to_dynamodb_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.size() * 2);
        out.push_str("{\"Item\":");
        write_json_map(&self.0, &mut out);
        out.push('}');
        out
    }

    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.0.get(name)
    }
}

/// What the item says about the object and the run (the caller fills it).
#[derive(Clone, Copy, Debug)]
pub struct ItemSource<'a> {
    /// "bucket/key", or for a local input its path.
    pub s3_id: &'a str,
    /// The capture's name in the dataset (its rows' `capture` column, its files' `<id>`).
    pub name: Option<&'a str>,
    /// Where the object is: `s3://bucket/key`, or the local path.
    pub object: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub size: Option<u64>,
    pub last_modified_ns: Option<i64>,
    pub processed_at_ns: i64,
    /// (format name, URL), e.g. `("parquet", "s3://b/packets/…")`.
    pub outputs: &'a [(&'a str, String)],
    /// A capture converted in byte ranges: how many ranges, each of which wrote its own file
    /// of every packet output (the URL listed is the first range's).
    pub parts: Option<u64>,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Ok,
    /// The capture is damaged: everything before `reason` was converted.
    Damaged {
        reason: &'a str,
    },
    /// Nothing converted (not a capture, unreadable, write failed...).
    Failed {
        reason: &'a str,
    },
}

/// `s` cut on a char boundary to at most `max` bytes, "…" included, when longer.
fn clip(s: &str, max: usize) -> String {
    const MORE: &str = "…";
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(MORE.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &s[..end])
}

fn s(v: impl Into<String>) -> AttrValue {
    AttrValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttrValue {
    AttrValue::N(v.to_string())
}

fn rfc3339(ts_ns: i64) -> AttrValue {
    AttrValue::S(rfc3339_ns(ts_ns))
}

/// Decimal seconds, at most nine fraction digits and no exponent (DynamoDB numbers are text).
fn seconds(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let (secs, frac) = (
        ns.unsigned_abs() / 1_000_000_000,
        ns.unsigned_abs() % 1_000_000_000,
    );
    if frac == 0 {
        format!("{sign}{secs}")
    } else {
        let f = format!("{frac:09}");
        format!("{sign}{secs}.{}", f.trim_end_matches('0'))
    }
}

fn counts<K: Copy>(map: &BTreeMap<K, u64>, name: impl Fn(K) -> String) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        // Names may collide (several LINKTYPEs are "raw"): add them up.
        let e: &mut u64 = out.entry(name(*k)).or_default();
        *e = e.saturating_add(*v);
    }
    out
}

/// At most `max` entries: the biggest `max - 1` and the rest summed into "other".
fn cap_counts(map: BTreeMap<String, u64>, max: usize) -> BTreeMap<String, u64> {
    if map.len() <= max {
        return map;
    }
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let other = v[max - 1..]
        .iter()
        .fold(0u64, |t, (_, c)| t.saturating_add(*c));
    v.truncate(max - 1);
    v.push(("other".to_owned(), other));
    v.into_iter().collect()
}

fn count_map(map: BTreeMap<String, u64>) -> AttrValue {
    AttrValue::M(map.into_iter().map(|(k, v)| (k, n(v))).collect())
}

/// The item for one input: what the object is, how the run ended and, when the capture was
/// read, what it held. A `Failed` run converted nothing, so only the report's capture format
/// and compression are kept then, not its counts. The result is always at most
/// [`MAX_ITEM_BYTES`]: strings are clipped (with "…"), maps bounded, `top_n` clamped to
/// [`MAX_TOP_N`].
pub fn summary_item(
    src: &ItemSource,
    outcome: &Outcome,
    report: Option<(&Summary, CaptureFormat, Compression)>,
    top_n: usize,
) -> Item {
    let mut m: BTreeMap<String, AttrValue> = BTreeMap::new();
    let mut put = |k: &str, v: AttrValue| {
        m.insert(k.to_owned(), v);
    };
    put("s3Id", s(clip(src.s3_id, MAX_ID_BYTES)));
    if let Some(name) = src.name {
        put("capture", s(clip(name, MAX_ID_BYTES)));
    }
    if let Some(object) = src.object {
        put("object", s(clip(object, MAX_URL_BYTES)));
    }
    if let Some(etag) = src.etag {
        put("etag", s(clip(etag, MAX_ETAG_BYTES)));
    }
    if let Some(size) = src.size {
        put("size", n(size));
    }
    if let Some(t) = src.last_modified_ns {
        put("last_modified", rfc3339(t));
    }
    if let Some(parts) = src.parts {
        put("parts", n(parts));
    }
    put("processed_at", rfc3339(src.processed_at_ns));
    let (status, reason) = match outcome {
        Outcome::Ok => ("ok", None),
        Outcome::Damaged { reason } => ("damaged", Some(reason)),
        Outcome::Failed { reason } => ("failed", Some(reason)),
    };
    put("status", s(status));
    if let Some(reason) = reason {
        put("reason", s(clip(reason, MAX_REASON_BYTES)));
    }
    put("pcaplab_version", s(env!("CARGO_PKG_VERSION")));
    if let Some((sum, format, compression)) = report {
        put("capture_format", s(format.as_str()));
        put("compression", s(compression.as_str()));
        if !matches!(outcome, Outcome::Failed { .. }) {
            put_counts(&mut put, sum, top_n.min(MAX_TOP_N));
        }
    }
    let outputs: BTreeMap<String, AttrValue> = src
        .outputs
        .iter()
        .filter(|(name, _)| !name.is_empty()) // DynamoDB rejects empty attribute names
        .take(MAX_OUTPUTS)
        .map(|(name, url)| {
            (
                clip(name, MAX_OUTPUT_NAME_BYTES),
                s(clip(url, MAX_URL_BYTES)),
            )
        })
        .collect();
    if !outputs.is_empty() {
        put("outputs", AttrValue::M(outputs));
    }
    let item = Item(m);
    debug_assert!(item.size() <= MAX_ITEM_BYTES, "{}", item.size());
    item
}

/// One of `top_flows`: the flow's identity, size and state.
fn flow_entry(f: &Flow, seed: u16) -> AttrValue {
    let (o, r) = (f.originator(), f.responder());
    let mut m = BTreeMap::from([
        ("community_id".to_owned(), s(f.key.community_id(seed))),
        (
            "proto".to_owned(),
            s(ip_proto_name(f.key.proto).map_or_else(|| f.key.proto.to_string(), str::to_owned)),
        ),
        ("src".to_owned(), s(o.addr.to_string())),
        ("dst".to_owned(), s(r.addr.to_string())),
        ("packets".to_owned(), n(f.packets())),
        ("bytes".to_owned(), n(f.bytes())),
        ("conn_state".to_owned(), s(f.conn_state())),
    ]);
    if let Some(p) = o.port {
        m.insert("src_port".to_owned(), n(p));
    }
    if let Some(p) = r.port {
        m.insert("dst_port".to_owned(), n(p));
    }
    if f.seg.first_ts != NO_TIMESTAMP && f.seg.last_ts != NO_TIMESTAMP {
        let d = i128::from(f.seg.last_ts) - i128::from(f.seg.first_ts);
        m.insert("duration_s".to_owned(), AttrValue::N(seconds(d)));
    }
    if !f.seg.services.is_empty() {
        m.insert("service".to_owned(), s(f.seg.services.to_string()));
    }
    if let Some(name) = &f.seg.server_name {
        m.insert("server_name".to_owned(), s(clip(name, MAX_NAME_BYTES)));
    }
    AttrValue::M(m)
}

fn put_counts(put: &mut impl FnMut(&str, AttrValue), sum: &Summary, top_n: usize) {
    put("packets", n(sum.packets));
    put("bytes", n(sum.cap_bytes));
    put("wire_bytes", n(sum.wire_bytes));
    if let Some(t) = sum.first_ts {
        put("first_ts", rfc3339(t));
    }
    if let Some(t) = sum.last_ts {
        put("last_ts", rfc3339(t));
    }
    if let (Some(a), Some(b)) = (sum.first_ts, sum.last_ts) {
        put(
            "duration_s",
            AttrValue::N(seconds(i128::from(b) - i128::from(a))),
        );
    }
    let link_types = counts(&sum.link_types, |l| {
        link_type_name(l).map_or_else(|| l.to_string(), str::to_owned)
    });
    put(
        "link_types",
        count_map(cap_counts(link_types, MAX_LINK_TYPES)),
    );
    put("network", count_map(counts(&sum.network, str::to_owned)));
    let ip_protos = counts(&sum.ip_protos, |p| {
        ip_proto_name(p).map_or_else(|| p.to_string(), str::to_owned)
    });
    put("ip_protos", count_map(ip_protos));
    put("decode_errors", n(sum.decode_errors));
    if sum.quic_initials > 0 || sum.quic_undecryptable > 0 {
        put(
            "quic",
            count_map(BTreeMap::from([
                ("initials".to_owned(), sum.quic_initials),
                ("undecryptable".to_owned(), sum.quic_undecryptable),
            ])),
        );
    }
    if !sum.tunnels.is_empty() {
        // At most one entry per encapsulation pcaplab decodes (Encap::ALL).
        put("tunnels", count_map(counts(&sum.tunnels, str::to_owned)));
    }
    let f = &sum.fragments;
    if *f != FragStats::default() {
        put(
            "fragments",
            count_map(BTreeMap::from([
                ("reassembled".to_owned(), f.reassembled),
                ("timed_out".to_owned(), f.timed_out),
                ("evicted".to_owned(), f.evicted),
                ("invalid".to_owned(), f.invalid),
                ("incomplete".to_owned(), f.incomplete),
                ("overlaps".to_owned(), f.overlaps),
            ])),
        );
    }
    let talkers = sum
        .top_talkers(top_n)
        .into_iter()
        .map(|(addr, t)| {
            AttrValue::M(BTreeMap::from([
                ("addr".to_owned(), s(addr.to_string())),
                ("packets".to_owned(), n(t.packets)),
                ("bytes".to_owned(), n(t.bytes)),
            ]))
        })
        .collect();
    put("top_talkers", AttrValue::L(talkers));
    let ports = sum
        .top_ports(top_n)
        .into_iter()
        .map(|(port, packets)| {
            AttrValue::M(BTreeMap::from([
                ("port".to_owned(), n(port)),
                ("packets".to_owned(), n(packets)),
            ]))
        })
        .collect();
    put("top_ports", AttrValue::L(ports));
    if sum.talkers_truncated {
        put("talkers_approximate", AttrValue::Bool(true));
    }
    if let Some(flows) = &sum.flows {
        put("flows", n(flows.flows));
        put("flows_evicted", n(flows.evicted));
        // Flows per service (Zeek's names), only the services seen.
        let services: BTreeMap<String, u64> = Services::ALL
            .iter()
            .zip(flows.services)
            .filter(|(_, count)| *count > 0)
            .map(|((_, name), count)| ((*name).to_owned(), count))
            .collect();
        if !services.is_empty() {
            put("services", count_map(services));
        }
        put(
            "top_flows",
            AttrValue::L(
                flows
                    .top
                    .iter()
                    .take(top_n)
                    .map(|f| flow_entry(f, flows.community_id_seed))
                    .collect(),
            ),
        );
    }
    for (name, map) in [
        ("top_dns_names", &sum.dns_names),
        ("top_tls_sni", &sum.tls_snis),
        ("top_http_hosts", &sum.http_hosts),
    ] {
        if map.is_empty() {
            continue;
        }
        let list = Summary::top_names(map, top_n)
            .into_iter()
            .map(|(k, c)| {
                AttrValue::M(BTreeMap::from([
                    ("name".to_owned(), s(clip(k, MAX_NAME_BYTES))),
                    ("count".to_owned(), n(c)),
                ]))
            })
            .collect();
        put(name, AttrValue::L(list));
    }
    if sum.names_truncated {
        put("names_approximate", AttrValue::Bool(true));
    }
    if let Some((start, series)) = sum.timeline.dense() {
        // At most TIMELINE_BUCKETS (120) entries per list: under 6 KB.
        let list = |f: fn(&Traffic) -> u64| AttrValue::L(series.iter().map(|t| n(f(t))).collect());
        put(
            "timeline",
            AttrValue::M(BTreeMap::from([
                ("start".to_owned(), rfc3339(start)),
                (
                    "bucket_ms".to_owned(),
                    n(sum.timeline.bucket_ns() / 1_000_000),
                ),
                ("packets".to_owned(), list(|t| t.packets)),
                ("bytes".to_owned(), list(|t| t.bytes)),
            ])),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::{Addr, Encap};
    use crate::flows::{FlowStats, worst_case_flow};
    use crate::summary::{TIMELINE_BUCKETS, Timeline};

    fn source<'a>(s3_id: &'a str, outputs: &'a [(&'a str, String)]) -> ItemSource<'a> {
        ItemSource {
            s3_id,
            name: Some("capture name"),
            object: None,
            etag: Some("\"abc\""),
            size: Some(1234),
            last_modified_ns: None,
            processed_at_ns: 1_700_000_000_123_456_789,
            outputs,
            parts: None,
        }
    }

    #[test]
    fn worst_case_fits() {
        let mut sum = Summary {
            packets: u64::MAX,
            cap_bytes: u64::MAX,
            wire_bytes: u64::MAX,
            first_ts: Some(i64::MIN + 1),
            last_ts: Some(i64::MAX),
            decode_errors: u64::MAX,
            quic_initials: u64::MAX,
            quic_undecryptable: u64::MAX,
            talkers_truncated: true,
            ..Summary::default()
        };
        sum.link_types = (0..u16::MAX)
            .map(|l| (l, u64::MAX - u64::from(l)))
            .collect();
        sum.network = ["ipv4", "ipv6", "arp", "other", "none"]
            .into_iter()
            .map(|k| (k, u64::MAX))
            .collect();
        sum.ip_protos = (0..=u8::MAX).map(|p| (p, u64::MAX)).collect();
        sum.talkers = (0..100_000u32)
            .map(|i| {
                let mut a = [0xffff_u16; 8].map(u16::to_be_bytes).concat();
                a[12..].copy_from_slice(&i.to_be_bytes());
                let a: [u8; 16] = a.try_into().expect("16 bytes");
                let t = Traffic {
                    packets: u64::MAX - u64::from(i),
                    bytes: u64::MAX,
                };
                (Addr::V6(a), t)
            })
            .collect();
        sum.ports = (0..=u16::MAX).map(|p| (p, u64::MAX)).collect();
        sum.timeline = Timeline::full(u64::MAX);
        sum.flows = Some(FlowStats {
            community_id_seed: 0,
            flows: u64::MAX,
            evicted: u64::MAX,
            top: (0..MAX_TOP_N as u16 + 10).map(worst_case_flow).collect(),
            services: [u64::MAX; Services::ALL.len()],
        });
        let names = |c: char| -> BTreeMap<String, u64> {
            (0..20_000u32)
                .map(|i| (format!("{i}{}", c.to_string().repeat(300)), u64::MAX))
                .collect()
        };
        sum.dns_names = names('d');
        sum.tls_snis = names('é');
        sum.http_hosts = names('h');
        sum.names_truncated = true;
        sum.tunnels = Encap::ALL.map(|e| (e.name(), u64::MAX)).into();
        sum.fragments = FragStats {
            reassembled: u64::MAX,
            timed_out: u64::MAX,
            evicted: u64::MAX,
            invalid: u64::MAX,
            incomplete: u64::MAX,
            overlaps: u64::MAX,
        };
        let id = format!("{}/{}", "b".repeat(63), "k".repeat(1024));
        assert_eq!(id.len(), 1088);
        let reason = "é".repeat(500_000);
        let outputs: Vec<(&str, String)> = ["parquet", "csv", "awslab", "json", "arrow"]
            .into_iter()
            .map(|f| (f, format!("s3://{}", "u".repeat(2043))))
            .collect();
        for outcome in [
            Outcome::Damaged { reason: &reason },
            Outcome::Failed { reason: &reason },
            Outcome::Ok,
        ] {
            let report = Some((&sum, CaptureFormat::PcapNg, Compression::Zstd));
            let item = summary_item(&source(&id, &outputs), &outcome, report, usize::MAX);
            assert!(item.size() <= MAX_ITEM_BYTES, "{}", item.size());
            assert_eq!(item.get("s3Id"), Some(&s(id.clone())));
            let Some(AttrValue::M(out)) = item.get("outputs") else {
                panic!("outputs")
            };
            assert_eq!(out.len(), 5);
            match outcome {
                Outcome::Ok => assert!(item.get("reason").is_none()),
                _ => {
                    let Some(AttrValue::S(r)) = item.get("reason") else {
                        panic!("reason")
                    };
                    assert!(
                        r.len() <= MAX_REASON_BYTES && r.ends_with("é…"),
                        "{}",
                        r.len()
                    );
                }
            }
            if matches!(outcome, Outcome::Failed { .. }) {
                continue;
            }
            let Some(AttrValue::M(links)) = item.get("link_types") else {
                panic!("link_types")
            };
            assert_eq!(links.len(), MAX_LINK_TYPES);
            let Some(AttrValue::M(timeline)) = item.get("timeline") else {
                panic!("timeline")
            };
            for series in ["packets", "bytes"] {
                let Some(AttrValue::L(l)) = timeline.get(series) else {
                    panic!("{series}")
                };
                assert_eq!(l.len(), TIMELINE_BUCKETS);
            }
            assert!(links.contains_key("other") && links.contains_key("null"));
            let Some(AttrValue::L(talkers)) = item.get("top_talkers") else {
                panic!("top_talkers")
            };
            assert_eq!(talkers.len(), MAX_TOP_N);
            let Some(AttrValue::L(ports)) = item.get("top_ports") else {
                panic!("top_ports")
            };
            assert_eq!(ports.len(), MAX_TOP_N);
            let Some(AttrValue::M(protos)) = item.get("ip_protos") else {
                panic!("ip_protos")
            };
            assert_eq!(protos.len(), 256);
            let Some(AttrValue::M(tunnels)) = item.get("tunnels") else {
                panic!("tunnels")
            };
            assert_eq!(tunnels.len(), Encap::ALL.len());
            let Some(AttrValue::M(frags)) = item.get("fragments") else {
                panic!("fragments")
            };
            assert_eq!(frags.len(), 6);
            assert_eq!(
                item.get("talkers_approximate"),
                Some(&AttrValue::Bool(true))
            );
            assert_eq!(item.get("duration_s"), Some(&n("18446744073.709551614")));
        }
        // Even a caller passing absurd strings stays within the limit.
        let huge = "x".repeat(1 << 20);
        let many: Vec<(&str, String)> = (0..1000).map(|_| (huge.as_str(), huge.clone())).collect();
        let mut src = source(&huge, &many);
        src.etag = Some(&huge);
        let item = summary_item(&src, &Outcome::Ok, None, 0);
        assert!(item.size() <= MAX_ITEM_BYTES, "{}", item.size());
    }

    #[test]
    fn json_escaping() {
        let key = "b/a \"q\" \\ back\nnew\ttab\u{1}é€😀.pcap";
        let item = Item(BTreeMap::from([
            ("s3Id".to_owned(), s(key)),
            ("x".to_owned(), AttrValue::Null),
        ]));
        assert_eq!(
            item.to_dynamodb_json(),
            "{\"Item\":{\"s3Id\":{\"S\":\"b/a \\\"q\\\" \\\\ back\\u000anew\\u0009tab\\u0001é€😀.pcap\"},\
             \"x\":{\"NULL\":true}}}"
        );
    }

    #[test]
    fn normal_item_json() {
        let mut sum = Summary {
            packets: 3,
            cap_bytes: 180,
            wire_bytes: 200,
            first_ts: Some(1_000_000_000),
            last_ts: Some(2_500_000_000),
            ..Summary::default()
        };
        sum.link_types.insert(1, 3);
        sum.network.insert("ipv4", 2);
        sum.network.insert("ipv6", 1);
        sum.ip_protos.extend([(6, 2), (200, 1)]);
        let t = |packets, bytes| Traffic { packets, bytes };
        sum.talkers.insert(Addr::V4([10, 0, 0, 1]), t(2, 120));
        let mut v6 = [0; 16];
        v6[15] = 1;
        sum.talkers.insert(Addr::V6(v6), t(1, 80));
        sum.ports.extend([(80, 3), (443, 1)]);
        sum.tunnels.insert("vxlan", 2);
        sum.fragments.reassembled = 1;
        sum.fragments.timed_out = 1;
        let outputs = [("parquet", "s3://o/p.parquet".to_owned())];
        let report = Some((&sum, CaptureFormat::Pcap, Compression::Gzip));
        let item = summary_item(&source("b/k.pcap", &outputs), &Outcome::Ok, report, 1);
        let expected = format!(
            concat!(
                r#"{{"Item":{{"bytes":{{"N":"180"}},"capture":{{"S":"capture name"}},"#,
                r#""capture_format":{{"S":"pcap"}},"#,
                r#""compression":{{"S":"gzip"}},"decode_errors":{{"N":"0"}},"#,
                r#""duration_s":{{"N":"1.5"}},"etag":{{"S":"\"abc\""}},"#,
                r#""first_ts":{{"S":"1970-01-01T00:00:01.000000000Z"}},"#,
                r#""fragments":{{"M":{{"evicted":{{"N":"0"}},"incomplete":{{"N":"0"}},"invalid":{{"N":"0"}},"#,
                r#""overlaps":{{"N":"0"}},"reassembled":{{"N":"1"}},"timed_out":{{"N":"1"}}}}}},"#,
                r#""ip_protos":{{"M":{{"200":{{"N":"1"}},"tcp":{{"N":"2"}}}}}},"#,
                r#""last_ts":{{"S":"1970-01-01T00:00:02.500000000Z"}},"#,
                r#""link_types":{{"M":{{"ethernet":{{"N":"3"}}}}}},"#,
                r#""network":{{"M":{{"ipv4":{{"N":"2"}},"ipv6":{{"N":"1"}}}}}},"#,
                r#""outputs":{{"M":{{"parquet":{{"S":"s3://o/p.parquet"}}}}}},"#,
                r#""packets":{{"N":"3"}},"pcaplab_version":{{"S":"{}"}},"#,
                r#""processed_at":{{"S":"2023-11-14T22:13:20.123456789Z"}},"#,
                r#""s3Id":{{"S":"b/k.pcap"}},"size":{{"N":"1234"}},"status":{{"S":"ok"}},"#,
                r#""top_ports":{{"L":[{{"M":{{"packets":{{"N":"3"}},"port":{{"N":"80"}}}}}}]}},"#,
                r#""top_talkers":{{"L":[{{"M":{{"addr":{{"S":"10.0.0.1"}},"#,
                r#""bytes":{{"N":"120"}},"packets":{{"N":"2"}}}}}}]}},"#,
                r#""tunnels":{{"M":{{"vxlan":{{"N":"2"}}}}}},"#,
                r#""wire_bytes":{{"N":"200"}}}}}}"#
            ),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(item.to_dynamodb_json(), expected);
        // QUIC counts appear once there are any.
        let mut quic = sum.clone();
        quic.quic_initials = 2;
        let q = Some((&quic, CaptureFormat::Pcap, Compression::Gzip));
        let item = summary_item(&source("b/k.pcap", &outputs), &Outcome::Ok, q, 1);
        let Some(AttrValue::M(counts)) = item.get("quic") else {
            panic!("quic")
        };
        assert_eq!(counts.get("initials"), Some(&n(2)));
        assert_eq!(counts.get("undecryptable"), Some(&n(0)));
        let all = summary_item(&source("b/k.pcap", &outputs), &Outcome::Ok, report, 10);
        let Some(AttrValue::L(talkers)) = all.get("top_talkers") else {
            panic!("top_talkers")
        };
        assert_eq!(talkers.len(), 2);
        let Some(AttrValue::M(last)) = talkers.last() else {
            panic!("talker")
        };
        assert_eq!(last.get("addr"), Some(&s("::1")));
    }

    #[test]
    fn failed_has_no_counts() {
        let sum = Summary {
            packets: 5,
            ..Summary::default()
        };
        let report = Some((&sum, CaptureFormat::Snoop, Compression::None));
        let outcome = Outcome::Failed {
            reason: "write failed",
        };
        for report in [None, report] {
            let item = summary_item(&source("b/k", &[]), &outcome, report, 10);
            assert!(item.get("packets").is_none());
            assert!(item.get("top_talkers").is_none());
            assert!(item.get("outputs").is_none());
            assert_eq!(item.get("status"), Some(&s("failed")));
            assert_eq!(item.get("reason"), Some(&s("write failed")));
            assert_eq!(item.get("capture_format").is_some(), report.is_some());
        }
        let damaged = Outcome::Damaged { reason: "cut" };
        let item = summary_item(&source("b/k", &[]), &damaged, report, 10);
        assert_eq!(item.get("packets"), Some(&n(5)));
        assert_eq!(item.get("status"), Some(&s("damaged")));
    }

    #[test]
    fn clip_and_seconds() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 5), "ab…");
        // "é" is two bytes: the cut backs off to a char boundary.
        assert_eq!(clip("éééé", 6), "é…");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_000_000_001), "1.000000001");
        assert_eq!(seconds(-1_500_000_000), "-1.5");
        assert_eq!(seconds(20_000_000_000), "20");
    }
}
