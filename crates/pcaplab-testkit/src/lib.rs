//! Test support shared by pcaplab's integration tests (a dev-dependency only).
//!
//! - Prerequisites: the corpus (`$PCAPLAB_CORPUS`) and the project's Python (`$PCAPLAB_PYTHON`,
//!   a venv with boto3, moto[server] and pyarrow). A missing one skips the test with a loud
//!   line — or fails it when `$PCAPLAB_REQUIRE_ALL` is set, as `.ci/test` does.
//! - [`Moto`]: a moto server of the test's own on a free loopback port, stopped when dropped,
//!   and commands pointed at it (and at nothing else of the machine).
//! - [`FaultProxy`]: a proxy in front of moto that fails the requests a test names.

pub mod faults;
pub use faults::{Fault, FaultProxy, Rule};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A prerequisite is missing: skip loudly, or fail under `$PCAPLAB_REQUIRE_ALL`.
pub fn skip(what: &str) {
    let message = format!("*** SKIPPED: {what}; this test did not run. ***");
    if std::env::var_os("PCAPLAB_REQUIRE_ALL").is_some() {
        panic!("{message} (PCAPLAB_REQUIRE_ALL is set)");
    }
    eprintln!("\n{message}\n");
}

/// `$PCAPLAB_PYTHON`.
pub fn python() -> Option<PathBuf> {
    let p = std::env::var_os("PCAPLAB_PYTHON").map(PathBuf::from);
    if p.is_none() {
        skip("PCAPLAB_PYTHON (a Python with boto3, moto[server] and pyarrow) is not set");
    }
    p
}

/// `$PCAPLAB_CORPUS`.
pub fn corpus() -> Option<PathBuf> {
    let d = std::env::var_os("PCAPLAB_CORPUS").map(PathBuf::from);
    if d.is_none() {
        skip("PCAPLAB_CORPUS is not set");
    }
    d
}

/// The project's own captures (`captures/` at the workspace root).
pub fn own_captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../captures")
}

/// A loopback port free when asked.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `GET path` on a loopback port: the status code and the body (`None`: no HTTP answer).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `GET path` on a loopback port answers 200.
pub fn http_ok(port: u16, path: &str) -> bool {
    http_get(port, path).is_some_and(|(status, _)| status == 200)
}

/// Wait until `done` holds, checking every 200 ms; after `timeout`, fail naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Write a pcap of `packets` small UDP packets (60 bytes, 1 ms apart) to `path`: a capture as
/// big as a test needs (a debug build converts about 150 k packets/s).
pub fn udp_capture(path: &Path, packets: u32) {
    let mut data = Vec::with_capacity(24 + packets as usize * 76);
    for v in [
        0xa1b2_c3d4u32.to_le_bytes().as_slice(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
    ] {
        data.extend_from_slice(v);
    }
    for v in [0u32, 0, 65535, 1] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x00]);
    frame.extend_from_slice(&[0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 2]);
    frame.extend_from_slice(&[0x04, 0xd2, 0, 53, 0, 26, 0, 0]);
    frame.resize(60, b'x');
    for i in 0..packets {
        for v in [1_700_000_000 + i / 1000, (i % 1000) * 1000, 60, 60] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.extend_from_slice(&frame);
    }
    std::fs::write(path, data).expect("write the generated capture");
}

/// A child process killed and reaped when dropped, whatever the test did.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto server of the test's own.
pub struct Moto {
    server: Guard,
    port: u16,
    python: PathBuf,
    /// Holds nothing: `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE` point into it, so no
    /// profile of the machine is read.
    home: tempfile::TempDir,
}

