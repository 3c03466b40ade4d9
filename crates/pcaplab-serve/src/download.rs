//! Files of a capture for the analyst to take away:
//!
//! - `GET /api/captures/{id}/flows.pcap?flow=<Community ID>`: the packets of one flow, cut out
//!   of the original capture by [`pcaplab_cloud::extract`] (the capture is the item's `s3Id`,
//!   the dataset the root of its `flows` output, the name in it its `capture`), as a capture
//!   of the original's format. The extract is spooled to an unlinked temporary file, then
//!   streamed: memory does not grow with the flow, and every failure is still an HTTP status.
//! - `GET /api/captures/{id}/outputs/{format}`: a local dataset file the item lists, streamed.
//!   Only the URL the item gives for that format, and only if it is a key of the dataset
//!   layout; never a path from the request.
//!
//! Local paths: a relative `s3Id` is relative to the server's working directory (convert's
//! own may have been another). With `--data DIR`, the item's local outputs are read under DIR
//! (the item there was written under the same root); with a table, as the URLs say.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pcaplab_cloud::Location;
use pcaplab_cloud::extract::{ExtractError, ExtractReport, ExtractRequest, Selection, extract};
use pcaplab_cloud::layout::{self, Output};
use pcaplab_core::CaptureFormat;
use pcaplab_core::reader::Magic;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::App;
use crate::captures::{Detail, Source};

/// Extracts running at once (each holds a blocking thread while it runs); more are answered 503.
pub const MAX_EXTRACTS: usize = 4;
/// How long an extract may take before the request is answered 503 (the body streams after).
pub const EXTRACT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Bytes read from a spooled extract or a dataset file per chunk of a response body.
const CHUNK: usize = 256 << 10;
/// The longest `flow` parameter taken (a Community ID v1 is 30 characters).
const MAX_FLOW_ID: usize = 256;

/// The link to download one flow's packets.
pub fn flow_href(id: &str, community_id: &str) -> String {
    format!(
        "/api/captures/{}/flows.pcap?flow={}",
        utf8_percent_encode(id, NON_ALPHANUMERIC),
        utf8_percent_encode(community_id, NON_ALPHANUMERIC)
    )
}

/// Output names (`flows-csv`) as they are; anything else percent-encoded.
const FORMAT_NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The link to a dataset file the item lists.
pub fn output_href(id: &str, format: &str) -> String {
    format!(
        "/api/captures/{}/outputs/{}",
        utf8_percent_encode(id, NON_ALPHANUMERIC),
        utf8_percent_encode(format, FORMAT_NAME)
    )
}

/// Letters, digits, `.`, `-` and `_` as they are; anything else `_` (a file name that needs no
/// quoting or escaping in a header).
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A capture's name without directories, compression and capture extension
/// (`in/lab-web.pcap.gz` → `lab-web`).
fn capture_base(name: &str) -> &str {
    let file = name.rsplit('/').next().unwrap_or(name);
    let lower = file.to_ascii_lowercase();
    let plain = [".gz", ".zst", ".zstd"]
        .iter()
        .find(|ext| lower.len() > ext.len() && lower.ends_with(*ext))
        .map_or(file, |ext| &file[..file.len() - ext.len()]);
    layout::base_name(plain)
}

/// `<capture base name>-<first 8 letters and digits of the Community ID's hash>.<ext>`.
pub fn attachment_name(capture: &str, community_id: &str, format: CaptureFormat) -> String {
    let hash = community_id
        .split_once(':')
        .map_or(community_id, |(_, h)| h);
    let tag: String = hash
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let ext = match format {
        CaptureFormat::Pcap => "pcap",
        CaptureFormat::PcapNg => "pcapng",
        CaptureFormat::Snoop => "snoop",
    };
    let base = match safe(capture_base(capture)) {
        b if b.trim_matches(['.', '_']).is_empty() => "capture".to_owned(),
        b => b,
    };
    if tag.is_empty() {
        format!("{base}.{ext}")
    } else {
        format!("{base}-{tag}.{ext}")
    }
}

fn media_type(format: CaptureFormat) -> &'static str {
    match format {
        CaptureFormat::Pcap => "application/vnd.tcpdump.pcap",
        CaptureFormat::PcapNg => "application/x-pcapng",
        CaptureFormat::Snoop => "application/octet-stream",
    }
}

