//! A capture's dataset read back: the Parquet files `convert` wrote for it (found under the
//! output root by their [`layout`](crate::layout) names), and from them where the records of a
//! set of frames or of a flow are in the capture.
//!
//! Only the columns needed are read, and only the row groups that can hold the frames asked
//! for: a packet table's rows are its frames in order, one per frame, so a row group's frame
//! range follows from the row counts in the footer.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use pcaplab_core::RecordSpan;
use pcaplab_core::columns::col;
use pcaplab_core::flows::col as flow_col;

use crate::item_file::{self, Map};
use crate::job::{Root, store_message};
use crate::layout::escape;

/// Why the dataset cannot answer. Every variant names the file or root concerned.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{url}: {message}")]
    Invalid { url: String, message: String },
    #[error("{url}: cannot read: {}", store_message(source))]
    Read {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot read as Parquet")]
    Parquet {
        url: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The dataset describes another version of the object.
    #[error("{url}: {message}")]
    OtherVersion { url: String, message: String },
    /// What was asked for is not in the dataset: no file of a capture by that name, no flow
    /// with that Community ID, no such frame.
    #[error("{url}: {message}")]
    NotFound { url: String, message: String },
}

/// One file of the dataset.
#[derive(Clone, Debug)]
pub struct DataFile {
    pub path: Path,
    pub url: String,
    pub size: u64,
}

/// What the dataset holds for one capture.
#[derive(Debug)]
pub struct CaptureFiles {
    /// The capture's name (`capture` column, the files' `<id>`).
    pub id: String,
    /// The packet table's files: one, or the parts of a conversion in ranges, in order.
    pub packets: Vec<DataFile>,
    pub flows: Option<DataFile>,
    /// Its summary item (`dynamodb/<id>.json`), when written.
    pub item: Option<Map>,
    store: Arc<dyn ObjectStore>,
}

/// One frame to extract: where its record is, and its pcapng interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub frame: u64,
    pub span: RecordSpan,
    pub interface_id: u32,
}

/// Frame numbers: sorted, disjoint inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameSet(Vec<(u64, u64)>);

impl FrameSet {
    /// `1,7,20-40` (1-based frame numbers and inclusive ranges, any order, overlaps allowed).
    pub fn parse(text: &str) -> Result<FrameSet, String> {
        let number = |s: &str| -> Result<u64, String> {
            match s.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "{s:?} is not a frame number (frames are numbered from 1)"
                )),
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            if a > b {
                return Err(format!("{part:?}: a range runs from low to high"));
            }
            ranges.push((a, b));
        }
        if ranges.is_empty() {
            return Err(format!("{text:?} names no frame"));
        }
        Ok(FrameSet::from_ranges(ranges))
    }

    /// The set of these frame numbers.
    pub fn from_frames(frames: impl IntoIterator<Item = u64>) -> FrameSet {
        FrameSet::from_ranges(frames.into_iter().map(|f| (f, f)).collect())
    }

    fn from_ranges(mut ranges: Vec<(u64, u64)>) -> FrameSet {
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        FrameSet(merged)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, frame: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < frame);
        self.0.get(i).is_some_and(|&(a, _)| a <= frame)
    }

    /// Whether any frame of `first..=last` is in the set.
    pub fn overlaps(&self, first: u64, last: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < first);
        self.0.get(i).is_some_and(|&(a, _)| a <= last)
    }

    pub fn last(&self) -> Option<u64> {
        self.0.last().map(|r| r.1)
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }
}

/// A filter on the indexed columns of the packet rows: every condition given must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `src_ip` or `dst_ip` is one of these (as the rows write them).
    pub hosts: Vec<String>,
    /// `src_port` or `dst_port` is one of these.
    pub ports: Vec<u16>,
    /// `ip_proto` is this.
    pub ip_proto: Option<u8>,
    /// `ts` (ns since the epoch) is at or after `since` and before `until`.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.ports.is_empty()
            && self.ip_proto.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// The names a capture may have in a dataset, most specific first: `bucket/key` for an S3
/// object; for a local file every trailing part of its path (`a/b/c.pcap`, `b/c.pcap`,
/// `c.pcap`), since `convert` names a file by its path below the directory it was given.
pub fn candidate_ids(input: &crate::Location) -> Vec<String> {
    match input {
        crate::Location::S3 { .. } => vec![input.s3_id()],
        crate::Location::Local(path) => {
            let parts: Vec<String> = path
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            (0..parts.len()).map(|i| parts[i..].join("/")).collect()
        }
    }
}