/// `moto_server` with DynamoDB's atomicity: its DynamoDB requests (`X-Amz-Target:
/// DynamoDB_…`) are served one at a time.
pub const SERVER: &str = r#"
import sys, threading
from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
lock = threading.Lock()
serve = DomainDispatcherApplication.__call__
def serve_dynamodb_atomically(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with lock:
            return list(serve(self, environ, start_response))
    return serve(self, environ, start_response)
DomainDispatcherApplication.__call__ = serve_dynamodb_atomically
server.main(sys.argv[1:])
"#;

/// What every Python snippet starts with: boto3 clients for the emulator; `emit`, which
/// prints one tab-separated line; the table, its items and bucket listings.
pub const PRELUDE: &str = r#"
import sys, os, json, boto3
s3 = boto3.client("s3")
ddb = boto3.client("dynamodb")
sns = boto3.client("sns")
sqs = boto3.client("sqs")

def emit(*fields):
    fields = [str(f) for f in fields]
    for f in fields:
        assert "\t" not in f and "\n" not in f, repr(f)
    print("\t".join(fields))

def create_table(name="PacketCaptures"):
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "s3Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "s3Id", "AttributeType": "S"}])
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1})

TABLE = "PacketCaptures"

def items(name=TABLE):
    for page in ddb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
        yield from page["Items"]

def dump_items(name=TABLE):
    for it in items(name):
        sid = it["s3Id"]["S"]
        get = lambda k, t: it[k][t] if k in it else "-"
        emit("item", sid, get("status", "S"), get("packets", "N"), get("etag", "S"),
             get("first_ts", "S"), get("last_modified", "S"))
        if "reason" in it:
            emit("reason", sid, it["reason"]["S"].replace("\n", " "))
        for kind, url in sorted(it.get("outputs", {}).get("M", {}).items()):
            emit("output", sid, kind, url["S"])
        emit("canon", sid, json.dumps({k: v for k, v in it.items() if k != "processed_at"}, sort_keys=True))

def announce_to(queue, topic_name="pcaplab-done"):
    """The topic the Lambda function announces on, with the SQS queue `queue` subscribed to it
    (read back with `announcements`)."""
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic

def announcements(queue):
    """What SNS delivered to the SQS queue `queue` (subscribed to a topic), drained: each
    envelope's subject and message. (moto delivers during Publish: nothing is on its way.)"""
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return
        for m in got:
            env = json.loads(m["Body"])
            yield env.get("Subject", ""), env["Message"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

def dump_keys(bucket, prefix=""):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            emit("key", o["Key"])
"#;

impl Moto {
    /// Start moto's server (with `python`) and wait until it answers.
    ///
    /// moto serves requests on threads and does not serialise DynamoDB's conditional writes,
    /// which DynamoDB guarantees to be atomic: two watchers claiming one object at the same
    /// moment could both win. [`SERVER`] makes moto's DynamoDB requests one at a time (and
    /// nothing else: SQS long polls still wait side by side).
    pub fn start(python: &Path) -> Moto {
        // The port is free when picked, but another process may take it before moto binds it:
        // then moto exits, and we try another.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(python)
                .args(["-c", SERVER, "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start moto's server with {}: {e}", python.display())
                });
            let mut server = Guard(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            let up = loop {
                if http_ok(port, "/moto-api/") {
                    break true;
                }
                if matches!(server.0.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if up {
                return Moto {
                    server,
                    port,
                    python: python.to_owned(),
                    home: tempfile::tempdir().expect("tempdir"),
                };
            }
        }
        panic!("moto's server ({}) did not come up", python.display());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the server is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.server.0.try_wait(), Ok(None))
    }

    /// `cmd` talking to this server only, with the emulator's fixed credentials.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        emulator_env(cmd, &self.endpoint(), self.home.path())
    }

    /// `cmd` talking to this server through `endpoint` (a [`FaultProxy`] in front of it).
    pub fn env_via<'c>(&self, cmd: &'c mut Command, endpoint: &str) -> &'c mut Command {
        emulator_env(cmd, endpoint, self.home.path())
    }

    /// Run [`PRELUDE`] + `script` with `args`; it must succeed. Returns its stdout.
    pub fn py(&self, script: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.python);
        self.env(&mut cmd);
        run_python(&mut cmd, &format!("{PRELUDE}\n{script}"), args)
    }

    /// Upload local files: `(path, key)` into `bucket`, one `PutObject` each (boto3's
    /// `upload_file` goes multipart above 8 MiB, for which moto notifies twice).
    pub fn upload(&self, bucket: &str, files: &[(PathBuf, String)]) {
        let mut args = vec![bucket.to_owned()];
        for (p, k) in files {
            args.push(p.to_str().expect("utf8 path").to_owned());
            args.push(k.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.py(
            "b, a = sys.argv[1], sys.argv[2:]\nfor path, key in zip(a[0::2], a[1::2]): s3.put_object(Bucket=b, Key=key, Body=open(path, 'rb').read())",
            &args,
        );
    }

    /// Every item of the `PacketCaptures` table, by `s3Id` (two items for one id fail).
    pub fn items(&self) -> BTreeMap<String, Item> {
        self.items_in("PacketCaptures")
    }

    /// Every item of `table`, by `s3Id` (two items for one id fail).
    pub fn items_in(&self, table: &str) -> BTreeMap<String, Item> {
        parse_items(&self.py("dump_items(sys.argv[1])", &[table]))
    }

    /// The announcements SNS delivered to the SQS queue `queue` since the last call (the
    /// queue drained): each message's JSON and its subject.
    pub fn announcements(&self, queue: &str) -> Vec<(String, String)> {
        fields(
            &self.py(
                "for subject, message in announcements(sys.argv[1]): emit('sns', subject, message)",
                &[queue],
            ),
            "sns",
        )
        .into_iter()
        .map(|f| (f[1].clone(), f[0].clone()))
        .collect()
    }

    /// Every key in `bucket` under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> BTreeSet<String> {
        self.py("dump_keys(sys.argv[1], sys.argv[2])", &[bucket, prefix])
            .lines()
            .filter_map(|l| l.strip_prefix("key\t"))
            .map(str::to_owned)
            .collect()
    }
}

