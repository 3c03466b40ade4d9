//! `pcaplab serve`, the real binary:
//!
//! 1. Against moto's server, signature checks on: an SNS topic with two HTTP subscriptions,
//!    one straight to the server and one through a proxy that alters the message in flight.
//!    A poll watcher converts a capture and announces it; the genuine notification shows on
//!    the page and in the API, the altered one is refused with 403 and changes nothing, and
//!    the capture (read from the DynamoDB table) has its charts' data.
//! 2. In headless Chromium (Debian's chromium driven by playwright-core): the page over the
//!    summaries `convert --format dynamodb-json` wrote for the project's own captures; a
//!    capture is followed and its four charts render. Screenshots are kept under
//!    `target/test-artifacts/serve/`.
//! 3. Start-up errors name what is wrong (exit 2).
//!
//! Needs `$PCAPLAB_PYTHON` (boto3, moto[server]) for 1, node with `.ci/node/node_modules`
//! (`bash .ci/browser`) and /usr/bin/chromium for 2; without them each test prints a loud
//! SKIPPED line, or fails under `$PCAPLAB_REQUIRE_ALL` (as in CI).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcaplab_testkit::{Guard, Moto, free_port, http_get, own_captures, python, skip, wait_until};
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
    let (_server, port) = serve(
        &["--dynamodb-table", "PacketCaptures", "--log-format", "json"],
        |cmd| {
            moto.env(cmd);
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("watch.log")).expect("log"));
    moto.env(&mut watch);
    let _watcher = Guard(watch.spawn().expect("start pcaplab watch"));

    let id = "captures/in/lab web.pcap";
    wait_until(
        "the announcement reaches the page",
        Duration::from_secs(60),
        || get_json(port, "/api/updates")["accepted"] == 1,
    );
    wait_until(
        "the altered copy is answered",
        Duration::from_secs(30),
        || !altered.lock().expect("lock").is_empty(),
    );
    let updates = get_json(port, "/api/updates");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert_eq!(updates["accepted"], 1, "{updates}\n{log}");
    assert_eq!(updates["rejected"], 1, "{updates}\n{log}");
    assert!(
        updates["last_rejection"]
            .as_str()
            .is_some_and(|r| r.contains("signature does not verify")),
        "{updates}"
    );
    assert_eq!(*altered.lock().expect("lock"), [403]);
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
    assert!(page.contains("1 accepted, 1 rejected"), "{page}");
    assert_eq!(http_get(port, "/api/captures/nope").map(|r| r.0), Some(404));
}

/// Where playwright-core is: `$PCAPLAB_NODE_MODULES`, else the repository's `.ci/node`.
fn node_modules() -> PathBuf {
    std::env::var_os("PCAPLAB_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/node/node_modules"),
        PathBuf::from,
    )
}

#[test]
fn page_renders_in_chromium() {
    let modules = node_modules();
    if !modules.join("playwright-core").is_dir() || !Path::new("/usr/bin/chromium").exists() {
        return skip("playwright-core (bash .ci/browser) or /usr/bin/chromium is missing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("out");
    let converted = Command::new(bin())
        .args([
            "convert",
            "--quiet",
            "--format",
            "parquet,dynamodb-json",
            "--out",
        ])
        .arg(&data)
        .arg("captures")
        .current_dir(own_captures().join(".."))
        .output()
        .expect("convert");
    assert!(converted.status.success(), "{converted:?}");
    let (_server, port) = serve(
        &["--data", data.to_str().expect("UTF-8 path")],
        |_| {},
        &dir.path().join("serve.log"),
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts/serve");
    std::fs::create_dir_all(&shots).expect("artifact directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/page.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(&shots)
        .env("PCAPLAB_NODE_MODULES", &modules)
        .env("PCAPLAB_CAPTURE", "captures/lab-vlan-ipv6.pcapng")
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
    let own = std::fs::read_dir(own_captures())
        .expect("captures/")
        .flatten()
        .filter(|e| e.file_name() != "README.md")
        .count();
    assert_eq!(report["captures"], own, "{report}");
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
