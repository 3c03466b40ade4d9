//! The captures the page shows: summary items read back from a DynamoDB table, or from the
//! `dynamodb/<id>.json` files `pcaplab convert --format dynamodb-json` writes, into one view.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use pcaplab_cloud::item_file;
use pcaplab_cloud::layout::escape;
use pcaplab_cloud::table::from_sdk;
use pcaplab_core::AttrValue;
use serde::Serialize;
use tokio::sync::Mutex;

/// Most captures a listing reads (the page shows the newest of them).
pub const MAX_CAPTURES: usize = 10_000;
/// Largest item file read: items stay under DynamoDB's 400 KB.
const MAX_ITEM_FILE: u64 = 512 * 1024;
/// How long a listing is reused before the source is read again (a notification drops it).
const LIST_TTL: Duration = Duration::from_secs(5);

/// One capture in the list.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Capture {
    /// `s3Id`: `bucket/key`, or the local path.
    pub id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub duration_s: Option<f64>,
    pub processed_at: Option<String>,
    pub size: Option<u64>,
}

/// Everything the summary item says about one capture.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub capture: Capture,
    /// The capture's name in the dataset (`capture`: the rows' `capture` column, the files'
    /// `<id>`).
    #[serde(rename = "capture")]
    pub name: Option<String>,
    /// Where the object is (`object`: `s3://bucket/key` or the local path); items written
    /// before it existed have none.
    pub object: Option<String>,
    /// The S3 object's ETag; local files have none (so `s3Id` is `bucket/key` with one, a
    /// path without).
    pub etag: Option<String>,
    pub capture_format: Option<String>,
    pub compression: Option<String>,
    pub decode_errors: Option<u64>,
    /// Packets per IP protocol, and per non-IP network protocol (`arp`, `other`, `none`).
    pub protocols: Vec<Count>,
    pub link_types: Vec<Count>,
    /// Packets per encapsulation (`vxlan`, `gre`, …): a packet counts once per tunnel.
    pub tunnels: Vec<Count>,
    /// Flows per service (`dns`, `http`, `quic`, `ssl`, …; the count is of flows).
    pub services: Vec<Count>,
    /// IP datagrams reassembled from fragments, those given up (`timed_out`, `evicted`,
    /// `invalid`), incomplete at the end, with overlapping fragments: the non-zero counters.
    pub fragments: Vec<Count>,
    pub top_talkers: Vec<Talker>,
    pub talkers_approximate: bool,
    pub top_ports: Vec<Count>,
    pub timeline: Option<Timeline>,
    /// Flows in the capture, when they were tracked, and the biggest ones.
    pub flows: Option<u64>,
    /// Flows written early because the live flows reached their memory budget.
    pub flows_evicted: Option<u64>,
    pub top_flows: Vec<FlowRow>,
    /// Names most often queried (DNS), asked for (TLS SNI) and requested (HTTP Host).
    pub top_dns_names: Vec<NameCount>,
    pub top_tls_sni: Vec<NameCount>,
    pub top_http_hosts: Vec<NameCount>,
    pub outputs: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    pub community_id: String,
    pub proto: String,
    pub src: String,
    pub src_port: Option<u16>,
    pub dst: String,
    pub dst_port: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
    pub duration_s: Option<f64>,
    pub conn_state: String,
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Count {
    pub name: String,
    pub packets: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Talker {
    pub addr: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    /// RFC 3339 start of the first bucket.
    pub start: String,
    pub bucket_ms: u64,
    pub packets: Vec<u64>,
    pub bytes: Vec<u64>,
}

type Map = BTreeMap<String, AttrValue>;

fn string(m: &Map, k: &str) -> Option<String> {
    match m.get(k) {
        Some(AttrValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(m: &Map, k: &str) -> Option<T> {
    match m.get(k) {
        Some(AttrValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

fn counts(m: &Map, k: &str) -> Vec<Count> {
    let mut v: Vec<Count> = match m.get(k) {
        Some(AttrValue::M(c)) => c
            .iter()
            .filter_map(|(name, v)| match v {
                AttrValue::N(n) => Some(Count {
                    name: name.clone(),
                    packets: n.parse().ok()?,
                }),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    v.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.name.cmp(&b.name)));
    v
}

fn maps<'a>(m: &'a Map, k: &str) -> impl Iterator<Item = &'a Map> {
    let list = match m.get(k) {
        Some(AttrValue::L(l)) => l.as_slice(),
        _ => &[],
    };
    list.iter().filter_map(|v| match v {
        AttrValue::M(m) => Some(m),
        _ => None,
    })
}

fn numbers(m: &Map, k: &str) -> Vec<u64> {
    match m.get(k) {
        Some(AttrValue::L(l)) => l
            .iter()
            .map(|v| match v {
                AttrValue::N(n) => n.parse().unwrap_or(0),
                _ => 0,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Capture {
    /// The list's view of an item; `None` without an `s3Id`.
    pub fn from_item(m: &Map) -> Option<Capture> {
        Some(Capture {
            id: string(m, "s3Id")?,
            status: string(m, "status").unwrap_or_else(|| "unknown".into()),
            reason: string(m, "reason"),
            packets: number(m, "packets"),
            bytes: number(m, "bytes"),
            first_ts: string(m, "first_ts"),
            last_ts: string(m, "last_ts"),
            duration_s: number(m, "duration_s"),
            processed_at: string(m, "processed_at"),
            size: number(m, "size"),
        })
    }
}

impl Detail {
    pub fn from_item(m: &Map) -> Option<Detail> {
        let capture = Capture::from_item(m)?;
        let mut protocols = counts(m, "ip_protos");
        protocols.extend(
            counts(m, "network")
                .into_iter()
                .filter(|c| c.name != "ipv4" && c.name != "ipv6")
                .map(|c| Count {
                    name: if c.name == "none" {
                        "no network layer".into()
                    } else {
                        c.name
                    },
                    packets: c.packets,
                }),
        );
        protocols.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.name.cmp(&b.name)));
        let top_talkers = maps(m, "top_talkers")
            .filter_map(|t| {
                Some(Talker {
                    addr: string(t, "addr")?,
                    packets: number(t, "packets")?,
                    bytes: number(t, "bytes").unwrap_or(0),
                })
            })
            .collect();
        let top_ports = maps(m, "top_ports")
            .filter_map(|p| {
                Some(Count {
                    name: number::<u16>(p, "port")?.to_string(),
                    packets: number(p, "packets")?,
                })
            })
            .collect();
        let timeline = match m.get("timeline") {
            Some(AttrValue::M(t)) => Some(Timeline {
                start: string(t, "start")?,
                bucket_ms: number(t, "bucket_ms")?,
                packets: numbers(t, "packets"),
                bytes: numbers(t, "bytes"),
            }),
            _ => None,
        };
        let top_flows = maps(m, "top_flows")
            .filter_map(|f| {
                Some(FlowRow {
                    community_id: string(f, "community_id")?,
                    proto: string(f, "proto")?,
                    src: string(f, "src")?,
                    src_port: number(f, "src_port"),
                    dst: string(f, "dst")?,
                    dst_port: number(f, "dst_port"),
                    packets: number(f, "packets")?,
                    bytes: number(f, "bytes")?,
                    duration_s: number(f, "duration_s"),
                    conn_state: string(f, "conn_state").unwrap_or_default(),
                    server_name: string(f, "server_name"),
                })
            })
            .collect();
        let names = |k: &str| -> Vec<NameCount> {
            maps(m, k)
                .filter_map(|n| {
                    Some(NameCount {
                        name: string(n, "name")?,
                        count: number(n, "count")?,
                    })
                })
                .collect()
        };
        let outputs = match m.get("outputs") {
            Some(AttrValue::M(o)) => o
                .iter()
                .filter_map(|(k, v)| match v {
                    AttrValue::S(url) => Some((k.clone(), url.clone())),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        Some(Detail {
            capture,
            name: string(m, "capture"),
            object: string(m, "object"),
            etag: string(m, "etag"),
            capture_format: string(m, "capture_format"),
            compression: string(m, "compression"),
            decode_errors: number(m, "decode_errors"),
            protocols,
            link_types: counts(m, "link_types"),
            tunnels: counts(m, "tunnels"),
            services: counts(m, "services"),
            fragments: counts(m, "fragments")
                .into_iter()
                .filter(|c| c.packets > 0)
                .collect(),
            top_talkers,
            talkers_approximate: matches!(
                m.get("talkers_approximate"),
                Some(AttrValue::Bool(true))
            ),
            top_ports,
            timeline,
            flows: number(m, "flows"),
            flows_evicted: number(m, "flows_evicted"),
            top_flows,
            top_dns_names: names("top_dns_names"),
            top_tls_sni: names("top_tls_sni"),
            top_http_hosts: names("top_http_hosts"),
            outputs,
        })
    }
}

/// Where summaries come from.
pub enum Source {
    /// `DIR/dynamodb/*.json`.
    Dir(PathBuf),
    Table {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

/// Reading the source failed (the page shows this instead of the list).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {message}")]
    Dir { path: PathBuf, message: String },
    #[error("DynamoDB table {table}: {message}")]
    Table { table: String, message: String },
}

/// A listing: the newest captures first, and how many items could not be read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Listing {
    pub captures: Vec<Capture>,
    /// Item files that are not items (named in the log).
    pub unreadable: usize,
    /// More than [`MAX_CAPTURES`] exist; only that many were read.
    pub truncated: bool,
    /// Directory source: each capture's item file (its name is the capture's path below the
    /// converted directory, not always its `s3Id`).
    #[serde(skip)]
    files: HashMap<String, PathBuf>,
}

/// The source with a short-lived cache of its listing.
pub struct Captures {
    source: Source,
    cached: Mutex<Option<(Instant, Listing)>>,
}

impl Captures {
    pub fn new(source: Source) -> Self {
        Captures {
            source,
            cached: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Forget the cached listing (a notification says something changed).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// All captures, newest processed first.
    pub async fn list(&self) -> Result<Listing, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, listing)) = &*cached
            && at.elapsed() < LIST_TTL
        {
            return Ok(listing.clone());
        }
        let mut listing = match &self.source {
            Source::Dir(dir) => list_dir(dir).await?,
            Source::Table { client, table } => list_table(client, table).await?,
        };
        listing.captures.sort_by(|a, b| {
            b.processed_at
                .cmp(&a.processed_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        *cached = Some((Instant::now(), listing.clone()));
        Ok(listing)
    }

    /// One capture by its `s3Id`; `None` if there is no such item.
    pub async fn get(&self, id: &str) -> Result<Option<Detail>, SourceError> {
        match &self.source {
            Source::Dir(dir) => {
                // An S3 object's item is named after its s3Id; a local file's after its path
                // below the converted directory, which the listing knows.
                let direct = dir.join("dynamodb").join(format!("{}.json", escape(id)));
                let path = if direct.is_file() {
                    direct
                } else {
                    match self.list().await?.files.get(id) {
                        Some(path) => path.clone(),
                        None => return Ok(None),
                    }
                };
                let item = match read_item(&path).await {
                    Ok(item) => item,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(SourceError::Dir {
                            path,
                            message: e.to_string(),
                        });
                    }
                };
                // A file whose s3Id differs is not this capture.
                Ok(Detail::from_item(&item).filter(|d| d.capture.id == id))
            }
            Source::Table { client, table } => {
                let out = client
                    .get_item()
                    .table_name(table)
                    .key("s3Id", AttributeValue::S(id.to_owned()))
                    .send()
                    .await
                    .map_err(|e| SourceError::Table {
                        table: table.clone(),
                        message: pcaplab_cloud::error_chain(&e),
                    })?;
                Ok(out
                    .item
                    .as_ref()
                    .and_then(|i| Detail::from_item(&sdk_map(i))))
            }
        }
    }
}

fn sdk_map(item: &HashMap<String, AttributeValue>) -> Map {
    item.iter()
        .filter_map(|(k, v)| Some((k.clone(), from_sdk(v)?)))
        .collect()
}

async fn read_item(path: &Path) -> std::io::Result<Map> {
    let meta = tokio::fs::metadata(path).await?;
    if meta.len() > MAX_ITEM_FILE {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than an item can be",
            meta.len()
        )));
    }
    let bytes = tokio::fs::read(path).await?;
    item_file::parse(&bytes).map_err(std::io::Error::other)
}

async fn list_dir(dir: &Path) -> Result<Listing, SourceError> {
    let items = dir.join("dynamodb");
    let mut listing = Listing::default();
    let mut entries = match tokio::fs::read_dir(&items).await {
        Ok(entries) => entries,
        // Nothing converted with --format dynamodb-json yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => {
            return Err(SourceError::Dir {
                path: items,
                message: e.to_string(),
            });
        }
    };
    loop {
        let entry = entries.next_entry().await.map_err(|e| SourceError::Dir {
            path: items.clone(),
            message: e.to_string(),
        })?;
        let Some(entry) = entry else { break };
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        if listing.captures.len() >= MAX_CAPTURES {
            listing.truncated = true;
            break;
        }
        match read_item(&path).await.map(|m| Capture::from_item(&m)) {
            Ok(Some(c)) => {
                listing.files.insert(c.id.clone(), path);
                listing.captures.push(c);
            }
            Ok(None) => {
                tracing::warn!(path = %path.display(), "item file without an s3Id");
                listing.unreadable += 1;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable item file");
                listing.unreadable += 1;
            }
        }
    }
    Ok(listing)
}

/// The attributes the list shows: a Scan reads only these.
const LIST_ATTRIBUTES: [&str; 10] = [
    "s3Id",
    "status",
    "reason",
    "packets",
    "bytes",
    "first_ts",
    "last_ts",
    "duration_s",
    "processed_at",
    "size",
];

async fn list_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Listing, SourceError> {
    let mut listing = Listing::default();
    // Several of these names are DynamoDB reserved words: refer to them by placeholders.
    let projection = (0..LIST_ATTRIBUTES.len())
        .map(|i| format!("#a{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let mut scan = client
            .scan()
            .table_name(table)
            .projection_expression(&projection)
            .set_exclusive_start_key(start.take());
        for (i, name) in LIST_ATTRIBUTES.iter().enumerate() {
            scan = scan.expression_attribute_names(format!("#a{i}"), *name);
        }
        let page = scan.send().await.map_err(|e| SourceError::Table {
            table: table.to_owned(),
            message: pcaplab_cloud::error_chain(&e),
        })?;
        for item in page.items() {
            // A lease claim without a result yet has no status: not a capture to show.
            if !item.contains_key("status") {
                continue;
            }
            if listing.captures.len() >= MAX_CAPTURES {
                listing.truncated = true;
                return Ok(listing);
            }
            match Capture::from_item(&sdk_map(item)) {
                Some(c) => listing.captures.push(c),
                None => listing.unreadable += 1,
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(listing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_file_round_trip() {
        let line = r#"{"Item":{"s3Id":{"S":"b/k x.pcap"},"status":{"S":"ok"},"packets":{"N":"33"},
            "ip_protos":{"M":{"tcp":{"N":"30"},"udp":{"N":"2"}}},"network":{"M":{"ipv4":{"N":"32"},"arp":{"N":"1"}}},
            "top_talkers":{"L":[{"M":{"addr":{"S":"10.0.0.1"},"packets":{"N":"32"},"bytes":{"N":"6000"}}}]},
            "top_ports":{"L":[{"M":{"port":{"N":"80"},"packets":{"N":"30"}}}]},
            "timeline":{"M":{"start":{"S":"2024-03-01T12:00:00.000000000Z"},"bucket_ms":{"N":"64"},
              "packets":{"L":[{"N":"3"},{"N":"0"},{"N":"30"}]},"bytes":{"L":[{"N":"300"},{"N":"0"},{"N":"5700"}]}}},
            "flows":{"N":"4"},"flows_evicted":{"N":"1"},"top_flows":{"L":[{"M":{"community_id":{"S":"1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
              "proto":{"S":"tcp"},"src":{"S":"10.0.0.1"},"src_port":{"N":"34855"},"dst":{"S":"10.0.0.2"},"dst_port":{"N":"80"},
              "packets":{"N":"30"},"bytes":{"N":"5700"},"duration_s":{"N":"1.5"},"conn_state":{"S":"SF"},"server_name":{"S":"example.com"}}}]},
            "top_dns_names":{"L":[{"M":{"name":{"S":"example.com"},"count":{"N":"2"}}}]},
            "tunnels":{"M":{"vxlan":{"N":"12"},"gre":{"N":"3"}}},
            "services":{"M":{"http":{"N":"3"},"dns":{"N":"1"}}},
            "fragments":{"M":{"reassembled":{"N":"2"},"timed_out":{"N":"1"},"evicted":{"N":"0"}}},
            "talkers_approximate":{"BOOL":true},"outputs":{"M":{"parquet":{"S":"out/packets/date=2024-03-01/k x.pcap.parquet"},
              "lab-csv":{"S":"file:///x.csv"}}}}}"#;
        let m = item_file::parse(line.as_bytes()).expect("item");
        let d = Detail::from_item(&m).expect("detail");
        assert_eq!(d.capture.id, "b/k x.pcap");
        assert_eq!(d.capture.packets, Some(33));
        let names: Vec<_> = d
            .protocols
            .iter()
            .map(|c| (c.name.as_str(), c.packets))
            .collect();
        assert_eq!(names, [("tcp", 30), ("udp", 2), ("arp", 1)]);
        assert_eq!(d.top_talkers[0].bytes, 6000);
        assert_eq!(d.top_ports[0].name, "80");
        let t = d.timeline.clone().expect("timeline");
        assert_eq!((t.bucket_ms, t.packets), (64, vec![3, 0, 30]));
        assert!(d.talkers_approximate);
        assert_eq!(d.flows, Some(4));
        assert_eq!(d.flows_evicted, Some(1));
        let f = &d.top_flows[0];
        assert_eq!(
            (
                f.src_port,
                f.dst_port,
                f.packets,
                f.bytes,
                f.conn_state.as_str()
            ),
            (Some(34855), Some(80), 30, 5700, "SF")
        );
        assert_eq!(f.server_name.as_deref(), Some("example.com"));
        assert_eq!(d.top_dns_names[0].count, 2);
        assert!(d.top_tls_sni.is_empty() && d.top_http_hosts.is_empty());
        assert_eq!(d.outputs.len(), 2);
        let listed = |c: &[Count]| -> Vec<(String, u64)> {
            c.iter().map(|c| (c.name.clone(), c.packets)).collect()
        };
        assert_eq!(
            listed(&d.tunnels),
            [("vxlan".into(), 12), ("gre".into(), 3)]
        );
        assert_eq!(listed(&d.services), [("http".into(), 3), ("dns".into(), 1)]);
        // Zero counters are left out.
        assert_eq!(
            listed(&d.fragments),
            [("reassembled".into(), 2), ("timed_out".into(), 1)]
        );
        let page = crate::page::capture(&crate::Snapshot::default(), &d);
        assert!(
            page.contains("<dt>Tunnels (packets)</dt><dd>vxlan (12), gre (3)</dd>"),
            "{page}"
        );
        assert!(
            page.contains("<dt>Fragmented datagrams</dt><dd>reassembled (2), timed out (1)</dd>"),
            "{page}"
        );
        // No flows output: no download links, a note saying why; a local dataset file is
        // linked, a URL outside the layout only named.
        assert!(!page.contains("flow-pcap"), "{page}");
        assert!(page.contains("to download a flow's packets"), "{page}");
        assert!(
            page.contains("<a class=\"output\" href=\"/api/captures/b%2Fk%20x%2Epcap/outputs/parquet\" download>parquet</a>"),
            "{page}"
        );
        assert!(
            page.contains("lab-csv: <code>file:///x.csv</code>"),
            "{page}"
        );
        assert_eq!((d.name.as_deref(), d.etag.as_deref()), (None, None));
        for bad in ["", "[]", r#"{"Item":3}"#, r#"{"NotItem":{}}"#] {
            assert!(item_file::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        // No s3Id: not a capture.
        assert!(Capture::from_item(&item_file::parse(br#"{"Item":{}}"#).expect("item")).is_none());
    }
}