/// A request that cannot be served: its status and why.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    fn from_extract(e: &ExtractError) -> Failure {
        let status = if e.not_found() {
            StatusCode::NOT_FOUND
        } else if e.capture_changed() {
            StatusCode::CONFLICT
        } else {
            match e {
                // S3 (or the disk) did not answer as it should.
                ExtractError::Fetch { .. }
                | ExtractError::Dataset(pcaplab_cloud::dataset::DatasetError::Read { .. }) => {
                    StatusCode::BAD_GATEWAY
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        Failure::new(status, pcaplab_cloud::error_chain(e))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        crate::api_error(self.status, &self.message)
    }
}

/// The capture object an item describes: its `object`; in an item written before that
/// existed, an S3 object (`s3Id` is `bucket/key`) if the item has an ETag, else a local file
/// (`s3Id` is the path given to convert).
fn capture_location(d: &Detail) -> Result<Location, Failure> {
    if let Some(object) = &d.object {
        return Location::parse(object).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the item's object {object:?} names no capture: {e}"),
            )
        });
    }
    let id = &d.capture.id;
    let bad = |e: String| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the item's s3Id {id:?} names no capture: {e}"),
        )
    };
    if d.etag.is_some() {
        let (bucket, key) = id
            .split_once('/')
            .ok_or_else(|| bad("expected bucket/key".into()))?;
        let location =
            Location::parse(&format!("s3://{bucket}/{key}")).map_err(|e| bad(e.to_string()))?;
        if location.is_prefix() {
            return Err(bad("no key".into()));
        }
        Ok(location)
    } else {
        match Location::parse(id).map_err(|e| bad(e.to_string()))? {
            Location::Local(p) if p.as_os_str().is_empty() => Err(bad("empty path".into())),
            location => Ok(location),
        }
    }
}

impl App {
    /// Where a local dataset file of an item is: under `--data DIR` for a directory source,
    /// as the URL says for a table.
    fn local_output(&self, key: &str, url: &str) -> PathBuf {
        match self.captures.source() {
            Source::Dir(dir) => dir.join(key),
            Source::Table { .. } => PathBuf::from(url),
        }
    }

    /// The dataset root of an item's flows output.
    fn dataset_root(&self, flows_url: &str) -> Result<Location, Failure> {
        let (root, _, _) = layout::split_url(flows_url)
            .filter(|(_, output, _)| *output == Output::Data(pcaplab_core::Format::Flows))
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the item's flows output {flows_url} is not a flows/date=…/….flows.parquet file"),
                )
            })?;
        let root = if root.is_empty() { "." } else { root };
        match Location::parse(root) {
            Ok(s3 @ Location::S3 { .. }) => Ok(s3),
            Ok(Location::Local(p)) => Ok(match self.captures.source() {
                Source::Dir(dir) => Location::Local(dir.clone()),
                Source::Table { .. } => Location::Local(p),
            }),
            Err(e) => Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the item's flows output: {e}"),
            )),
        }
    }
}

async fn detail(app: &App, id: &str) -> Result<Detail, Failure> {
    match app.captures.get(id).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no capture {id:?}"),
        )),
        Err(e) => Err(Failure::new(StatusCode::BAD_GATEWAY, e.to_string())),
    }
}

/// The `flow` parameter of a query string: percent-decoded; a `+` stays a plus (Community IDs
/// are base64, and hold no spaces).
fn flow_param(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "flow")
        .map(|(_, v)| percent_decode_str(v).decode_utf8_lossy().trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Sets its flag when dropped: the request is gone (answered, or the client left).
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A writer that fails once the request is gone, so an abandoned extract stops early.
struct Cancellable<'a> {
    inner: &'a mut File,
    gone: Arc<AtomicBool>,
}

