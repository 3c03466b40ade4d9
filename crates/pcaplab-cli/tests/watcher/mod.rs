//! What the watcher tests share: the SQS setup (S3 notifications → a queue with a dead-letter
//! queue, and a topic whose announcements land in a queue), the queue's depth, the dataset's
//! rows, and a `pcaplab watch` child with JSON logs and metrics.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use pcaplab_testkit::{Guard, Moto, fields, free_port, http_get};
use serde_json::Value;

pub const TABLE: &str = "PacketCaptures";

/// Buckets `captures` (notifying the queue `captures` of every created object) and `results`,
/// the table, the queue's dead-letter queue after `sys.argv[1]` receives, and the topic
/// `pcaplab-done` with the queue `announcements` subscribed. Prints the queue's URL and the
/// topic's ARN.
const SETUP: &str = r#"
s3.create_bucket(Bucket="captures"); s3.create_bucket(Bucket="results"); create_table()
def arn(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
dlq = sqs.create_queue(QueueName="captures-dlq")["QueueUrl"]
q = sqs.create_queue(QueueName="captures", Attributes={"VisibilityTimeout": "30",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": sys.argv[1]})})["QueueUrl"]
s3.put_bucket_notification_configuration(Bucket="captures", NotificationConfiguration={
    "QueueConfigurations": [{"QueueArn": arn(q), "Events": ["s3:ObjectCreated:*"]}]})
topic = sns.create_topic(Name="pcaplab-done")["TopicArn"]
announcements = sqs.create_queue(QueueName="announcements")["QueueUrl"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(announcements))
emit("setup", q, topic)
"#;

/// [`SETUP`] with a dead-letter queue after `max_receives` receives: the queue's URL and the
/// topic's ARN.
pub fn setup(moto: &Moto, max_receives: u32) -> (String, String) {
    let out = moto.py(SETUP, &[&max_receives.to_string()]);
    let f = &fields(&out, "setup")[0];
    (f[0].clone(), f[1].clone())
}

/// Messages in the queue and its dead-letter queue: `visible not-visible dlq-visible`.
const QUEUE_DEPTH: &str = r#"
def depth(name):
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])
v, nv = depth("captures")
emit("depth", v, nv, depth("captures-dlq")[0])
"#;

/// `(visible, in flight, in the dead-letter queue)`.
pub fn depth(moto: &Moto) -> (u64, u64, u64) {
    let f = &fields(&moto.py(QUEUE_DEPTH, &[]), "depth")[0];
    let n = |i: usize| f[i].parse().expect("a count");
    (n(0), n(1), n(2))
}

/// Rows per capture of the Parquet dataset `s3://results/packets` (Hive partitioning).
const DATASET_ROWS: &str = r#"
import collections
import pyarrow.fs as pafs, pyarrow.dataset as ds
fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"].split("//")[1], scheme="http",
    access_key="test", secret_key="test", region="us-east-1")
t = ds.dataset("results/packets", filesystem=fs, format="parquet", partitioning="hive").to_table(columns=["capture"])
for cap, n in sorted(collections.Counter(t.column("capture").to_pylist()).items()):
    emit("rows", cap, n)
"#;

/// Rows per capture in `s3://results/packets`.
pub fn dataset_rows(moto: &Moto) -> BTreeMap<String, u64> {
    fields(&moto.py(DATASET_ROWS, &[]), "rows")
        .into_iter()
        .map(|f| (f[0].clone(), f[1].parse().expect("rows")))
        .collect()
}

/// A `pcaplab watch` child with JSON logs in a file and its metrics on a port of its own.
pub struct Watcher {
    pub child: Guard,
    pub port: u16,
    log: PathBuf,
}

impl Watcher {
    /// Start it (its AWS requests to `endpoint`: moto, or a fault proxy in front of it) and
    /// wait until `/healthz` answers.
    pub fn start(moto: &Moto, endpoint: &str, dir: &Path, name: &str, args: &[&str]) -> Watcher {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = moto
            .env_via(&mut Command::new(env!("CARGO_BIN_EXE_pcaplab")), endpoint)
            .arg("watch")
            .args(["--log-format", "json", "--id", name])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("start pcaplab watch");
        let mut w = Watcher {
            child: Guard(child),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/healthz").is_none() {
            if let Ok(Some(status)) = w.child.0.try_wait() {
                panic!("{name} exited at start ({status}):\n{}", w.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not come up:\n{}",
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        w
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's JSON lines (every line must be JSON).
    pub fn logs(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The warnings whose message contains `text`.
    pub fn warnings(&self, text: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| {
                l["level"] == "WARN" && l["message"].as_str().is_some_and(|m| m.contains(text))
            })
            .collect()
    }

    /// `/metrics`, as `name{labels}` → value.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let (status, body) = http_get(self.port, "/metrics").expect("/metrics answers");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("name value");
                (name.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    pub fn metric(&self, name: &str) -> f64 {
        *self
            .metrics()
            .get(name)
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    pub fn messages(&self, result: &str) -> f64 {
        self.metric(&format!(
            "pcaplab_watch_messages_total{{result=\"{result}\"}}"
        ))
    }

    pub fn captures(&self, outcome: &str) -> u64 {
        self.metric(&format!(
            "pcaplab_watch_captures_total{{outcome=\"{outcome}\"}}"
        )) as u64
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args(["-s", signal, &self.child.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -s {signal}");
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the watcher did not exit within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send `signal` and expect a clean exit (status 0) within a minute.
    pub fn stop(&mut self, signal: &str) {
        self.signal(signal);
        let status = self.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", self.log_text());
    }
}
