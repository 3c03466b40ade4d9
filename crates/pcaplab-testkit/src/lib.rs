//! Test support shared by pcaplab's integration tests (a dev-dependency only).
//!
//! - Prerequisites: the corpus (`$PCAPLAB_CORPUS`) and the project's Python (`$PCAPLAB_PYTHON`,
//!   a venv with boto3, moto[server] and pyarrow). A missing one skips the test with a loud
//!   line — or fails it when `$PCAPLAB_REQUIRE_ALL` is set, as `.ci/test` does.
//! - [`Moto`]: a moto server of the test's own on a free loopback port, stopped when dropped,
//!   and commands pointed at it (and at nothing else of the machine).

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

/// `GET path` on a loopback port answers 200.
pub fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
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

/// What every Python snippet starts with: boto3 clients for the emulator, and `emit`, which
/// prints one tab-separated line.
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
"#;

impl Moto {
    /// Start `moto_server` (next to `python`) and wait until it answers.
    pub fn start(python: &Path) -> Moto {
        let bin = python
            .parent()
            .expect("PCAPLAB_PYTHON has a directory")
            .join("moto_server");
        // The port is free when picked, but another process may take it before moto binds it:
        // then moto exits, and we try another.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
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
        panic!("moto_server ({}) did not come up", bin.display());
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
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let missing = self.home.path().join("none");
        cmd.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &missing)
            .env("AWS_SHARED_CREDENTIALS_FILE", &missing)
    }

    /// Run [`PRELUDE`] + `script` with `args`; it must succeed. Returns its stdout.
    pub fn py(&self, script: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.python);
        self.env(&mut cmd);
        run_python(&mut cmd, &format!("{PRELUDE}\n{script}"), args)
    }
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