/// What a dataset file's name says: the index of the id matched, the ETag, and the part
/// number of a capture converted in ranges.
type Named = (usize, Option<String>, Option<u32>);

/// The `<id>`, ETag and part of a dataset file name `<escaped id>[.<etag>][.part-NNNNN]<ext>`,
/// if the id is one of `ids` (escaped).
fn match_name(file: &str, ext: &str, escaped: &[String]) -> Option<Named> {
    let stem = file.strip_suffix(ext)?;
    let (stem, part) = match stem.rsplit_once(".part-") {
        Some((s, n)) if n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()) => {
            (s, Some(n.parse().ok()?))
        }
        _ => (stem, None),
    };
    escaped.iter().enumerate().find_map(|(i, id)| {
        let rest = stem.strip_prefix(id.as_str())?;
        if rest.is_empty() {
            return Some((i, None, part));
        }
        let tag = rest.strip_prefix('.')?;
        (!tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .then(|| (i, Some(tag.to_owned()), part))
    })
}

/// A file found for a candidate id.
struct Found {
    candidate: usize,
    etag: Option<String>,
    part: Option<u32>,
    file: DataFile,
}

async fn find(
    root: &Root,
    dir: &str,
    ext: &str,
    escaped: &[String],
) -> Result<Vec<Found>, DatasetError> {
    let prefix = root.path(dir).map_err(|source| DatasetError::Read {
        url: root.url(dir),
        source,
    })?;
    let listed: Vec<object_store::ObjectMeta> = root
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(Vec::new()),
            source => Err(DatasetError::Read {
                url: root.url(dir),
                source,
            }),
        })?;
    let mut found = Vec::new();
    for m in listed {
        let Some(name) = m.location.filename() else {
            continue;
        };
        // Keys are `dir/date=YYYY-MM-DD/<name>`.
        if m.location.parts().count() != root.path("").map_or(0, |p| p.parts().count()) + 3 {
            continue;
        }
        if let Some((candidate, etag, part)) = match_name(name, ext, escaped) {
            let key = m
                .location
                .as_ref()
                .strip_prefix(&root.prefix)
                .unwrap_or(m.location.as_ref())
                .to_owned();
            found.push(Found {
                candidate,
                etag,
                part,
                file: DataFile {
                    url: root.url(&key),
                    path: m.location,
                    size: m.size,
                },
            });
        }
    }
    Ok(found)
}

