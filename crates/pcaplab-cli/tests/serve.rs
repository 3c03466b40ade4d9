//! `pcaplab serve`, the real binary:
//!
//! 1. Against moto's server, signature checks on: an SNS topic with two HTTP subscriptions,
//!    one straight to the server and one through a proxy that alters the message in flight.
//!    A poll watcher converts a capture and announces it; the genuine notification shows on
//!    the page and in the API, the altered one is refused with 403 and changes nothing, and
//!    the capture (read from the DynamoDB table) has its charts' data, and a flow's packets
//!    download from the object and its dataset on S3.
//! 2. In headless Chromium (Debian's chromium driven by playwright-core): the page over a copy
//!    of the project's own captures converted with the default formats (`pcaplab convert
//!    captures --out out`, which writes the items); every capture is listed, one is followed,
//!    its four charts render, and a top flow's "Download pcap" link downloads a capture that
//!    tshark reads as exactly the flow's packets. Screenshots are kept under
//!    `target/test-artifacts/serve/`.
//! 3. Over HTTP, the same dataset: a top flow of every capture downloaded is the packets
//!    tshark finds for its addresses and ports in the original, in a capture of the original's
//!    format and a file name from the capture and the flow; an unknown flow or capture is 404,
//!    a capture changed since it was converted 409; the dataset files the item lists are
//!    served, nothing else.
//! 4. Start-up errors name what is wrong (exit 2).
//!
//! Needs `$PCAPLAB_PYTHON` (boto3, moto[server]) for 1, node with `.ci/node/node_modules`
//! (`bash .ci/browser`) and /usr/bin/chromium for 2, tshark for 2 and 3; without them each
//! test prints a loud SKIPPED line, or fails under `$PCAPLAB_REQUIRE_ALL` (as in CI).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcaplab_testkit::{
    Fault, FaultProxy, Guard, Moto, Rule, free_port, http_get, own_captures, python, skip,
    wait_until,
};
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pcaplab")
}