impl Write for Cancellable<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(io::Error::other("the request is gone"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A temporary file under `std::env::temp_dir()`, unlinked as soon as it is open: only the
/// open file holds its space, which is freed when it is closed, however the request ends.
fn spool() -> io::Result<File> {
    static SPOOLED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "pcaplab-serve-{}-{}-{nanos}.extract",
        std::process::id(),
        SPOOLED.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::remove_file(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(file)
}

/// A response body read from `file` a chunk at a time on the blocking pool: one chunk in
/// memory, and nothing read before the client takes it.
fn file_body(file: File) -> Body {
    let chunks = futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => Some((Ok(Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(io::Error::other(e)), None)),
        }
    });
    Body::from_stream(chunks)
}

fn attachment(
    status: StatusCode,
    media_type: &str,
    filename: &str,
    len: u64,
    body: Body,
) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    let value =
        |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("attachment"));
    h.insert(header::CONTENT_TYPE, value(media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_DISPOSITION,
        value(&format!("attachment; filename=\"{filename}\"")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Why a spooled extract failed.
enum SpoolError {
    Extract(ExtractError),
    Spool(io::Error),
}

/// `GET /api/captures/{id}/flows.pcap?flow=<Community ID>`.
pub async fn flow_pcap(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(flow) = flow_param(query.as_deref()) else {
        return Failure::new(
            StatusCode::BAD_REQUEST,
            "name the flow: ?flow=<Community ID, percent-encoded>",
        )
        .into_response();
    };
    match download_flow(&app, &id, &flow).await {
        Ok(r) => r,
        Err(f) => {
            tracing::warn!(capture = %id, flow = %flow, status = f.status.as_u16(), error = %f.message, "flow download failed");
            f.into_response()
        }
    }
}

async fn download_flow(app: &Arc<App>, id: &str, flow: &str) -> Result<Response, Failure> {
    let d = detail(app, id).await?;
    if flow.len() > MAX_FLOW_ID {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "no such flow: a Community ID is about 30 characters",
        ));
    }
    let Some(flows_url) = d
        .outputs
        .get(Output::Data(pcaplab_core::Format::Flows).name())
    else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "{id}: its item lists no flows output, so its flows cannot be found: convert it \
                 again with flows among the formats (the default: parquet,flows,dynamodb-json)"
            ),
        ));
    };
    let dataset = app.dataset_root(flows_url)?;
    let input = capture_location(&d)?;
    let aws = app.config.aws.clone();
    let on_s3 = |l: &Location| matches!(l, Location::S3 { .. });
    if aws.is_none() && (on_s3(&input) || on_s3(&dataset)) {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{id}: the capture ({input}) or its dataset ({dataset}) is on S3, and this \
                 server has no AWS configuration (it loads one with --dynamodb-table or an \
                 AWS_ENDPOINT_URL)"
            ),
        ));
    }
    // A capture converted by a relative path is looked for from the server's working directory.
    let relative = matches!(&input, Location::Local(p) if p.is_relative());
    let permit = Arc::clone(&app.extracts).try_acquire_owned().map_err(|_| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {MAX_EXTRACTS} extracts are running; try again"),
        )
    })?;
    let request = ExtractRequest {
        input,
        dataset: Some(dataset),
        name: d.name.clone(),
        selection: Selection::Flow(flow.to_owned()),
    };
    let gone = Arc::new(AtomicBool::new(false));
    let _gone = Gone(Arc::clone(&gone));
    let handle = tokio::runtime::Handle::current();
    // extract() blocks (it runs its reads on `handle`): a thread of the blocking pool, which
    // keeps the permit until it is done even if the request is gone.
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut file = spool().map_err(SpoolError::Spool)?;
        let report = {
            let mut out = io::BufWriter::with_capacity(
                CHUNK,
                Cancellable {
                    inner: &mut file,
                    gone,
                },
            );
            let report = extract(&handle, aws.as_deref(), &request, &mut out)
                .map_err(SpoolError::Extract)?;
            out.flush()
                .map_err(|e| SpoolError::Extract(ExtractError::Write(e)))?;
            report
        };
        let len = file.seek(SeekFrom::End(0)).map_err(SpoolError::Spool)?;
        let mut head = [0u8; 8];
        file.seek(SeekFrom::Start(0)).map_err(SpoolError::Spool)?;
        let n = file.read(&mut head).map_err(SpoolError::Spool)?;
        file.seek(SeekFrom::Start(0)).map_err(SpoolError::Spool)?;
        let format = match pcaplab_core::sniff(&head[..n]) {
            Some(Magic::Capture(f)) => Some(f),
            _ => None,
        };
        Ok::<(File, u64, Option<CaptureFormat>, ExtractReport), SpoolError>((
            file, len, format, report,
        ))
    });
    let (file, len, sniffed, report) = match job.await {
        Ok(Ok(done)) => done,
        Ok(Err(SpoolError::Extract(e))) => {
            let mut f = Failure::from_extract(&e);
            if relative && matches!(e, ExtractError::Open { .. }) {
                f.message.push_str(
                    " (the item's s3Id is a relative path: it is looked for from the server's \
                     working directory; start pcaplab serve where pcaplab convert ran)",
                );
            }
            return Err(f);
        }
        Ok(Err(SpoolError::Spool(e))) => {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot spool the extract: {e}"),
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the extract stopped: {e}"),
            ));
        }
    };
    let format = sniffed
        .or(match d.capture_format.as_deref() {
            Some("pcapng") => Some(CaptureFormat::PcapNg),
            Some("snoop") => Some(CaptureFormat::Snoop),
            _ => None,
        })
        .unwrap_or(CaptureFormat::Pcap);
    let name = d.name.as_deref().unwrap_or(id);
    let filename = attachment_name(name, flow, format);
    for w in &report.warnings {
        tracing::warn!(capture = %id, flow = %flow, "{w}");
    }
    tracing::info!(
        capture = %id,
        flow = %flow,
        packets = report.records,
        bytes = len,
        read = report.bytes_read,
        ranged = report.ranged,
        "flow extracted"
    );
    Ok(attachment(
        StatusCode::OK,
        media_type(format),
        &filename,
        len,
        file_body(file),
    ))
}