/// The files among `found` for the capture named `ids[candidate]` whose ETag part is `etag`
/// (S3 objects) or that have none (local files): one, or the parts of a conversion in ranges
/// (numbered from 0 without a gap), in order; none if the dataset has none.
fn choose(
    found: Vec<Found>,
    candidate: usize,
    etag: Option<&str>,
    what: &str,
    root: &Root,
) -> Result<Vec<DataFile>, DatasetError> {
    let ours: Vec<Found> = found
        .into_iter()
        .filter(|f| f.candidate == candidate)
        .collect();
    let want: Option<String> = etag.map(|t| {
        t.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    });
    let (mut matching, other): (Vec<Found>, Vec<Found>) =
        ours.into_iter().partition(|f| f.etag == want);
    matching.sort_by_key(|f| f.part);
    let parts: Vec<Option<u32>> = matching.iter().map(|f| f.part).collect();
    let numbered = (0..).map(Some).take(parts.len()).eq(parts.iter().copied());
    if matching.len() > 1 && numbered {
        return Ok(matching.into_iter().map(|f| f.file).collect());
    }
    match matching.len() {
        0 if other.is_empty() => Ok(Vec::new()),
        0 => Err(DatasetError::OtherVersion {
            url: root.url(""),
            message: format!(
                "its {what} are of another version of the capture ({}), not of the object there \
                 now (ETag {}): the capture changed since it was converted; convert it again",
                other
                    .iter()
                    .map(|f| f.file.url.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                etag.unwrap_or("none"),
            ),
        }),
        1 if parts == [None] || parts == [Some(0)] => {
            Ok(matching.into_iter().map(|f| f.file).collect())
        }
        _ => Err(DatasetError::Invalid {
            url: root.url(""),
            message: format!(
                "several {what} files for the capture: {}; name the one to use with --name or \
                 keep one",
                matching
                    .iter()
                    .map(|f| f.file.url.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Find the dataset files of the capture named one of `ids` (most specific first) whose
/// object has ETag `etag` (S3) under `root`.
pub(crate) async fn locate(
    root: &Root,
    ids: &[String],
    etag: Option<&str>,
) -> Result<CaptureFiles, DatasetError> {
    let escaped: Vec<String> = ids.iter().map(|i| escape(i)).collect();
    let packets = find(root, "packets/", ".parquet", &escaped).await?;
    let flows = find(root, "flows/", ".flows.parquet", &escaped).await?;
    let Some(candidate) = packets.iter().chain(&flows).map(|f| f.candidate).min() else {
        return Err(DatasetError::NotFound {
            url: root.url(""),
            message: format!(
                "no packets/ or flows/ file of a capture named {} (convert it with --out \
                 pointing here, or give its name with --name)",
                ids.iter()
                    .map(|i| format!("{i:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        });
    };
    let packets = choose(packets, candidate, etag, "packet rows", root)?;
    let flows = match <[DataFile; 1]>::try_from(choose(flows, candidate, etag, "flow rows", root)?)
    {
        Ok([file]) => Some(file),
        Err(none) if none.is_empty() => None,
        Err(parts) => {
            return Err(DatasetError::Invalid {
                url: root.url(""),
                message: format!(
                    "the flow rows are in {} parts; a flow table is one file",
                    parts.len()
                ),
            });
        }
    };
    let id = ids[candidate].clone();
    let item_key = format!("dynamodb/{}.json", escape(&id));
    let item = match root.path(&item_key) {
        Ok(path) => match root.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|source| DatasetError::Read {
                    url: root.url(&item_key),
                    source,
                })?;
                Some(
                    item_file::parse(&bytes).map_err(|message| DatasetError::Invalid {
                        url: root.url(&item_key),
                        message,
                    })?,
                )
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(source) => {
                return Err(DatasetError::Read {
                    url: root.url(&item_key),
                    source,
                });
            }
        },
        Err(_) => None,
    };
    Ok(CaptureFiles {
        id,
        packets,
        flows,
        item,
        store: Arc::clone(&root.store),
    })
}

/// The packet table's files named in a message: the file, or the first part and how many.
fn packets_url(files: &[DataFile]) -> String {
    match files {
        [] => String::new(),
        [one] => one.url.clone(),
        [first, ..] => format!("{} (and its {} other parts)", first.url, files.len() - 1),
    }
}

/// A flow as its row in the flow table gives it.
#[derive(Clone, Debug)]
struct FlowRow {
    ip_proto: u8,
    vlans: [Option<u16>; 2],
    src: (String, Option<u16>),
    dst: (String, Option<u16>),
    tunnel_id: Option<u32>,
    first_frame: u64,
    last_frame: u64,
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// Reads the batches of `columns` of the row groups `keep` selects (by their frame range,
/// first and last frame), calling `each` on each, through `files` in order (the parts of a
/// capture converted in ranges hold its frames in order). Returns the files' row count.
async fn scan(
    store: &Arc<dyn ObjectStore>,
    files: &[DataFile],
    columns: &[&str],
    keep: impl Fn(u64, u64) -> bool,
    mut each: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<u64, DatasetError> {
    let mut first = 1u64;
    for file in files {
        first = scan_file(store, file, first, columns, &keep, &mut each).await?;
    }
    Ok(first - 1)
}

/// [`scan`] of one file whose first row is frame `first`; the frame after its last row.
async fn scan_file(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
    mut first: u64,
    columns: &[&str],
    keep: &impl Fn(u64, u64) -> bool,
    each: &mut impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<u64, DatasetError> {
    let parquet = |source| DatasetError::Parquet {
        url: file.url.clone(),
        source,
    };
    let reader = FileReader {
        store: Arc::clone(store),
        file: file.clone(),
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(parquet)?;
    let mut groups = Vec::new();
    for (i, rg) in builder.metadata().row_groups().iter().enumerate() {
        let rows = u64::try_from(rg.num_rows()).unwrap_or(0);
        if rows > 0 && keep(first, first + rows - 1) {
            groups.push(i);
        }
        first += rows;
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let mut stream = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .build()
        .map_err(parquet)?;
    while let Some(batch) = stream.try_next().await.map_err(parquet)? {
        each(&batch).map_err(|message| DatasetError::Invalid {
            url: file.url.clone(),
            message,
        })?;
    }
    Ok(first)
}

/// Parquet's reads of a dataset file: ranged GETs (the footer, then the column chunks needed).
struct FileReader {
    store: Arc<dyn ObjectStore>,
    file: DataFile,
}

fn parquet_error(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.file.path, range)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.file.path, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.file.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The typed columns of a batch.
struct Cols<'a>(&'a RecordBatch);

impl<'a> Cols<'a> {
    fn get(&self, name: &str) -> Result<&'a Arc<dyn Array>, String> {
        self.0
            .column_by_name(name)
            .ok_or_else(|| format!("no column {name} (written by an older pcaplab? convert again)"))
    }

    fn prim<T: arrow_array::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<&'a arrow_array::PrimitiveArray<T>, String> {
        self.get(name)?
            .as_primitive_opt::<T>()
            .ok_or_else(|| format!("column {name} is not {}", T::DATA_TYPE))
    }

    fn strings(&self, name: &str) -> Result<&'a arrow_array::StringArray, String> {
        self.get(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {name} is not a string"))
    }
}

fn opt<T: arrow_array::ArrowPrimitiveType>(
    a: &arrow_array::PrimitiveArray<T>,
    i: usize,
) -> Option<T::Native> {
    a.is_valid(i).then(|| a.value(i))
}

/// The columns that say where a frame's record is.
///
/// (`ts` is read as the Arrow timestamp it is.)
const PLACE: [&str; 4] = [
    col::FRAME_NUMBER,
    col::RECORD_OFFSET,
    col::RECORD_LEN,
    col::INTERFACE_ID,
];

impl CaptureFiles {
    fn packets(&self) -> Result<&[DataFile], DatasetError> {
        if self.packets.is_empty() {
            return Err(DatasetError::Invalid {
                url: self.id.clone(),
                message: "the dataset has no packet rows (packets/) for this capture: convert \
                          it with --format parquet"
                    .into(),
            });
        }
        Ok(&self.packets)
    }

    /// Where the records of `frames` are. Every frame must be in the capture.
    pub async fn frames(&self, frames: &FrameSet) -> Result<Vec<Wanted>, DatasetError> {
        let file = self.packets()?;
        let mut wanted = Vec::new();
        let rows = scan(
            &self.store,
            file,
            &PLACE,
            |a, b| frames.overlaps(a, b),
            |batch| {
                let places = Places::of(&Cols(batch))?;
                for i in 0..batch.num_rows() {
                    if frames.contains(places.frame(i)) {
                        wanted.push(places.at(i));
                    }
                }
                Ok(())
            },
        )
        .await?;
        if wanted.len() as u64 != frames.len() {
            let have: BTreeSet<u64> = wanted.iter().map(|w| w.frame).collect();
            let missing = frames
                .0
                .iter()
                .flat_map(|&(a, b)| a..=b)
                .find(|f| !have.contains(f))
                .unwrap_or(0);
            return Err(DatasetError::NotFound {
                url: packets_url(file),
                message: format!("the capture has no frame {missing} (it has {rows} frames)"),
            });
        }
        wanted.sort_unstable();
        Ok(wanted)
    }

    /// Where the records of the packet rows `filter` selects are.
    pub async fn filtered(&self, filter: &Filter) -> Result<Vec<Wanted>, DatasetError> {
        use arrow_array::types::TimestampNanosecondType;
        let file = self.packets()?;
        let mut columns = PLACE.to_vec();
        columns.extend([
            col::TS,
            col::SRC_IP,
            col::DST_IP,
            col::SRC_PORT,
            col::DST_PORT,
            col::IP_PROTO,
        ]);
        let mut wanted = Vec::new();
        scan(
            &self.store,
            file,
            &columns,
            |_, _| true,
            |batch| {
                let c = Cols(batch);
                let places = Places::of(&c)?;
                let ts = c
                    .get(col::TS)?
                    .as_primitive_opt::<TimestampNanosecondType>()
                    .ok_or("column ts is not a timestamp")?;
                let (src, dst) = (c.strings(col::SRC_IP)?, c.strings(col::DST_IP)?);
                let (sport, dport) = (
                    c.prim::<UInt16Type>(col::SRC_PORT)?,
                    c.prim::<UInt16Type>(col::DST_PORT)?,
                );
                let proto = c.prim::<UInt8Type>(col::IP_PROTO)?;
                for i in 0..batch.num_rows() {
                    let t = opt(ts, i);
                    let host = |h: &String| {
                        (src.is_valid(i) && src.value(i) == h)
                            || (dst.is_valid(i) && dst.value(i) == h)
                    };
                    let port = |p: &u16| opt(sport, i) == Some(*p) || opt(dport, i) == Some(*p);
                    let keep = (filter.hosts.is_empty() || filter.hosts.iter().any(host))
                        && (filter.ports.is_empty() || filter.ports.iter().any(port))
                        && filter.ip_proto.is_none_or(|p| opt(proto, i) == Some(p))
                        && filter.since.is_none_or(|s| t.is_some_and(|t| t >= s))
                        && filter.until.is_none_or(|u| t.is_some_and(|t| t < u));
                    if keep {
                        wanted.push(places.at(i));
                    }
                }
                Ok(())
            },
        )
        .await?;
        if wanted.is_empty() {
            return Err(DatasetError::Invalid {
                url: packets_url(file),
                message: format!("no packet matches the filter ({filter:?})"),
            });
        }
        Ok(wanted)
    }

    /// The rows of the flow table with this Community ID (a flow split by its timeout has
    /// several).
    async fn flow_rows(&self, community_id: &str) -> Result<Vec<FlowRow>, DatasetError> {
        let file = self.flows.as_ref().ok_or_else(|| DatasetError::Invalid {
            url: self.id.clone(),
            message: "the dataset has no flow rows (flows/) for this capture: convert it with \
                      --format parquet,flows"
                .into(),
        })?;
        let mut found = Vec::new();
        let columns = [
            flow_col::COMMUNITY_ID,
            flow_col::IP_PROTO,
            flow_col::VLAN,
            flow_col::INNER_VLAN,
            flow_col::SRC_IP,
            flow_col::SRC_PORT,
            flow_col::DST_IP,
            flow_col::DST_PORT,
            flow_col::TUNNEL_ID,
            flow_col::FIRST_FRAME,
            flow_col::LAST_FRAME,
        ];
        scan(
            &self.store,
            std::slice::from_ref(file),
            &columns,
            |_, _| true,
            |batch| {
                let c = Cols(batch);
                let id = c.strings(flow_col::COMMUNITY_ID)?;
                let proto = c.prim::<UInt8Type>(flow_col::IP_PROTO)?;
                let vlans = (
                    c.prim::<UInt16Type>(flow_col::VLAN)?,
                    c.prim::<UInt16Type>(flow_col::INNER_VLAN)?,
                );
                let (src, dst) = (c.strings(flow_col::SRC_IP)?, c.strings(flow_col::DST_IP)?);
                let (sport, dport) = (
                    c.prim::<UInt16Type>(flow_col::SRC_PORT)?,
                    c.prim::<UInt16Type>(flow_col::DST_PORT)?,
                );
                let tunnel = c.prim::<UInt32Type>(flow_col::TUNNEL_ID)?;
                let (first, last) = (
                    c.prim::<UInt64Type>(flow_col::FIRST_FRAME)?,
                    c.prim::<UInt64Type>(flow_col::LAST_FRAME)?,
                );
                for i in 0..batch.num_rows() {
                    if id.value(i) != community_id {
                        continue;
                    }
                    found.push(FlowRow {
                        ip_proto: proto.value(i),
                        vlans: [opt(vlans.0, i), opt(vlans.1, i)],
                        src: (src.value(i).to_owned(), opt(sport, i)),
                        dst: (dst.value(i).to_owned(), opt(dport, i)),
                        tunnel_id: opt(tunnel, i),
                        first_frame: first.value(i),
                        last_frame: last.value(i),
                    });
                }
                Ok(())
            },
        )
        .await?;
        if found.is_empty() {
            return Err(DatasetError::NotFound {
                url: file.url.clone(),
                message: format!("no flow with Community ID {community_id:?}"),
            });
        }
        Ok(found)
    }

    /// Where the records of the flow with this Community ID are: the packet rows between its
    /// first and last frame with its protocol, endpoints (either way), VLANs and tunnel, and
    /// every fragment of the datagrams among them.
    ///
    /// A fragment's row has no ports: it belongs to the flow of the row that completed its
    /// datagram (`frag_datagram` groups them; that row has the ports and `frag_count`), or, for
    /// a datagram the reassembly gave up, to the flow of its addresses alone — which is then
    /// read to its end, to be sure no row completed it.
    pub async fn flow(&self, community_id: &str) -> Result<Vec<Wanted>, DatasetError> {
        let flows = self.flow_rows(community_id).await?;
        let file = self.packets()?;
        let mut columns = PLACE.to_vec();
        columns.extend([
            col::IP_PROTO,
            col::SRC_IP,
            col::DST_IP,
            col::SRC_PORT,
            col::DST_PORT,
            col::VLAN_IDS,
            col::TUNNEL_ID,
            col::FRAG_DATAGRAM,
            col::FRAG_COUNT,
        ]);
        let in_range = |a: u64, b: u64| {
            flows
                .iter()
                .any(|f| a <= f.last_frame && f.first_frame <= b)
        };
        let mut wanted = Vec::new();
        // Datagrams of the flow, and those that may be (given up, of its addresses alone).
        let (mut datagrams, mut maybe) = (BTreeSet::new(), BTreeSet::new());
        scan(&self.store, file, &columns, in_range, |batch| {
            let c = Cols(batch);
            let places = Places::of(&c)?;
            let (proto, src, dst) = (
                c.prim::<UInt8Type>(col::IP_PROTO)?,
                c.strings(col::SRC_IP)?,
                c.strings(col::DST_IP)?,
            );
            let (sport, dport) = (
                c.prim::<UInt16Type>(col::SRC_PORT)?,
                c.prim::<UInt16Type>(col::DST_PORT)?,
            );
            let vlan_ids = c
                .get(col::VLAN_IDS)?
                .as_list_opt::<i32>()
                .ok_or("column vlan_ids is not a list")?;
            let vlan_values = vlan_ids
                .values()
                .as_primitive_opt::<UInt16Type>()
                .ok_or("column vlan_ids is not a list of uint16")?;
            // Row `i`'s `k`th VLAN ID (outermost first), read in place.
            let vlan = |i: usize, k: usize| {
                let offsets = vlan_ids.value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                (vlan_ids.is_valid(i) && from + k < to).then(|| vlan_values.value(from + k))
            };
            let (tunnel, datagram, count) = (
                c.prim::<UInt32Type>(col::TUNNEL_ID)?,
                c.prim::<UInt64Type>(col::FRAG_DATAGRAM)?,
                c.prim::<UInt32Type>(col::FRAG_COUNT)?,
            );
            for i in 0..batch.num_rows() {
                let n = places.frame(i);
                let Some(p) = opt(proto, i) else { continue };
                if !src.is_valid(i) || !dst.is_valid(i) {
                    continue;
                }
                let ends = ((src.value(i), opt(sport, i)), (dst.value(i), opt(dport, i)));
                let fragment = opt(datagram, i);
                let matched = flows.iter().any(|f| {
                    if !(f.first_frame <= n && n <= f.last_frame && f.ip_proto == p) {
                        return false;
                    }
                    if f.tunnel_id != opt(tunnel, i) || f.vlans != [vlan(i, 0), vlan(i, 1)] {
                        return false;
                    }
                    // ICMP flows pair types in their "ports"; the rows have none.
                    let icmp = matches!(p, IPPROTO_ICMP | IPPROTO_ICMPV6);
                    let same = |(a, pa): (&str, Option<u16>), (b, pb): &(String, Option<u16>)| {
                        a == b && (icmp || pa == *pb)
                    };
                    (same(ends.0, &f.src) && same(ends.1, &f.dst))
                        || (same(ends.0, &f.dst) && same(ends.1, &f.src))
                });
                match (matched, fragment, count.is_valid(i)) {
                    (false, _, _) => {}
                    // A fragment other than the one completing its datagram (it has no
                    // ports) may be of a datagram completed in another flow.
                    (true, Some(d), false) => {
                        maybe.insert(d);
                    }
                    (true, d, _) => {
                        datagrams.extend(d);
                        wanted.push(places.at(i));
                    }
                }
            }
            Ok(())
        })
        .await?;
        maybe.retain(|d| !datagrams.contains(d));
        // The fragments of those datagrams, wherever they are (a datagram's first fragment
        // may come before the flow's first frame); for the given-up candidates, whether any
        // row completed them.
        let (Some(first), Some(last)) = (
            datagrams.iter().chain(&maybe).min().copied(),
            datagrams.iter().chain(&maybe).max().copied(),
        ) else {
            wanted.sort_unstable();
            return Ok(wanted);
        };
        let last_frame = flows.iter().map(|f| f.last_frame).max().unwrap_or(last);
        let until = if maybe.is_empty() {
            last_frame
        } else {
            u64::MAX
        };
        let have: BTreeSet<u64> = wanted.iter().map(|w| w.frame).collect();
        let mut columns = PLACE.to_vec();
        columns.extend([col::FRAG_DATAGRAM, col::FRAG_COUNT]);
        let mut maybe_rows: Vec<(u64, Wanted)> = Vec::new();
        let mut completed = BTreeSet::new();
        scan(
            &self.store,
            file,
            &columns,
            |a, b| a <= until && first <= b,
            |batch| {
                let c = Cols(batch);
                let places = Places::of(&c)?;
                let (datagram, count) = (
                    c.prim::<UInt64Type>(col::FRAG_DATAGRAM)?,
                    c.prim::<UInt32Type>(col::FRAG_COUNT)?,
                );
                for i in 0..batch.num_rows() {
                    let Some(d) = opt(datagram, i) else { continue };
                    if datagrams.contains(&d) && !have.contains(&places.frame(i)) {
                        wanted.push(places.at(i));
                    } else if maybe.contains(&d) {
                        if count.is_valid(i) {
                            completed.insert(d);
                        }
                        maybe_rows.push((d, places.at(i)));
                    }
                }
                Ok(())
            },
        )
        .await?;
        wanted.extend(
            maybe_rows
                .into_iter()
                .filter(|(d, _)| !completed.contains(d))
                .map(|(_, w)| w),
        );
        wanted.sort_unstable();
        wanted.dedup();
        Ok(wanted)
    }
}

/// The [`PLACE`] columns of a batch, looked up once for all its rows.
struct Places<'a> {
    frame: &'a arrow_array::UInt64Array,
    offset: &'a arrow_array::UInt64Array,
    len: &'a arrow_array::UInt32Array,
    interface: &'a arrow_array::UInt32Array,
}

impl<'a> Places<'a> {
    fn of(c: &Cols<'a>) -> Result<Self, String> {
        Ok(Places {
            frame: c.prim::<UInt64Type>(col::FRAME_NUMBER)?,
            offset: c.prim::<UInt64Type>(col::RECORD_OFFSET)?,
            len: c.prim::<UInt32Type>(col::RECORD_LEN)?,
            interface: c.prim::<UInt32Type>(col::INTERFACE_ID)?,
        })
    }

    fn frame(&self, i: usize) -> u64 {
        self.frame.value(i)
    }

    /// Row `i`'s record.
    fn at(&self, i: usize) -> Wanted {
        Wanted {
            frame: self.frame.value(i),
            span: RecordSpan {
                offset: self.offset.value(i),
                len: self.len.value(i),
            },
            interface_id: self.interface.value(i),
        }
    }
}

/// The frame numbers in the `frame_number` column of a Parquet or CSV file (what DuckDB
/// writes from a query: `COPY (SELECT frame_number …) TO 'sel.parquet'`).
pub fn frames_from_file(path: &std::path::Path) -> Result<FrameSet, String> {
    let name = path.display();
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let frames = if is_parquet {
        frames_from_parquet(path).map_err(|e| format!("{name}: {e}"))?
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        frames_from_csv(&text).map_err(|e| format!("{name}: {e}"))?
    };
    if frames.is_empty() {
        return Err(format!("{name}: no frame numbers in it"));
    }
    Ok(frames)
}

fn frames_from_parquet(path: &std::path::Path) -> Result<FrameSet, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let Some(index) = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == col::FRAME_NUMBER)
    else {
        return Err("no frame_number column".into());
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let mut frames = Vec::new();
    for batch in builder
        .with_projection(mask)
        .build()
        .map_err(|e| e.to_string())?
    {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = arrow_cast_u64(batch.column(0))?;
        frames.extend(column.into_iter().flatten());
    }
    Ok(FrameSet::from_frames(
        frames.into_iter().filter(|f| *f >= 1),
    ))
}

/// An integer column as u64 values (DuckDB writes `frame_number` as UBIGINT, or BIGINT after
/// arithmetic); negative values are dropped.
fn arrow_cast_u64(a: &Arc<dyn Array>) -> Result<Vec<Option<u64>>, String> {
    use arrow_array::types::{Int32Type, Int64Type};
    if let Some(v) = a.as_primitive_opt::<UInt64Type>() {
        return Ok(v.iter().collect());
    }
    if let Some(v) = a.as_primitive_opt::<Int64Type>() {
        return Ok(v
            .iter()
            .map(|x| x.and_then(|x| u64::try_from(x).ok()))
            .collect());
    }
    if let Some(v) = a.as_primitive_opt::<Int32Type>() {
        return Ok(v
            .iter()
            .map(|x| x.and_then(|x| u64::try_from(x).ok()))
            .collect());
    }
    if let Some(v) = a.as_primitive_opt::<UInt32Type>() {
        return Ok(v.iter().map(|x| x.map(u64::from)).collect());
    }
    Err(format!("frame_number is {}, not an integer", a.data_type()))
}

/// The fields of one CSV line (RFC 4180: `"` quotes a field, `""` inside is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

fn frames_from_csv(text: &str) -> Result<FrameSet, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = csv_fields(lines.next().ok_or("empty")?);
    let index = header
        .iter()
        .position(|h| h.trim() == col::FRAME_NUMBER)
        .ok_or("no frame_number column in its header line")?;
    let mut frames = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields = csv_fields(line);
        let value = fields.get(index).map(|f| f.trim()).unwrap_or("");
        let frame: u64 = value.parse().map_err(|_| {
            format!(
                "line {}: frame_number {value:?} is not a frame number",
                n + 2
            )
        })?;
        frames.push(frame);
    }
    Ok(FrameSet::from_frames(
        frames.into_iter().filter(|f| *f >= 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sets_parse_merge_and_answer() {
        let s = FrameSet::parse("20-40, 7,1,39-41,8").expect("valid");
        assert_eq!(s.0, vec![(1, 1), (7, 8), (20, 41)]);
        assert_eq!(s.len(), 1 + 2 + 22);
        assert!(s.contains(1) && s.contains(8) && s.contains(41) && !s.contains(9));
        assert!(s.overlaps(9, 20) && !s.overlaps(9, 19) && !s.overlaps(42, 100));
        assert_eq!(s.last(), Some(41));
        for bad in ["", "0", "a", "5-3", "1-", "-2", "1,,x"] {
            let e = FrameSet::parse(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
        assert_eq!(FrameSet::from_frames([3, 1, 2, 9]).0, vec![(1, 3), (9, 9)]);
    }

    #[test]
    fn frame_numbers_come_from_a_csv_column() {
        let csv =
            "src_ip,frame_number,note\n10.0.0.1,7,\"a, \"\"quoted\"\" note\"\n10.0.0.2,3,x\n\n";
        assert_eq!(frames_from_csv(csv).expect("valid").0, vec![(3, 3), (7, 7)]);
        assert!(frames_from_csv("a,b\n1,2\n").is_err());
        let e = frames_from_csv("frame_number\nx\n").expect_err("not a number");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn names_match_ids_and_etags() {
        let ids = vec![escape("bucket/x.pcap"), escape("x.pcap")];
        let m = |f: &str, ext: &str| match_name(f, ext, &ids);
        assert_eq!(
            m("bucket%2Fx.pcap.parquet", ".parquet"),
            Some((0, None, None))
        );
        assert_eq!(
            m("bucket%2Fx.pcap.abc123-2.parquet", ".parquet"),
            Some((0, Some("abc123-2".into()), None))
        );
        assert_eq!(
            m("x.pcap.flows.parquet", ".flows.parquet"),
            Some((1, None, None))
        );
        // The parts of a conversion in ranges.
        assert_eq!(
            m("bucket%2Fx.pcap.abc123-2.part-00007.parquet", ".parquet"),
            Some((0, Some("abc123-2".into()), Some(7)))
        );
        assert_eq!(
            m("x.pcap.part-00000.parquet", ".parquet"),
            Some((1, None, Some(0)))
        );
        assert_eq!(m("x.pcapng.parquet", ".parquet"), None);
        assert_eq!(m("y.pcap.parquet", ".parquet"), None);
        let local = candidate_ids(&crate::Location::Local("dir/sub/x.pcap".into()));
        assert_eq!(local, vec!["dir/sub/x.pcap", "sub/x.pcap", "x.pcap"]);
    }
}