/// `pcaplab serve ARGS` on a free port, its log in `log`; returns the child and the port.
fn serve(args: &[&str], env: impl FnOnce(&mut Command), log: &Path) -> (Guard, u16) {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    env(&mut cmd);
    let mut child = Guard(cmd.spawn().expect("start pcaplab serve"));
    wait_until("pcaplab serve answers", Duration::from_secs(20), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "pcaplab serve exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    (child, port)
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// An HTTP endpoint for SNS that alters each message's `Message` (one more packet) and
/// forwards it to the server's `/sns`, answering with what the server answered. Records the
/// server's status codes.
fn tampering_proxy(server_port: u16) -> (u16, Arc<Mutex<Vec<u16>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().expect("addr").port();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&statuses);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Some(body) = read_request(&conn) else {
                continue;
            };
            let mut m: Value = match serde_json::from_slice(&body) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if let Some(text) = m["Message"].as_str() {
                m["Message"] = Value::String(text.replace("\"packets\":33", "\"packets\":34"));
            }
            let forwarded = m.to_string();
            let status = post(server_port, "/sns", &forwarded);
            seen.lock().expect("lock").push(status);
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (port, statuses)
}

/// One HTTP/1.1 request's body.
fn read_request(conn: &TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(conn);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// POST `body` to the local `port`; the response's status.
fn post(port: u16, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: text/plain; charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

const SETUP: &str = r#"
s3.create_bucket(Bucket="captures"); create_table()
print(sns.create_topic(Name="pcaplab")["TopicArn"])
"#;

/// HTTP subscriptions of the topic `argv[1]` to `/sns` on the ports `argv[2:]` (moto confirms
/// them by itself).
const SUBSCRIBE: &str = r#"
for port in sys.argv[2:]:
    sns.subscribe(TopicArn=sys.argv[1], Protocol="http", Endpoint=f"http://127.0.0.1:{port}/sns")
"#;

#[test]
fn sns_notifications_from_moto_are_verified() {
    let Some(py) = python() else {
        return skip("PCAPLAB_PYTHON (boto3, moto[server]) is not set");
    };
    let moto = Moto::start(&py);
    let topic = moto.py(SETUP, &[]);
    let topic = topic.trim();
    let dir = tempfile::tempdir().expect("tempdir");
    // The server reaches AWS through a fault proxy (faults come at the end).
    let faults = FaultProxy::start(&moto.endpoint());
    let (_server, port) = serve(
        &["--dynamodb-table", "PacketCaptures", "--log-format", "json"],
        |cmd| {
            moto.env_via(cmd, &faults.endpoint());
        },
        &dir.path().join("serve.log"),
    );
    let (proxy, altered) = tampering_proxy(port);
    moto.py(SUBSCRIBE, &[topic, &port.to_string(), &proxy.to_string()]);
    assert_eq!(
        get_json(port, "/api/captures")["captures"],
        Value::Array(vec![])
    );

    moto.upload(
        "captures",
        &[(
            own_captures().join("lab-web.pcap"),
            "in/lab web.pcap".into(),
        )],
    );
    let mut watch = Command::new(bin());
    watch
        .args([
            "watch",
            "--poll",
            "s3://captures/in/",
            "--interval",
            "200ms",
        ])
        .args([
            "--dynamodb-table",
            "PacketCaptures",
            "--sns-topic-arn",
            topic,
        ])
        .args(["--out", "s3://captures/", "--log-format", "json"])
        .args(["--format", "parquet,lab-csv,flows"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("watch.log")).expect("log"));
    // The watcher's first announcement takes effect but its answer is lost: the SDK publishes
    // it again, and SNS delivers both.
    faults.inject(Rule::new("sns:Publish", Fault::DropAnswer).times(1));
    moto.env_via(&mut watch, &faults.endpoint());
    let _watcher = Guard(watch.spawn().expect("start pcaplab watch"));

    let id = "captures/in/lab web.pcap";
    wait_until(
        "both announcements reach the page",
        Duration::from_secs(60),
        || get_json(port, "/api/updates")["accepted"] == 2,
    );
    wait_until(
        "the altered copies are answered",
        Duration::from_secs(30),
        || altered.lock().expect("lock").len() == 2,
    );
    let updates = get_json(port, "/api/updates");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert_eq!(faults.count("sns:Publish"), 2);
    assert_eq!(updates["accepted"], 2, "{updates}\n{log}");
    assert_eq!(updates["rejected"], 2, "{updates}\n{log}");
    // Two announcements of one capture: listed once.
    assert_eq!(
        updates["recent"].as_array().map(Vec::len),
        Some(1),
        "{updates}"
    );
    assert!(
        updates["last_rejection"]
            .as_str()
            .is_some_and(|r| r.contains("signature does not verify")),
        "{updates}"
    );
    assert_eq!(*altered.lock().expect("lock"), [403, 403]);
    let n = &updates["recent"][0];
    assert_eq!(n["kind"], "Notification");
    assert_eq!(n["topic_arn"], topic);
    assert_eq!(n["announcement"]["s3_id"], id);
    assert_eq!(n["announcement"]["status"], "ok");
    assert_eq!(n["announcement"]["packets"], 33, "the genuine count: {n}");
    // moto signs without the subject: it is dropped, not believed.
    assert!(n["subject"].is_null(), "{n}");
    assert!(updates["last_updated"].is_string());
    assert!(log.contains("SNS delivery rejected"), "{log}");

    // The capture, from the table, with its charts' data.
    let listing = get_json(port, "/api/captures");
    assert_eq!(listing["captures"][0]["id"], id, "{listing}");
    assert_eq!(listing["captures"][0]["packets"], 33);
    let detail = get_json(port, "/api/captures/captures%2Fin%2Flab%20web.pcap");
    assert_eq!(detail["status"], "ok");
    let timeline: u64 = detail["timeline"]["packets"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(timeline, 33);
    assert!(
        detail["protocols"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(
        detail["top_talkers"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    let (status, page) = http_get(port, "/").expect("GET /");
    assert_eq!(status, 200);
    assert!(page.contains("Updated on "), "{page}");
    assert!(page.contains("captures/in/lab web.pcap"), "{page}");
    assert!(page.contains("2 accepted, 2 rejected"), "{page}");
    assert_eq!(http_get(port, "/api/captures/nope").map(|r| r.0), Some(404));

    // A flow's packets, cut out of the S3 object by the dataset on S3 (the item has an ETag:
    // its s3Id is bucket/key).
    assert!(detail["etag"].is_string(), "{detail}");
    let flow = &detail["top_flows"][0];
    let cid = flow["community_id"].as_str().expect("a top flow");
    let path = format!(
        "/api/captures/captures%2Fin%2Flab%20web.pcap/flows.pcap?flow={}",
        enc(cid)
    );
    let (status, headers, body) = get_bytes(port, &path);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "content-type"),
        "application/vnd.tcpdump.pcap"
    );
    let file = dir.path().join("flow.pcap");
    std::fs::write(&file, &body).expect("save");
    if have_tshark() {
        let frames = tshark_frames(&file, None);
        assert_eq!(
            Some(frames.len() as u64),
            flow["packets"].as_u64(),
            "{flow}"
        );
    }

    // S3 throttling the reads (the dataset's and the capture's): retried, the same packets.
    faults.inject(Rule::new("s3:GetObject", Fault::Throttle).times(3));
    let (status, _, again) = get_bytes(port, &path);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&again));
    assert_eq!(again, body);
    assert_eq!(faults.faults("s3:GetObject"), 3);
    // The capture unreadable for good: an error naming it, never a partial capture.
    faults.inject(
        Rule::new("s3:GetObject", Fault::InternalError).matching("/captures/in/lab web.pcap"),
    );
    let (status, headers, error) = get_bytes(port, &path);
    let error = String::from_utf8_lossy(&error);
    assert_eq!(status, 502, "{error}");
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert!(
        error.contains("s3://captures/in/lab web.pcap") && error.contains("InternalError"),
        "{error}"
    );
    faults.heal();
    assert_eq!(get_bytes(port, &path).2, body);
}

/// Where playwright-core is: `$PCAPLAB_NODE_MODULES`, else the repository's `.ci/node`.
fn node_modules() -> PathBuf {
    std::env::var_os("PCAPLAB_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/node/node_modules"),
        PathBuf::from,
    )
}

/// The project's own captures (not its README), copied to `dir/captures`.
fn own_capture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(own_captures())
        .expect("captures/")
        .flatten()
        .filter(|e| e.file_name() != "README.md")
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// A copy of the project's own captures in `dir/captures`, converted with the default formats
/// by `pcaplab convert captures --out out` run in `dir`: each item's `s3Id` is
/// `captures/<file>`, relative to `dir`, where `pcaplab serve --data out` is started too.
fn converted_copy(dir: &Path) {
    let captures = dir.join("captures");
    std::fs::create_dir_all(&captures).expect("captures/");
    for file in own_capture_files() {
        std::fs::copy(&file, captures.join(file.file_name().expect("name"))).expect("copy");
    }
    let converted = Command::new(bin())
        .args(["convert", "--quiet", "--out", "out", "captures"])
        .current_dir(dir)
        .output()
        .expect("convert");
    assert!(converted.status.success(), "{converted:?}");
}

/// `pcaplab serve --data out` in `dir` (see [`converted_copy`]).
fn serve_converted(dir: &Path) -> (Guard, u16) {
    serve(
        &["--data", "out"],
        |cmd| {
            cmd.current_dir(dir);
        },
        &dir.join("serve.log"),
    )
}

/// Every byte but letters and digits as `%XX` (as the page encodes ids in its links).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `%XX` decoded.
fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// `GET path` over HTTP/1.1: the status, the headers (names in lower case) and the body's bytes.
fn get_bytes(port: u16, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read the answer");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no HTTP head"));
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = answer[end + 4..].to_vec();
    // Sent with a length, not chunked: the bytes after the head are the body.
    let length = headers.iter().find(|(k, _)| k == "content-length");
    assert_eq!(
        length.map(|(_, v)| v.as_str()),
        Some(body.len().to_string().as_str()),
        "GET {path}: {head}"
    );
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// tshark is there (the downloads are checked with it).
fn have_tshark() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What `tshark -r FILE` reads: one line per frame (time, length on the wire, bytes
/// captured), of the frames the display `filter` selects.
fn tshark_frames(file: &Path, filter: Option<&str>) -> Vec<String> {
    let mut args = vec!["-r", file.to_str().expect("utf8")];
    args.extend(["-T", "fields", "-e", "frame.time_epoch"]);
    args.extend(["-e", "frame.len", "-e", "frame.cap_len"]);
    if let Some(f) = filter {
        args.extend(["-Y", f]);
    }
    pcaplab_testkit::tshark(&args)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A display filter for a TCP or UDP flow of the item's `top_flows`: its addresses and ports,
/// either way, not inside an ICMP error.
fn flow_filter(f: &Value) -> Option<String> {
    let proto = f["proto"].as_str().filter(|p| *p == "tcp" || *p == "udp")?;
    let field = |a: &str| {
        if a.contains(':') {
            "ipv6.addr"
        } else {
            "ip.addr"
        }
    };
    let (src, dst) = (f["src"].as_str()?, f["dst"].as_str()?);
    Some(format!(
        "{} == {src} && {} == {dst} && {proto}.port == {} && {proto}.port == {} && !icmp && !icmpv6",
        field(src),
        field(dst),
        f["src_port"],
        f["dst_port"]
    ))
}

/// The capture tshark reads for the original (the plain twin of a `.gz` or `.zst` one: the
/// same bytes, see captures/README.md).
fn original(id: &str) -> PathBuf {
    let name = id.rsplit('/').next().expect("name");
    let plain = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(name);
    own_captures().join(plain)
}

#[test]
fn page_renders_in_chromium() {
    let modules = node_modules();
    if !modules.join("playwright-core").is_dir() || !Path::new("/usr/bin/chromium").exists() {
        return skip("playwright-core (bash .ci/browser) or /usr/bin/chromium is missing");
    }
    if !have_tshark() {
        return skip("tshark is missing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    converted_copy(dir.path());
    let (_server, port) = serve_converted(dir.path());
    // `convert` with no --format writes the items: every capture is listed.
    let listing = get_json(port, "/api/captures");
    assert_eq!(
        listing["captures"].as_array().map(Vec::len),
        Some(own_capture_files().len()),
        "{listing}"
    );
    let downloads = dir.path().join("downloads");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts/serve");
    std::fs::create_dir_all(&shots).expect("artifact directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/page.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(&shots)
        .env("PCAPLAB_NODE_MODULES", &modules)
        .env("PCAPLAB_CAPTURE", "captures/lab-vlan-ipv6.pcapng")
        .env("PCAPLAB_DOWNLOAD_DIR", &downloads)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("the script's JSON line");
    // Every capture the project ships (captures/) is listed.
    assert_eq!(report["captures"], own_capture_files().len(), "{report}");
    assert_eq!(report["followed"], "captures/lab-vlan-ipv6.pcapng");
    // One drawn bar per entry of the capture's summary (from the JSON API), one per
    // non-empty bucket of the timeline.
    let detail = get_json(port, "/api/captures/captures%2Flab-vlan-ipv6.pcapng");
    let len = |k: &str| detail[k].as_array().map_or(0, Vec::len);
    let charts = &report["charts"];
    assert_eq!(charts["protocols"], len("protocols"), "{report}");
    assert_eq!(charts["talkers"], len("top_talkers"), "{report}");
    assert_eq!(charts["ports"], len("top_ports"), "{report}");
    let busy = detail["timeline"]["packets"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|p| p.as_u64() > Some(0))
        .count();
    assert_eq!(charts["timeline"], busy, "{report}");
    // IPv4 and IPv6 over VLAN: TCP and UDP, 8 addresses; its flows are listed, one table row
    // per top flow.
    assert_eq!((len("protocols"), len("top_talkers")), (2, 8), "{detail}");
    assert!(detail["flows"].as_u64() >= Some(1), "{detail}");
    assert!(len("top_flows") >= 1, "{detail}");
    assert_eq!(report["flowRows"], len("top_flows"), "{report}");
    for shot in ["index.png", "capture.png"] {
        let bytes = std::fs::read(shots.join(shot)).expect("screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot}"
        );
    }
    // The first top flow's "Download pcap": a pcapng (as the capture) named after the
    // capture and the flow, holding exactly the flow's packets.
    let download = &report["download"];
    let href = download["href"].as_str().expect("the followed link");
    let flow = dec(href.split_once("?flow=").expect("a flow parameter").1);
    let top = &detail["top_flows"][0];
    assert_eq!(top["community_id"], flow.as_str(), "{report}");
    let file = PathBuf::from(download["file"].as_str().expect("the saved file"));
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let tag: String = flow[2..]
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    assert_eq!(name, format!("lab-vlan-ipv6-{tag}.pcapng"), "{report}");
    let frames = tshark_frames(&file, None);
    assert_eq!(
        Some(frames.len() as u64),
        top["packets"].as_u64(),
        "{report}\n{frames:#?}"
    );
    if let Some(filter) = flow_filter(top) {
        let theirs = tshark_frames(&original("captures/lab-vlan-ipv6.pcapng"), Some(&filter));
        assert_eq!(frames, theirs, "{filter}");
    }
}

#[test]
fn flows_and_dataset_files_download() {
    if !have_tshark() {
        return skip("tshark is missing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    converted_copy(dir.path());
    let (_server, port) = serve_converted(dir.path());
    let listing = get_json(port, "/api/captures");
    let ids: Vec<String> = listing["captures"]
        .as_array()
        .expect("captures")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), own_capture_files().len(), "{listing}");
    let saved = dir.path().join("downloads");
    std::fs::create_dir_all(&saved).expect("downloads/");
    for id in &ids {
        let detail = get_json(port, &format!("/api/captures/{}", enc(id)));
        let (page_status, page) = http_get(port, &format!("/captures/{}", enc(id))).expect("page");
        assert_eq!(page_status, 200);
        let top = detail["top_flows"].as_array().expect("top_flows");
        // One "Download pcap" link per top flow, one link per output.
        assert_eq!(
            page.matches("class=\"flow-pcap\"").count(),
            top.len(),
            "{id}"
        );
        assert_eq!(
            page.matches("class=\"output\"").count(),
            detail["outputs"].as_object().map_or(0, |o| o.len()),
            "{id}"
        );
        // Its biggest TCP or UDP flow (tshark can find it by addresses and ports).
        let (flow, filter) = top
            .iter()
            .find_map(|f| Some((f, flow_filter(f)?)))
            .unwrap_or_else(|| panic!("{id}: no TCP or UDP flow among {top:?}"));
        let cid = flow["community_id"].as_str().expect("community_id");
        let href = format!("/api/captures/{}/flows.pcap?flow={}", enc(id), enc(cid));
        assert!(page.contains(&href.replace('&', "&amp;")), "{id}: {href}");
        let (status, headers, body) = get_bytes(port, &href);
        assert_eq!(status, 200, "{id}: {}", String::from_utf8_lossy(&body));
        let pcapng = detail["capture_format"] == "pcapng";
        let (media, ext) = if pcapng {
            ("application/x-pcapng", "pcapng")
        } else {
            ("application/vnd.tcpdump.pcap", "pcap")
        };
        assert_eq!(header(&headers, "content-type"), media, "{id}");
        let base = id
            .trim_start_matches("captures/")
            .split('.')
            .next()
            .expect("base");
        let tag: String = cid[2..]
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let name = format!("{base}-{tag}.{ext}");
        assert_eq!(
            header(&headers, "content-disposition"),
            format!("attachment; filename=\"{name}\""),
            "{id}"
        );
        let file = saved.join(format!("{}-{name}", enc(id)));
        std::fs::write(&file, &body).expect("save");
        let frames = tshark_frames(&file, None);
        assert_eq!(
            Some(frames.len() as u64),
            flow["packets"].as_u64(),
            "{id}: {flow}"
        );
        assert_eq!(
            frames,
            tshark_frames(&original(id), Some(&filter)),
            "{id}: {filter}"
        );
    }

    // Errors are answers with a reason.
    let web = enc("captures/lab-web.pcap");
    let status_of = |path: &str| {
        let (status, _, body) = get_bytes(port, path);
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, body) = status_of(&format!(
        "/api/captures/{web}/flows.pcap?flow={}",
        enc("1:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    ));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no flow with Community ID"), "{body}");
    let (status, body) = status_of("/api/captures/captures%2Fnope.pcap/flows.pcap?flow=1%3AA");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no capture"), "{body}");
    assert_eq!(status_of(&format!("/api/captures/{web}/flows.pcap")).0, 400);

    // The dataset files the item lists, and only those.
    let detail = get_json(port, &format!("/api/captures/{web}"));
    let flows_url = detail["outputs"]["flows"].as_str().expect("a flows output");
    let (status, headers, body) = get_bytes(port, &format!("/api/captures/{web}/outputs/flows"));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        std::fs::read(dir.path().join(flows_url)).expect("the flows file")
    );
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"lab-web.pcap.flows.parquet\""
    );
    for bad in [
        "csv",
        "dynamodb-json",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
    ] {
        let (status, body) = status_of(&format!("/api/captures/{web}/outputs/{bad}"));
        assert_eq!(status, 404, "{bad}: {body}");
    }

    // The capture replaced by another of a different size: not the one converted.
    let flow = get_json(port, &format!("/api/captures/{web}"))["top_flows"][0]["community_id"]
        .as_str()
        .expect("a flow")
        .to_owned();
    let href = format!("/api/captures/{web}/flows.pcap?flow={}", enc(&flow));
    assert_eq!(status_of(&href).0, 200);
    std::fs::copy(
        own_captures().join("lab-snaplen.pcap"),
        dir.path().join("captures/lab-web.pcap"),
    )
    .expect("replace the capture");
    let (status, body) = status_of(&href);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("changed since it was converted"), "{body}");
    // Gone: not found, with its path.
    std::fs::remove_file(dir.path().join("captures/lab-web.pcap")).expect("remove");
    let (status, body) = status_of(&href);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("captures/lab-web.pcap"), "{body}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(log.contains("flow download failed"), "{log}");
}

#[test]
fn start_up_errors_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("serve")
            .args(args)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--data") && err.contains("--dynamodb-table"),
        "{err}"
    );
    let missing = dir.path().join("missing");
    let (code, err) = run(&["--data", missing.to_str().expect("utf8")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--data") && err.contains("missing"), "{err}");
    let (code, err) = run(&["--dynamodb-table", "Nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--dynamodb-table Nope"), "{err}");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let (code, err) = run(&[
        "--data",
        dir.path().to_str().expect("utf8"),
        "--listen",
        &addr,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("--listen {addr}")), "{err}");
}