/// `cmd` talking to the AWS emulator at `endpoint` only, with its fixed credentials: every
/// `AWS_*` variable of the machine removed, the configuration files pointed into `empty_dir`.
pub fn emulator_env<'c>(cmd: &'c mut Command, endpoint: &str, empty_dir: &Path) -> &'c mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let missing = empty_dir.join("none");
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &missing)
        .env("AWS_SHARED_CREDENTIALS_FILE", &missing)
}

/// Run `script` with `args` through the Python command `cmd`; it must succeed (the failure
/// shows the script, its stdout and its stderr). Returns its stdout.
pub fn run_python(cmd: &mut Command, script: &str, args: &[&str]) -> String {
    let o = cmd
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "python failed:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The tab-separated fields of the lines of `out` that start with `kind`.
pub fn fields(out: &str, kind: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter_map(|l| l.strip_prefix(kind).and_then(|r| r.strip_prefix('\t')))
        .map(|r| r.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The lines of `out` that start with `kind`, as their first field → their second; a first
/// field seen twice fails (`two <kind>s for …`).
pub fn keyed(out: &str, kind: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for f in fields(out, kind) {
        assert!(
            map.insert(f[0].clone(), f[1].clone()).is_none(),
            "two {kind}s for {}",
            f[0]
        );
    }
    map
}

/// A summary item, as read back from the table.
#[derive(Debug, Default)]
pub struct Item {
    pub status: String,
    pub packets: Option<u64>,
    pub etag: String,
    pub first_ts: Option<String>,
    pub last_modified: String,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// Every attribute but `processed_at`, as canonical JSON.
    pub canon: String,
}

pub fn parse_items(out: &str) -> BTreeMap<String, Item> {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for f in fields(out, "item") {
        let opt = |s: &str| (s != "-").then(|| s.to_owned());
        let item = Item {
            status: f[1].clone(),
            packets: opt(&f[2]).map(|n| n.parse().expect("packets is a number")),
            etag: f[3].clone(),
            first_ts: opt(&f[4]),
            last_modified: f[5].clone(),
            ..Item::default()
        };
        assert!(
            items.insert(f[0].clone(), item).is_none(),
            "two items for {}",
            f[0]
        );
    }
    for f in fields(out, "reason") {
        items.get_mut(&f[0]).expect("item").reason = Some(f[1].clone());
    }
    for f in fields(out, "output") {
        items
            .get_mut(&f[0])
            .expect("item")
            .outputs
            .insert(f[1].clone(), f[2].clone());
    }
    for f in fields(out, "canon") {
        items.get_mut(&f[0]).expect("item").canon = f[1].clone();
    }
    items
}

/// Run `tshark ARGS`, which must succeed; its standard output.
pub fn tshark<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let o = Command::new("tshark")
        .args(args)
        .output()
        .expect("run tshark (apt-get install tshark)");
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        o.status.success(),
        "tshark {shown:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The oracle

/// Frames tshark shows for a corpus capture (`None`: tshark cannot open it, so no oracle).
pub fn oracle_frames(corpus: &Path, py: &Path, name: &str) -> Option<u64> {
    let plain = corpus.join(format!("oracle/{name}.tsv"));
    let gz = corpus.join(format!("oracle/{name}.tsv.gz"));
    let lines = if plain.is_file() {
        std::fs::read_to_string(&plain)
            .expect("read oracle")
            .lines()
            .count()
    } else if gz.is_file() {
        let o = Command::new(py)
            .args([
                "-c",
                "import gzip, sys; print(sum(1 for _ in gzip.open(sys.argv[1])))",
            ])
            .arg(&gz)
            .output()
            .expect("run python");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("a count")
    } else {
        return None;
    };
    Some(u64::try_from(lines).expect("fits") - 1) // the header line
}

/// The packets pcaplab must find in a corpus capture: the oracle's frame count, except where
/// the corpus' manifest documents why tshark shows other frames.
pub fn expected_packets(corpus: &Path, py: &Path, name: &str) -> u64 {
    let oracle = oracle_frames(corpus, py, name);
    match name {
        // tshark cannot open it (an SHB option longer than its block): no oracle. We report
        // the damage at the first block, with no packet before it.
        "libpcap__shb-option-too-long.pcapng" => {
            assert_eq!(oracle, None, "{name} has an oracle now: use it");
            0
        }
        // tshark cannot open it (link type 281, DSA_TAG_BRCM, is unknown to wiretap): no
        // oracle. Walking its record headers finds 23 records that end exactly at the end of
        // the file (4,474 bytes).
        "tcpdump__brcm-tag.pcap" => {
            assert_eq!(oracle, None, "{name} has an oracle now: use it");
            23
        }
        // Record 2 claims 1,409,179,648 captured bytes. The manifest notes that wiretap then
        // falls back to a non-standard pcap variant with longer record headers, so its row 2
        // is garbage; a strict reader keeps the 1 valid record before the damage.
        "suricata-verify__bug-6875-01__fuzz.pcap" => {
            assert_eq!(oracle, Some(2), "{name}: the oracle changed");
            1
        }
        _ => {
            let oracle = oracle.unwrap_or_else(|| panic!("no oracle for {name}"));
            // "oracle-rows=11!=capinfos-packets=8 (tshark lists pcapng custom blocks as
            // frames)": custom blocks are not packets.
            match custom_block_note(corpus, name) {
                Some((rows, packets)) => {
                    assert_eq!(rows, oracle, "{name}: manifest and oracle disagree");
                    packets
                }
                None => oracle,
            }
        }
    }
}

/// `(oracle rows, capinfos packets)` when the manifest says tshark counted custom blocks.
fn custom_block_note(corpus: &Path, name: &str) -> Option<(u64, u64)> {
    let manifest: String = ["manifest.csv", "manifest-depth.csv"]
        .iter()
        .map(|m| std::fs::read_to_string(corpus.join(m)).unwrap_or_else(|e| panic!("{m}: {e}")))
        .collect();
    let line = manifest
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))?;
    if !line.contains("tshark lists pcapng custom blocks as frames") {
        return None;
    }
    let num = |tag: &str| -> u64 {
        let rest = &line[line.find(tag).expect("tag") + tag.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("a number")
    };
    Some((num("oracle-rows="), num("capinfos-packets=")))
}
