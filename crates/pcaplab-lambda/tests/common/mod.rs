//! The Lambda function's test harness: cargo-lambda's runtime emulator and the real
//! `pcaplab-lambda` binary, and the events it is invoked with.

#![allow(dead_code)] // each test file uses its own part

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pcaplab_testkit::{Guard, Moto, free_port};
use serde_json::{Value, json};

/// The topic the function announces on.
pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:pcaplab-done";
/// The SQS queue the tests subscribe to the topic: what was announced.
pub const QUEUE: &str = "announcements";

/// The emulator and the function (its AWS requests to an endpoint of the test's choice: moto,
/// or a fault proxy in front of it), both stopped when dropped.
pub struct Lambda {
    port: u16,
    cargo_lambda: PathBuf,
    _emulator: Guard,
    _function: Guard,
    /// The function's log (stdout and stderr).
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl Lambda {
    /// `cargo lambda watch --only-lambda-apis` and the function, whose AWS requests go to
    /// `endpoint`.
    pub fn start(moto: &Moto, python: &Path, endpoint: &str) -> Lambda {
        Lambda::start_with(moto, python, endpoint, &[])
    }

    /// [`Lambda::start`], with more of the function's environment.
    pub fn start_with(moto: &Moto, python: &Path, endpoint: &str, env: &[(&str, &str)]) -> Lambda {
        let cargo_lambda = python
            .parent()
            .expect("PCAPLAB_PYTHON has a directory")
            .join("cargo-lambda");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let emulator = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-P",
                &port.to_string(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("emulator.log")).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cargo_lambda.display()));
        let emulator = Guard(emulator);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(port) {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {port}: {}",
                std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = dir.path().join("function.log");
        let log_file = std::fs::File::create(&log).expect("log");
        let function = moto
            .env_via(
                &mut Command::new(env!("CARGO_BIN_EXE_pcaplab-lambda")),
                endpoint,
            )
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("PCAPLAB_SNS_TOPIC_ARN", TOPIC)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start pcaplab-lambda");
        Lambda {
            port,
            cargo_lambda,
            _emulator: emulator,
            _function: Guard(function),
            log,
            dir,
        }
    }

    /// Invoke the function with `event`: its answer, or the error it reported.
    pub fn invoke(&self, event: &Value) -> Result<Value, String> {
        // One file per invocation: tests invoke from several threads at once.
        static N: AtomicUsize = AtomicUsize::new(0);
        let file = self
            .dir
            .path()
            .join(format!("event-{}.json", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&file, event.to_string()).expect("write event");
        let o = Command::new(&self.cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "_",
                "-P",
                &self.port.to_string(),
                "--data-file",
            ])
            .arg(&file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo lambda invoke");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        if o.status.success() {
            Ok(serde_json::from_str(&out).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}): {out}\n{err}\nfunction log:\n{}",
                    self.log()
                )
            }))
        } else {
            // cargo-lambda wraps the error's text in a box: unwrap it to one line.
            let text = format!("{out}{err}").replace('│', " ");
            Err(text.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An S3 notification record for `bucket/key` (`key` as S3 encodes it in events).
pub fn s3_record(bucket: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "captures",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": key, "size": 1, "sequencer": "0055AED6DCD90281E5"}
        }
    })
}

/// An SQS message (its `receive`th delivery) whose body is `body`.
pub fn sqs_message(id: &str, body: &Value, receive: u32) -> Value {
    json!({
        "messageId": id, "receiptHandle": format!("handle-{id}-{receive}"), "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": receive.to_string()}, "messageAttributes": {},
        "md5OfBody": "0", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:captures", "awsRegion": "us-east-1"
    })
}