/// `GET /api/captures/{id}/outputs/{format}`.
pub async fn output_file(
    State(app): State<Arc<App>>,
    Path((id, format)): Path<(String, String)>,
) -> Response {
    match serve_output(&app, &id, &format).await {
        Ok(r) => r,
        Err(f) => {
            tracing::warn!(capture = %id, format = %format, status = f.status.as_u16(), error = %f.message, "output not served");
            f.into_response()
        }
    }
}

async fn serve_output(app: &Arc<App>, id: &str, format: &str) -> Result<Response, Failure> {
    let d = detail(app, id).await?;
    let Some(url) = d.outputs.get(format) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("{id}: its item lists no {format:?} output"),
        ));
    };
    if url.starts_with("s3://") {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("{id}: its {format} output is on S3 ({url}): read it with an S3 client"),
        ));
    }
    // Only a file of the dataset layout, of the format it is listed as.
    let Some((_, _, key)) = layout::split_url(url).filter(|(_, output, _)| output.name() == format)
    else {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "{id}: its {format} output {url:?} is not a file of the dataset layout; not served"
            ),
        ));
    };
    let path = app.local_output(key, url);
    let shown = path.display().to_string();
    let opened = tokio::task::spawn_blocking(move || {
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a file"));
        }
        Ok((file, meta.len()))
    })
    .await
    .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (file, len) = opened.map_err(|e| {
        let status = if e.kind() == io::ErrorKind::NotFound {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Failure::new(status, format!("{id}: its {format} output {shown}: {e}"))
    })?;
    let media_type = match format {
        "csv" | "lab-csv" | "flows-csv" => "text/csv; charset=utf-8",
        "dynamodb-json" => "application/json",
        _ => "application/vnd.apache.parquet",
    };
    let filename = safe(key.rsplit('/').next().unwrap_or(key));
    Ok(attachment(
        StatusCode::OK,
        media_type,
        &filename,
        len,
        file_body(file),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names() {
        let cid = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";
        assert_eq!(
            attachment_name("lab-web.pcap", cid, CaptureFormat::Pcap),
            "lab-web-LQU9qZlK.pcap"
        );
        assert_eq!(
            attachment_name(
                "bucket/in/lab web.pcapng.ZST",
                "1:+/=ab+cdefghij",
                CaptureFormat::PcapNg
            ),
            "lab_web-abcdefgh.pcapng"
        );
        assert_eq!(
            attachment_name("x.snoop.gz", "no-colon", CaptureFormat::Snoop),
            "x-nocolon.snoop"
        );
        assert_eq!(
            attachment_name("\"\\;.pcap", "1:", CaptureFormat::Pcap),
            "capture.pcap"
        );
    }

    #[test]
    fn links_and_parameters() {
        let cid = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";
        let href = flow_href("captures/lab web.pcap", cid);
        assert_eq!(
            href,
            "/api/captures/captures%2Flab%20web%2Epcap/flows.pcap?flow=1%3ALQU9qZlK%2BB5F3KDmev6m5PMibrg%3D"
        );
        let query = href.split_once('?').map(|(_, q)| q);
        assert_eq!(flow_param(query).as_deref(), Some(cid));
        // Typed by hand: a plus stays a plus.
        assert_eq!(
            flow_param(Some("x=1&flow=1:ab+c/d=")).as_deref(),
            Some("1:ab+c/d=")
        );
        assert_eq!(flow_param(Some("flow=")), None);
        assert_eq!(flow_param(None), None);
        assert_eq!(
            output_href("a/b.pcap", "flows-csv"),
            "/api/captures/a%2Fb%2Epcap/outputs/flows-csv"
        );
    }
}
